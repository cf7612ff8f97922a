"""File transfers on any executor: checksums, the unchanged check, atomic writes, resume.

The contract every executor keeps (the conformance suite tests it):

- **Verified on both ends.** The sha256 of the local bytes is computed here; the host
  computes the sha256 of the temporary file it received, and the file is renamed into
  place only when both agree (downloads: the other way round).
- **Unchanged is skipped.** A destination with the same sha256, mode and owner (when these
  are asked for) is not transferred again and is reported ``unchanged``. Small files are
  hashed by the script that looks at them; a big file only when its size agrees, so a
  changed big file costs no hashing there.
- **Never a partial file at the destination.** Bytes go to a temporary file in the
  destination's folder (``.NAME.nexus-SHA12-HOST.part``, HOST a tag of the host: hosts
  sharing a file system never share one), get owner and mode, pass
  ``validate``, and are renamed over the destination (``rename(2)`` through SFTP's
  ``posix-rename`` or ``mv -f``: atomic on one file system). ``preserve`` also gives the
  file the source's modification time (whole seconds). With ``sudo`` the login user
  uploads to a staging file in its own cache (``~/.cache/nexus/transfers/SHA256-HOST.part``)
  which root copies into the destination's folder, then chowns, chmods, validates and
  renames.
- **Resumed, not restarted.** The temporary file of an interrupted transfer keeps its name
  (it is named after the bytes' sha256): the next attempt, the next run or ``nexus resume``
  sends only what is missing. A failure of the host (a full disk, a failed validation)
  removes it, so nothing half-written stays behind.

Executors provide the byte movers (:meth:`Executor.send_file`, ``receive_file``,
``file_size``) and ``run``; everything else is here, in POSIX shell scripts that each
handle about a thousand files with a few processes (one ``stat`` and one ``sha256sum`` to
look; one ``sha256sum`` of the staged files, one ``chmod`` per mode, one ``touch`` per
second to finish). Two optional primitives make a tree cheap: :meth:`Executor.send_files`
writes a series of small files at once (SFTP pipelines it, mode and time included) and
:meth:`Executor.rename_files` renames verified files into place without a process per
file (SFTP ``posix-rename``, pipelined). Only files that need more (an owner, ``validate``,
``sudo``) go through the finish script, one per ~1,000 files, run once as root with
``sudo``; there only the rename (and for ``sudo`` the copy) is a process per file.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import os
import re
import shlex
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from nexus_core import checksum_cache
from nexus_core import events as ev
from nexus_core.api import (
    Cancel,
    CommandResult,
    Executor,
    FileState,
    FileWrite,
    SmallFile,
    TransferError,
    TransferInterrupted,
    TransferResult,
)
from nexus_core.model import Command, Host, Transfer
from nexus_core.shell import nearest_existing, temp_name

__all__ = [
    "PROGRESS_MIN_BYTES",
    "Reporter",
    "TransferError",
    "TransferInterrupted",
    "check",
    "execute",
    "fetch",
    "file_write",
    "local_sha256",
    "mask_secrets",
    "put",
    "stat_files",
    "stat_over_shell",
    "write_files",
    "write_over_primitives",
]

#: Files smaller than this are rewritten whole rather than resumed (a resume costs a round trip).
RESUME_MIN_BYTES = 1 << 20
#: Files from this size on report progress (events, and a bar on a terminal).
PROGRESS_MIN_BYTES = 4 << 20
#: Seconds between two progress events of one file.
PROGRESS_EVERY = 0.5
#: Files up to this size get a unified diff in a dry run (when they are text).
DIFF_MAX_BYTES = 256 << 10
#: Where ``sudo`` uploads are staged, relative to the login user's home (the login folder).
STAGING_DIR = ".cache/nexus/transfers"
#: Seconds allowed to the scripts that look at and put files in place (per 1,000 files).
SCRIPT_TIMEOUT = 120.0


# --- local side ------------------------------------------------------------------------------

_HASHES: dict[tuple[str, int, int, int, int, int], str] = {}
_HASH_LOCK = threading.Lock()
_HASHING: dict[tuple[str, int, int, int, int, int], threading.Lock] = {}


def local_sha256(
    path: str,
    st: os.stat_result | None = None,
    known: dict[str, tuple[checksum_cache.Signature, str]] | None = None,
    pending: list[tuple[str, checksum_cache.Signature, str]] | None = None,
) -> str:
    """The sha256 of a local file, computed once per run for a file that did not change
    (hosts asking for the same file at the same time wait for the one computing it), and
    once for all runs while it keeps its stat signature (:mod:`nexus_core.checksum_cache`).

    ``st``: the file's ``os.stat`` when the caller has it; ``known``: cache entries the
    caller read already (a tree's, in one query); ``pending``: where to put new entries
    for the caller to store in one go (else each is stored at once).
    """
    if st is None:
        st = os.stat(path)
    sig = checksum_cache.signature(st)
    key = (path, *sig)
    with _HASH_LOCK:
        found = _HASHES.get(key)
        if found is not None:
            return found
        busy = _HASHING.setdefault(key, threading.Lock())
    with busy:
        with _HASH_LOCK:
            found = _HASHES.get(key)
        if found is None:
            full = path if os.path.isabs(path) else os.path.abspath(path)
            stored = known.get(full) if known is not None else None
            if stored is not None:
                found = stored[1] if stored[0] == sig else ""
            else:
                found = checksum_cache.lookup(full, sig)
            if not found:
                looked = checksum_cache.now_ns()
                with open(path, "rb") as f:
                    if st.st_size <= RESUME_MIN_BYTES:  # one read: file_digest's buffer costs more
                        found = hashlib.sha256(f.read()).hexdigest()
                    else:
                        found = hashlib.file_digest(f, "sha256").hexdigest()
                if checksum_cache.settled(sig, looked):
                    if pending is None:
                        checksum_cache.remember([(full, sig, found)])
                    else:
                        pending.append((full, sig, found))
            with _HASH_LOCK:
                _HASHES[key] = found
                _HASHING.pop(key, None)
    return found


def file_write(local_path: str, remote_path: str, **options: Any) -> FileWrite:
    """A :class:`FileWrite` of a local file (its size and sha256 computed)."""
    return FileWrite(local_path, remote_path, os.path.getsize(local_path), local_sha256(local_path), **options)


# --- looking at the host ---------------------------------------------------------------------

_SHELL_LIB = r"""
_nx_hash() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum <"$1" | cut -d' ' -f1
  else shasum -a 256 <"$1" | cut -d' ' -f1; fi
}
_nx_dir() { case $1 in */*) _d=${1%/*}; [ -n "$_d" ] || _d=/;; *) _d=.;; esac; }
"""

_STAT_LIB = r"""
_nx_kind() {
  _nx_dir "$1"
  if [ "$_d" != "$_nx_pd" ]; then
    _nx_pd=$_d
    if [ -d "$_d" ]; then if [ -w "$_d" ]; then _pk=dir; else _pk=readonly; fi
    elif [ -e "$_d" ]; then _pk=other; else _pk=missing; fi
  fi
  if [ "$_pk" = missing ] || [ "$_pk" = other ]; then _k=missing
  elif [ -d "$1" ]; then _k=dir; elif [ -f "$1" ]; then _k=file
  elif [ -e "$1" ] || [ -L "$1" ]; then _k=other; else _k=missing; fi
  [ "$_k" = missing ] || _nx_n=$((_nx_n + 1))
  echo "NXKIND $_k $_pk"
}
_nx_stats() {
  if stat -c %s / >/dev/null 2>&1; then stat -c 'NXST %s %a %U:%u %G:%g %n' -- "$@" 2>/dev/null || true
  else stat -f 'NXST %z %Lp %Su:%u %Sg:%g %N' -- "$@" 2>/dev/null || true; fi
}
_nx_stat1() {  # one path whose name stat cannot print on one line: by its index
  if _o=$(stat -c '%s %a %U:%u %G:%g' -- "$2" 2>/dev/null); then echo "NXSTI $1 $_o"
  elif _o=$(stat -f '%z %Lp %Su:%u %Sg:%g' -- "$2" 2>/dev/null); then echo "NXSTI $1 $_o"; fi
}
_nx_sums() {  # regular files only (or links to them): a FIFO, socket or device is never read
  [ "$#" -gt 0 ] || return 0
  for _f; do
    [ -f "$_f" ] || [ ! -e "$_f" ] || { _nx_sums_regular "$@"; return 0; }  # one test per regular file
  done
  _nx_sha "$@"
}
_nx_sums_regular() {
  _nx_c=$#
  for _f; do if [ -f "$_f" ]; then set -- "$@" "$_f"; fi; done
  shift "$_nx_c"
  if [ "$#" -gt 0 ]; then _nx_sha "$@"; fi
}
_nx_sha() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum -- "$@" 2>/dev/null || true
  else shasum -a 256 -- "$@" 2>/dev/null || true; fi
}
"""


_SIG_LIB = r"""
_nx_now() { echo "NXNOW $(date +%s.%N 2>/dev/null)"; }
_nx_sigs() { stat -L -c 'NXSIG %i %d %s %.9Y %.9Z %n' -- "$@" 2>/dev/null || true; }
"""
_SIG_TIME = re.compile(r"\d+\.\d{9}")


def parse_signatures(lines: Sequence[str]) -> tuple[dict[str, str], str]:
    """``{path: "INODE DEV SIZE MTIME CTIME"}`` from ``NXSIG`` lines and the host's clock from
    the ``NXNOW`` line ("" when the host's ``stat``/``date`` cannot print nanoseconds)."""
    sigs: dict[str, str] = {}
    now = ""
    for line in lines:
        if line.startswith("NXSIG "):
            parts = line.split(" ", 6)
            if len(parts) == 7 and _SIG_TIME.fullmatch(parts[4]) and _SIG_TIME.fullmatch(parts[5]):
                sigs[parts[6]] = " ".join(parts[1:6])
        elif line.startswith("NXNOW "):
            value = line[6:].strip()
            now = value if _SIG_TIME.fullmatch(value) else ""
    return sigs, now


def _hash_now(size: int | None) -> bool:
    """Whether the stat script hashes a path at once: downloads (-1) and small files (an
    existing small file is hashed whatever its size: cheaper than a second round trip)."""
    return size is not None and (size == -1 or 0 <= size < RESUME_MIN_BYTES)


def stat_script(paths: Sequence[str], sizes: Sequence[int | None] = (), signatures: bool = False) -> str:
    """A POSIX shell script printing one ``NXKIND`` line per path (shell built-ins only), one
    ``NXST`` line per existing path from a single ``stat`` (see :func:`parse_stat`), and the
    ``sha256sum`` line of each existing path :func:`_hash_now` picks, from a single process.

    Each path is written once (as an argument of ``set --``), so one script looks at about
    a thousand files. The paths picked for hashing must come first (``NXKIND`` lines follow
    the order of ``paths``).
    """
    picked = [p for i, p in enumerate(paths) if i < len(sizes) and _hash_now(sizes[i])]
    rest = paths[len(picked) :]
    if list(paths[: len(picked)]) != picked:
        raise ValueError("stat_script: the paths to hash must come first")
    lines = [_SHELL_LIB, _STAT_LIB]
    if signatures:  # the clock first: a signature counts only if taken after it (checksum_cache)
        lines += [_SIG_LIB, "_nx_now"]
    for group, hashed in ((picked, True), (rest, False)):
        if not group:
            continue
        lines.append("set -- " + _quote_all(group))
        lines.append('_nx_n=0; _nx_pd=; for _f; do _nx_kind "$_f"; done')
        # Nothing there (a first upload into a new folder): no process looks at the paths.
        lines.append('if [ "$_nx_n" -gt 0 ]; then')
        odd = [p for p in group if not _plain(p)]
        if odd:  # `stat` prints a name as it is: a newline in one would split its line
            plain = [p for p in group if _plain(p)]
            lines.append(f"set -- {_quote_all(plain)}" if plain else "set --")
            start = 0 if hashed else len(picked)
            for i, p in enumerate(group):
                if not _plain(p):
                    lines.append(f"_nx_stat1 {start + i} {shlex.quote(p)}")
            lines.append('if [ "$#" -gt 0 ]; then')
        lines.append('_nx_stats "$@"')
        if signatures:
            lines.append('_nx_sigs "$@"')
        if hashed:
            lines.append('_nx_sums "$@"')
        if odd:
            lines.append("fi")
            if hashed:  # sha256sum escapes such a name (parse_sums reads it back)
                lines.append(f"_nx_sums {_quote_all(odd)}")
        lines.append("fi")
    return "\n".join(lines)


def sums_script(paths: Sequence[str]) -> str:
    """A POSIX shell script printing ``SHA256  PATH`` for each readable path, in one process."""
    return "\n".join([_STAT_LIB, "_nx_sums " + " ".join(shlex.quote(p) for p in paths)])


#: What :func:`what_script` finds at a path that is neither a regular file nor a folder.
_WHAT = {
    "fifo": "a FIFO",
    "socket": "a socket",
    "char": "a character device",
    "block": "a block device",
    "link": "a broken symbolic link",
}


def what_script(paths: Sequence[str]) -> str:
    """A POSIX shell script printing one ``NXWHAT KIND`` line per path, in order (``fifo``,
    ``socket``, ``char``, ``block``, ``link`` for a broken symbolic link, else ``other``),
    with shell built-ins only: nothing is opened, so a FIFO or a device cannot block it."""
    return "\n".join([
        "set -- " + _quote_all(paths),
        "for _f; do",
        '  if [ -p "$_f" ]; then _w=fifo; elif [ -S "$_f" ]; then _w=socket',
        '  elif [ -c "$_f" ]; then _w=char; elif [ -b "$_f" ]; then _w=block',
        '  elif [ -L "$_f" ] && [ ! -e "$_f" ]; then _w=link; else _w=other; fi',
        '  echo "NXWHAT $_w"',
        "done",
    ])  # fmt: skip


def _what(executor: Executor, host: Host, paths: Sequence[str], sudo: bool, cancel: Cancel | None = None) -> list[str]:
    """What each of ``paths`` (found neither a regular file nor a folder) is on the host, as
    :data:`_WHAT` says it ("a FIFO"), or "" when the host does not tell (best effort: only
    asked when an operation fails on such a path, to say why)."""
    found: list[str] = []
    for chunk in _chunks(list(paths), _word):
        try:
            result, lines = _run_script(executor, host, what_script(chunk), sudo, 30, cancel)
        except Exception:  # noqa: BLE001 - the failure is said anyway, only less precisely
            result, lines = CommandResult("failed", None), []
        kinds = [line[7:].strip() for line in lines if line.startswith("NXWHAT ")]
        if not result.ok or len(kinds) != len(chunk):
            kinds = [""] * len(chunk)
        found.extend(_WHAT.get(k, "") for k in kinds)
    return found


def _not_regular(path: str, host: Host, what: str) -> str:
    """``PATH on HOST is a FIFO (not a regular file)`` (``what``: see :func:`_what`)."""
    if what:
        return f"{path} on {host.label} is {what} (not a regular file)"
    return f"{path} on {host.label} is not a regular file"


def _source_problem(executor: Executor, host: Host, path: str, cancel: Cancel | None) -> tuple[str, str]:
    """Why the download source ``path``, neither a file nor a folder, is refused (reason, hint):
    it is never read (a FIFO would block the reader, a device never end)."""
    what = _what(executor, host, [path], False, cancel)[0]
    if what == _WHAT["link"]:
        return f"{_not_regular(path, host, what)}: it points to nothing", "- check the path, or the link's target"
    return (
        f"{_not_regular(path, host, what)}: only regular files are downloaded (reading it could block or never end)",
        "- give the path of a regular file (copy what you need into one with run() first)",
    )


def _plain(path: str) -> bool:
    """True for a path that ``stat``/``sha256sum`` print as it is (no newline, no backslash)."""
    return "\n" not in path and "\\" not in path


def parse_stat(paths: Sequence[str], lines: Sequence[str]) -> list[FileState]:
    """The :class:`FileState` of each path from the ``NXKIND``/``NXST`` lines of :func:`stat_script`."""
    kinds = [line.split() for line in lines if line.startswith("NXKIND ")]
    if len(kinds) != len(paths):
        raise TransferError(f"the host answered {len(kinds)} of {len(paths)} file checks")
    facts: dict[str, list[str]] = {}
    by_index: dict[int, list[str]] = {}  # NXSTI: a path with a newline or backslash, by its index
    for line in lines:
        if line.startswith("NXST "):
            parts = line.split(" ", 5)
            if len(parts) == 6:
                facts[parts[5]] = parts[1:5]
        elif line.startswith("NXSTI "):
            parts = line.split(" ")
            if len(parts) == 6 and parts[1].isdigit():
                by_index[int(parts[1])] = parts[2:6]
    out: list[FileState] = []
    for i, (path, kind) in enumerate(zip(paths, kinds, strict=True)):
        _, k, parent = [*kind, "-", "-"][:3]
        found = by_index.get(i) if by_index and not _plain(path) else facts.get(path)
        size, mode, owner, group = (found if k != "missing" else None) or ["0", "-", "-", "-"]
        (owner, uid), (group, gid) = _who(owner), _who(group)
        out.append(
            FileState(
                path=path,
                kind=k,
                parent=parent,
                size=int(size) if size.isdigit() else 0,
                mode=int(mode, 8) if mode.isdigit() else None,
                owner=owner,
                group=group,
                uid=uid,
                gid=gid,
            )
        )
    return out


def _who(field: str) -> tuple[str, str]:
    """(name, numeric id) from a look's ``NAME:ID`` owner or group field ("" for what is not there)."""
    name, sep, ident = field.rpartition(":")
    if not sep or not ident.isdigit():
        name, ident = field, ""
    return ("" if name == "-" else name), ident


def _is_who(wanted: str, name: str, ident: str) -> bool:
    """Whether a file's owner (or group) ``name`` / ``ident`` is the ``wanted`` one, given by
    name or by number (``owner="65534"``, also ``"065534"`` and ``"+65534"``, which ``chown``
    takes for the same id)."""
    number = wanted[1:] if wanted.startswith("+") else wanted
    return wanted == name or (number.isdigit() and ident.isdigit() and int(number) == int(ident))


def _keep_who(name: str, ident: str) -> str:
    """How a file's owner (or group) is given back to ``chown``: its name, or its number when
    it has none (GNU ``stat`` says ``UNKNOWN`` for an id without a name)."""
    return ident if ident and (not name or name == "UNKNOWN") else name


def parse_sums(lines: Sequence[str]) -> dict[str, str]:
    """``{path: sha256}`` from ``sha256sum`` lines (``HASH  PATH``). A name with a backslash
    or a newline comes escaped, on a line that starts with a backslash (GNU coreutils)."""
    found: dict[str, str] = {}
    for line in lines:
        if len(line) > 66 and line[64:66] in ("  ", " *") and _HEX64.fullmatch(line[:64]):
            found[line[66:]] = line[:64]
        elif line.startswith("\\") and len(line) > 67 and line[65:67] in ("  ", " *") and _HEX64.fullmatch(line[1:65]):
            found[_ESCAPED.sub(lambda m: _UNESCAPE[m.group(0)], line[67:])] = line[1:65]
    return found


_HEX64 = re.compile(r"[0-9a-f]{64}")
_ESCAPED = re.compile(r"\\[\\nr]")
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


def _carried(result: CommandResult) -> str:
    """How a host ends when one of an operation's scripts ended with ``result``: unreachable
    or timed out as the script was, failed otherwise."""
    return result.status if result.status in ("unreachable", "timeout") else "failed"


def _run_script(
    executor: Executor, host: Host, script: str, sudo: bool, timeout: float, cancel: Cancel | None = None
) -> tuple[CommandResult, list[str]]:
    """Run one of the operation's scripts on ``host`` and collect its output lines.

    The script stops on the run's ``cancel`` (the executor's when None is given) as any
    command does, from ``INTERRUPT`` on: see :func:`_following`."""
    lines: list[str] = []

    def collect(_stream: str, line: str) -> None:
        lines.append(line)

    run_cancel = cancel if cancel is not None else getattr(getattr(executor, "context", None), "cancel", None)
    with _following(run_cancel) as own:
        result = executor.run(host, Command(script, sudo=sudo, timeout=timeout), collect, own, timeout)
    return result, lines


@contextlib.contextmanager
def _following(cancel: Cancel | None) -> Iterator[Cancel]:
    """A cancel for one script of a file operation that is already running: it takes the
    run's ``cancel`` levels from ``INTERRUPT`` on (the script gets SIGINT, SIGTERM, SIGKILL
    as a command does, a second SIGTERM stopping it at once), but not ``STOP``, which lets
    running work finish: an operation that started goes on to its end, its scripts
    included, rather than failing half-way with "not started"."""
    own = Cancel()
    if cancel is None:
        yield own
        return

    def follow() -> None:
        level = cancel.level
        if level >= Cancel.INTERRUPT:
            own.raise_to(level)

    cancel.listeners.append(follow)
    try:
        follow()  # a level raised before the listener was there
        yield own
    finally:
        with contextlib.suppress(ValueError):
            cancel.listeners.remove(follow)


def _script_timeout(files: int) -> float:
    return SCRIPT_TIMEOUT * max(1, (files + 999) // 1000)


def stat_files(
    executor: Executor,
    host: Host,
    paths: Sequence[str],
    sizes: Sequence[int | None] = (),
    sudo: bool = False,
    cancel: Cancel | None = None,
) -> list[FileState]:
    """:meth:`Executor.stat_files` of ``executor`` when it has its own, else :func:`stat_over_shell`
    (its scripts stop on the run's ``cancel``, the executor's when None)."""
    if type(executor).stat_files is not Executor.stat_files:
        return executor.stat_files(host, paths, sizes, sudo)
    return stat_over_shell(executor, host, paths, sizes, sudo, cancel)


def write_files(
    executor: Executor,
    host: Host,
    writes: Sequence[FileWrite],
    progress: Callable[[FileWrite, int], None] | None = None,
    cancel: Cancel | None = None,
) -> list[TransferResult]:
    """:meth:`Executor.write_files` of ``executor`` when it has its own, else :func:`write_over_primitives`.

    Each write is tagged with the host (:func:`host_tag`) for its temporary files' names."""
    tag = host_tag(host)
    writes = [w if w.tag == tag else replace(w, tag=tag) for w in writes]
    if type(executor).write_files is not Executor.write_files:
        return executor.write_files(host, writes, progress, cancel)
    return write_over_primitives(executor, host, writes, progress, cancel or executor.context.cancel)


def put(executor: Executor, host: Host, local_path: str, remote_path: str, **options: Any) -> TransferResult:
    """Copy one local file to the host the way a plan does: verified, atomic, resumable."""
    return write_files(executor, host, [file_write(local_path, remote_path, **options)])[0]


def stat_over_shell(
    executor: Executor,
    host: Host,
    paths: Sequence[str],
    sizes: Sequence[int | None],
    sudo: bool,
    cancel: Cancel | None = None,
) -> list[FileState]:
    """:meth:`Executor.stat_files` through shell scripts run by the executor.

    A size of ``-1`` asks for the checksum whatever the size (a download). Small files are
    hashed by the same script that looks at them; a big file only by a second script, when
    its size is the expected one. Only regular files (and links to them) are hashed: a
    FIFO, a socket or a device is never opened (its ``kind`` is ``other``). The scripts stop
    on the run's ``cancel`` (the executor's when None) like any command.
    """
    return _stat_shell(executor, host, paths, sizes, sudo, cancel=cancel)[0]


def _stat_shell(
    executor: Executor,
    host: Host,
    paths: Sequence[str],
    sizes: Sequence[int | None],
    sudo: bool,
    known: dict[str, tuple[str, str]] | None = None,
    cancel: Cancel | None = None,
) -> tuple[list[FileState], dict[str, str], str]:
    """:func:`stat_over_shell`, and with ``known`` (``{path: (signature, sha256)}`` kept
    from earlier runs, :mod:`nexus_core.checksum_cache`) the signature of each file and the
    host's clock: a file whose signature is the one kept is not hashed again (its kept sum
    stands), the others are hashed as without ``known``.

    When most paths are known (a re-run), a first script looks at them all with one
    ``stat`` line each (:func:`quick_script`); only what it cannot settle (a new or changed
    file, a missing path, a link) goes through the full look. Signatures are returned for
    the files the full look saw (the quick ones match what is kept already)."""
    quick: dict[int, FileState] = {}
    if known and 2 * len(known) >= len(paths):
        quick = _quick_look(executor, host, paths, sizes, sudo, known, cancel=cancel)
    if not quick:
        return _stat_full(executor, host, paths, sizes, sudo, known, cancel)
    rest = [i for i in range(len(paths)) if i not in quick]
    if rest:
        states, sigs, now = _stat_full(executor, host, [paths[i] for i in rest],
                                       [sizes[i] if i < len(sizes) else None for i in rest], sudo, known,
                                       cancel)  # fmt: skip
        quick.update(zip(rest, states, strict=True))
    else:
        sigs, now = {}, ""
    return [quick[i] for i in range(len(paths))], sigs, now


def quick_script(paths: Sequence[str], folders: Collection[str] = (), names: bool = True) -> str:
    """A POSIX shell script for GNU hosts printing an ``NXRO FOLDER`` line for each folder
    holding one of ``paths`` (``folders``: these folders when the caller has them) that
    the user running it may not write in (shell built-ins only), then one line holding,
    from a single ``stat`` (not following links), an ``NXQ RAWMODE INODE DEV SIZE MTIME
    CTIME OWNER GROUP PATH`` record for each existing path, each record ended by ``\\037``
    (one line rather than a thousand: the client's cost is per line).

    ``names=False``: OWNER and GROUP are the numeric ids. GNU ``stat`` looks a name up for
    each file, and glibc reads ``/etc/passwd`` and ``/etc/group`` again for each lookup:
    for a tree of 1,000 files that is 2,000 opens and five times the work of the ``stat``
    itself (docs/decisions.md, "Files: the re-run's look")."""
    folders = sorted(folders or {_split(p)[0] for p in paths})
    ids = "%U:%u %G:%g" if names else "%u %g"
    return "\n".join([
        "set -- " + _quote_all(folders),
        'for _f; do [ -w "$_f" ] || echo "NXRO $_f"; done',
        "set -- " + _quote_all(paths),
        f"stat --printf 'NXQ %f %i %d %s %.9Y %.9Z {ids} %n\\037' -- \"$@\" 2>/dev/null; echo",
    ])  # fmt: skip


def _quick_look(
    executor: Executor,
    host: Host,
    paths: Sequence[str],
    sizes: Sequence[int | None],
    sudo: bool,
    known: dict[str, tuple[str, str]],
    names: bool = True,
    cancel: Cancel | None = None,
) -> dict[int, FileState]:
    """The states :func:`quick_script` settles: folders, and regular files whose signature
    is the one kept in ``known`` (their kept sum stands, as in the full look). Anything
    else (and everything, should the script fail) is left out, for the full look.
    ``names=False``: owner and group are left empty (for a caller that compares neither)."""
    index = _quick_index(paths)
    said = _quick_lines(executor, host, list(index), sudo, names, cancel)
    return {} if said is None else _quick_states(said, index, sizes, known, names)


def _quick_index(paths: Sequence[str]) -> dict[str, int]:
    """The paths :func:`quick_script` can look at (printed on one line each), by their index."""
    return {p: i for i, p in enumerate(paths) if _plain(p) and "\037" not in p}


def _quick_lines(
    executor: Executor, host: Host, paths: Sequence[str], sudo: bool, names: bool, cancel: Cancel | None
) -> list[list[str]] | None:
    """What :func:`quick_script` prints over ``paths`` (plain paths only), chunk by chunk;
    None when a chunk's script fails."""
    said: list[list[str]] = []
    for chunk, folders in _quick_chunks(paths):
        result, lines = _run_script(executor, host, quick_script(chunk, folders, names), sudo,
                                    _script_timeout(len(chunk)), cancel)  # fmt: skip
        if not result.ok:
            return None
        said.append(lines)
    return said


def _quick_states(
    said: Sequence[Sequence[str]],
    index: dict[str, int],
    sizes: Sequence[int | None],
    known: dict[str, tuple[str, str]],
    names: bool,
) -> dict[int, FileState]:
    """The states settled by :func:`quick_script`'s output ``said`` (see :func:`_quick_look`)."""
    out: dict[int, FileState] = {}
    for lines in said:
        readonly = {line[5:] for line in lines if line.startswith("NXRO ")}
        records = [r for line in lines if line.startswith("NXQ ") for r in line.split("\037")]
        is_file, is_dir, perms, n_sizes = stat.S_ISREG, stat.S_ISDIR, stat.S_IMODE, len(sizes)
        for record in records:
            if not record.startswith("NXQ "):
                continue  # the end of the line, or a record cut short (a line is capped)
            # NXQ RAW | INODE DEV SIZE MTIME CTIME | OWNER GROUP PATH: the middle is the signature.
            parts = record.split(" ", 9)
            if len(parts) != 10:
                continue
            raw, size, owner, group, path = parts[1], parts[4], parts[7], parts[8], parts[9]
            i = index.get(path)
            if i is None or not size.isdigit():
                continue
            try:
                bits = int(raw, 16)
            except ValueError:
                continue
            sha = ""
            if is_file(bits):
                kept = known.get(path)
                if kept is None or kept[0] != " ".join(parts[2:7]):
                    continue  # new or changed: the full look hashes it
                want = sizes[i] if i < n_sizes else None
                if want is not None and want in (-1, int(size)):
                    sha = kept[1]
                kind = "file"
            elif is_dir(bits):
                kind = "dir"
            else:
                continue
            parent = "readonly" if readonly and _split(path)[0] in readonly else "dir"
            (owner, uid), (group, gid) = (_who(owner), _who(group)) if names else (("", ""), ("", ""))
            out[i] = FileState(path, kind, int(size), perms(bits), owner, group, sha, parent, uid, gid)
    return out


def _quick_chunks(paths: Iterable[str]) -> Iterator[tuple[list[str], set[str]]]:
    """``paths`` in groups whose :func:`quick_script` stays within :data:`SCRIPT_MAX`
    characters (each path once, each of their folders once), with their folders."""
    paths = list(paths)
    # The usual tree fits in one script: its folders from one pass, no bookkeeping per path.
    folders = {_split(p)[0] for p in paths}
    if sum(map(_word, paths)) + sum(map(_word, folders)) <= SCRIPT_MAX:
        if paths:
            yield paths, folders
        return
    group: list[str] = []
    seen: set[str] = set()
    used = 0
    for path in paths:
        folder = _split(path)[0]
        cost = _word(path) + (0 if folder in seen else _word(folder))
        if group and used + cost > SCRIPT_MAX:
            yield group, seen
            group, seen, used = [], set(), 0
            cost = _word(path) + _word(folder)
        group.append(path)
        seen.add(folder)
        used += cost
    if group:
        yield group, seen


_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search  # what shlex.quote leaves as it is


def _quote_all(words: Sequence[str]) -> str:
    """``words`` quoted for the shell and joined by spaces (one test for the usual plain paths)."""
    if all(words) and _UNSAFE("".join(words)) is None:
        return " ".join(words)
    return " ".join(shlex.quote(w) for w in words)


def _stat_full(
    executor: Executor,
    host: Host,
    paths: Sequence[str],
    sizes: Sequence[int | None],
    sudo: bool,
    known: dict[str, tuple[str, str]] | None = None,
    cancel: Cancel | None = None,
) -> tuple[list[FileState], dict[str, str], str]:
    """:func:`_stat_shell` without the quick look."""

    def hash_now(i: int) -> bool:
        return i < len(sizes) and _hash_now(sizes[i]) and not (known and paths[i] in known)

    order = sorted(range(len(paths)), key=lambda i: not hash_now(i))
    found: dict[int, FileState] = {}
    sums: dict[str, str] = {}
    sigs: dict[str, str] = {}
    now = ""
    for chunk in _chunks(order, lambda i: _word(paths[i]) + 5):
        some = [paths[i] for i in chunk]
        script = stat_script(some, [sizes[i] if hash_now(i) else None for i in chunk], known is not None)
        result, lines = _run_script(executor, host, script, sudo, _script_timeout(len(some)), cancel)
        if not result.ok:
            what = paths[0] if len(paths) == 1 else "the destination"
            raise TransferError(f"could not look at {what} on {host.label}: {result.reason}", result.hint,
                                _carried(result))  # fmt: skip
        found.update(zip(chunk, parse_stat(some, lines), strict=True))
        sums.update(parse_sums(lines))
        if known is not None:
            got, clock = parse_signatures(lines)
            sigs.update(got)
            now = now or clock
    out = [found[i] for i in range(len(paths))]
    # checksums only where they can say "unchanged": files of the expected size (-1: always)
    wanted = [
        i
        for i, st in enumerate(out)
        if st.kind == "file" and i < len(sizes) and sizes[i] is not None and sizes[i] in (-1, st.size)
    ]
    later: list[int] = []
    for i in wanted:
        kept = known.get(paths[i]) if known else None
        if kept is not None and sigs.get(paths[i]) == kept[0]:
            sums[paths[i]] = kept[1]  # the same file as when it was hashed: not read again
        elif paths[i] not in sums:
            later.append(i)
    for chunk in _chunks(later, lambda i: _word(paths[i])):
        result, lines = _run_script(executor, host, sums_script([paths[i] for i in chunk]), sudo,
                                    _script_timeout(len(chunk)), cancel)  # fmt: skip
        if not result.ok:
            raise TransferError(f"could not read checksums on {host.label}: {result.reason}", result.hint,
                                _carried(result))  # fmt: skip
        sums.update(parse_sums(lines))
    hashed = set(wanted)
    states = [replace(st, sha256=sums.get(st.path, "")) if i in hashed else st for i, st in enumerate(out)]
    return states, sigs, now


def _host_key(host: Host) -> str:
    """A host's identity in the checksum cache (transport, user, name, port)."""
    return f"{host.transport}:{host.user or ''}@{host.name}:{host.port or ''}"


def _remember_host_sums(host: Host, states: Sequence[FileState], sigs: dict[str, str], now: str,
                        known: dict[str, tuple[str, str]]) -> None:  # fmt: skip
    """Keep the signature and sum of each file the host just hashed (and whose signature is settled)."""
    fresh = [
        (st.path, sigs[st.path], st.sha256)
        for st in states
        if st.sha256
        and st.path in sigs
        and known.get(st.path) != (sigs[st.path], st.sha256)
        and checksum_cache.remote_settled(sigs[st.path], now)
    ]
    checksum_cache.remember_remote(_host_key(host), fresh)


#: Seconds the host waits after writing before taking the signatures of what it wrote: one
#: clock tick, so that a signature is "settled" (see ``checksum_cache.remote_settled``).
SETTLE_WAIT = 0.06


def _remember_written(executor: Executor, host: Host, done: Sequence[tuple[str, str, int | None]], sudo: bool) -> None:
    """After writing, keep the signature of each file written (``(dest, sha256, mtime)``):
    the signature then stands for exactly those bytes (a file changed by someone else
    meanwhile is not kept). Best effort: a failure only means the next run hashes the files.

    ``mtime``: the whole second the file's modification time was set to before its checksum
    was verified (:attr:`TransferResult.verified_mtime`). A signature still showing exactly
    that time, on a file system that keeps nanoseconds (its change time has a fraction),
    proves nobody wrote the file since it was verified (a write sets the time to the
    clock's, fraction and all): it is kept without reading the file again. Any other file
    (no such time, a time that moved, coarse timestamps) is hashed once more by the host
    after its signature was taken (a second ``sha256sum`` of a whole tree was 11 % of the
    machine's CPU in a 1,000-file upload to 10 hosts; docs/decisions.md)."""
    if not done or type(executor).stat_files is not Executor.stat_files:
        return
    expected = {path: (sha, mtime) for path, sha, mtime in done}
    for n, chunk in enumerate(_chunks(list(expected), _word)):
        # One wait for all chunks: a later chunk's files were renamed before the first's wait.
        wait = f"sleep {SETTLE_WAIT} 2>/dev/null || sleep 1" if n == 0 else ""
        hashed = [p for p in chunk if expected[p][1] is None]
        script = "\n".join([
            wait, _STAT_LIB, _SIG_LIB, "_nx_now",
            "set -- " + " ".join(shlex.quote(p) for p in chunk), '_nx_sigs "$@"',
            "set -- " + " ".join(shlex.quote(p) for p in hashed), '_nx_sums "$@"',
        ])  # fmt: skip
        kept = _kept_signatures(executor, host, script, sudo, chunk, expected)
        if kept is None:
            return
        again = [p for p in chunk if p not in kept and expected[p][1] is not None]
        if again:  # a time that moved, or coarse timestamps: hashed after a new signature
            script = "\n".join([_STAT_LIB, _SIG_LIB, "_nx_now", "set -- " + " ".join(shlex.quote(p) for p in again),
                                '_nx_sigs "$@"', '_nx_sums "$@"'])  # fmt: skip
            plain: dict[str, tuple[str, int | None]] = {p: (expected[p][0], None) for p in again}
            more = _kept_signatures(executor, host, script, sudo, again, plain)
            kept.update(more or {})
        checksum_cache.remember_remote(_host_key(host), [(p, kept[p], expected[p][0]) for p in chunk if p in kept])


def _kept_signatures(
    executor: Executor,
    host: Host,
    script: str,
    sudo: bool,
    paths: Sequence[str],
    expected: dict[str, tuple[str, int | None]],
) -> dict[str, str] | None:
    """Run a signatures script of :func:`_remember_written`; the settled signatures that stand
    for the expected bytes, by path (None when the script failed)."""
    try:
        result, lines = _run_script(executor, host, script, sudo, _script_timeout(len(paths)))
    except Exception:  # noqa: BLE001 - a cache: the next run hashes
        return None
    if not result.ok:
        return None
    sigs, now = parse_signatures(lines)
    sums = parse_sums(lines)
    return {p: sigs[p] for p in paths if p in sigs and signature_stands(sigs[p], now, *expected[p], sums.get(p))}


def signature_stands(sig: str, now: str, sha256: str, mtime: int | None, hashed: str | None) -> bool:
    """Whether a host's signature of a file just written (``INODE DEV SIZE MTIME CTIME``,
    taken after its clock read ``now``) may be kept with ``sha256``: settled, and either the
    file was ``hashed`` after it to exactly ``sha256`` or, without a hash, its modification
    time is still the whole second ``mtime`` set before its checksum was verified, on a
    file system keeping nanoseconds (see :func:`_remember_written`)."""
    if not checksum_cache.remote_settled(sig, now):
        return False
    if hashed is not None or mtime is None:
        return hashed == sha256
    parts = sig.split(" ")
    return len(parts) == 5 and parts[3] == f"{mtime}.000000000" and not parts[4].endswith(".000000000")


#: Characters of one script at most: Linux takes no single argument (``sh -c SCRIPT``) over
#: 128 KiB, so many files are looked at and put in place by a few scripts in a row.
SCRIPT_MAX = 60_000


def _word(text: str) -> int:
    """Characters ``text`` can take in a script at most: quoted for the shell in the script,
    then once more when an executor passes the whole script as one argument (``sh -c``),
    each ``'`` growing to ``'"'"'`` at each level (a name made of quotes is 17 times longer)."""
    return len(text) + 3 + 16 * text.count("'")


def _chunks(items: Sequence[Any], size: Callable[[Any], int], limit: int = SCRIPT_MAX) -> Iterator[list[Any]]:
    """``items`` in consecutive groups whose ``size`` adds up to at most ``limit`` (one item at least)."""
    group: list[Any] = []
    used = 0
    for item in items:
        cost = size(item)
        if group and used + cost > limit:
            yield group
            group, used = [], 0
        group.append(item)
        used += cost
    if group:
        yield group


# --- writing -----------------------------------------------------------------------------------


def _split(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition("/")
    if not _:
        return ".", path
    return folder or "/", name


def host_tag(host: Host) -> str:
    """Eight hex digits naming ``host`` (its label) in temporary files' names: the same
    on every run (an interrupted transfer is found again), different for two hosts that
    share a file system (their transfers of the same bytes never meet)."""
    return hashlib.sha256(host.label.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def staging_path(write: FileWrite, staging_dir: str = STAGING_DIR) -> str:
    """Where the bytes of ``write`` land first: beside the destination, or in the staging
    folder for ``sudo`` (the login user cannot write beside it). Named after the bytes'
    sha256 and the host's tag (:attr:`FileWrite.tag`)."""
    tag = f"-{write.tag}" if write.tag else ""
    if write.sudo:
        return f"{staging_dir}/{write.sha256}{tag}.part"
    folder, name = _split(write.dest)
    return f"{folder}/{temp_name(name, f'.nexus-{write.sha256[:12]}{tag}.part')}"


def _temp_beside(write: FileWrite) -> str:
    folder, name = _split(write.dest)
    tag = f"-{write.tag}" if write.tag else ""
    return f"{folder}/{temp_name(name, f'.nexus-{write.sha256[:12]}{tag}.tmp')}"


_FINISH_LIB = r"""
_nx_out() { printf '%s\n' "$2" | sed "s/^/NXOUT $1 /"; }
_nx_fin() {
  _i=$1 _s=$2 _t=$3 _p=$4 _want=$5 _mode=$6 _own=$7 _val=$8 _drop=$9
  if [ "${10}" != 1 ]; then  # 1: the checksum was verified already (one sha256sum for many files)
    _got=$(_nx_hash "$_s" 2>&1) || { _nx_out $_i "$_got"; echo "NXFAIL $_i hash"; return; }
    if [ "$_got" != "$_want" ]; then rm -f -- "$_s"; echo "NXFAIL $_i checksum $_got"; return; fi
  fi
  if [ "$_t" != "$_s" ]; then
    _e=$(cp -- "$_s" "$_t" 2>&1) || { rm -f -- "$_t"; _nx_out $_i "$_e"; echo "NXFAIL $_i copy"; return; }
    [ "${11}" = 1 ] && touch -c -r "$_s" -- "$_t" 2>/dev/null  # the staged file's time (preserve)
  fi
  if [ "$_own" != - ]; then
    _e=$(chown -- "$_own" "$_t" 2>&1) || { rm -f -- "$_t"; _nx_out $_i "$_e"; echo "NXFAIL $_i chown"; return; }
  fi
  if [ "$_mode" != - ]; then
    _e=$(chmod "$_mode" "$_t" 2>&1) || { rm -f -- "$_t"; _nx_out $_i "$_e"; echo "NXFAIL $_i chmod"; return; }
  fi
  if [ -n "$_val" ]; then
    _e=$(sh -c "$_val" 2>&1) || { _c=$?; rm -f -- "$_t"; _nx_out $_i "$_e"; echo "NXFAIL $_i validate $_c"; return; }
  fi
  if [ -d "$_p" ] && [ ! -L "$_p" ]; then rm -f -- "$_t"; echo "NXFAIL $_i isdir"; return; fi
  _e=$(mv -f -- "$_t" "$_p" 2>&1) || { rm -f -- "$_t"; _nx_out $_i "$_e"; echo "NXFAIL $_i rename"; return; }
  [ "$_drop" = 1 ] && rm -f -- "$_s"
  echo "NXDONE $_i"
}
"""


def _owner_arg(write: FileWrite) -> str:
    if write.owner and write.group:
        return f"{write.owner}:{write.group}"
    if write.owner:
        return write.owner
    if write.group:
        return f":{write.group}"
    return "-"


def _stamp(mtime: float) -> str:
    """``mtime`` as ``touch -t`` takes it (``CCYYMMDDhhmm.SS``, read in UTC: ``TZ=UTC0``)."""
    return time.strftime("%Y%m%d%H%M.%S", time.gmtime(int(mtime)))


def finish_script(
    items: Sequence[tuple[int, FileWrite]],
    staging_dir: str = STAGING_DIR,
    verified: Collection[int] = (),
    attrs_done: Collection[int] = (),
) -> str:
    """The script that verifies, chowns, chmods, validates and renames each staged file.

    ``verified``: the items whose staged checksum was checked already (one ``sha256sum``
    for many files, :func:`sums_script`). ``attrs_done``: the items whose staged file has
    its mode and modification time already (set as it was written). Files staged beside
    their destination get their mode from one ``chmod`` per mode and their time from one
    ``touch`` per second: per file, only the rename (and, for ``sudo``, the copy) is a
    process of its own.
    """
    lines = [_SHELL_LIB, _FINISH_LIB]
    staged = {i: staging_path(w, staging_dir) for i, w in items}
    modes: dict[int, list[int]] = {}
    stamps: dict[str, list[int]] = {}
    for i, w in items:
        if not w.sudo and w.mode is not None and i not in attrs_done:
            modes.setdefault(w.mode, []).append(i)
        if w.mtime is not None and i not in attrs_done:
            stamps.setdefault(_stamp(w.mtime), []).append(i)
    for when, members in stamps.items():
        files = " ".join(shlex.quote(staged[i]) for i in members)
        lines.append(f"TZ=UTC0 touch -c -t {when} -- {files} 2>/dev/null")
    for bits, members in modes.items():
        files = " ".join(shlex.quote(staged[i]) for i in members)
        lines.append(f"if chmod {bits:o} -- {files} 2>/dev/null; then _m{bits:o}=-; else _m{bits:o}={bits:o}; fi")
    for i, w in items:
        temp = _temp_beside(w) if w.sudo else staged[i]
        check = w.validate.replace("{path}", shlex.quote(temp)) if w.validate else ""
        if w.mode is None or (not w.sudo and i in attrs_done):
            mode = "-"
        elif w.sudo:
            mode = shlex.quote(f"{w.mode:o}")
        else:
            mode = f'"$_m{w.mode:o}"'
        first = [str(i), staged[i], temp, w.dest, w.sha256]
        rest = [_owner_arg(w), check, "1" if w.sudo else "0", "1" if i in verified else "0",
                "1" if w.sudo and w.mtime is not None else "0"]  # fmt: skip
        lines.append(
            "_nx_fin " + " ".join(shlex.quote(a) for a in first) + f" {mode} " + " ".join(shlex.quote(a) for a in rest)
        )
    return "\n".join(lines)


def _cancelled(cancel: Cancel | None) -> bool:
    return cancel is not None and cancel.level >= Cancel.INTERRUPT


def _why(exc: BaseException, host: Host, path: str, sudo: bool, user: str) -> tuple[str, str]:
    """A failure of the host's file system as (reason, hint)."""
    code = getattr(exc, "errno", None)
    text = getattr(exc, "strerror", None) or str(exc)
    if code == errno.EACCES or code == errno.EPERM or "ermission denied" in text:
        if sudo:
            return (
                f"permission denied writing {path} on {host.label}, even as root",
                "- check the folder's mount options",
            )
        return (
            f"permission denied writing {path} on {host.label}",
            f"- pass sudo=True to write it as root\n- or choose a folder {user or 'the login user'} may write in",
        )
    if code == errno.ENOSPC or "No space" in text:
        return (
            f"no space left on the device holding {path} on {host.label}; nothing was replaced",
            "- free space on that file system (df -h there), then run again",
        )
    if code == errno.ENOENT:
        folder = _split(path)[0]
        return f"folder {folder} does not exist on {host.label}", f"- create it first: run({_mkdir(folder)})"
    if code == errno.EISDIR:
        return f"{path} on {host.label} is a folder", "- end `to` with / to copy into it, or give a file name"
    return f"writing {path} on {host.label} failed: {text}", ""


def write_over_primitives(
    executor: Executor,
    host: Host,
    writes: Sequence[FileWrite],
    progress: Callable[[FileWrite, int], None] | None,
    cancel: Cancel,
) -> list[TransferResult]:
    """:meth:`Executor.write_files` on the executor's byte movers and ``run``."""
    results: dict[int, TransferResult] = {}
    sent: dict[int, tuple[int, int]] = {}
    base = executor.staging_dir
    if any(w.sudo for w in writes):
        quoted = shlex.quote(base)
        made, _ = _run_script(executor, host, f"mkdir -p {quoted} && chmod 700 {quoted}", False, 30, cancel)
        if not made.ok:
            reason = f"could not create the staging folder {base} on {host.label}: {made.reason}"
            return [TransferResult("failed", w.dest, reason=reason) for w in writes]
    unclear: list[tuple[int, FileWrite, str]] = []
    attrs_done: set[int] = set()

    def failed(i: int, w: FileWrite, staged: str, exc: BaseException) -> None:
        if isinstance(exc, TransferInterrupted):
            results[i] = TransferResult("interrupted", w.dest, reason=str(exc) or "interrupted")
        elif isinstance(exc, TransferError):
            results[i] = TransferResult("failed", w.dest, reason=str(exc), hint=exc.hint)
        elif isinstance(exc, OSError):
            code = getattr(exc, "errno", None)
            if code is None or code == errno.ENOSPC:  # SFTP says "Failure": look at the disk after
                unclear.append((i, w, staged))
            reason, hint = _why(exc, host, w.dest, w.sudo, host.user or "")
            results[i] = TransferResult("failed", w.dest, reason=reason, hint=hint)
        else:
            raise exc

    small = [i for i, w in enumerate(writes) if w.size < RESUME_MIN_BYTES]
    try:
        with executor.file_session(host):
            if small:  # written whole, in one series the executor may pipeline
                batch = [_small_file(writes[i], base) for i in small]
                outcomes = executor.send_files(host, batch, cancel)
                for i, f, outcome in zip(small, batch, outcomes, strict=True):
                    if outcome is None:
                        sent[i] = (writes[i].size, 0)
                        w = writes[i]
                        if executor.sets_attributes and f.mtime == w.mtime and (w.sudo or f.mode == w.mode):
                            attrs_done.add(i)  # the staged file has its time (and mode: a sudo copy's is set as root)
                    else:
                        failed(i, writes[i], f.remote_path, outcome)
            for i, w in enumerate(writes):
                if w.size < RESUME_MIN_BYTES:
                    continue
                if _cancelled(cancel):
                    results[i] = TransferResult("interrupted", w.dest, reason="interrupted before this file")
                    continue
                staged = staging_path(w, base)
                offset = 0
                try:
                    have = executor.file_size(host, staged)
                    if have is not None and 0 < have <= w.size:
                        offset = have
                    report = _per_file(progress, w)
                    done_before = offset == w.size and offset > 0  # a complete part: nothing to send
                    count = 0 if done_before else executor.send_file(host, w.source, staged, offset, report, cancel)
                    landed = executor.file_size(host, staged)  # some servers accept short writes silently
                    if landed != w.size:
                        unclear.append((i, w, staged))
                        results[i] = TransferResult(
                            "failed", w.dest, reason=f"only {landed or 0} of {w.size} bytes of {w.dest} "
                            f"reached {host.label}; nothing was replaced")  # fmt: skip
                        continue
                    sent[i] = (count, offset)
                except ConnectionError:
                    raise
                except (OSError, TransferError) as exc:
                    failed(i, w, staged, exc)
    except TransferError as exc:
        for i, w in enumerate(writes):
            results.setdefault(i, TransferResult(exc.status, w.dest, reason=str(exc), hint=exc.hint))
    except Exception as exc:  # noqa: BLE001 - the connection broke (paramiko, EOF, a refused channel)
        reason = f"connection to {host.label} lost during the transfer: {exc or type(exc).__name__}"
        hint = "- run again: the transfer resumes where it stopped"
        for i, w in enumerate(writes):
            if i not in results or i in sent:
                results[i] = TransferResult("unreachable", w.dest, reason=reason, hint=hint)
                sent.pop(i, None)
    for i, w, staged in unclear:
        results[i] = _disk_full(executor, host, w, staged) or results[i]
    staged_ok = [(i, w) for i, w in enumerate(writes) if i not in results]
    for sudo in (False, True):
        group = [(i, w) for i, w in staged_ok if w.sudo == sudo]
        if group:
            _finish(executor, host, group, sudo, sent, results, attrs_done, cancel)
    return [results[i] for i in range(len(writes))]


def _small_file(write: FileWrite, base: str) -> SmallFile:
    """What :meth:`Executor.send_files` is given for ``write``: its staged path, and the mode
    and time the staged file may carry already (the mode only where the owner can still read
    it, as the checksum is taken after; a ``sudo`` copy gets its mode as root)."""
    mode = write.mode if not write.sudo and write.mode is not None and write.mode & 0o400 else None
    if not write.sudo and write.mode is not None and mode is None:
        return SmallFile(write.source, staging_path(write, base))  # the script sets both, after the checksum
    return SmallFile(write.source, staging_path(write, base), mode, write.mtime)


def _disk_full(executor: Executor, host: Host, write: FileWrite, staged: str) -> TransferResult | None:
    """A failed write on a full file system, said so, its temporary file removed; None when not full."""
    folder = _split(staged)[0]
    probe, lines = _run_script(executor, host, f"df -Pk -- {shlex.quote(folder)} | awk 'NR==2 {{print $4}}'", False, 30)
    free = next((int(x) for x in lines if x.strip().isdigit()), None) if probe.ok else None
    if free is None or free * 1024 > max(write.size, 1) // 50 + 65536:
        return None
    _remove(executor, host, staged)
    return TransferResult(
        "failed",
        write.dest,
        reason=f"no space left on the device holding {write.dest} on {host.label}; nothing was replaced",
        hint=f"- free space on that file system (df -h {folder} there), then run again",
    )


def _per_file(progress: Callable[[FileWrite, int], None] | None, write: FileWrite) -> Callable[[int], None]:
    if progress is None:
        return lambda _done: None
    return lambda done: progress(write, done)


def _remove(executor: Executor, host: Host, path: str) -> None:
    with contextlib.suppress(Exception):
        _run_script(executor, host, f"rm -f -- {shlex.quote(path)}", False, 30)


def _finish(
    executor: Executor,
    host: Host,
    group: Sequence[tuple[int, FileWrite]],
    sudo: bool,
    sent: dict[int, tuple[int, int]],
    results: dict[int, TransferResult],
    attrs_done: Collection[int] = (),
    cancel: Cancel | None = None,
) -> None:
    outputs: dict[int, list[str]] = {}
    verdicts: dict[int, list[str]] = {}
    lines: list[str] = []
    base = executor.staging_dir
    staged = {i: staging_path(w, base) for i, w in group}
    plain = [i for i, _ in group if _plain(staged[i])]
    sums: dict[str, str] = {}
    for chunk in _chunks(plain, lambda i: _word(staged[i])):
        got, found = _run_script(executor, host, sums_script([staged[i] for i in chunk]), sudo,
                                 _script_timeout(len(chunk)), cancel)  # fmt: skip
        if got.ok:
            sums.update(parse_sums(found))
    verified = {i for i, w in group if sums.get(staged[i]) == w.sha256}
    # files not verified here are hashed one by one by the finish script (and a mismatch said)
    group = _rename_ready(executor, host, group, sudo, verified, attrs_done, sent, results)
    result = CommandResult("ok", 0)
    for chunk in _chunks(group, _finish_cost):
        result, found = _run_script(executor, host, finish_script(chunk, base, verified, attrs_done), sudo,
                                    _script_timeout(len(chunk)), cancel)  # fmt: skip
        lines.extend(found)
        if not result.ok and not found:
            break
    for line in lines:
        if line.startswith("NXOUT "):
            _, num, *rest = line.split(" ", 2)
            outputs.setdefault(int(num), []).append(rest[0] if rest else "")
        elif line.startswith(("NXDONE ", "NXFAIL ")):
            parts = line.split()
            verdicts[int(parts[1])] = parts
    for i, w in group:
        count, offset = sent.get(i, (0, 0))
        verdict = verdicts.get(i)
        tail = tuple(outputs.get(i, ())[-20:])
        if verdict is not None and verdict[0] == "NXDONE":
            results[i] = TransferResult("ok", w.dest, True, count, offset, w.sha256)
            continue
        if verdict is None:
            why = result.reason if not result.ok else "the host did not report"
            status = result.status if result.status in ("unreachable", "interrupted", "timeout") else "failed"
            results[i] = TransferResult(status, w.dest, reason=f"putting {w.dest} in place on {host.label}: {why}",
                                        hint=result.hint, tail=tail)  # fmt: skip
            continue
        step = verdict[2] if len(verdict) > 2 else "?"
        full = _disk_full(executor, host, w, staging_path(w, executor.staging_dir)) if step == "checksum" else None
        results[i] = full or TransferResult("failed", w.dest, reason=_step_reason(step, verdict, w, host, tail),
                                            hint=_step_hint(step, w, tail), tail=tail)  # fmt: skip


def _rename_ready(
    executor: Executor,
    host: Host,
    group: Sequence[tuple[int, FileWrite]],
    sudo: bool,
    verified: Collection[int],
    attrs_done: Collection[int],
    sent: dict[int, tuple[int, int]],
    results: dict[int, TransferResult],
) -> list[tuple[int, FileWrite]]:
    """Rename into place, through :meth:`Executor.rename_files`, the verified files that need
    nothing more (no owner, no validation; mode and time set as they were written); return
    the files left for the finish script (all of them when the executor has no such renames)."""
    if sudo:
        return list(group)
    ready = [
        (i, w)
        for i, w in group
        if i in verified
        and not (w.validate or w.owner or w.group)
        and (i in attrs_done or (w.mode is None and w.mtime is None))
    ]
    if not ready:
        return list(group)
    base = executor.staging_dir
    try:
        outcomes = executor.rename_files(host, [(staging_path(w, base), w.dest) for _, w in ready])
    except NotImplementedError:
        return list(group)
    except Exception:  # noqa: BLE001 - the script does them (and says what is wrong)
        return list(group)
    for (i, w), why in zip(ready, outcomes, strict=True):
        if why is None:
            count, offset = sent.get(i, (0, 0))
            # Its time was set as it was written, before the checksum: see _remember_written.
            stamped = int(w.mtime) if w.mtime is not None and i in attrs_done else None
            results[i] = TransferResult("ok", w.dest, True, count, offset, w.sha256, verified_mtime=stamped)
    return [(i, w) for i, w in group if i not in results]


def _finish_cost(item: tuple[int, FileWrite]) -> int:
    """About the characters one file adds to the finish script."""
    return 3 * _word(item[1].dest) + _word(item[1].validate or "") + 200


def _step_reason(step: str, verdict: list[str], w: FileWrite, host: Host, tail: tuple[str, ...]) -> str:
    detail = f": {tail[-1]}" if tail else ""
    if step == "checksum":
        got = verdict[3] if len(verdict) > 3 else "?"
        return (
            f"checksum mismatch for {w.dest} on {host.label} (sent {w.sha256[:12]}, got {got[:12]}); nothing replaced"
        )
    if step == "validate":
        code = verdict[3] if len(verdict) > 3 else "?"
        return f"validation of {w.dest} on {host.label} failed (exit code {code}); the old file is untouched"
    if step == "isdir":
        return f"{w.dest} on {host.label} is a folder"
    if step == "copy" and any("No space" in t for t in tail):
        return f"no space left on the device holding {w.dest} on {host.label}; nothing was replaced"
    if any("ermission denied" in t or "not permitted" in t for t in tail):
        return f"permission denied on {host.label} ({step} {w.dest}){detail}"
    if step == "chown" and any("invalid user" in t or "invalid group" in t for t in tail):
        if any("invalid group" in t for t in tail) or not w.owner:  # chown names the part it refused
            return f"group {w.group!r} does not exist on {host.label}{detail}"
        return f"owner {w.owner!r} does not exist on {host.label}{detail}"
    return f"{step} {w.dest} on {host.label} failed{detail}"


def _step_hint(step: str, w: FileWrite, tail: tuple[str, ...]) -> str:
    if step == "validate":
        return f"- the validator's output is above; fix the template, then run again ({w.validate})"
    if step == "isdir":
        return "- end `to` with / to copy into the folder, or give a file name"
    if any("No space" in t for t in tail):
        return "- free space on that file system (df -h there), then run again"
    if any("ermission denied" in t or "not permitted" in t for t in tail):
        return "- pass sudo=True to write as root (owner= and group= need it)"
    return ""


# --- downloads -----------------------------------------------------------------------------------


def fetch(
    executor: Executor,
    host: Host,
    remote_path: str,
    local_path: str,
    progress: Callable[[int], None] | None = None,
    cancel: Cancel | None = None,
    state: FileState | None = None,
) -> TransferResult:
    """Copy a file from the host to ``local_path``, verified by sha256, renamed into place.

    An identical local file is left alone (``changed`` False); an interrupted download
    resumes from its ``.part`` file. Local folders are created as needed. Only a regular
    file is read on the host and only a regular file is replaced here: a local ``to`` that
    is a folder, a FIFO, a socket or a device is refused before anything is transferred,
    as is a host path that is not a regular file; a local path that cannot be created (a
    folder on its way is a file, permission denied) fails with the path and the fix.
    """
    problem = _local_target_problem(local_path)
    if problem is not None:
        return TransferResult("failed", local_path, reason=problem[0], hint=problem[1])
    try:
        found = state or stat_files(executor, host, [remote_path], [-1], cancel=cancel)[0]
    except TransferError as exc:
        return TransferResult(exc.status, local_path, reason=str(exc), hint=exc.hint)
    if found.kind == "missing":
        return TransferResult("failed", local_path, reason=f"{remote_path} does not exist on {host.label}",
                              hint="- check the path (a relative path starts where the host's commands run: "
                                   "the login folder of a remote host, an agent's own working folder)")  # fmt: skip
    if found.kind == "other":
        reason, hint = _source_problem(executor, host, remote_path, cancel)
        return TransferResult("failed", local_path, reason=reason, hint=hint)
    if found.kind != "file":
        return TransferResult(
            "failed", local_path, reason=f"{remote_path} on {host.label} is not a file ({found.kind})"
        )
    if not found.sha256:
        return TransferResult("failed", local_path, reason=f"{remote_path} on {host.label} cannot be read",
                              hint="- check its permissions")  # fmt: skip
    if _same_local(local_path, found.sha256):
        return TransferResult("ok", local_path, False, sha256=found.sha256)
    folder = os.path.dirname(os.path.abspath(local_path))
    part = os.path.join(folder, temp_name(os.path.basename(local_path), f".nexus-{found.sha256[:12]}.part"))
    offset = 0
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.path.exists(part):
            open(part, "wb").close()  # an empty file, so that an empty source arrives too
        else:
            have = os.path.getsize(part)
            if have <= found.size:
                offset = have
            else:
                os.unlink(part)
    except OSError as exc:
        return _local_failure(exc, local_path, folder)
    try:
        with executor.file_session(host):
            count = (
                0
                if offset == found.size
                else executor.receive_file(host, remote_path, part, offset, progress or (lambda d: None), cancel)
            )
    except TransferInterrupted as exc:
        return TransferResult("interrupted", local_path, reason=str(exc) or "interrupted")
    except OSError as exc:
        if getattr(exc, "filename", None) == part:  # the local side: the temporary file
            return _local_failure(exc, local_path, folder)
        return TransferResult("failed", local_path, reason=f"reading {remote_path} on {host.label} failed: {exc}")
    try:
        with open(part, "rb") as f:
            got = hashlib.file_digest(f, "sha256")
        if got.hexdigest() != found.sha256:
            os.unlink(part)
            return TransferResult("failed", local_path, hint="- run again", reason=f"checksum mismatch downloading "
                                  f"{remote_path} from {host.label} (the file changed while it was read?)")  # fmt: skip
        problem = _local_target_problem(local_path)  # what may have appeared there meanwhile
        if problem is not None:
            return TransferResult("failed", local_path, reason=problem[0], hint=problem[1])
        os.replace(part, local_path)
    except OSError as exc:
        return _local_failure(exc, local_path, folder)
    return TransferResult("ok", local_path, True, count, offset, found.sha256)


def _same_local(local_path: str, sha256: str) -> bool:
    """Whether ``local_path`` is a regular file holding the bytes of ``sha256`` (an unreadable one is not)."""
    try:
        return os.path.isfile(local_path) and local_sha256(local_path) == sha256
    except OSError:
        return False


#: How :func:`_local_target_problem` names a local path that is not a regular file.
_LOCAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _local_target_problem(local_path: str) -> tuple[str, str] | None:
    """Why the local path ``local_path`` cannot take a download (reason, hint), or None.

    A folder, or anything else that is not a regular file (a FIFO, a socket, a device,
    also behind a symbolic link), is never replaced; a folder on the way that is a file
    cannot hold it."""
    try:
        st = os.stat(local_path)
    except (FileNotFoundError, NotADirectoryError):
        st = None  # a new file (a folder on its way that is a file is found below)
    except OSError as exc:
        return (f"local path {local_path} cannot be checked: {exc.strerror or exc}",
                "- check the path given as `to` and the permissions of its folders")  # fmt: skip
    if st is None:
        blocker = _file_on_the_way(os.path.dirname(os.path.abspath(local_path)))
        return None if blocker is None else _blocked(local_path, blocker)
    if stat.S_ISDIR(st.st_mode):
        return f"local path {local_path} is a folder", "- end `to` with / to download into it"
    if stat.S_ISREG(st.st_mode):
        return None
    what = next((name for test, name in _LOCAL_KINDS if test(st.st_mode)), "")
    shown = f"is {what} (not a regular file)" if what else "is not a regular file"
    return (f"local path {local_path} {shown}: a download replaces only a regular file",
            "- give `to` the path of a regular file (or remove what is there first, if nothing uses it)")  # fmt: skip


def _blocked(local_path: str, blocker: str) -> tuple[str, str]:
    """(reason, hint) for a local path that cannot be created: ``blocker``, on its way, is a file."""
    return (f"local path {local_path} cannot be created: {blocker} is a file, not a folder",
            "- fix `to` (a folder on its way is a file), or move that file out of the way")  # fmt: skip


def _file_on_the_way(folder: str) -> str | None:
    """The nearest existing path at or above ``folder`` when it is not a folder, else None."""
    path = folder
    while True:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent
            continue
        except OSError:
            return None
        return None if stat.S_ISDIR(st.st_mode) else path


def _local_failure(exc: OSError, local_path: str, folder: str) -> TransferResult:
    """A local failure of a download (creating ``folder``, writing or renaming the file) as a
    failed result naming the local path, what is wrong and the fix."""
    code = exc.errno
    text = exc.strerror or str(exc)
    if code in (errno.EEXIST, errno.ENOTDIR):
        blocker = _file_on_the_way(folder)
        if blocker is not None:
            reason, hint = _blocked(local_path, blocker)
            return TransferResult("failed", local_path, reason=reason, hint=hint)
    if code in (errno.EACCES, errno.EPERM):
        doing = f"writing local path {local_path}" if os.path.isdir(folder) else (
            f"creating the local folder {folder} for {local_path}")  # fmt: skip
        return TransferResult("failed", local_path, reason=f"permission denied {doing}",
                              hint="- choose a `to` you may write in, or fix its folders' permissions")  # fmt: skip
    if code == errno.ENOSPC:
        return TransferResult("failed", local_path, reason=f"no space left on the local device holding {local_path}",
                              hint=f"- free space there (df -h {folder}), then run again")  # fmt: skip
    if code == errno.EROFS:
        return TransferResult("failed", local_path, reason=f"local path {local_path} is on a read-only file system",
                              hint="- choose a `to` on a writable file system")  # fmt: skip
    if not os.path.isdir(folder):
        return TransferResult("failed", local_path, reason=f"cannot create the local folder {folder} for "
                              f"{local_path}: {text}", hint="- check the path given as `to`; create the folder "
                              "first, or choose one you may write in")  # fmt: skip
    return TransferResult("failed", local_path, reason=f"writing local path {local_path} failed: {text}",
                          hint="- check the path given as `to` and its folder's permissions")  # fmt: skip


# --- one operation -------------------------------------------------------------------------------


class Reporter:
    """Where a file operation reports its events (``transfer.start``/``progress``/``stop``/``check``)."""

    def __init__(self, emit: Callable[[ev.Event], None], run_id: str, task: str, host: str, index: int) -> None:
        self.emit, self.run_id, self.task, self.host, self.index = emit, run_id, task, host, index
        self._last: dict[str, float] = {}

    def progress(self, path: str, done: int, total: int) -> None:
        """A progress event for a big file, at most every :data:`PROGRESS_EVERY` seconds."""
        if total < PROGRESS_MIN_BYTES:
            return
        now = time.monotonic()
        if done < total and now - self._last.get(path, 0.0) < PROGRESS_EVERY:
            return
        self._last[path] = now
        self.emit(ev.TransferProgress(self.run_id, task=self.task, host=self.host, path=path, done=done,
                                      total=total, index=self.index))  # fmt: skip


@dataclass
class _Item:
    """One file of an operation: its local bytes and destination, what is there, what to do."""

    source: str
    dest: str
    size: int
    sha256: str
    mode: int | None
    state: FileState | None = None
    action: str = ""  # write, attrs, unchanged
    mtime: float | None = None  # the source's, kept with ``preserve`` (uploads, not templates)
    problem: tuple[str, str] | None = None
    wanted: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _source(op: Transfer) -> Iterator[str]:
    """The local path of the operation's bytes (a template's rendering in a private temp file)."""
    if op.content is None:
        yield op.src
        return
    fd, path = tempfile.mkstemp(prefix="nexus-template-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(op.content)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _items(op: Transfer, source: str, share: tuple[str, str, int] | None = None) -> tuple[list[_Item], list[str]]:
    """The files of an upload or template, and (for a folder) the folders to create
    (``share``: see :func:`_scan_tree`)."""
    if not op.recursive:
        st = os.stat(source)
        mode = op.mode if op.mode is not None else (stat.S_IMODE(st.st_mode) if op.preserve else None)
        mtime = st.st_mtime if op.preserve and op.content is None else None
        return [_Item(source, op.dest, st.st_size, local_sha256(source), mode, mtime=mtime)], []
    files, rels = _scan_tree(source, share)
    root = _tree_root(op)
    folders = [op.dest, *(f"{root}/{rel}" for rel in rels)]
    items: list[_Item] = []
    for rel, full, size, sha, bits, mtime in files:
        mode = op.mode if op.mode is not None else (bits if op.preserve else None)
        items.append(_Item(full, f"{root}/{rel}", size, sha, mode, mtime=mtime if op.preserve else None))
    return items, folders


#: A local tree as :func:`_scan_tree` finds it: (path relative to the tree, full path, size,
#: sha256, permission bits, mtime) for each file, and the relative paths of the folders.
_Tree = tuple[list[tuple[str, str, int, str, int, float]], list[str]]
_SCANS: dict[str, tuple[threading.Event, list[_Tree | BaseException]]] = {}
#: Trees walked for one operation of a run, by ``(run id, task, operation index, source)``.
_SHARED: dict[tuple[str, str, int, str], _Tree] = {}
#: Operations whose trees are kept at most (the oldest goes first).
SHARED_MAX = 16


def _scan_tree(source: str, share: tuple[str, str, int] | None = None) -> _Tree:
    """The files and folders of the local tree ``source`` with their checksums, in order.

    The hosts of an operation start together and ask for the same tree: one walks it, the
    ones asking meanwhile wait and share its answer. With ``share`` (the run's id, the task
    and the operation's index in it) every host of that one operation in that run takes
    the same walk, also later ones (rolling batches, retries): one snapshot of the tree
    per operation, like rsync's file list for many destinations. What a host is sent is
    still verified against that snapshot's sums, so a file changed locally while the
    operation runs fails there rather than arriving unverified; the next run sees it.
    Any other call walks again.
    """
    if share is not None:
        key = (*share, source)
        with _HASH_LOCK:
            kept = _SHARED.get(key)
        if kept is not None:
            return kept
        tree = _scan_tree(source)
        with _HASH_LOCK:
            if any(k[0] != share[0] for k in _SHARED):
                _SHARED.clear()  # another run: its trees are of no use
            while len(_SHARED) >= SHARED_MAX:
                _SHARED.pop(next(iter(_SHARED)))
            _SHARED[key] = tree
        return tree
    with _HASH_LOCK:
        running = _SCANS.get(source)
        if running is None:
            _SCANS[source] = (threading.Event(), [])
    if running is not None:
        done, box = running
        done.wait()
        if box and not isinstance(box[0], BaseException):
            return box[0]
        return _scan_tree(source)  # the walk failed for the other caller: its own error here
    done, box = _SCANS[source]
    try:
        files: list[tuple[str, str, int, str, int, float]] = []
        rels: list[str] = []
        known = checksum_cache.lookup_tree(os.path.abspath(source))
        top = os.path.realpath(source).rstrip(os.sep) + os.sep
        pending: list[tuple[str, checksum_cache.Signature, str]] = []
        for base, dirs, names in os.walk(source):
            dirs.sort()
            rel = os.path.relpath(base, source)
            prefix = "" if rel == "." else rel + "/"
            if rel != ".":
                rels.append(rel)
            for name in dirs:
                if os.path.islink(os.path.join(base, name)):
                    _changed_since_plan(source, prefix + name, "a symbolic link to a folder")
            for name in sorted(names):
                full = os.path.join(base, name)
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode):
                    if not (stat.S_ISLNK(st.st_mode) and os.path.isfile(full)):
                        _changed_since_plan(source, prefix + name, "neither a regular file nor a link to one")
                    if not os.path.realpath(full).startswith(top):
                        _changed_since_plan(source, prefix + name, "a symbolic link out of the folder")
                    st = os.stat(full)
                sha = local_sha256(full, st, known, pending)
                files.append((prefix + name, full, st.st_size, sha, stat.S_IMODE(st.st_mode), st.st_mtime))
        checksum_cache.remember(pending)
        box.append((files, rels))
        return files, rels
    except BaseException as exc:
        box.append(exc)
        raise
    finally:
        with _HASH_LOCK:
            _SCANS.pop(source, None)
        done.set()


def _walk_soon(source: str, share: tuple[str, str, int]) -> None:
    """Start walking the local tree ``source`` for ``share`` in the background, unless a walk
    of it is kept or under way: the hosts' connections and first look then overlap the walk,
    whose answer :func:`_scan_tree` hands to every host of the operation as before (a failed
    walk is walked again by the host that asks, which then meets the error itself)."""
    key = (*share, source)
    with _HASH_LOCK:
        if key in _SHARED or source in _SCANS or key in _WALKING:
            return
        _WALKING.add(key)

    def walk() -> None:
        try:
            _scan_tree(source, share)
        except Exception:  # noqa: BLE001 - the host that asks walks again and reports it
            pass
        finally:
            with _HASH_LOCK:
                _WALKING.discard(key)

    threading.Thread(target=walk, name="nexus-tree-walk", daemon=True).start()


#: Walks :func:`_walk_soon` started and not yet over.
_WALKING: set[tuple[str, str, int, str]] = set()


def source_digest(source: str, recursive: bool = False) -> str:
    """The sha256 of what an upload of ``source`` sends: the file's bytes, or for a folder
    (``recursive``) each file's path, permission bits and sha256 and each folder's path, as
    :func:`_scan_tree` reads them (the checksum cache spares files that did not change)."""
    if not (recursive and os.path.isdir(source)):
        return local_sha256(source)
    return _tree_digest(_scan_tree(source))


def _tree_digest(tree: _Tree) -> str:
    """The sha256 of a walked tree: each file's path, permission bits and sha256, each folder's path."""
    files, folders = tree
    lines = [f"{rel}\0{bits:o}\0{sha}" for rel, _full, _size, sha, bits, _mtime in files] + folders
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _shared_digest(source: str, share: tuple[str, str, int]) -> str:
    """:func:`_tree_digest` of the tree the hosts of ``share`` take (:func:`_scan_tree`),
    computed once for them all."""
    tree = _scan_tree(source, share)
    key = (*share, source)
    with _HASH_LOCK:
        kept = _DIGESTS.get(key)
        if kept is not None and kept[0] is tree:
            return kept[1]
    digest = _tree_digest(tree)
    with _HASH_LOCK:
        if len(_DIGESTS) >= SHARED_MAX:
            _DIGESTS.clear()
        _DIGESTS[key] = (tree, digest)
    return digest


#: :func:`_shared_digest`'s answers, by the key of :data:`_SHARED` (with the tree they are of).
_DIGESTS: dict[tuple[str, str, int, str], tuple[_Tree, str]] = {}


# --- a tree's print: a re-run of an unchanged tree confirmed by one look -----------------------


def _tree_root(op: Transfer) -> str:
    """The folder a tree's upload writes into, without its trailing slash."""
    return op.dest.rstrip("/") or "/"


def _printable(executor: Executor, op: Transfer) -> bool:
    """Whether the upload ``op`` keeps a print of its tree on the host (see :func:`_confirmed`):
    a folder's upload through a shell-scripted executor (one whose look is :func:`quick_script`)."""
    return (
        op.kind == "upload" and op.recursive and op.content is None and type(executor).stat_files is Executor.stat_files
    )


def _op_print(op: Transfer) -> str:
    """What a tree's print is kept under besides host and folder: everything of the operation
    that the decision of each file depends on, other than the two trees themselves."""
    what = ("tree-print 1", op.src, op.dest, op.preserve, op.mode, op.owner, op.group, op.sudo, op.user)
    return hashlib.sha256(repr(what).encode("utf-8", "surrogateescape")).hexdigest()


def _said_digest(said: Sequence[Sequence[str]]) -> str:
    """The sha256 of what :func:`quick_script` printed, chunk by chunk."""
    text = "\x1e".join("\n".join(lines) for lines in said)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _names(op: Transfer) -> bool:
    """Whether a look at ``op``'s tree prints owner names: only when they are compared
    (``owner=``, ``group=``) or kept (``sudo=True`` keeps the destination's owner)."""
    return bool(op.owner or op.group or op.sudo)


def _confirmed(
    executor: Executor,
    host: Host,
    op: Transfer,
    source: str,
    share: tuple[str, str, int],
    kept: checksum_cache.TreePrint,
    cancel: Cancel | None,
) -> tuple[bool, tuple[list[str], list[list[str]]] | None]:
    """Whether the tree of ``op`` on ``host`` is exactly as its print ``kept`` says, so that
    every file is unchanged; with the look taken (the print's paths and what the host printed
    over them: :func:`_look` uses it again when the paths are the tree's), or None.

    One look as :func:`quick_script` prints it, over the print's paths, compared as one digest
    with what the same look printed when every file there was last found (or written) with
    the local tree's sums: the same inodes, sizes, modification and change times, modes and
    owners, the same folders and the same writable folders. Any write moves a file's change
    time, which nothing sets back, so no file changed; the local tree's digest (paths, modes,
    sums) and the operation's options are the same too. What a re-run of an unchanged tree
    costs the client then no longer grows with its files (docs/decisions.md, "A tree's print")."""
    source_sum, look, _files, listing = kept
    lines = _quick_lines(executor, host, listing, op.sudo, _names(op), cancel)
    if lines is None:
        return False, None
    same = _said_digest(lines) == look and _shared_digest(source, share) == source_sum
    return same, (listing, lines)


def _remember_print(
    host: Host,
    op: Transfer,
    source: str,
    share: tuple[str, str, int],
    listing: list[str],
    lines: list[list[str]],
    files: int,
) -> None:
    """Keep the print of ``op``'s tree on ``host``: ``lines``, what a look over ``listing`` (the
    tree's files, its root, its empty folders, as :func:`_look` lists them) printed while it
    found every file unchanged, and the local tree's digest."""
    root = _tree_root(op)
    kept = (_shared_digest(source, share), _said_digest(lines), files, listing)
    checksum_cache.remember_tree_print(_host_key(host), root, _op_print(op), kept)


def _changed_since_plan(source: str, rel: str, what: str) -> NoReturn:
    """Refuse a tree entry the plan's check (``nexus_core.files.tree_problems``) would have
    named: the tree changed since. It is never read nor silently left out."""
    raise TransferError(f"{os.path.join(source, rel)} is {what}: the folder changed since the run was planned",
                        "- run again: the plan names what a recursive upload cannot send, with the fix")  # fmt: skip


def _decide(op: Transfer, item: _Item, host: Host, what: str = "") -> None:
    """What to do with one file, from what is at its destination (``what``: what a
    destination that is neither a file nor a folder is, see :func:`_what`)."""
    st = item.state
    assert st is not None
    if st.kind != "file" or st.parent != "dir":  # the usual file in a folder it may write in is fine
        item.problem = _destination_problem(op, item.dest, st, host, what)
        if item.problem is not None:
            return
    mode = item.mode
    owner, group = op.owner, op.group
    if st.kind == "file":
        # keep what the destination has when nothing is asked for (a template over /etc/sudoers.d/x)
        if mode is None:
            mode = st.mode
        if op.sudo and owner is None and group is None and (st.owner or st.uid):
            owner, group = _keep_who(st.owner, st.uid), _keep_who(st.group, st.gid)
    item.wanted = {"mode": mode, "owner": owner, "group": group}
    if st.kind != "file" or st.sha256 != item.sha256:
        item.action = "write"
        return
    if (
        (mode is not None and st.mode != mode)
        or (owner and not _is_who(owner, st.owner, st.uid))
        or (group and not _is_who(group, st.group, st.gid))
    ):
        item.action = "attrs"
        return
    item.action = "unchanged"


def _destination_problem(op: Transfer, dest: str, st: FileState, host: Host, what: str = "") -> tuple[str, str] | None:
    """Why ``dest`` cannot be written as it is on the host (reason, hint), or None
    (``what``: what a destination that is neither a file nor a folder is, see :func:`_what`)."""
    folder = _split(dest)[0]
    if st.kind == "dir":
        return (f"destination {dest} on {host.label} is a folder",
                "- end `to` with / to copy into it, or give the file's full path")  # fmt: skip
    if st.kind == "other":
        return (f"destination {_not_regular(dest, host, what)}: only a regular file is replaced, and this "
                "one is neither read nor replaced", "- give `to` the path of a regular file (or remove what is "
                "there first, if nothing uses it)")  # fmt: skip
    if st.parent == "missing":
        again = ", sudo=True)" if op.sudo else ")"
        return f"folder {folder} does not exist on {host.label}", f"- create it first: run({_mkdir(folder)}{again}"
    if st.parent == "other":
        return f"{folder} on {host.label} is not a folder", "- fix the destination path"
    if st.parent == "readonly" and not op.sudo:
        who = host.user or "the login user"
        return (f"permission denied: {who} may not write in {folder} on {host.label}",
                f"- pass sudo=True to write as root\n- or choose a folder {who} may write in")  # fmt: skip
    return None


def _mkdir(folder: str) -> str:
    """``"mkdir -p FOLDER"``: the Python string of the command a hint suggests to create
    ``folder``, the path quoted for the shell (``'weird/missing dir'``)."""
    cmd = f"mkdir -p {shlex.quote(folder)}"
    return f'"{cmd}"' if '"' not in cmd and "\\" not in cmd else repr(cmd)


def _attrs_script(items: Sequence[_Item]) -> str:
    lines = ["set -e"]
    for it in items:
        owner, group, mode = it.wanted.get("owner"), it.wanted.get("group"), it.wanted.get("mode")
        spec = f"{owner}:{group}" if owner and group else (owner or (f":{group}" if group else ""))
        if spec:
            lines.append(f"chown -- {shlex.quote(spec)} {shlex.quote(it.dest)}")
        if mode is not None:
            lines.append(f"chmod {mode:o} {shlex.quote(it.dest)}")
    return "\n".join(lines)


def _look(
    executor: Executor,
    host: Host,
    op: Transfer,
    source: str,
    share: tuple[str, str, int] | None = None,
    cancel: Cancel | None = None,
    said: tuple[list[str], list[list[str]]] | None = None,
) -> tuple[list[_Item], list[str], list[str], tuple[list[str], list[list[str]]] | None]:
    """The files of an upload or template with what is at each destination and what to do
    (:func:`_decide`), for a tree its folders and the empty ones missing on the host, and
    when the quick look settled every path of a tree, those paths and what it printed (what
    a print is kept from, see :func:`_confirmed`; else None). Read only; its scripts stop on the run's
    ``cancel`` (the executor's when None). ``said``: a quick look already taken over some
    paths (the print's, when it did not match), used again when they are this tree's."""
    own = type(executor).stat_files is not Executor.stat_files
    root = _tree_root(op)
    items, folders = _items(op, source, share)
    paths = [it.dest for it in items]
    sizes: list[int | None] = [it.size for it in items]
    leaves = _empty_folders(items, folders) if op.recursive else []
    if op.recursive:  # the tree's root: its parent must exist (the rest is created)
        paths.append(root)
        sizes.append(None)
        paths.extend(leaves)  # empty folders are created too (as rsync -r and Ansible's copy do)
        sizes.extend([None] * len(leaves))
    whole: tuple[list[str], list[list[str]]] | None = None
    if own:
        states = executor.stat_files(host, paths, sizes, op.sudo)
    elif not op.recursive:
        known = checksum_cache.lookup_remote(_host_key(host), set(paths))
        states, sigs, now = _stat_shell(executor, host, paths, sizes, op.sudo, known, cancel)
        _remember_host_sums(host, states, sigs, now, known)
    else:
        # A re-run: the files written there before (kept signatures) are settled by one quick
        # look; anything else (new or changed files, a missing path) gets the full look.
        known = checksum_cache.lookup_remote_tree(_host_key(host), root)
        found: dict[int, FileState] = {}
        if known:
            index = _quick_index(paths)
            listing = list(index)
            if said is not None and said[0] == listing:
                lines: list[list[str]] | None = said[1]
            else:
                lines = _quick_lines(executor, host, listing, op.sudo, _names(op), cancel)
            if lines is not None:
                found = _quick_states(lines, index, sizes, known, _names(op))
                if len(found) == len(paths):
                    whole = (paths, lines)
        rest = [i for i in range(len(paths)) if i not in found]
        looked, sigs, now = _stat_full(executor, host, [paths[i] for i in rest], [sizes[i] for i in rest],
                                       op.sudo, known, cancel) if rest else ([], {}, "")  # fmt: skip
        _remember_host_sums(host, looked, sigs, now, known)
        more = dict(zip(rest, looked, strict=True))
        states = [more[i] if i in more else found[i] for i in range(len(paths))]
    new_folders: list[str] = []
    if op.recursive:
        for folder, st in zip(leaves, states[len(states) - len(leaves) :], strict=True):
            if st.kind == "missing":
                new_folders.append(folder)
            elif st.kind != "dir":
                raise TransferError(f"destination {folder} on {host.label} exists and is not a folder",
                                    "- remove it, or upload into another folder")  # fmt: skip
        del states[len(states) - len(leaves) :]
        top = states.pop()
        if top.kind not in ("dir", "missing"):
            raise TransferError(f"destination {op.dest} on {host.label} exists and is not a folder",
                                "- remove it, or upload into another folder")  # fmt: skip
        # A missing `to` is made with its missing parents (mkdir -p), as the docs' first
        # deploy (`upload("dist/", "/srv/app/releases/", recursive=True)`) expects.
        if top.kind == "missing" and top.parent == "readonly" and not op.sudo:
            raise TransferError(f"permission denied: cannot create {op.dest} on {host.label}",
                                "- pass sudo=True to write as root")  # fmt: skip
        if top.kind == "missing" and top.parent == "missing" and not op.sudo:
            # Several folders to make: mkdir -p needs the nearest one that exists to be writable
            # (a dry run said "would change" where the run then failed with mkdir's words).
            above = _nearest_unwritable(executor, host, root, cancel)
            if above:
                raise TransferError(f"permission denied: cannot create {op.dest} on {host.label}: the login user"
                                    f" may not write in {above}", "- pass sudo=True to write as root")  # fmt: skip
    odd = [it.dest for it, st in zip(items, states, strict=True) if st.kind == "other"]
    what = dict(zip(odd, _what(executor, host, odd, op.sudo, cancel), strict=True)) if odd else {}
    for it, st in zip(items, states, strict=True):
        if op.recursive and st.parent == "missing":
            st = replace(st, parent="dir")
        it.state = st
        _decide(op, it, host, what.get(it.dest, ""))
    return items, folders, new_folders, whole


def _nearest_unwritable(executor: Executor, host: Host, path: str, cancel: Cancel | None) -> str:
    """The nearest existing folder above ``path`` on ``host`` when the login user may not write
    in it (so ``mkdir -p`` would fail); "" when it is writable or cannot be told."""
    script = f'p={shlex.quote(path)}; {nearest_existing("p")}; [ -w "$p" ] || printf "NXRO %s\\n" "$p"'
    try:
        result, lines = _run_script(executor, host, script, False, 30, cancel)
    except Exception:  # noqa: BLE001 - a look only: the writes say why they fail
        return ""
    found = [line[5:] for line in lines if line.startswith("NXRO ")] if result.ok else []
    return found[0] if found else ""


def _empty_folders(items: Sequence[_Item], folders: Sequence[str]) -> list[str]:
    """The folders of a tree (``folders[0]`` is its root) with neither a file nor a folder in
    them: the ones ``mkdir -p`` of the files' folders does not create."""
    above: set[str] = set()
    for path in [*(it.dest for it in items), *folders]:
        parent = _split(path)[0]
        while parent and parent not in above:
            above.add(parent)
            parent = _split(parent)[0] if parent not in ("/", ".") else ""
    return [f for f in folders[1:] if f not in above]


def execute(
    executor: Executor, host: Host, op: Transfer, reporter: Reporter, cancel: Cancel, timeout: float
) -> CommandResult:
    """Run one file operation on ``host``: the engine's counterpart of ``executor.run`` for a command."""
    started = time.monotonic()
    try:
        if op.kind == "download":
            return _download(executor, host, op, reporter, cancel, started)
        with _source(op) as source:
            return _upload(executor, host, op, source, reporter, cancel, started)
    except TransferError as exc:
        status = "interrupted" if _cancelled(cancel) else exc.status  # a script stopped by the run's cancel
        reporter.emit(ev.TransferStop(reporter.run_id, task=reporter.task, host=reporter.host, op=op.kind,
                                      dest=op.dest, status=status, changed=False, reason=str(exc),
                                      duration=time.monotonic() - started, index=reporter.index))  # fmt: skip
        return CommandResult(status, None, time.monotonic() - started, str(exc), hint=exc.hint, retryable=False)


def _stop(reporter: Reporter, op: Transfer, status: str, changed: bool, started: float, **fields: Any) -> None:
    reporter.emit(ev.TransferStop(reporter.run_id, task=reporter.task, host=reporter.host, op=op.kind, dest=op.dest,
                                  status=status, changed=changed, duration=time.monotonic() - started,
                                  index=reporter.index, **fields))  # fmt: skip


def _download(
    executor: Executor, host: Host, op: Transfer, reporter: Reporter, cancel: Cancel, started: float
) -> CommandResult:
    problem = _local_target_problem(op.dest)  # before the host is asked: nothing is transferred
    if problem is not None:
        raise TransferError(*problem)
    try:
        state = stat_files(executor, host, [op.src], [-1], cancel=cancel)[0]
    except TransferError as exc:
        said = str(exc)  # the look names the path already, unless an executor's own stat_files failed
        raise TransferError(said if op.src in said else f"could not look at {op.src} on {host.label}: {said}",
                            exc.hint, exc.status) from exc  # fmt: skip
    reporter.emit(ev.TransferStart(reporter.run_id, task=reporter.task, host=reporter.host, op=op.kind,
                                   dest=op.dest, files=1, bytes=state.size, index=reporter.index))  # fmt: skip
    result = fetch(executor, host, op.src, op.dest, lambda done: reporter.progress(op.src, done, state.size),
                   cancel, state)  # fmt: skip
    _stop(reporter, op, result.status, result.changed, started, files=1, changed_files=int(result.changed),
          unchanged_files=int(result.ok and not result.changed), bytes=result.sent, resumed=result.resumed_from,
          sha256=result.sha256, reason=result.reason)  # fmt: skip
    duration = time.monotonic() - started
    if result.ok:
        return CommandResult("ok", 0, duration, "" if result.changed else "unchanged", changed=result.changed)
    return CommandResult(result.status, None, duration, result.reason, result.tail, retryable=False, hint=result.hint)


def _upload(
    executor: Executor, host: Host, op: Transfer, source: str, reporter: Reporter, cancel: Cancel, started: float
) -> CommandResult:
    if not os.path.lexists(source):  # removed since the plan checked it
        raise TransferError(f"the source {op.src} does not exist on this machine", "- check the path")
    share = (reporter.run_id, reporter.task, reporter.index)
    if op.recursive and os.path.isdir(source):
        _walk_soon(source, share)
    printable = _printable(executor, op)
    kept: checksum_cache.TreePrint | None = None
    looked: tuple[list[str], list[list[str]]] | None = None
    if printable:
        kept = checksum_cache.lookup_tree_print(_host_key(host), _tree_root(op), _op_print(op))
        if kept is not None:
            confirmed, looked = _confirmed(executor, host, op, source, share, kept, cancel)
            if confirmed:
                from nexus_core.logs import LOGGER

                LOGGER.debug("upload into %s on %s: as its print says (one look)", op.dest, host.label)
                reporter.emit(ev.TransferStart(reporter.run_id, task=reporter.task, host=reporter.host, op=op.kind,
                                               dest=op.dest, files=0, bytes=0, index=reporter.index))  # fmt: skip
                _stop(reporter, op, "ok", False, started, files=kept[2], changed_files=0, unchanged_files=kept[2],
                      bytes=0, resumed=0, sha256="", reason="")  # fmt: skip
                return CommandResult("ok", 0, time.monotonic() - started, "unchanged", changed=False)
    items, folders, new_folders, whole = _look(executor, host, op, source, share, cancel, looked)
    problems = [it for it in items if it.problem is not None]
    if problems:
        first = problems[0].problem
        assert first is not None
        more = f" (and {len(problems) - 1} more files)" if len(problems) > 1 else ""
        raise TransferError(first[0] + more, first[1])
    to_write = [it for it in items if it.action == "write"]
    to_fix = [it for it in items if it.action == "attrs"]
    reporter.emit(ev.TransferStart(reporter.run_id, task=reporter.task, host=reporter.host, op=op.kind, dest=op.dest,
                                   files=len(to_write), bytes=sum(it.size for it in to_write),
                                   index=reporter.index))  # fmt: skip
    if op.recursive and (to_write or new_folders):
        wanted = {_split(it.dest)[0] for it in to_write}
        missing = [f for f in folders if f in wanted] + new_folders
        for chunk in _chunks(missing, _word):
            made, said = _run_script(executor, host, "mkdir -p -- " + " ".join(shlex.quote(f) for f in chunk),
                                     op.sudo, 60, cancel)  # fmt: skip
            if not made.ok:  # mkdir's own words say which folder and why (permission denied...)
                why = said[-1].strip() if said else made.reason
                hint = made.hint
                if "permission denied" in why.lower() and not op.sudo:
                    hint = "- pass sudo=True to write as root\n- or choose a folder the login user may write in"
                raise TransferError(f"could not create the folders of {op.dest} on {host.label}: {why}", hint,
                                    _carried(made))  # fmt: skip
    tag = host_tag(host)
    writes = [
        FileWrite(
            it.source,
            it.dest,
            it.size,
            it.sha256,
            it.wanted.get("mode"),
            it.wanted.get("owner"),
            it.wanted.get("group"),
            op.sudo,
            op.validate,
            it.mtime,
            tag,  # as write_files would set it: a dataclasses.replace per file and host saved
        )
        for it in to_write
    ]
    sizes = {w.dest: w.size for w in writes}
    results = (
        write_files(executor, host, writes, lambda w, done: reporter.progress(w.dest, done, sizes[w.dest]), cancel)
        if writes
        else []
    )
    for chunk in _chunks(to_fix, lambda it: 2 * _word(it.dest) + 54):
        fixed, _ = _run_script(executor, host, _attrs_script(chunk), op.sudo, 60, cancel)
        if not fixed.ok:
            raise TransferError(f"setting owner and mode of {op.dest} on {host.label} failed: {fixed.reason}",
                                "- owner= and group= need sudo=True unless they are the login user's",
                                _carried(fixed))  # fmt: skip
    failed = [r for r in results if not r.ok]
    written = [r for r in results if r.ok]
    changed = bool(written or to_fix or new_folders)
    if written or to_fix:
        _remember_written(executor, host, [(r.path, r.sha256, r.verified_mtime) for r in written if r.sha256]
                          + [(it.dest, it.sha256, None) for it in to_fix], op.sudo)  # fmt: skip
    sha = items[0].sha256 if len(items) == 1 else ""
    status = "ok"
    if failed:
        status = "interrupted" if all(r.status == "interrupted" for r in failed) else failed[0].status
    _stop(reporter, op, status, changed, started, files=len(items), changed_files=len(written) + len(to_fix),
          unchanged_files=len(items) - len(to_write) - len(to_fix), bytes=sum(r.sent for r in results),
          resumed=sum(r.resumed_from for r in results), sha256=sha,
          reason=failed[0].reason if failed else "")  # fmt: skip
    duration = time.monotonic() - started
    if failed:
        bad = failed[0]
        more = f" (and {len(failed) - 1} more files)" if len(failed) > 1 else ""
        status = bad.status if bad.status in ("interrupted", "unreachable", "timeout") else "failed"
        return CommandResult(status, None, duration, bad.reason + more, bad.tail, retryable=False, hint=bad.hint)
    if printable and not cancel.requested:
        if whole is not None and not changed:  # found unchanged file by file: the print from that look
            _remember_print(host, op, source, share, *whole, len(items))
        elif kept is not None:
            # The tree changed since its print: none until a run finds it unchanged again (and
            # keeps one from its own look), so that a tree that changes at every run (new file
            # names at each build) is not looked at twice.
            checksum_cache.remember_tree_print(_host_key(host), _tree_root(op), _op_print(op), None)
    note = "" if changed else "unchanged"
    if op.recursive and changed:
        note = f"{len(written) + len(to_fix)} of {len(items)} files changed"
        if new_folders:
            note += f", {len(new_folders)} empty folder{'s' if len(new_folders) > 1 else ''} created"
    return CommandResult("ok", 0, duration, note, changed=changed)


# --- dry run -------------------------------------------------------------------------------------


def check(executor: Executor, host: Host, op: Transfer) -> tuple[bool, int, int, list[str], str]:
    """Dry run of one file operation, read only: (would change, files, files that would
    change, unified diff lines, a problem found on the host or "")."""
    if op.kind == "download":
        local = _local_target_problem(op.dest)
        if local is not None:
            return False, 1, 0, [], local[0]
        try:
            state = stat_files(executor, host, [op.src], [-1])[0]
        except TransferError as exc:
            return False, 1, 0, [], str(exc)
        if state.kind == "other":
            return False, 1, 0, [], _source_problem(executor, host, op.src, None)[0]
        if state.kind != "file":
            return (
                False,
                1,
                0,
                [],
                f"{op.src} on {host.label} is {'missing' if state.kind == 'missing' else 'not a file'}",
            )
        same = _same_local(op.dest, state.sha256)
        return not same, 1, 0 if same else 1, [], ""
    if op.kind == "upload" and not os.path.lexists(op.src):  # removed since the plan checked it
        return True, 0, 0, [], f"the source {op.src} does not exist on this machine"
    with _source(op) as source:
        try:
            items, _, new_folders, _ = _look(executor, host, op, source)
        except TransferError as exc:
            return True, 0, 0, [], str(exc)
        problems = [it.problem for it in items if it.problem is not None]
        changing = [it for it in items if it.action in ("write", "attrs")]
        diff: list[str] = []
        if not op.recursive and items and items[0].action == "write" and items[0].size <= DIFF_MAX_BYTES:
            diff = _diff(executor, host, items[0], source, op.sudo)
            if len(diff) == 1 and diff[0] == SECRET_NOTE and _attrs_kept(items[0]):
                # the same text but for secret values, which a dry run does not decrypt
                return False, 1, 0, diff, problems[0][0] if problems else ""
        elif not op.recursive and items and items[0].action == "attrs":
            want = items[0].wanted
            st = items[0].state
            assert st is not None
            diff = [f"mode/owner: {st.mode or 0:04o} {st.owner}:{st.group} -> "
                    f"{(want.get('mode') or st.mode or 0):04o} {want.get('owner') or st.owner}:"
                    f"{want.get('group') or st.group}"]  # fmt: skip
        changes = bool(changing or new_folders)
        return changes, len(items), len(changing), diff, problems[0][0] if problems else ""


def _diff(executor: Executor, host: Host, item: _Item, source: str, sudo: bool = False) -> list[str]:
    """A unified diff of the current file on the host against the new bytes (text only).

    A current file the login user may not read is read as root when the operation has
    ``sudo=True`` (read only: :func:`_read_as_root`); without sudo, or when sudo needs a
    password that was not given, the diff is left out with a note."""
    with open(source, "rb") as f:
        new = f.read()
    if b"\0" in new:
        return ["(binary file)"]
    st = item.state
    old = b""
    if st is not None and st.kind == "file":
        if st.size > DIFF_MAX_BYTES:
            return [f"(current file is {st.size} bytes: too large to compare)"]
        fd, tmp = tempfile.mkstemp(prefix="nexus-diff-")
        os.close(fd)
        try:
            with executor.file_session(host):
                executor.receive_file(host, item.dest, tmp, 0)
            with open(tmp, "rb") as f:
                old = f.read()
        except (OSError, TransferError, NotImplementedError):
            as_root = _read_as_root(executor, host, item.dest) if sudo else None
            if as_root is None:
                return ["(the current file cannot be read without sudo: no diff)"]
            old = as_root
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if b"\0" in old:
            return ["(binary file)"]
    from nexus_core.secrets.redact import MASK, redact

    old_lines = [redact(line) for line in old.decode("utf-8", "replace").splitlines()]
    new_lines = new.decode("utf-8", "replace").splitlines()
    secret = any(MASK in line for line in new_lines)
    if secret:
        old_lines = mask_secrets(old_lines, new_lines)
    lines = list(
        difflib.unified_diff(
            old_lines,
            new_lines,
            f"{host.label}:{item.dest}" if st is not None and st.kind == "file" else "/dev/null",
            f"{host.label}:{item.dest} (new)",
            lineterm="",
        )
    )
    if secret:
        lines.append(SECRET_NOTE)
    return lines


#: The last line of a dry run's diff of a file rendering secrets (``***``): alone, the text
#: is the same but for them.
SECRET_NOTE = "(secret values show as *** and are not compared in a dry run)"


def _attrs_kept(item: _Item) -> bool:
    """True when the destination already has the mode, owner and group the operation wants."""
    st, want = item.state, item.wanted
    return (
        st is not None
        and st.kind == "file"
        and (want.get("mode") is None or st.mode == want.get("mode"))
        and (not want.get("owner") or _is_who(want["owner"], st.owner, st.uid))
        and (not want.get("group") or _is_who(want["group"], st.group, st.gid))
    )


def _read_as_root(executor: Executor, host: Host, path: str) -> bytes | None:
    """The text of the regular file ``path`` on the host read as root for a dry run's diff,
    or None when sudo does not let it be read (a password that was not given: ``sudo -n``
    never prompts). Only ``cat`` runs: nothing is written; a path that is no longer a
    regular file is not opened."""
    quoted = shlex.quote(path)
    lines: list[str] = []

    def collect(stream: str, line: str) -> None:
        if stream == "stdout":
            lines.append(line)

    try:
        with _following(getattr(getattr(executor, "context", None), "cancel", None)) as own:
            result = executor.run(host, Command(f"[ -f {quoted} ] && cat -- {quoted}", sudo=True,
                                                timeout=30), collect, own, 30)  # fmt: skip
    except Exception:  # noqa: BLE001 - no diff then, as without sudo
        return None
    if not result.ok:
        return None
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")


#: The key of a ``KEY=value`` or ``key: value`` line, with its separator.
_KEY = re.compile(r"\s*[^\s=:][^=:]*[=:]\s*")


def mask_secrets(old: Sequence[str], new: Sequence[str], mask: str = "***") -> list[str]:
    """``old`` (the current file on the host) with what stands where ``new`` holds ``mask``
    (a secret a dry run does not decrypt) masked too, so that a diff neither prints the
    host's secret values nor shows a line as changed only because of them.

    An old line matching a new line with the mask read as a wildcard becomes that new line;
    an old line paired by the diff with a new line holding the mask is masked after the
    text they share. An old line the new file drops (a deletion, or more old lines than new
    in a changed block) keeps only its key (``OLD_PASS=***``): a file that now holds secrets
    may have held others under names the new one no longer uses.
    """
    patterns: list[tuple[re.Pattern[str], str]] = []
    for line in new:
        if mask in line and line.replace(mask, "").strip():
            parts = line.split(mask)
            patterns.append((re.compile(".*?".join(re.escape(p) for p in parts), re.S), line))
    out = list(old)
    for k, line in enumerate(out):
        for rx, masked in patterns:
            if rx.fullmatch(line):
                out[k] = masked
                break
    matcher = difflib.SequenceMatcher(None, out, list(new), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag not in ("replace", "delete"):
            continue
        for k in range(i2 - i1):
            if k >= j2 - j1:  # dropped: no new line stands for it
                key = _KEY.match(out[i1 + k])
                out[i1 + k] = (key.group(0) if key else "") + mask
                continue
            paired = new[j1 + k]
            if mask not in paired:
                continue
            prefix = paired.split(mask)[0]
            line = out[i1 + k]
            out[i1 + k] = (prefix if prefix and line.startswith(prefix) else "") + mask
    return out


@dataclass(frozen=True)
class DryCheck:
    """What a dry run found out about one file operation on one host (read only)."""

    task: str
    host: str
    index: int
    op: str
    dest: str
    changed: bool
    files: int
    changed_files: int
    diff: tuple[str, ...] = ()
    problem: str = ""

    @property
    def secrets_unknown(self) -> bool:
        """Unchanged but for secret values, which a dry run does not decrypt: the real run
        rewrites the file when a secret's value differs from what it holds."""
        return not self.changed and self.diff == (SECRET_NOTE,)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for ``--format json`` (``secrets_compared``: False when the verdict
        leaves secret values out, see :attr:`secrets_unknown`)."""
        return {
            "task": self.task, "host": self.host, "index": self.index, "op": self.op, "dest": self.dest,
            "changed": self.changed, "files": self.files, "changed_files": self.changed_files,
            "diff": list(self.diff), "problem": self.problem, "secrets_compared": not self.secrets_unknown,
        }  # fmt: skip


def dry_run(plan: Any, registry: Any, workers: int = 10) -> dict[tuple[str, str, int], DryCheck]:
    """Check every file operation of ``plan`` on its host without changing anything.

    Each host is asked what is at each destination (one read-only script) and, for
    templates and small text files that would change, the current file is read for a
    diff. A host that cannot be asked gets a :attr:`DryCheck.problem` instead.
    """
    from concurrent.futures import ThreadPoolExecutor

    from nexus_core.api import ExecutorContext

    jobs: list[tuple[str, Host, int, Transfer]] = []
    for name in plan.order:
        for hp in plan.tasks[name].hosts:
            jobs.extend((name, hp.host, i, op) for i, op in enumerate(hp.commands) if isinstance(op, Transfer))
    if not jobs:
        return {}
    executors: dict[str, Executor] = {}
    lock = threading.Lock()

    def executor_for(transport: str) -> Executor:
        with lock:
            if transport not in executors:
                cls = registry.executors[transport]
                context = ExecutorContext(config=plan.config, root=plan.root, emit=lambda _e: None, run_id="dry-run")
                executors[transport] = cls(context)
            return executors[transport]

    def one(job: tuple[str, Host, int, Transfer]) -> DryCheck:
        name, host, index, op = job
        try:
            changed, files, changing, diff, problem = check(executor_for(host.transport), host, op)
        except Exception as exc:  # noqa: BLE001 - a dry run reports, never fails on a host
            changed, files, changing, diff, problem = True, 0, 0, [], f"could not check: {exc}"
        return DryCheck(name, host.label, index, op.kind, op.dest, changed, files, changing, tuple(diff), problem)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs))), thread_name_prefix="nexus-dry") as pool:
            found = list(pool.map(one, jobs))
    finally:
        for ex in executors.values():
            with contextlib.suppress(Exception):
                ex.close()
    return {(c.task, c.host, c.index): c for c in found}
