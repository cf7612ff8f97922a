"""Status files left on hosts by runs that will never come back, and how they are removed.

Each run keeps, on each host, an entry named ``RUN_ID@HOST`` (a file, or a folder with the
run's output spool) under ``${XDG_CACHE_HOME:-$HOME/.cache}/nexus/runs`` (see
:mod:`nexus_core.markers`). A run that ends removes its own. Two kinds stay behind:

* runs that are **discarded** (``nexus pipelines discard``, or ``discard`` at the resume
  prompt) or **superseded** by a fresh run of the same tasks: they will never be resumed;
* runs that were **abandoned**: killed, never resumed, or whose host was unreachable when
  the run tried to clean up.

:func:`prune_script` is the shell text that removes both from one host: every entry of the
given run ids (whole entries: files or folders, whatever they hold) and every run entry
not modified for ``state_retention_days`` (default 7). An entry of a live run is written
each time one of its commands starts, so it stays young while the run goes on.

It runs in two places:

* ``nexus pipelines prune`` runs it on every host of the nexusfile (and this machine);
* a run runs it on each host, *instead of* its usual clean-up command, when that host was
  last pruned more than :data:`PRUNE_EVERY` seconds ago (the time is kept in the state
  store): no extra command per run, one ``find`` per host per day.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from nexus_core import markers
from nexus_core.markers import cleanup_line

if TYPE_CHECKING:
    from nexus_core.model import Host
    from nexus_core.state.store import StateStore

#: Days an abandoned run's entries stay on a host (config key ``state_retention_days``).
DEFAULT_RETENTION_DAYS = 7.0
#: Seconds between two prunes of one host by ordinary runs.
PRUNE_EVERY = 24 * 3600.0
#: Statuses of runs that will never be resumed: their entries can go at once.
GONE = ("discarded", "superseded")
#: The runs folder on a host, as a shell expression.
RUNS_DIR = markers.RUNS_DIR


def prune_script(run_ids: Iterable[str], retention_days: float, *, run_id: str = "", host: str = "") -> str:
    """Shell text removing the entries of ``run_ids`` and of runs idle for ``retention_days``.

    Prints one ``removed NAME`` line per entry it removes. With ``run_id``/``host`` it first
    removes that run's own status entry for the host, as the usual clean-up does. Only
    entries whose names start like a run id (a digit) are considered, so nothing else in
    the folder is touched.
    """
    minutes = max(1, round(retention_days * 24 * 60))
    lines = []
    if run_id:
        lines.append(cleanup_line(run_id, host) + " 2>/dev/null")
    lines.append(f'd={RUNS_DIR}; [ -d "$d" ] || exit 0; cd "$d" || exit 0')
    names = sorted({_safe(r) for r in run_ids if _safe(r)})
    if names:
        patterns = " ".join(f"{shlex.quote(n)}@* {shlex.quote(n)}" for n in names)
        lines.append(f'for e in {patterns}; do if [ -e "$e" ]; then rm -rf -- "$e" && echo "removed $e"; fi; done')
    # An entry is idle when neither it nor anything in it changed for the retention period.
    lines.append(
        f"find . -mindepth 1 -maxdepth 1 -name '[0-9]*' -mmin +{minutes} 2>/dev/null | while read -r e; do\n"
        f'  [ -n "$(find "$e" -mmin -{minutes} 2>/dev/null | head -n 1)" ] && continue\n'
        '  rm -rf -- "$e" && echo "removed ${e#./}"\n'
        "done; exit 0"
    )
    return "\n".join(lines)


def _safe(run_id: str) -> str:
    """A run id as it appears in entry names (the characters nexus_core.markers keeps)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def removed(lines: Sequence[str]) -> list[str]:
    """The entry names a :func:`prune_script` said it removed."""
    out = []
    for line in lines:
        if line.startswith("removed "):
            out.append(line[len("removed ") :].strip().removeprefix("./"))
    return out


def gone_runs(store: StateStore, retention_days: float) -> list[str]:
    """Ids of runs that will never be resumed, recorded within the retention period (newest first)."""
    since = time.time() - retention_days * 24 * 3600
    marks = ", ".join("?" for _ in GONE)
    rows = store.db.execute(
        f"SELECT id FROM runs WHERE status IN ({marks}) AND started >= ? ORDER BY started DESC LIMIT 200",
        (*GONE, since),
    ).fetchall()
    return [str(r[0]) for r in rows]


class HostPruner:
    """For a run: which hosts are due for a prune, the script to use, and when it was done.

    Given to the engine (``RunOptions.prune``), whose host threads call :meth:`script_for`
    and :meth:`done`. The state store is only used by the thread that creates the pruner
    (reading, here) and calls :meth:`save` after the run (writing): the run's recorder owns
    the connection meanwhile.
    """

    def __init__(self, store: StateStore, retention_days: float, run_id: str, hosts: Iterable[str]) -> None:
        self.store = store
        self.retention_days = retention_days
        self.run_id = run_id
        self._lock = threading.Lock()
        self._pruned: dict[str, float] = {}
        self._gone: list[str] = []
        now = time.time()
        try:
            rows = store.db.execute("SELECT host, at FROM host_prunes").fetchall()
            self._last = {str(r[0]): float(r[1]) for r in rows}
            if any(now - self._last.get(h, 0.0) >= PRUNE_EVERY for h in hosts):
                self._gone = gone_runs(store, retention_days)
        except Exception:  # noqa: BLE001 - pruning is housekeeping: never in the way of a run
            self._last = {}

    def script_for(self, host: Host) -> str | None:
        """The clean-up-and-prune script for ``host`` when it is due, else None (clean up as usual)."""
        with self._lock:
            if time.time() - self._last.get(host.label, 0.0) < PRUNE_EVERY:
                return None
            self._last[host.label] = time.time()  # one attempt per run, even if it fails
        return prune_script(self._gone, self.retention_days, run_id=self.run_id, host=host.label)

    def done(self, host: Host, ok: bool) -> None:
        """Note a successful prune of ``host`` (a failed one is tried again by the next run)."""
        if ok:
            with self._lock:
                self._pruned[host.label] = time.time()

    def save(self) -> None:
        """Record the hosts pruned during the run (call once the run is over)."""
        with self._lock:
            pruned, self._pruned = self._pruned, {}
        if not pruned:
            return
        try:
            with self.store.transaction() as cur:
                cur.executemany("INSERT OR REPLACE INTO host_prunes (host, at) VALUES (?, ?)", list(pruned.items()))
        except Exception:  # noqa: BLE001 - housekeeping
            pass


class PruneResult:
    """What a prune did on one host: the entries removed, or why it could not run."""

    def __init__(self, host: str, removed: list[str], error: str = "") -> None:
        self.host = host
        self.removed = removed
        self.error = error

    def to_dict(self) -> dict[str, object]:
        """Plain-data form for ``--format json``."""
        return {"host": self.host, "ok": not self.error, "removed": self.removed, "error": self.error or None}


def prune_hosts(
    hosts: Sequence[Host],
    executors: dict[str, type],
    config: dict[str, object],
    root: str,
    script: str,
    parallel: int = 10,
) -> list[PruneResult]:
    """Run ``script`` (from :func:`prune_script`) on each host with the run's executors, in parallel.

    A host whose executor keeps no status files, or that cannot be reached, is reported, never
    raised: pruning is housekeeping.
    """
    from concurrent.futures import ThreadPoolExecutor

    from nexus_core.api import Cancel, ExecutorContext
    from nexus_core.model import Command

    made: dict[str, object] = {}
    lock = threading.Lock()

    def executor(transport: str) -> object:
        with lock:
            if transport not in made:
                ctx = ExecutorContext(config=config, root=root, emit=lambda _e: None, run_id="prune")
                made[transport] = executors[transport](ctx)
            return made[transport]

    def one(host: Host) -> PruneResult:
        cls = executors.get(host.transport)
        if cls is None:
            return PruneResult(host.label, [], f"no executor for transport {host.transport!r}")
        if not getattr(cls, "supports_markers", False):
            return PruneResult(host.label, [])
        lines: list[str] = []
        try:
            ex = executor(host.transport)
            result = ex.run(  # type: ignore[attr-defined]
                host, Command(script, timeout=60), lambda _s, line: lines.append(line), cancel, 60.0
            )
        except Exception as exc:  # noqa: BLE001 - a plugin executor failed: report, go on
            return PruneResult(host.label, [], f"{type(exc).__name__}: {exc}")
        if not result.ok:
            return PruneResult(host.label, removed(lines), result.reason or result.status)
        return PruneResult(host.label, removed(lines))

    cancel = Cancel()  # Ctrl+C stops hosts still connecting at once (it waited for their timeouts)
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts))))
    try:
        return list(pool.map(one, hosts))
    except KeyboardInterrupt:
        cancel.raise_to(Cancel.KILL)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for ex in made.values():
            try:
                ex.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
