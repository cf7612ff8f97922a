"""Finding and loading a nexusfile, isolated from any other load in the same process."""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, NoReturn

from nexus_core.dsl import _PROJECT
from nexus_core.model import Location, Problem, Project
from nexus_core.options import safe_repr

NEXUSFILE = "nexusfile.py"


class NexusfileNotFound(Exception):
    """No nexusfile in the folder or its parents, or the given path does not exist."""


def find_nexusfile(explicit: str | None = None, start: str | None = None) -> str:
    """The nexusfile to use: ``explicit`` (``-c``), ``$NEXUS_CONFIG``, or the nearest ``nexusfile.py``."""
    env = os.environ.get("NEXUS_CONFIG") or None
    # where the path came from, for the messages (-c may also read NEXUS_CONFIG itself)
    source = "" if not explicit else " (-c, or NEXUS_CONFIG)" if explicit == env else ""
    if not explicit and env:
        explicit, source = env, " (NEXUS_CONFIG)"
    if explicit:
        path = os.path.abspath(os.path.expanduser(explicit))
        if os.path.isdir(path):
            folder, path = path, os.path.join(path, NEXUSFILE)
            if not os.path.exists(path):
                same = os.path.abspath(os.path.expanduser(explicit)) == folder
                shown = explicit if same else f"{explicit} ({folder})"
                raise NexusfileNotFound(f"{shown}{source} is a folder without a {NEXUSFILE}")
        if not os.path.exists(path):
            raise NexusfileNotFound(f"{explicit}{source} does not exist")
        if not os.path.isfile(path):
            raise NexusfileNotFound(f"{path}{source} is not a regular file (a nexusfile is a Python file)")
        return path
    found = nearest_file(NEXUSFILE, start)
    if found is None:
        raise NexusfileNotFound(f"no {NEXUSFILE} in {os.path.abspath(start or os.getcwd())} or its parents")
    return found


def nearest_file(name: str, start: str | None = None) -> str | None:
    """The file ``name`` (a relative path) in ``start`` (default: here) or its nearest parent
    that holds it; None when none does."""
    folder = os.path.abspath(start or os.getcwd())
    for _ in range(256):  # bounded: a path has fewer parts
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


@contextmanager
def in_project(project: Project) -> Iterator[None]:
    """Run with the project's folder as working directory and first on ``sys.path``.

    Modules the nexusfile imports from its own folder are removed from ``sys.modules``
    afterwards, so a second nexusfile in the same process sees none of them; and modules
    of the same name that are already loaded from elsewhere (another project's helper, say)
    are set aside meanwhile, so ``import helpers`` finds this project's ``helpers.py``.
    """
    root = project.root + os.sep
    shadowed = _shadowed_modules(project.root)
    for name in shadowed:
        del sys.modules[name]
    before = set(sys.modules)
    old_cwd = os.getcwd()
    sys.path.insert(0, project.root)
    real_exit, real_abort = os._exit, os.abort
    os._exit, os.abort = _hard_exit, _hard_abort  # type: ignore[assignment]
    try:
        os.chdir(project.root)
        yield
    finally:
        os._exit, os.abort = real_exit, real_abort
        os.chdir(old_cwd)
        try:
            sys.path.remove(project.root)
        except ValueError:
            pass
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules.get(name), "__file__", None) or ""
            if isinstance(module_file, str) and module_file.startswith(root):
                del sys.modules[name]
        sys.modules.update(shadowed)


class HardExit(SystemExit):
    """``os._exit()`` or ``os.abort()`` called by nexusfile code while Nexus evaluates it.

    Inside :func:`in_project` both raise this instead of ending the process at once, so
    that ``nexus validate`` (and every command that loads the nexusfile) reports the call
    at its line like any other exception, instead of ending silently with the file's code.
    """

    def __init__(self, call: str, code: object) -> None:
        super().__init__(code)
        self.call = call


def _hard_exit(code: int) -> NoReturn:
    raise HardExit("os._exit", code)


def _hard_abort() -> NoReturn:
    raise HardExit("os.abort", None)


def _shadowed_modules(folder: str) -> dict[str, ModuleType]:
    """Loaded modules (not stdlib, not Nexus) whose name a module in ``folder`` would take."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return {}
    local: set[str] = set()
    for entry in entries:
        if entry.endswith(".py"):
            local.add(entry[:-3])
        elif os.path.isfile(os.path.join(folder, entry, "__init__.py")):
            local.add(entry)
    local -= set(sys.stdlib_module_names) | {"nexus_core", "nexusfile"}
    if not local:
        return {}
    prefix = folder + os.sep
    out: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in local:
            module_file = getattr(module, "__file__", None) or ""
            if not (isinstance(module_file, str) and module_file.startswith(prefix)):
                out[name] = module
    return out


@contextmanager
def user_output() -> Iterator[None]:
    """While the user's code runs at load or plan time, its ``print()`` goes to stderr.

    Nexus's stdout holds results only: a nexusfile's or a task body's own prints (debugging,
    mostly) would otherwise land among them, and break ``--format json``'s one JSON object
    per line. Only ever used in the main thread before the engine starts (nothing else
    writes to stdout meanwhile).
    """
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        yield


#: The stop signal (SIGTERM, SIGHUP) that :func:`stop_as_interrupt` turned into a KeyboardInterrupt.
_STOPPED: list[str] = []


def stop_as_interrupt(signal_name: str) -> NoReturn:
    """Stop the command as Ctrl+C does, for the stop signal ``signal_name`` (from a signal
    handler): code of the nexusfile running meanwhile does not take it for its own
    ``KeyboardInterrupt``, and the command exits with that signal's code."""
    _STOPPED.append(signal_name)
    raise KeyboardInterrupt


def stopped_by() -> str | None:
    """The stop signal :func:`stop_as_interrupt` was called for, if any."""
    return _STOPPED[0] if _STOPPED else None


@contextmanager
def user_code() -> Iterator[dict[str, bool]]:
    """:func:`user_output`, and a record of whether Ctrl+C (SIGINT) arrived meanwhile.

    The yielded dict's ``"sigint"`` stays False when a ``KeyboardInterrupt`` was raised by the
    user's code itself: that is a mistake in the nexusfile to report at its line (exit 2),
    not the user stopping Nexus (exit 130). Outside the main thread (no signal arrives there)
    only the output is redirected.
    """
    import signal
    import threading

    seen = {"sigint": False}
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            seen["sigint"] = True
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)
    try:
        with user_output():
            yield seen
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


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
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes on older Pythons
        project.problems.append(syntax_problem(exc, path, raw))
        return project
    namespace = {"__name__": "nexusfile", "__file__": path, "__builtins__": builtins}
    token = _PROJECT.set(project)
    seen = {"sigint": False}
    try:
        with in_project(project), user_code() as seen:
            exec(code, namespace)  # noqa: S102 - running the user's nexusfile is the point
    except KeyboardInterrupt as exc:
        if seen["sigint"] or stopped_by():
            raise  # Ctrl+C (or SIGTERM...) while loading: the user stops Nexus
        project.problems.append(exception_problem(exc, path, "while loading the nexusfile"))
    except BaseException as exc:  # noqa: BLE001 - any failure of user code is a problem, not a crash
        project.problems.append(exception_problem(exc, path, "while loading the nexusfile"))
    finally:
        _PROJECT.reset(token)
    return project


def syntax_problem(exc: SyntaxError | ValueError, path: str, raw: bytes) -> Problem:
    """A problem for a nexusfile Python cannot compile, at its own line."""
    if isinstance(exc, SyntaxError):
        msg = exc.msg or "invalid syntax"
        line = exc.lineno or 0
        text = exc.text if isinstance(exc.text, str) else ""
    else:
        msg, line, text = str(exc) or "cannot compile", 0, ""
    if not line and b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        msg, text = "the file contains a null byte", ""
    text = text.replace("\0", "").strip()
    if text and len(text) > 120:
        text = text[:117] + "..."
    if text:
        hint = f"check this line: {text}"
    elif line:
        hint = "check the Python syntax on that line"
    else:
        hint = "check the Python syntax (and the encoding) of the nexusfile"
    return Problem(f"Python syntax error: {msg}", Location(path, line), hint, "syntax")


def exception_problem(exc: BaseException, path: str, when: str, fallback: Location | None = None) -> Problem:
    """A problem for an exception raised by user code, located at the nexusfile's deepest frame.

    ``fallback`` is used when no frame of the nexusfile is in the traceback (e.g. a task
    body that cannot even be called). Never raises, whatever the exception's ``__str__`` does.
    """
    line = 0
    other: Location | None = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename == path:
            line = lineno or 0
        elif not filename.startswith(_PKG_DIR):
            other = Location(filename, lineno or 0)
    kind = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a user exception's __str__ can raise too
        text = ""
    if len(text) > 500:
        text = text[:497] + "..."
    message = f"{kind}: {text}" if text else kind
    if isinstance(exc, HardExit):
        args = "" if exc.call == "os.abort" else safe_repr(exc.code)
        message = f"the nexusfile called {exc.call}({args}), which would end Nexus at once"
    elif isinstance(exc, SystemExit):
        message = f"the nexusfile called exit({safe_repr(exc.code)})"
    elif isinstance(exc, RecursionError):
        message = "RecursionError: maximum recursion depth exceeded"
    elif isinstance(exc, TypeError):
        fix = _api_call_fix(text)
        if fix:  # a Nexus function called with a name it does not take: say which ones it does
            return Problem(message.removeprefix("TypeError: "), Location(path, line) if line else fallback, fix,
                           "unknown-option")  # fmt: skip
    hint = f"raised {when}"
    if other is not None and line:
        hint += f" (in {other.path}:{other.line}, called from here)"
    elif other is not None:
        hint += f" (in {other.path}:{other.line})"
    where = Location(path, line)
    if not line and fallback is not None:
        where = fallback
    return Problem(message, where, hint, "exception")


_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_UNEXPECTED = re.compile(r"^(\w+)\(\) got an unexpected keyword argument '(\w+)'$")


def _api_call_fix(text: str) -> str:
    """For ``upload() got an unexpected keyword argument 'recurse'`` about a function of the
    nexusfile API: the nearest parameter it takes (``did you mean 'recursive'?``), else its
    parameters; "" for anything else (the user's own functions keep Python's words)."""
    import inspect

    import nexus_core
    from nexus_core.options import suggest

    found = _UNEXPECTED.match(text)
    if found is None or found.group(1) not in nexus_core.__all__:
        return ""
    try:
        params = inspect.signature(getattr(nexus_core, found.group(1))).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return ""
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    close = suggest(found.group(2), names)
    if close:
        return f"did you mean {close!r}?"
    return f"{found.group(1)}() takes: " + ", ".join(names) if names else ""
