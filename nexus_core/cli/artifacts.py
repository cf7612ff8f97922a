"""``nexus artifacts [RUN_ID]``: the files tasks handed on to their dependents (nexus_core.artifacts)."""

from __future__ import annotations

import json
import time

import rich_click as click

from nexus_core.cli.application import ExitCode, fail, format_option, log_options, main, setup_logs
from nexus_core.complete import complete


@main.command("artifacts")
@click.argument("run_id", required=False, shell_complete=lambda *a: complete("run_ids", *a))
@format_option
@log_options
def artifacts_command(run_id: str | None, fmt: str, log_level: str | None = None, log_format: str = "text") -> None:
    """List the artifacts of RUN_ID (a unique prefix is enough), or every run that kept some.

    Artifacts live in $XDG_DATA_HOME/nexus/artifacts/RUN_ID/TASK/PATH; a successful run's are
    removed when it ends unless config(artifact_retention=DAYS) keeps them.
    """
    from nexus_core import artifacts as store

    setup_logs(log_level, log_format)
    ids = store.runs()
    if run_id is None:
        rows = []
        for rid in ids:
            entries = store.read_manifest(rid)
            info = store.run_info(rid)
            rows.append({"run_id": rid, "status": info.get("status", "running"), "files": len(entries),
                         "bytes": sum(e.size for e in entries), "updated": info.get("updated")})  # fmt: skip
        if fmt == "json":
            click.echo(json.dumps({"runs": rows}))
            return
        if not rows:
            click.echo(f"No artifacts kept (in {store.store_root()})")
            return
        for r in rows:
            click.echo(f"{r['run_id']}  {r['status']:<11} {r['files']:>5} file(s)  {_size(r['bytes'])}")
        return
    matches = [rid for rid in ids if rid == run_id] or [rid for rid in ids if rid.startswith(run_id)]
    if len(matches) != 1:
        why = "matches several runs: " + ", ".join(matches[:5]) if matches else "has no artifacts"
        fail(ExitCode.CONFIG, f"Run {run_id!r} {why}", suggestions=["List runs with artifacts: nexus artifacts"])
    rid = matches[0]
    entries = sorted(store.read_manifest(rid), key=lambda e: (e.task, e.path))
    info = store.run_info(rid)
    if fmt == "json":
        click.echo(json.dumps({"run_id": rid, "status": info.get("status", "running"), "folder": store.run_dir(rid),
                               "files": [e.to_dict() for e in entries]}))  # fmt: skip
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["updated"])) if info.get("updated") else "?"
    click.echo(f"Run {rid} ({info.get('status', 'running')}, updated {when}): {store.run_dir(rid)}")
    for e in entries:
        click.echo(f"  {e.task}  {e.path}  {_size(e.size)}  sha256:{e.sha256[:12]}  (from {e.host})")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
