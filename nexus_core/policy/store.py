"""Approval requests and dry-run records in SQLite (the run-state database, or the policy's).

The tables are also part of the run-state schema (``nexus_core.state.store.SCHEMA``), so the
default database is the user's ``state.db``; a policy's ``[approvals] database`` puts them in
a file shared by requesters and approvers (created readable and writable by both: see the
threat model in docs/compliance.md).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nexus_core.state.store import POLICY_SCHEMA

#: The tables (part of the run-state schema).
SCHEMA = POLICY_SCHEMA


@dataclass(frozen=True)
class Approval:
    """One approval request and its state (pending, approved, rejected, cancelled or used)."""

    id: str
    requester: str
    tasks: tuple[str, ...]
    plan_hash: str
    nexusfile: str
    dry_run: str
    created: float
    expires: float
    status: str
    decided_by: str
    decided_at: float | None
    comment: str
    run_id: str

    def state(self, now: float) -> str:
        """The status, with ``expired`` for a pending or approved request past its expiry."""
        if self.status in ("pending", "approved") and now >= self.expires:
            return "expired"
        return self.status

    def to_dict(self, now: float) -> dict[str, Any]:
        """Plain data for ``--format json``."""
        return {
            "id": self.id,
            "requester": self.requester,
            "tasks": list(self.tasks),
            "plan_hash": self.plan_hash,
            "nexusfile": self.nexusfile,
            "created": self.created,
            "expires": self.expires,
            "status": self.state(now),
            "decided_by": self.decided_by,
            "comment": self.comment,
            "run_id": self.run_id,
        }


class ApprovalStore:
    """The approvals and dry-run tables of one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if not os.path.exists(path):  # shared between requesters and approvers: their umask must not decide
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                if path != _state_db():
                    os.chmod(path, 0o666)
            except OSError:
                pass
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def create(
        self, requester: str, tasks: Sequence[str], plan_hash: str, nexusfile: str, dry_run: str, now: float, ttl: float
    ) -> Approval:
        """Record a pending request; its id is short enough to type."""
        rid = uuid.uuid4().hex[:12]
        self.db.execute(
            "INSERT INTO approvals (id, requester, tasks, plan_hash, nexusfile, dry_run, created, expires, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            (rid, requester, json.dumps(list(tasks)), plan_hash, nexusfile, dry_run, now, now + ttl),
        )
        found = self.get(rid)
        assert found is not None
        return found

    def get(self, rid: str) -> Approval | None:
        """The request ``rid`` (None when unknown)."""
        row = self.db.execute("SELECT * FROM approvals WHERE id = ?", (rid,)).fetchone()
        return _approval(row) if row is not None else None

    def find(self, requester: str, plan_hash: str, now: float) -> Approval | None:
        """The newest unexpired pending or approved request of ``requester`` for ``plan_hash``."""
        row = self.db.execute(
            "SELECT * FROM approvals WHERE requester = ? AND plan_hash = ? AND status IN ('pending', 'approved')"
            " AND expires > ? ORDER BY status = 'approved' DESC, created DESC LIMIT 1",
            (requester, plan_hash, now),
        ).fetchone()
        return _approval(row) if row is not None else None

    def listing(self, now: float, everything: bool = False, limit: int = 50) -> list[Approval]:
        """Pending requests (``everything``: every request), newest first."""
        where = "" if everything else "WHERE status = 'pending' AND expires > ?"
        args: tuple[Any, ...] = () if everything else (now,)
        rows = self.db.execute(f"SELECT * FROM approvals {where} ORDER BY created DESC LIMIT {int(limit)}", args)
        return [_approval(r) for r in rows.fetchall()]

    def decide(self, rid: str, status: str, by: str, comment: str, now: float) -> bool:
        """Approve or reject a pending, unexpired request; False when it was no longer pending."""
        cur = self.db.execute(
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, comment = ?"
            " WHERE id = ? AND status = 'pending' AND expires > ?",
            (status, by, now, comment, rid, now),
        )
        return cur.rowcount == 1

    def use(self, rid: str, run_id: str) -> bool:
        """Mark an approved request as used by ``run_id`` (once)."""
        cur = self.db.execute(
            "UPDATE approvals SET status = 'used', run_id = ? WHERE id = ? AND status = 'approved'", (run_id, rid)
        )
        return cur.rowcount == 1

    def used_for(self, run_id: str, plan_hash: str) -> bool:
        """True when ``run_id`` started with an approval of ``plan_hash``."""
        row = self.db.execute(
            "SELECT 1 FROM approvals WHERE run_id = ? AND plan_hash = ? AND status = 'used' LIMIT 1",
            (run_id, plan_hash),
        ).fetchone()
        return row is not None

    def cancel(self, rid: str) -> None:
        """The requester gave up waiting (Ctrl+C): the request can no longer be approved."""
        self.db.execute("UPDATE approvals SET status = 'cancelled' WHERE id = ? AND status = 'pending'", (rid,))

    def record_dry_run(self, user: str, plan_hash: str, tasks: Sequence[str], now: float) -> None:
        """Remember that ``user`` dry-ran ``plan_hash`` at ``now``."""
        self.db.execute("INSERT INTO dry_runs VALUES (?, ?, ?, ?)", (user, plan_hash, json.dumps(list(tasks)), now))

    def last_dry_run(self, user: str, plan_hash: str) -> float | None:
        """When ``user`` last dry-ran ``plan_hash`` (None: never)."""
        row = self.db.execute(
            "SELECT MAX(at) FROM dry_runs WHERE user = ? AND plan_hash = ?", (user, plan_hash)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None


def _approval(row: sqlite3.Row) -> Approval:
    data = dict(row)
    data["tasks"] = tuple(json.loads(data["tasks"]))
    return Approval(**data)


def _state_db() -> str:
    from nexus_core.state.paths import state_db

    return state_db()
