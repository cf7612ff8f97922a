"""The nexusfile's file operations: ``upload``, ``download`` and ``template``.

Each records a :class:`~nexus_core.model.Transfer` for the host the task body is planned
for, beside the commands ``run()`` records, in body order. Everything that can be known
before anything runs is checked here, at plan time, and reported as a problem with the
nexusfile's line (all at once, exit 2): a missing or unreadable source, a folder without
``recursive=True``, a template's syntax error or undefined variable (with the template's
own file:line), a bad ``mode``. Templates are rendered here, once per host.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from nexus_core.dsl import _RECORDER, NexusfileError, _caller, _problem, notify_names
from nexus_core.model import Project, Transfer
from nexus_core.options import safe_repr
from nexus_core.userfiles import special_kind

__all__ = ["download", "template", "upload"]


def _recorder(what: str) -> Any:
    rec = _RECORDER.get()
    if rec is None:
        from nexus_core.dsl import _PROJECT

        if _PROJECT.get() is not None:
            _problem(f"{what}() is called outside a task body", "put it inside a function decorated with @task")
            return None
        raise NexusfileError(f"{what}() can only be called inside a task body, while Nexus plans a run")
    return rec


def _mode(what: str, mode: Any) -> tuple[bool, int | None]:
    """``mode=`` checked (:func:`nexus_core.modes.check_mode`): (valid, permission bits), the problem recorded."""
    from nexus_core.modes import check_mode

    value, problem = check_mode(what, mode)
    if problem is not None:
        _problem(problem[0], problem[1], code="bad-value")
        return False, None
    return True, value


def _name(what: str, key: str, value: Any) -> bool:
    if value is None or (isinstance(value, str) and value.strip() and not any(c in value for c in " :\n\0")):
        return True
    _problem(
        f"{what}(): {key} must be a user or group name, not {safe_repr(value)}",
        f'write {key}="www-data", or a number as a string: {key}="33"',
        code="bad-value",
    )
    return False


def _flag(what: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return True
    _problem(f"{what}(): {key} must be true/false, not {safe_repr(value)}", f"write {key}=True", code="bad-value")
    return False


def _path_arg(what: str, key: str, value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value.strip():
        if "\0" not in value and "\n" not in value:
            return value
        char = "a NUL character" if "\0" in value else "a newline"
        _problem(
            f"{what}(): {key} {safe_repr(value)} has {char}, which Nexus does not transfer in a path given to it",
            "rename the file (or copy it to a name without one with run() first)",
            code="bad-value",
        )
        return None
    _problem(
        f"{what}(): {key} must be a non-empty path string, not {safe_repr(value)}",
        f'write {what}("app.conf", "/etc/app/app.conf")'
        if what != "download"
        else 'write download("/var/log/app.log", "logs/")',
        code="bad-value",
    )
    return None


def _local_source(
    what: str, src: str, root: str, recursive: bool, project: Project | None = None, deps: Sequence[str] = ()
) -> tuple[str, str] | None:
    """The absolute local source and its kind (``file``/``dir``), or None after a problem
    (a folder's files are checked once per plan of ``project``, not once per host).

    ``deps``: the tasks the current one depends on. Sources are checked before anything
    runs, so a file one of them would make is not there yet: the hint says how to hand it
    over (``artifact()``) instead of only "check the path".
    """
    path = os.path.normpath(os.path.join(root, os.path.expanduser(src)))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        hint = "check the path; relative paths start at the nexusfile's folder"
        if deps:
            hint = (f"sources are checked before any task runs: if {', '.join(deps)} makes it, declare it there "
                    f"with artifact({src!r}) (it then reaches this task's hosts), or run that task first")  # fmt: skip
        _problem(f"{what}(): source {src!r} does not exist ({path})", hint, code="missing-source")
        return None
    except OSError as exc:
        _problem(f"{what}(): source {src!r} cannot be read: {exc.strerror}", "check its permissions", code="bad-source")
        return None
    if stat.S_ISDIR(st.st_mode):
        if not recursive:
            fix = (
                f"write {what}({src!r}, ..., recursive=True) to copy the folder and everything in it"
                if what != "template"
                else "give the path of one template file: template() renders a single file "
                f"(to copy a folder as it is, use upload({src!r}, ..., recursive=True))"
            )
            _problem(f"{what}(): source {src!r} is a folder", fix, code="bad-source")
            return None
        if not os.access(path, os.R_OK | os.X_OK):
            _problem(f"{what}(): folder {src!r} cannot be read", "check its permissions", code="bad-source")
            return None
        found = _tree_problems_in_plan(path, project)
        for kind, entries in found.items():
            from nexus_core.output.alike import listed

            one, many, hint = _TREE_PROBLEMS[kind]
            message = (one if len(entries) == 1 else many).format(src=repr(src))
            _problem(f"{what}(): {len(entries)} {message}: {listed(entries)}", hint,
                     code="bad-source")  # fmt: skip
        if found:
            return None
        return path, "dir"
    if not stat.S_ISREG(st.st_mode):
        _problem(f"{what}(): source {src!r} is not a regular file", "give a file or a folder", code="bad-source")
        return None
    if not os.access(path, os.R_OK):
        _problem(
            f"{what}(): source {src!r} cannot be read (permission denied)",
            f"check its permissions: ls -l {path}",
            code="bad-source",
        )
        return None
    return path, "file"


#: What a recursive upload refuses in a local tree, by kind: (message after the count, hint).
#: A tree is sent as regular files and folders: a link to a file inside the tree is
#: followed (its target's bytes); anything else is named before anything runs.
_TREE_PROBLEMS: dict[str, tuple[str, str, str]] = {
    "unreadable": ("file of {src} cannot be read", "files of {src} cannot be read", "check their permissions"),
    "special": (
        "entry of {src} is neither a regular file nor a folder and is never read",
        "entries of {src} are neither regular files nor folders and are never read",
        "remove them from the folder, or upload a folder without them: a FIFO, a socket or a device "
        "is not copied (reading it could block or never end)",
    ),
    "dangling": (
        "symbolic link in {src} points to nothing (dangling)",
        "symbolic links in {src} point to nothing (dangling)",
        "fix the link's target, or remove the link",
    ),
    "loop": ("symbolic link in {src} is a loop", "symbolic links in {src} are loops", "fix or remove the link"),
    "outside": (
        "symbolic link in {src} points outside the folder and is not followed",
        "symbolic links in {src} point outside the folder and are not followed",
        "copy the file into the folder, or upload it with an upload() of its own: a recursive upload "
        "sends only what is inside the tree",
    ),
    "dirlink": (
        "symbolic link to a folder in {src} is not followed",
        "symbolic links to folders in {src} are not followed",
        "replace the link with the folder itself, or upload its target with an upload(..., recursive=True) "
        "of its own (links to folders could copy a folder twice or loop)",
    ),
}

#: Trees checked by :func:`_tree_problems_in_plan`: ``{folder: (the plan's project, problems)}``.
_CHECKED: dict[str, tuple[weakref.ref[Project], dict[str, list[str]]]] = {}
_CHECKED_LOCK = threading.Lock()
#: Entries named at most per tree (the walk stops there).
_TREE_PROBLEMS_MAX = 50


def _tree_problems_in_plan(folder: str, project: Project | None) -> dict[str, list[str]]:
    """:func:`tree_problems` of ``folder``, walked once while ``project`` is planned
    (every host of a task uploads the same folder; a new plan walks again)."""
    if project is None:
        return tree_problems(folder)
    with _CHECKED_LOCK:
        kept = _CHECKED.get(folder)
    if kept is not None and kept[0]() is project:
        return kept[1]
    found = tree_problems(folder)
    with _CHECKED_LOCK:
        for key in [k for k, (ref, _) in _CHECKED.items() if ref() is not project]:
            del _CHECKED[key]  # another plan's: of no use now
        _CHECKED[folder] = (weakref.ref(project), found)
    return found


def tree_problems(folder: str) -> dict[str, list[str]]:
    """What a recursive upload of ``folder`` refuses, by kind (see :data:`_TREE_PROBLEMS`),
    each entry shown relative to the folder (``pipe (a FIFO)``, ``out -> /etc/hostname``).

    Nothing is opened: entries are ``lstat``-ed, links resolved. A link to a regular file
    inside the tree is fine; one to a file outside, to a folder, to nothing or in a loop is
    named, as is a FIFO, socket or device and what cannot be read. The walk stops after
    :data:`_TREE_PROBLEMS_MAX` entries."""
    found: dict[str, list[str]] = {}
    count = 0
    prefix = os.path.realpath(folder).rstrip(os.sep) + os.sep

    def add(kind: str, path: str, shown: str = "") -> None:
        nonlocal count
        found.setdefault(kind, []).append(os.path.relpath(path, folder) + shown)
        count += 1

    # os.scandir's entries know their kind without a system call (d_type): a tree of 1,000
    # plain files costs one access() each, as the readability check alone did before.
    todo = [folder]
    while todo and count <= _TREE_PROBLEMS_MAX:
        base = todo.pop()
        try:
            entries = list(os.scandir(base))
        except OSError:
            add("unreadable", base, "/")
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if os.access(e.path, os.R_OK | os.X_OK):
                    todo.append(e.path)
                else:
                    add("unreadable", e.path, "/")
            elif e.is_file(follow_symlinks=False):
                if not os.access(e.path, os.R_OK):
                    add("unreadable", e.path)
            elif e.is_symlink():
                target = os.readlink(e.path)
                try:
                    st = os.stat(e.path)
                except FileNotFoundError:
                    add("dangling", e.path, f" -> {target}")
                    continue
                except OSError as exc:
                    add("loop" if exc.errno == errno.ELOOP else "unreadable", e.path)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    add("dirlink", e.path, f" -> {target}")
                elif not os.path.realpath(e.path).startswith(prefix):
                    add("outside", e.path, f" -> {target}")
                elif not stat.S_ISREG(st.st_mode):
                    add("special", e.path, f" ({special_kind(st.st_mode)})")
                elif not os.access(e.path, os.R_OK):
                    add("unreadable", e.path)
            else:
                try:
                    mode = e.stat(follow_symlinks=False).st_mode
                except OSError:
                    mode = 0
                add("special", e.path, f" ({special_kind(mode)})")
    return {kind: sorted(entries) for kind, entries in found.items()}


def _dest(to: str, src: str, host_is_local: bool, root: str) -> str:
    """``to`` with a trailing ``/`` meaning "into this folder"; local relative paths start at the root."""
    if to.endswith("/"):
        to = to + os.path.basename(src.rstrip("/"))
    if host_is_local:
        to = os.path.normpath(os.path.join(root, os.path.expanduser(to)))
    elif to == "~" or to.startswith("~/"):  # the login user's home: where relative paths start
        to = to[2:] or "."
    return to


def upload(
    src: str,
    to: str,
    recursive: bool = False,
    preserve: bool = True,
    sudo: bool = False,
    mode: Any = None,
    owner: str | None = None,
    group: str | None = None,
    notify: Any = None,
) -> None:
    """Copy a local file (or a folder, with ``recursive=True``) to ``to`` on the current host.

    ``to`` ending in ``/`` means "into this folder". A relative ``src`` starts at the
    nexusfile's folder. ``preserve``: the copy gets the source's permission bits (unless
    ``mode`` is given). ``sudo``: write as root (``owner``/``group`` need it unless they are
    the login user's). ``notify``: handlers notified when a file changed. The destination is
    replaced atomically, verified by sha256, and left alone when already identical.
    """
    rec = _recorder("upload")
    if rec is None:
        return
    line = _caller(rec.project).line
    src_s, to_s = _path_arg("upload", "src", src), _path_arg("upload", "to", to)
    flags_ok = all([_flag("upload", "recursive", recursive), _flag("upload", "preserve", preserve),
                    _flag("upload", "sudo", sudo)])  # fmt: skip
    mode_ok, bits = _mode("upload", mode)
    names_ok = _name("upload", "owner", owner) and _name("upload", "group", group)
    names = notify_names("upload", notify)
    if src_s is None or to_s is None or not (flags_ok and mode_ok and names_ok) or names is None:
        return
    task = rec.project.tasks.get(rec.task)
    deps = [d if isinstance(d, str) else str(getattr(d, "__nexus_task__", d)) for d in (task.deps if task else ())]
    found = _local_source("upload", src_s, rec.project.root, bool(recursive), rec.project, deps)
    if found is None:
        return
    path, kind = found
    dest = _dest(to_s, path, rec.host.is_local, rec.project.root)
    rec.commands.append(
        Transfer(
            cmd=f"upload {src_s}{'/' if kind == 'dir' and not src_s.endswith('/') else ''} -> {to_s}",
            sudo=sudo,
            timeout=0,
            line=line,
            notify=names,
            kind="upload",
            src=path,
            dest=dest,
            recursive=kind == "dir",
            preserve=preserve,
            mode=bits,
            owner=owner,
            group=group,
        )
    )


def download(src: str, to: str, notify: Any = None) -> None:
    """Copy ``src`` from the current host to the local path ``to`` (folders are created as needed).

    ``to`` ending in ``/`` means "into this folder"; a relative ``to`` starts at the
    nexusfile's folder and may use context functions (``f"logs/app-{hostname()}.log"``).
    The copy is verified by sha256 and renamed into place when complete. A download
    changes nothing on the host, so it cannot notify handlers: ``notify=`` is reported
    before anything runs.
    """
    rec = _recorder("download")
    if rec is None:
        return
    line = _caller(rec.project).line
    if notify is not None:
        from nexus_core.handlers import cannot_notify

        cannot_notify("download", "it changes nothing on the host")
        return
    src_s, to_s = _path_arg("download", "src", src), _path_arg("download", "to", to)
    if src_s is None or to_s is None:
        return
    dest = _dest(to_s, src_s, True, rec.project.root)
    rec.commands.append(
        Transfer(cmd=f"download {src_s} -> {to_s}", timeout=0, line=line, kind="download", src=src_s, dest=dest)
    )


def template(
    src: str,
    to: str,
    vars: Any = None,
    sudo: bool = False,
    mode: Any = None,
    owner: str | None = None,
    group: str | None = None,
    validate: str | None = None,
    notify: Any = None,
) -> None:
    """Render the Jinja2 template ``src`` for the current host and write it to ``to`` there.

    Rendered at plan time (so ``--dry-run`` shows the diff) with ``StrictUndefined``: an
    undefined variable is a validation error with the template's file:line. The template
    sees ``vars`` (also as top-level names), ``host`` (``name``, ``address``, ``user``,
    ``port``, ``tags``, ``vars``, ``facts``), ``task``, ``env`` and the context functions
    ``hostname()``, ``timestamp()``, ``git_sha()``, ``git_branch()``. ``validate`` is a
    command run on the host against the temporary file (``{path}``) before it replaces the
    destination: ``validate="visudo -cf {path}"``.
    """
    rec = _recorder("template")
    if rec is None:
        return
    line = _caller(rec.project).line
    src_s, to_s = _path_arg("template", "src", src), _path_arg("template", "to", to)
    sudo_ok = _flag("template", "sudo", sudo)
    mode_ok, bits = _mode("template", mode)
    names_ok = _name("template", "owner", owner) and _name("template", "group", group)
    names = notify_names("template", notify)
    if vars is not None and not isinstance(vars, dict):
        _problem(f"template(): vars must be a dict, not {safe_repr(vars)}", 'write vars={"port": 8080}',
                 code="bad-value")  # fmt: skip
        return
    bad_keys = [k for k in vars if not isinstance(k, str)] if vars else []
    if bad_keys:
        _problem(f"template(): vars keys must be strings (names usable in the template), not {safe_repr(bad_keys[0])}",
                 'write vars={"port": 8080} ({{ port }} in the template)', code="bad-value")  # fmt: skip
        return
    from nexus_core.templates import RESERVED

    taken = [k for k in RESERVED if vars and k in vars]
    if taken:
        names_s = ", ".join(repr(k) for k in taken)
        _problem(
            f"template(): vars {'keys' if len(taken) > 1 else 'key'} {names_s} "
            f"{'are names' if len(taken) > 1 else 'is a name'} Nexus sets in every template "
            f"({', '.join(RESERVED)}): the template would see Nexus's value, not yours",
            f'rename the key: vars={{"app_{taken[0]}": ...}} and {{{{ app_{taken[0]} }}}} in the template',
            code="bad-value",
        )
        return
    if validate is not None and (not isinstance(validate, str) or "{path}" not in validate):
        _problem(
            f"template(): validate must be a command containing {{path}}, not {safe_repr(validate)}",
            'write validate="visudo -cf {path}" ({path}: the temporary file checked before it replaces the old one)',
            code="bad-value",
        )
        return
    if src_s is None or to_s is None or not (sudo_ok and mode_ok and names_ok) or names is None:
        return
    found = _local_source("template", src_s, rec.project.root, False)
    if found is None:
        return
    path = found[0]
    from nexus_core import templates

    content = templates.render(path, rec.project.root, templates.context(rec, vars or {}))
    if content is None:
        return
    dest = _dest(to_s, path, rec.host.is_local, rec.project.root)
    if to_s.endswith("/") and dest.endswith((".j2", ".jinja", ".jinja2")):
        dest = dest.rsplit(".", 1)[0]
    rec.commands.append(
        Transfer(
            cmd=f"template {src_s} -> {to_s}",
            sudo=sudo,
            timeout=0,
            line=line,
            notify=names,
            kind="template",
            src=path,
            dest=dest,
            preserve=False,
            mode=bits,
            owner=owner,
            group=group,
            validate=validate,
            content=content,
            content_sha256=hashlib.sha256(content).hexdigest(),
        )
    )
