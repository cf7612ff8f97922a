"""Finding and loading a nexusfile, isolated from any other load in the same process."""

from __future__ import annotations

import builtins
import hashlib
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from nexus_core.dsl import _PROJECT
from nexus_core.model import Location, Problem, Project

NEXUSFILE = "nexusfile.py"


class NexusfileNotFound(Exception):
    """No nexusfile in the folder or its parents, or the given path does not exist."""


def find_nexusfile(explicit: str | None = None, start: str | None = None) -> str:
    """The nexusfile to use: ``explicit`` (``-c``), ``$NEXUS_CONFIG``, or the nearest ``nexusfile.py``."""
    explicit = explicit or os.environ.get("NEXUS_CONFIG") or None
    if explicit:
        path = os.path.abspath(os.path.expanduser(explicit))
        if os.path.isdir(path):
            path = os.path.join(path, NEXUSFILE)
        if not os.path.isfile(path):
            raise NexusfileNotFound(f"{explicit} does not exist")
        return path
    folder = os.path.abspath(start or os.getcwd())
    for _ in range(256):
        candidate = os.path.join(folder, NEXUSFILE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    raise NexusfileNotFound(f"no {NEXUSFILE} in {os.path.abspath(start or os.getcwd())} or its parents")


@contextmanager
def in_project(project: Project) -> Iterator[None]:
    """Run with the project's folder as working directory and first on ``sys.path``.

    Modules the nexusfile imports from its own folder are removed from ``sys.modules``
    afterwards, so a second nexusfile in the same process sees none of them.
    """
    before = set(sys.modules)
    old_cwd = os.getcwd()
    sys.path.insert(0, project.root)
    try:
        os.chdir(project.root)
        yield
    finally:
        os.chdir(old_cwd)
        try:
            sys.path.remove(project.root)
        except ValueError:
            pass
        root = project.root + os.sep
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules.get(name), "__file__", None) or ""
            if module_file.startswith(root):
                del sys.modules[name]


def load_project(path: str) -> Project:
    """Execute the nexusfile at ``path`` and return what it declared.

    Never raises for mistakes in the file: syntax errors and exceptions become
    :class:`~nexus_core.model.Problem` entries with the nexusfile's own line.
    """
    path = os.path.abspath(path)
    project = Project(path=path, root=os.path.dirname(path))
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        project.problems.append(Problem(f"cannot read the nexusfile: {exc.strerror}", Location(path)))
        return project
    project.source_hash = hashlib.sha256(raw).hexdigest()
    try:
        code = compile(raw, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        detail = (exc.text or "").rstrip()
        hint = f"{detail.strip()}" if detail else "check the Python syntax on that line"
        project.problems.append(
            Problem(f"Python syntax error: {exc.msg}", Location(path, exc.lineno or 0), hint, "syntax")
        )
        return project
    except ValueError as exc:  # e.g. null bytes
        project.problems.append(Problem(f"cannot compile the nexusfile: {exc}", Location(path), code="syntax"))
        return project
    namespace = {"__name__": "nexusfile", "__file__": path, "__builtins__": builtins}
    token = _PROJECT.set(project)
    try:
        with in_project(project):
            exec(code, namespace)  # noqa: S102 - running the user's nexusfile is the point
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of user code is a problem, not a crash
        project.problems.append(exception_problem(exc, path, "while loading the nexusfile"))
    finally:
        _PROJECT.reset(token)
    return project


def exception_problem(exc: BaseException, path: str, when: str) -> Problem:
    """A problem for an exception raised by user code, located at the nexusfile's deepest frame."""
    line = 0
    other: Location | None = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename == path:
            line = lineno
        elif not filename.startswith(os.path.dirname(__file__)):
            other = Location(filename, lineno)
    kind = type(exc).__name__
    message = f"{kind}: {exc}" if str(exc) else kind
    if isinstance(exc, SystemExit):
        message = f"the nexusfile called exit({exc.code!r})"
    hint = f"raised {when}"
    if other is not None and line:
        hint += f" (in {other.path}:{other.line}, called from here)"
    elif other is not None:
        hint += f" (in {other.path}:{other.line})"
    return Problem(message, Location(path, line), hint, "exception")
