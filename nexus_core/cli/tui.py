"""``nexus tui [RUN_ID]``: the live dashboard of a recorded run (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import rich_click as click

from nexus_core.cli.application import ExitCode, closing, fail, log_options, main, no_run, open_store, setup_logs
from nexus_core.complete import complete

if TYPE_CHECKING:
    from nexus_core.state.store import RunRecord, StateStore


@main.command()
@click.argument("run_id", required=False, shell_complete=lambda *a: complete("run_ids", *a))
@log_options
def tui(run_id: str | None, log_level: str | None = None, log_format: str = "text") -> None:
    """Watch a run on the live dashboard, read-only: RUN_ID, or the newest running (else newest) run.

    A running pipeline is followed live from its recorded state and run logs; a finished one
    is shown as it ended. Needs a terminal and the tui extra (pip install 'nexus-core[tui]').
    """
    from nexus_core.logs import debug_enabled
    from nexus_core.tui import tui_refusal

    setup_logs(log_level, log_format)
    why = tui_refusal()
    if why:
        hints = ["Follow a run's output with: nexus logs --follow", "List runs with: nexus pipelines"]
        fail(ExitCode.CONFIG, f"The dashboard cannot start: {why}", suggestions=hints)
    store = open_store(required=True)
    assert store is not None
    with closing(store):
        record = store.get(run_id) if run_id else _newest(store)
        if record is None:
            hints = ["List runs with: nexus pipelines", "Start one on the dashboard: nexus run TASK --tui"]
            if run_id:
                no_run(store, run_id, hints)
            fail(ExitCode.CONFIG, "No runs recorded yet", suggestions=hints)
        from nexus_core import runlogs
        from nexus_core.state.paths import state_dir
        from nexus_core.tui.app import Dashboard
        from nexus_core.tui.attach import StatePoller
        from nexus_core.tui.feed import EventFeed

        feed = EventFeed()
        poller = StatePoller(store, record.id, runlogs.logs_dir(state_dir()), feed)
        poller.start()
        cluster = _cluster_watcher(record, feed)
        try:
            app = Dashboard(feed, show_tracebacks=debug_enabled())
            app.run()
        finally:
            poller.stop()
            if cluster is not None:
                cluster.stop()
        if app.crash:
            fail(ExitCode.FAILED, f"The dashboard stopped: {app.crash}",
                 suggestions=["Show the run's output with: nexus logs " + record.id])  # fmt: skip


def _newest(store: StateStore) -> RunRecord | None:
    """The newest run still going on this machine, else the newest run."""
    runs = store.runs(limit=50)
    for r in runs:
        if r.status == "running" and r.alive:
            return r
    return runs[0] if runs else None


def _cluster_watcher(record: RunRecord, feed: Any) -> Any:
    """The cluster panel of a running run on agents (the cluster's address from NEXUS_CLUSTER or a
    local agent: the nexusfile's config is not recorded); None otherwise."""
    import os

    from nexus_core.tui.cluster import ClusterWatcher, agent_lister

    if record.status != "running" or not record.alive:
        return None
    try:
        from nexus_core.cli.application import plugin_manager

        transports = [str(h.get("transport", "")) for h in record.plan.get("hosts", [])]
        lister = agent_lister(plugin_manager().registry, {}, os.path.dirname(record.nexusfile), transports)
    except Exception:  # noqa: BLE001 - no cluster panel then; watching the run is not concerned
        return None
    if lister is None:
        return None
    watcher = ClusterWatcher(lister, feed)
    watcher.start()
    return watcher
