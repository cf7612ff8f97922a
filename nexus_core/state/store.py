"""The run-state store: an embedded SQLite database (WAL, one transaction per change).

It records each run (nexusfile, hash, requested tasks, options, plan, status), each task,
each task on each host, and each command's outcome, so an interrupted or killed run can be
listed and resumed. Written only by :class:`~nexus_core.state.recorder.StateRecorder`, an
event subscriber; the engine never writes here itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nexus_core.pids import pid_alive as _pid_alive
from nexus_core.secrets.redact import redact_data

SCHEMA_VERSION = 1

#: Seconds the integrity check at open may take at most (see StateStore._quick_check).
CHECK_BUDGET = 0.02

#: Approval requests and dry runs of the compliance controls (nexus_core.policy.store).
POLICY_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (  -- nexus_core.policy: approval requests (docs/compliance.md)
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    tasks TEXT NOT NULL,              -- JSON list
    plan_hash TEXT NOT NULL,          -- SHA-256 of the plan the approval is bound to
    nexusfile TEXT NOT NULL,
    dry_run TEXT NOT NULL,            -- the plan's dry-run text, for the approver
    created REAL NOT NULL,
    expires REAL NOT NULL,
    status TEXT NOT NULL,             -- pending, approved, rejected, cancelled, used
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at REAL,
    comment TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL DEFAULT ''   -- the run that used the approval
);
CREATE TABLE IF NOT EXISTS dry_runs (   -- nexus_core.policy: dry runs, for require_dry_run
    user TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    tasks TEXT NOT NULL,
    at REAL NOT NULL
);
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    nexusfile TEXT NOT NULL,
    nexusfile_hash TEXT NOT NULL,
    requested TEXT NOT NULL,          -- JSON list, sorted
    options TEXT NOT NULL,            -- JSON object
    plan TEXT NOT NULL,               -- JSON of Plan.to_dict()
    status TEXT NOT NULL,             -- running, ok, failed, interrupted, discarded
    started REAL NOT NULL,
    ended REAL,
    exit_code INTEGER,
    pid INTEGER NOT NULL,
    machine TEXT NOT NULL,
    resumes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_file ON runs (nexusfile, status);
-- A run's status and times sit after its plan (kilobytes of JSON, in overflow pages): without
-- this index, every start's look for old finished runs read every plan (docs/decisions.md).
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, started, ended);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    status TEXT NOT NULL,             -- pending, running, ok, failed, skipped, interrupted
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    ended REAL,
    last_error TEXT,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS hosts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    host TEXT NOT NULL,
    status TEXT NOT NULL,
    started REAL,
    ended REAL,
    reason TEXT,
    PRIMARY KEY (run_id, task, host)
);
CREATE TABLE IF NOT EXISTS commands (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    host TEXT NOT NULL,
    idx INTEGER NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,             -- running, ok, failed, timeout, unreachable, error, interrupted
    exit_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1,
    started REAL,
    ended REAL,
    PRIMARY KEY (run_id, task, host, idx)
);
CREATE TABLE IF NOT EXISTS dag_cache (
    key TEXT PRIMARY KEY,             -- nexus_core.plan.dag_key of a task graph
    phases TEXT NOT NULL,             -- JSON list of lists
    used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    host TEXT NOT NULL,               -- a host label
    handler TEXT NOT NULL,
    status TEXT NOT NULL,             -- pending, ok, failed, timeout, unreachable, error, interrupted,
                                      -- carried (taken over by a later run)
    notified REAL NOT NULL,
    ended REAL,
    PRIMARY KEY (run_id, task, host, handler)
);
CREATE TABLE IF NOT EXISTS cloud_instances (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    instance TEXT NOT NULL,
    agent TEXT NOT NULL,
    hourly_price REAL,                -- US dollars per hour; NULL when unknown
    launched REAL NOT NULL,
    ended REAL,
    cost REAL,                        -- US dollars from launch to end
    PRIMARY KEY (run_id, provider, instance)
);
CREATE TABLE IF NOT EXISTS host_prunes (
    host TEXT PRIMARY KEY,            -- a host label
    at REAL NOT NULL                  -- when leftovers were last removed from it
);
"""
SCHEMA += POLICY_SCHEMA


class StateError(Exception):
    """The state database cannot be opened or is not a Nexus state database.

    ``damaged`` is True when the file is not an SQLite database or its pages are corrupt
    (truncated, overwritten): :func:`nexus_core.state.recover.open_state` then moves it
    aside. Otherwise the cause is access (permissions, a folder in the way) or a newer schema.
    """

    def __init__(self, message: str, damaged: bool = False, hint: str = "") -> None:
        super().__init__(message)
        self.damaged = damaged
        #: How to fix it, when the message alone does not say ("" = the caller's usual advice).
        self.hint = hint


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """True when SQLite says the file is not a database or is corrupt (not: locked, read-only...)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or name.startswith("SQLITE_CORRUPT_"):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


@dataclass
class RunRecord:
    """One run as stored, with what each task, host and command reached."""

    id: str
    nexusfile: str
    nexusfile_hash: str
    requested: list[str]
    options: dict[str, Any]
    plan: dict[str, Any]
    status: str
    started: float
    ended: float | None
    exit_code: int | None
    pid: int
    machine: str
    resumes: int
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    commands: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    #: Handler notifications by (task, host label): handler name -> status (``pending`` until it ran).
    notifications: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def pending_handlers(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Handlers notified but not run (or failed), by (task, host label)."""
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        for key, found in self.notifications.items():
            names = tuple(n for n, status in found.items() if status not in ("ok", "carried"))
            if names:
                out[key] = names
        return out

    @property
    def pipeline(self) -> str:
        """How people name the run: its requested tasks."""
        return " ".join(self.requested) or "(all tasks)"

    @property
    def interrupted(self) -> bool:
        """Interrupted by a signal, or still marked running by a process that is gone."""
        return self.status == "interrupted" or (self.status == "running" and not self.alive)

    @property
    def alive(self) -> bool:
        """True when the process that runs it is still there (on this machine)."""
        if self.machine != os.uname().nodename:
            return True  # cannot tell: assume it is
        return _pid_alive(self.pid)

    @property
    def display_status(self) -> str:
        """``running``, ``crashed`` (marked running, process gone) or the stored status."""
        if self.status == "running" and not self.alive:
            return "crashed"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        """Plain-data summary for ``nexus pipelines --format json``."""
        counts: dict[str, int] = {}
        for t in self.tasks.values():
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        return {
            "id": self.id,
            "run_id": self.id,  # as events name it
            "pipeline": self.pipeline,
            "nexusfile": self.nexusfile,
            "status": self.display_status,
            "started": self.started,
            "ended": self.ended,
            "exit_code": self.exit_code,
            "requested": self.requested,
            "resumes": self.resumes,
            "tasks": counts,
        }


class StateStore:
    """A connection to the state database (one per process and run)."""

    def __init__(self, path: str) -> None:
        self.path = path
        cut = _truncated(path)
        if cut:
            raise StateError(f"the state database {path} is damaged: {cut}", damaged=True)
        unchanged = self._unchanged_since_checked()  # before opening: that makes a WAL
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            if not os.path.lexists(path):
                _create(path)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against a crash of this process (the WAL is in the OS cache);
            # only a power loss can drop the last transactions, never corrupt the file.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.executescript(SCHEMA)
            self._check_version()
            problem = "" if unchanged else self._quick_check()
            if problem:
                self.db.close()
                raise StateError(f"the state database {path} is damaged: {problem}", damaged=True)
        except sqlite3.DatabaseError as exc:
            try:
                self.db.close()
            except Exception:  # noqa: BLE001 - may not be open at all
                pass
            raise StateError(f"cannot open the state database {path}: {exc}", damaged=is_damage(exc)) from exc
        except OSError as exc:
            raise StateError(f"cannot create the state folder for {path}: {exc.strerror}") from exc

    def _quick_check(self) -> str:
        """SQLite's ``quick_check``, bounded to about :data:`CHECK_BUDGET` seconds ("" when fine).

        Damaged pages (a file overwritten in the middle) are found now, while the file can
        still be moved aside, not in the middle of a run. The check reads every page, about
        16 ms per MB here: a state database of a few MB is checked whole; beyond the budget
        the check stops (no finding) and damage there is reported when a query reaches it.
        """
        deadline = time.monotonic() + CHECK_BUDGET
        self.db.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            row = self.db.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc).lower():
                return ""
            raise
        finally:
            self.db.set_progress_handler(None, 0)
        return "" if row is None or row[0] == "ok" else str(row[0])

    def _stamp(self) -> str:
        """Size and modification time of the database file, "" when a WAL is pending or on error."""
        try:
            if os.path.exists(self.path + "-wal"):
                return ""
            st = os.stat(self.path)
        except OSError:
            return ""
        return f"{st.st_size} {st.st_mtime_ns}"

    def _unchanged_since_checked(self) -> bool:
        """True when the file is exactly as this store left it at a clean close (see :meth:`close`).

        The integrity check reads the whole file (about 20 ms on a 30 MB history, at every
        command): a file nobody wrote since a close that left it whole needs no second look.
        """
        try:
            with open(self.path + "-checked", encoding="ascii") as fh:
                seen = fh.read().strip()
        except OSError:
            return False
        stamp = self._stamp()
        return bool(stamp) and seen == stamp

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row["value"]) > SCHEMA_VERSION:
            raise StateError(f"{self.path} was written by a newer Nexus (schema {row['value']}); upgrade nexus-core")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on error."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (checkpointing the WAL when this is the last one).

        When that leaves the file whole (no WAL pending), its size and time are noted beside
        it, so the next open can skip the integrity check of an unchanged file.
        """
        self.db.close()
        stamp = self._stamp()
        if stamp:
            try:
                with open(self.path + "-checked", "w", encoding="ascii") as fh:
                    fh.write(stamp)
            except OSError:
                pass  # only a check saved next time

    # --- writing ---------------------------------------------------------------------------

    def begin_run(
        self,
        run_id: str,
        nexusfile: str,
        nexusfile_hash: str,
        requested: list[str],
        options: Mapping[str, Any],
        plan: Mapping[str, Any],
    ) -> None:
        """Record a new run, marked running by this process."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO runs (id, nexusfile, nexusfile_hash, requested, options, plan, status, started,"
                " pid, machine) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (run_id, nexusfile, nexusfile_hash, json.dumps(sorted(requested)),
                 json.dumps(redact_data(dict(options))), json.dumps(redact_data(dict(plan))), time.time(),
                 os.getpid(), os.uname().nodename),
            )  # fmt: skip
            for name in plan.get("tasks", {}):
                cur.execute("INSERT INTO tasks (run_id, task, status) VALUES (?, ?, 'pending')", (run_id, name))

    def reopen_run(self, run_id: str, plan: Mapping[str, Any], nexusfile_hash: str) -> None:
        """Mark an interrupted run as running again (by this process), for resume."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'running', ended = NULL, exit_code = NULL, pid = ?, machine = ?,"
                " resumes = resumes + 1, plan = ?, nexusfile_hash = ? WHERE id = ?",
                (os.getpid(), os.uname().nodename, json.dumps(redact_data(dict(plan))), nexusfile_hash, run_id),
            )
            for name in plan.get("tasks", {}):
                cur.execute(
                    "INSERT OR IGNORE INTO tasks (run_id, task, status) VALUES (?, ?, 'pending')", (run_id, name)
                )

    def execute(self, sql: str, args: tuple[Any, ...]) -> None:
        """One statement in its own transaction (a checkpoint)."""
        with self.transaction() as cur:
            cur.execute(sql, args)

    def end_run(self, run_id: str, status: str, exit_code: int) -> None:
        """Record how the run ended."""
        self.execute(
            "UPDATE runs SET status = ?, ended = ?, exit_code = ? WHERE id = ?",
            (status, time.time(), exit_code, run_id),
        )

    def supersede(self, nexusfile: str, requested: list[str]) -> None:
        """A fresh run of the same tasks replaces interrupted ones: they are no longer offered."""
        rows = self.db.execute(
            "SELECT id, status, pid, machine FROM runs WHERE nexusfile = ? AND requested = ?"
            " AND status IN ('interrupted', 'running') ORDER BY started DESC LIMIT 20",
            (nexusfile, json.dumps(sorted(requested))),
        ).fetchall()
        here = os.uname().nodename
        for row in rows:
            if row["status"] == "running" and (row["machine"] != here or _pid_alive(row["pid"])):
                continue  # still running somewhere: not ours to supersede
            self.execute("UPDATE runs SET status = 'superseded' WHERE id = ?", (row["id"],))

    def cloud_instances(self, run_id: str) -> list[dict[str, Any]]:
        """The cloud instances a run started, with what each cost (see nexus_core.clouds)."""
        rows = self.db.execute(
            "SELECT provider, instance, agent, hourly_price, launched, ended, cost FROM cloud_instances "
            "WHERE run_id = ? ORDER BY launched",
            (run_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    #: Records of old finished runs removed by one call of :meth:`forget_finished` at most:
    #: a first run after an upgrade over years of history stays quick; later runs take the rest.
    FORGET_BATCH = 200
    #: Runs :meth:`forget_finished` removes, ended before ``?1``. A run ends after it starts:
    #: ``started < ?1`` lets the ``runs_by_status`` index answer without reading any plan.
    OLD_FINISHED = (
        "SELECT id FROM runs WHERE status IN ('ok', 'discarded', 'superseded') "
        "AND started < ?1 AND COALESCE(ended, started) < ?1 "
        # an ok run of some hosts (-H) holding notifications for the others stays for them
        "AND id NOT IN (SELECT run_id FROM notifications WHERE status NOT IN ('ok', 'carried'))"
    )

    def forget_finished(self, days: float) -> int:
        """Remove the records (with their tasks, hosts, commands and notifications) of runs that
        ended ``days`` ago or more and that nothing will resume: ``ok``, ``discarded`` and
        ``superseded`` (a run under way is ``running``: never one of them). Failed and
        interrupted runs stay, to be resumed or discarded. 0 days keeps everything. A read
        first: a run with nothing to forget takes no write lock. Best effort: a busy or
        read-only database only leaves the records for the next run. Returns how many runs went."""
        if days <= 0:
            return 0
        old = self.OLD_FINISHED
        limit = time.time() - days * 86400
        try:
            if self.db.execute(old + " LIMIT 1", (limit,)).fetchone() is None:
                return 0
            with self.transaction() as cur:
                batch = f"DELETE FROM runs WHERE id IN ({old} ORDER BY started LIMIT ?2)"
                cur.execute(batch, (limit, self.FORGET_BATCH))
                return max(0, cur.rowcount)
        except sqlite3.Error:
            return 0

    def discard(self, run_id: str) -> bool:
        """Mark a run discarded (never offered for resume again); False when unknown."""
        with self.transaction() as cur:
            cur.execute("UPDATE runs SET status = 'discarded' WHERE id = ?", (run_id,))
            return cur.rowcount > 0

    # --- planning cache (nexus_core.plan.DagCache) -------------------------------------------

    def cached_phases(self, key: str) -> list[list[str]] | None:
        """Phases stored for a graph shape, or None."""
        row = self.db.execute("SELECT phases FROM dag_cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else list(json.loads(row["phases"]))

    def cache_phases(self, key: str, phases: list[list[str]]) -> None:
        """Remember the phases of an acyclic graph shape (the 200 most recent are kept)."""
        try:
            with self.transaction() as cur:
                cur.execute(
                    "INSERT OR REPLACE INTO dag_cache (key, phases, used) VALUES (?, ?, ?)",
                    (key, json.dumps(phases), time.time()),
                )
                cur.execute(
                    "DELETE FROM dag_cache WHERE key NOT IN (SELECT key FROM dag_cache ORDER BY used DESC LIMIT 200)"
                )
        except sqlite3.OperationalError:
            pass  # a busy database only costs the next run a networkx import

    # --- reading ---------------------------------------------------------------------------

    def runs(self, limit: int = 50, nexusfile: str | None = None) -> list[RunRecord]:
        """The most recent runs, newest first (optionally of one nexusfile)."""
        sql = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if nexusfile:
            sql += " WHERE nexusfile = ?"
            args = (nexusfile,)
        sql += " ORDER BY started DESC LIMIT ?"
        rows = self.db.execute(sql, (*args, limit)).fetchall()
        return [self._load(row) for row in rows]

    def get(self, run_id: str) -> RunRecord | None:
        """One run by id (a unique prefix is enough), or None."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE id = ? OR id LIKE ? ORDER BY started DESC LIMIT 2",
            (run_id, run_id.replace("%", "") + "%"),
        ).fetchall()
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            return self._load(exact[0])
        return self._load(rows[0]) if len(rows) == 1 else None

    def ids_like(self, prefix: str, limit: int = 6) -> list[str]:
        """Ids of the runs whose id starts with ``prefix``, newest first, at most ``limit``."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ORDER BY started DESC LIMIT ?",
            (prefix.replace("%", "").replace("_", "") + "%", limit),
        ).fetchall()
        return [str(r["id"]) for r in rows if str(r["id"]).startswith(prefix)]

    def last_interrupted(self, nexusfile: str, requested: list[str]) -> RunRecord | None:
        """The newest interrupted (or crashed) run of this nexusfile and these tasks."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE nexusfile = ? AND requested = ? AND status IN ('interrupted', 'running')"
            " ORDER BY started DESC LIMIT 5",
            (nexusfile, json.dumps(sorted(requested))),
        ).fetchall()
        for row in rows:
            record = self._load(row)
            if record.interrupted:
                return record
        return None

    def _load(self, row: sqlite3.Row) -> RunRecord:
        rid = row["id"]
        record = RunRecord(
            id=rid,
            nexusfile=row["nexusfile"],
            nexusfile_hash=row["nexusfile_hash"],
            requested=json.loads(row["requested"]),
            options=json.loads(row["options"]),
            plan=json.loads(row["plan"]),
            status=row["status"],
            started=row["started"],
            ended=row["ended"],
            exit_code=row["exit_code"],
            pid=row["pid"],
            machine=row["machine"],
            resumes=row["resumes"],
        )
        for t in self.db.execute("SELECT * FROM tasks WHERE run_id = ?", (rid,)):
            record.tasks[t["task"]] = dict(t)
        for h in self.db.execute("SELECT * FROM hosts WHERE run_id = ?", (rid,)):
            record.hosts[(h["task"], h["host"])] = dict(h)
        for c in self.db.execute("SELECT * FROM commands WHERE run_id = ?", (rid,)):
            record.commands[(c["task"], c["host"], c["idx"])] = dict(c)
        for n in self.db.execute("SELECT * FROM notifications WHERE run_id = ? ORDER BY notified", (rid,)):
            record.notifications.setdefault((n["task"], n["host"]), {})[n["handler"]] = n["status"]
        return record

    def carry_notifications(self, from_run: str, to_run: str) -> None:
        """Move the handler notifications ``from_run`` left pending into ``to_run`` (a checkpoint).

        Every pending one moves, also those of hosts ``to_run`` does not run on (``-H``): they
        stay pending there for the run after it. In ``from_run`` they become ``carried``, so
        resuming it later does not run a handler twice."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO notifications (run_id, task, host, handler, status, notified)"
                " SELECT ?, task, host, handler, 'pending', ? FROM notifications WHERE run_id = ?"
                " AND status NOT IN ('ok', 'carried')",
                (to_run, time.time(), from_run),
            )
            cur.execute(
                "UPDATE notifications SET status = 'carried' WHERE run_id = ? AND status NOT IN ('ok', 'carried')",
                (from_run,),
            )

    def previous_pending(self, nexusfile: str, requested: list[str], run_id: str) -> RunRecord | None:
        """The run of the same tasks before ``run_id`` when it left handlers pending: it
        failed or was stopped, or it succeeded on some hosts only (``-H``) and holds the
        notifications it took over for the others."""
        row = self.db.execute(
            "SELECT * FROM runs WHERE nexusfile = ? AND requested = ? AND id != ? ORDER BY started DESC LIMIT 1",
            (nexusfile, json.dumps(sorted(requested)), run_id),
        ).fetchone()
        if row is None or row["status"] == "discarded":
            return None
        if row["status"] == "running" and _pid_alive(row["pid"]) and row["machine"] == os.uname().nodename:
            return None
        if (
            self.db.execute(
                "SELECT 1 FROM notifications WHERE run_id = ? AND status NOT IN ('ok', 'carried') LIMIT 1",
                (row["id"],),
            ).fetchone()
            is None
        ):
            return None
        return self._load(row)

    def integrity(self) -> list[str]:
        """Problems found by SQLite's integrity check and Nexus's own consistency rules."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"command {r['task']}/{r['host']}/{r['idx']} of run {r['run_id']} has no task row"
            for r in self.db.execute(
                "SELECT c.* FROM commands c LEFT JOIN tasks t ON t.run_id = c.run_id AND t.task = c.task"
                " WHERE t.task IS NULL"
            )
        ]
        problems += [
            f"task {r['task']} of run {r['run_id']} is ok but command {r['idx']} on {r['host']} is {r['status']}"
            for r in self.db.execute(
                "SELECT c.* FROM commands c JOIN tasks t ON t.run_id = c.run_id AND t.task = c.task"
                " WHERE t.status = 'ok' AND c.status NOT IN ('ok', 'failed', 'timeout')"
            )
        ]
        return problems


def _create(path: str) -> None:
    """Make a new, empty database at ``path`` whole or not at all: built beside it, then linked
    into place (``link`` fails when another process made one meanwhile: theirs stays). So an
    empty file at ``path`` is never a database being made, and :func:`_truncated` calls it
    damaged (``: > state.db`` lost every run without a word)."""
    tmp = f"{path}.new-{os.getpid()}-{threading.get_ident()}"
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")  # writes the header: the file is a database
        finally:
            db.close()
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except (OSError, sqlite3.Error):
        pass  # a file system without hard links, a folder it cannot write: SQLite makes (or fails) in place
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(tmp + suffix)


def _truncated(path: str) -> str:
    """Why the file is shorter than its header says ("" when it is not, or cannot tell).

    The header (first 100 bytes) records the page size and, when its "valid for" counter
    matches the change counter, the database size in pages: a file cut short (a full disk,
    a partial copy) is found without reading any page.
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return ""
    if not header and size == 0:
        return "the file is empty (0 bytes)"  # never a new one: those are made whole (see _create)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return ""  # not SQLite at all: SQLite itself says so
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages and header[24:28] == header[92:96] and size < pages * page_size:
        return f"the file is {size} bytes, its header says {pages * page_size} (truncated)"
    return ""
