"""Checksums kept between runs, so that a re-run with nothing changed hashes nothing again.

Like git's index: the sha256 of a file is stored with the file's stat signature (size,
modification and change times in nanoseconds, inode, device). A later run that finds the
same signature takes the stored sum instead of reading the file. Any write to a file moves
its change time (``ctime``), which no user-space call can set back, so a file changed in
place, replaced, or touched back to its old modification time never matches a stored
signature.

The one blind spot of such a signature is a write within the same clock tick as the
signature was taken (file systems keep times at a granularity: a few milliseconds on
Linux, whole seconds or two on some). A signature is therefore stored only for a file
whose change time is at least :data:`SETTLED_NS` older than the moment it was looked at
("racily clean" files, as git calls them, are hashed again next time).

The cache is a small SQLite file, ``$XDG_CACHE_HOME/nexus/checksums.db``; it is a cache
only: any error reading or writing it is ignored and the file is hashed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Collection, Iterable
from typing import Any

__all__ = [
    "SETTLED_NS",
    "Signature",
    "TreePrint",
    "cache_path",
    "forget",
    "lookup",
    "lookup_remote",
    "lookup_remote_tree",
    "lookup_tree",
    "lookup_tree_print",
    "remember",
    "remember_remote",
    "remember_tree_print",
    "remote_settled",
    "settled",
    "signature",
]

#: A stat signature: (size, mtime_ns, ctime_ns, inode, device).
Signature = tuple[int, int, int, int, int]

#: How much older than the moment it was looked at a file's change time must be for its
#: signature to be stored (covers file systems with 2-second timestamps).
SETTLED_NS = 2_000_000_000
#: Rows kept at most; past this the cache starts over (a cache, not a record).
MAX_ROWS = 200_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local (
  path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER, dev INTEGER,
  sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS remote (  -- files on hosts: the signature a host's stat printed, the sha256 it hashed
  host TEXT NOT NULL, path TEXT NOT NULL, sig TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (host, path)
);
CREATE TABLE IF NOT EXISTS trees (  -- an upload's whole tree on a host as last confirmed (see TreePrint)
  host TEXT NOT NULL, root TEXT NOT NULL, op TEXT NOT NULL, source TEXT NOT NULL, look TEXT NOT NULL,
  files INTEGER NOT NULL, listing BLOB NOT NULL, PRIMARY KEY (host, root, op)
);
"""

_lock = threading.Lock()
_db: sqlite3.Connection | None = None
_db_path = ""
_broken = False


def cache_path() -> str:
    """Where the cache lives: ``$XDG_CACHE_HOME/nexus/checksums.db``."""
    from nexus_core.state.paths import cache_dir

    return os.environ.get("NEXUS_CHECKSUM_CACHE") or os.path.join(cache_dir(), "checksums.db")


def signature(st: os.stat_result) -> Signature:
    """The stat signature of a file."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def settled(sig: Signature, now_ns: int) -> bool:
    """True when a signature taken at ``now_ns`` may be stored (see :data:`SETTLED_NS`)."""
    return now_ns - max(sig[1], sig[2]) >= SETTLED_NS


def _connect() -> sqlite3.Connection | None:
    """The cache's connection (opened once per process and cache path), or None when unusable."""
    global _db, _db_path, _broken
    path = cache_path()
    if path == "off":
        return None
    if _db is not None and _db_path == path:
        return _db
    if _broken and _db_path == path:
        return None
    _db_path = path
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        db = sqlite3.connect(path, timeout=2.0, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(_SCHEMA)
        for table in ("local", "remote", "trees"):
            (rows,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
            if rows > MAX_ROWS:
                db.execute(f"DELETE FROM {table}")
    except (sqlite3.Error, OSError):
        _broken = True
        return None
    _db = db
    return db


def _read(sql: str, args: tuple[Any, ...]) -> list[Any]:
    """The rows ``sql`` selects (best effort: a cache that cannot be read has no rows)."""
    with _lock:
        db = _connect()
        if db is None:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except (sqlite3.Error, ValueError):  # ValueError: a path that is not UTF-8 (never kept)
            return []


def _joined(sql: str, args: tuple[Any, ...], width: int) -> list[str]:
    """The fields of the rows ``sql`` selects as one ``group_concat`` of NUL-separated fields
    (``width`` per row), split again; [] when there are none or the text does not split evenly.

    One row instead of one per file: Python's ``sqlite3`` lets the GIL go and takes it back
    for every row it steps to, and with ten hosts' threads running each take-back waits its
    turn; a tree of 1,000 files was 1,000 such waits per host (docs/decisions.md, "The
    checksum cache read in one row"). Paths hold no NUL, nor do signatures and sums."""
    rows = _read(sql, args)
    if not rows or not rows[0][0]:
        return []
    fields = str(rows[0][0]).split("\0")
    return fields if len(fields) % width == 0 else []


def _under(root: str) -> tuple[str, str]:
    """The range of paths under the folder ``root``: ``path >= low AND path < high``."""
    base = root.rstrip("/") + "/"
    return base, base[:-1] + "0"  # "0" follows "/": every path starting with base


def lookup(path: str, sig: Signature) -> str:
    """The stored sha256 of ``path`` when it had signature ``sig``; "" when not known."""
    rows = _read(
        "SELECT sha256 FROM local WHERE path=? AND size=? AND mtime_ns=? AND ctime_ns=? AND ino=? AND dev=?",
        (path, *sig),
    )
    return str(rows[0][0]) if rows else ""


def lookup_tree(root: str) -> dict[str, tuple[Signature, str]]:
    """Every stored entry under the folder ``root``, as ``{path: (signature, sha256)}`` (one query)."""
    fields = _joined(
        "SELECT group_concat(path || char(0) || size || char(0) || mtime_ns || char(0) || ctime_ns || char(0)"
        " || ino || char(0) || dev || char(0) || sha256, char(0)) FROM local WHERE path >= ? AND path < ?",
        _under(root),
        7,
    )
    out: dict[str, tuple[Signature, str]] = {}
    for i in range(0, len(fields), 7):
        size, mtime, ctime, ino, dev = map(int, fields[i + 1 : i + 6])
        out[fields[i]] = ((size, mtime, ctime, ino, dev), fields[i + 6])
    return out


def remember(entries: Iterable[tuple[str, Signature, str]]) -> None:
    """Store ``(path, signature, sha256)`` entries (best effort)."""
    _write("local", 7, [(p, *sig, sha) for p, sig, sha in entries])


def _write(table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
    """Store ``rows`` (``width`` values each) in ``table``, replacing rows of the same key, in
    one transaction (best effort: a cache that cannot be written is skipped).

    One statement over the rows as a JSON array (``json_each``), not ``executemany``: like a
    read row by row (:func:`_joined`), each row of ``executemany`` lets the GIL go and waits
    to take it back behind the other threads. An SQLite without its JSON functions (older
    than 3.38 and built without them) gets ``executemany``."""
    rows = [r for r in rows if all(_storable(v) for v in r)]
    if not rows:
        return
    marks = ", ".join("?" * width)
    picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(width))
    try:
        text: str | None = json.dumps(rows)  # outside the lock: the other threads' reads go on
    except (TypeError, ValueError):
        text = None
    with _lock:
        db = _connect()
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute("BEGIN")
            if text is not None:
                try:
                    db.execute(f"INSERT OR REPLACE INTO {table} SELECT {picks} FROM json_each(?)", (text,))
                except sqlite3.DatabaseError:  # no JSON functions (or not allowed)
                    text = None
            if text is None:
                db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
            db.execute("COMMIT")


def _storable(value: Any) -> bool:
    """Whether SQLite can store ``value``: a path that is not UTF-8 (a file name's bytes kept
    as surrogates) cannot, and is not cached (its file is hashed each time)."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lookup_remote(host: str, paths: Collection[str]) -> dict[str, tuple[str, str]]:
    """What is stored of ``paths`` on ``host`` (a host's identity), as ``{path: (signature, sha256)}``."""
    if not paths:
        return {}
    wanted = paths if isinstance(paths, set | frozenset | dict) else set(paths)
    return {p: kept for p, kept in _remote("host=?", (host,)).items() if p in wanted}


def lookup_remote_tree(host: str, root: str) -> dict[str, tuple[str, str]]:
    """What is stored of the files under the folder ``root`` on ``host``, as
    ``{path: (signature, sha256)}`` (one query)."""
    return _remote("host=? AND path >= ? AND path < ?", (host, *_under(root)))


def _remote(where: str, args: tuple[Any, ...]) -> dict[str, tuple[str, str]]:
    """The ``remote`` rows ``where`` selects, as ``{path: (signature, sha256)}`` (one joined row)."""
    fields = _joined(f"SELECT group_concat(path || char(0) || sig || char(0) || sha256, char(0)) FROM remote"
                     f" WHERE {where}", args, 3)  # fmt: skip
    return {fields[i]: (fields[i + 1], fields[i + 2]) for i in range(0, len(fields), 3)}


def remember_remote(host: str, entries: Iterable[tuple[str, str, str]]) -> None:
    """Store ``(path, signature, sha256)`` entries of files on ``host`` (best effort)."""
    _write("remote", 4, [(host, p, sig, sha) for p, sig, sha in entries])


#: An upload's tree on a host as last confirmed whole: ``(source, look, files, listing)``: the
#: digest of the local tree it was confirmed against, the digest of what the host's look
#: printed over ``listing`` (the destination paths, in the order looked at), and the number of
#: files. A later look printing the same (inodes, sizes, modification and change times, modes,
#: owners) over the same paths, with the same local tree, finds every file as it was.
TreePrint = tuple[str, str, int, list[str]]


def lookup_tree_print(host: str, root: str, op: str) -> TreePrint | None:
    """The :data:`TreePrint` kept for the operation ``op`` (its fingerprint) into the folder
    ``root`` on ``host``; None when there is none (or it cannot be read)."""
    rows = _read("SELECT source, look, files, listing FROM trees WHERE host=? AND root=? AND op=?", (host, root, op))
    if not rows:
        return None
    try:
        source, look, files, blob = rows[0]
        listing = zlib.decompress(blob).decode("utf-8", "surrogateescape").split("\0")
        return str(source), str(look), int(files), listing
    except (zlib.error, TypeError, ValueError):  # a damaged row: no print (the files are looked at)
        return None


def remember_tree_print(host: str, root: str, op: str, kept: TreePrint | None) -> None:
    """Keep ``kept`` for the operation ``op`` into ``root`` on ``host``; None forgets it
    (best effort). The listing is stored compressed (paths share their folders)."""
    with _lock:
        db = _connect()
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error, ValueError):  # ValueError: a name not UTF-8
            if kept is None:
                db.execute("DELETE FROM trees WHERE host=? AND root=? AND op=?", (host, root, op))
                return
            source, look, files, listing = kept
            blob = zlib.compress("\0".join(listing).encode("utf-8", "surrogateescape"), 1)
            db.execute(
                "INSERT OR REPLACE INTO trees VALUES (?, ?, ?, ?, ?, ?, ?)", (host, root, op, source, look, files, blob)
            )


def remote_settled(sig: str, now: str) -> bool:
    """True when a host's file signature (``INODE DEV SIZE MTIME CTIME``, times as
    ``SECONDS.NANOSECONDS``) taken after the host's clock read ``now`` may be stored: its
    change time is older than ``now`` by one clock tick at least (50 ms; 2 s when the
    times have no fraction, as on file systems with coarse timestamps)."""
    try:
        ctime = sig.split()[4]
        whole, _, frac = ctime.partition(".")
        changed = int(whole) * 1_000_000_000 + int(frac or "0")
        n_whole, _, n_frac = now.partition(".")
        now_ns = int(n_whole) * 1_000_000_000 + int(n_frac or "0")
    except (IndexError, ValueError):
        return False
    margin = 50_000_000 if int(frac or "0") else SETTLED_NS
    return now_ns - changed >= margin


def forget() -> None:
    """Close the cache (tests; a later call opens it again, at the current path)."""
    global _db, _broken
    with _lock:
        if _db is not None:
            with contextlib.suppress(sqlite3.Error):
                _db.close()
        _db, _broken = None, False


def now_ns() -> int:
    """The wall clock in nanoseconds (what file times are compared with)."""
    return time.time_ns()
