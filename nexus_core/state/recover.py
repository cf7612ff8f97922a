"""A damaged state database is moved aside and replaced, never a reason for ``nexus`` to fail.

A truncated, overwritten or random file where ``state.db`` should be (a full disk, a bad
copy, a stray ``>``) is detected when the store is opened: SQLite says it is not a
database, or ``PRAGMA quick_check`` finds damaged pages. The file (and its ``-wal`` and
``-shm`` companions) is then renamed to ``state.db.damaged-YYYYmmddTHHMMSSZ``, a warning
says so, and a fresh database takes its place. The runs recorded in the old file can no
longer be listed or resumed; the new database remembers the move (``meta`` row
``recovered``) so that ``nexus pipelines`` can say what happened while the old file is
still there.

Recovery happens under an exclusive lock on ``state.db.lock`` and re-checks the file
first: two processes that find the same damage move it once, and neither moves away the
fresh database the other one just made.

Only what can be Nexus's own database is moved: a regular file (or a symbolic link, which
moves without its target) that starts as an SQLite file, is empty, is named as a database
(``.db``, ``.sqlite``, ``.sqlite3``) or sits where Nexus keeps it by default.
``NEXUS_STATE_DB=/dev/null`` (a device: as root, moving it broke the machine's
``/dev/null``) or a path naming some other file (a nexusfile) is left as it is: the run goes
unrecorded with a warning, and commands that need the database say why.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from nexus_core.state.store import StateError, StateStore

SUFFIXES = ("", "-wal", "-shm", "-journal")


def open_state(path: str, warn: Callable[[str], None]) -> StateStore:
    """Open the state store at ``path``; when the file is damaged, move it aside and start afresh.

    ``warn`` receives one message saying what was found and where the old file went.
    Raises :class:`StateError` for what moving the file would not fix (permissions, a
    database written by a newer Nexus).
    """
    device = _not_a_file(path)
    if device:  # never opened: reading a FIFO would wait for a writer, a device is not ours
        raise StateError(
            f"{path} cannot be the run-state database: {device}; it was left as it is",
            hint="point NEXUS_STATE_DB at a file of its own (a path that does not exist yet), or unset it",
        )
    try:
        return StateStore(path)
    except StateError as exc:
        if not exc.damaged:
            raise
        first = exc
    foreign = not_ours(path)
    if foreign:
        raise StateError(
            f"{path} cannot be the run-state database: {foreign}; it was left as it is",
            hint="point NEXUS_STATE_DB at a file of its own (a path that does not exist yet), or unset it",
        ) from first
    from nexus_core.state.lock import exclusive

    with exclusive(path + ".lock"):
        try:  # another process may have replaced it meanwhile
            return StateStore(path)
        except StateError as exc:
            if not exc.damaged:
                raise
            first = exc
        moved = _move_aside(path)
        store = StateStore(path)
    reason = _one_line(str(first).split(": ", 1)[-1] if ": " in str(first) else str(first))
    store.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('recovered', ?)",
        (json.dumps({"at": time.time(), "moved_to": moved, "reason": reason}),),
    )
    warn(
        f"nexus: warning: the run-state database {path} was damaged ({reason}); moved it to {moved} "
        "and started a fresh one. Runs recorded there can no longer be listed or resumed."
    )
    return store


_SQLITE_HEADER = b"SQLite format 3\x00"
#: Endings of a file name that says the file is a database (moved aside when damaged).
_DATABASE_NAMES = (".db", ".sqlite", ".sqlite3")


def _not_a_file(path: str) -> str:
    """What ``path`` (followed) is when it exists and is neither a regular file nor a folder."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return ""
    if stat.S_ISCHR(mode):
        return "it is a character device"
    return "it is a named pipe" if stat.S_ISFIFO(mode) else "it is not a regular file"


def not_ours(path: str) -> str:
    """Why the file at ``path`` is not one Nexus may move aside as its damaged database ("" when
    it may): see the module docstring."""
    import stat

    from nexus_core.state.paths import state_dir

    try:
        st = os.lstat(path)
    except OSError:
        return ""  # gone meanwhile: nothing to move
    if stat.S_ISLNK(st.st_mode):
        return ""  # the link moves; what it points at stays
    if stat.S_ISDIR(st.st_mode):
        return "it is a folder"
    if not stat.S_ISREG(st.st_mode):
        return _not_a_file(path) or "it is not a regular file"
    if st.st_size == 0 or os.path.abspath(path) == os.path.abspath(os.path.join(state_dir(), "state.db")):
        return ""
    if path.lower().endswith(_DATABASE_NAMES):
        return ""  # named as a database: NEXUS_STATE_DB=/srv/ci/state.db overwritten by mistake
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
    except OSError:
        return ""
    if header == _SQLITE_HEADER:
        return ""
    return "it is not an SQLite database (nor named as one: .db), and Nexus moves aside only its own files"


def _one_line(reason: str) -> str:
    """SQLite's own words, on one line: its integrity check reports several (``*** in
    database main ***``, ``Page 7: btreeInitPage() returns error code 11``)."""
    parts = [p.strip() for p in reason.replace("*** in database main ***", "").splitlines() if p.strip()]
    text = "; ".join(parts[:3]) + ("; ..." if len(parts) > 3 else "")
    return text or "damaged"


def _move_aside(path: str) -> str:
    """Rename the database and its companion files with a UTC timestamp; return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.damaged-{stamp}-{n}"
        if n > 100:
            break
    for suffix in SUFFIXES:
        try:
            os.replace(path + suffix, target + suffix)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"the state database {path} is damaged and cannot be moved aside: {exc.strerror}") from exc
    try:  # the note of the last clean close (StateStore.close) describes the damaged file
        os.remove(path + "-checked")
    except OSError:
        pass
    return target


def recovery_note(store: StateStore) -> dict[str, Any] | None:
    """The last recovery this database records, while the moved-aside file still exists; else None."""
    row = store.db.execute("SELECT value FROM meta WHERE key = 'recovered'").fetchone()
    if row is None:
        return None
    try:
        note: dict[str, Any] = json.loads(row["value"])
    except (TypeError, ValueError):
        return None
    if not os.path.exists(str(note.get("moved_to", ""))):
        return None
    return note


def describe_recovery(note: dict[str, Any]) -> str:
    """One line for ``nexus pipelines``: when the database was replaced, why, and where the old one is."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(note.get("at") or 0)))
    return (
        f"Note: the run-state database was damaged ({note.get('reason', 'unknown damage')}) and replaced on "
        f"{when}; runs recorded before then are in {note.get('moved_to')} and are not listed."
    )


def damage_found_late(exc: BaseException, path: str) -> str | None:
    """For an SQLite error that escaped a command: move a damaged database aside and say so.

    The check at open is bounded in time, so damage deep in a large file can first show
    when a query reaches it. Returns the message to print (None when ``exc`` is not such
    damage); the next command then starts with a fresh database.
    """
    import sqlite3

    from nexus_core.state.lock import exclusive
    from nexus_core.state.store import is_damage

    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.OperationalError):
        return None
    if not is_damage(exc) or not os.path.exists(path) or not_ours(path):
        return None
    with exclusive(path + ".lock"):
        try:
            moved = _move_aside(path)
        except StateError as err:
            return f"Error: {err}"
    return (
        f"Error: the run-state database {path} is damaged ({exc}); moved it to {moved}.\n\n"
        "  Run the command again: a fresh database is created. Runs recorded in the old one can no "
        "longer be listed or resumed."
    )
