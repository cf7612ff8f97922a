"""``nexus audit``: check a file sink's log (``verify``), compute a value's HMAC (``hash``), list sinks.

Exit codes of ``verify``: 0 the log is intact; 1 tampering or damage found (the first
altered, deleted, inserted or reordered record, or a truncation, by file and line); 2 the
log cannot be read or the command was misused.
"""

from __future__ import annotations

import json
import os
from typing import Any

import rich_click as click

from nexus_core.cli.application import Exit, ExitCode, fail, format_option, main


def _root() -> str | None:
    from nexus_core.loader import NexusfileNotFound, find_nexusfile

    try:
        return os.path.dirname(os.path.abspath(find_nexusfile(None)))
    except NexusfileNotFound:
        return None


def _sinks() -> list[Any]:
    from nexus_core.audit.config import AuditConfigError, load

    try:
        return load(_root())
    except AuditConfigError as exc:
        fail(ExitCode.CONFIG, exc.message, [exc.where], [exc.hint] if exc.hint else [])


@main.group("audit")
def audit_group() -> None:
    """The audit trail: verify a file sink's log, hash a value as the sinks record it.

    Sinks are declared in configuration files ([audit.sinks.NAME] tables; see the Compliance
    guide). Records carry the run id as correlation_id.
    """


@audit_group.command("sinks")
@format_option
def sinks_command(fmt: str) -> None:
    """List the declared audit sinks: name, type, policy and the file that declares each."""
    found = _sinks()
    rows = [{"name": s.name, "type": s.type, "required": s.required, "system": s.system, "where": s.where}
            for s in found]  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps({"sinks": rows}))
        return
    if not rows:
        click.echo("No audit sinks declared (add [audit.sinks.NAME] to a configuration file).")
        return
    for r in rows:
        policy = "required" if r["required"] else "optional"
        scope = ", system" if r["system"] else ""
        click.echo(f"{r['name']}  {r['type']}  {policy}{scope}  ({r['where']})")


@audit_group.command("hash")
@click.argument("value")
@click.option(
    "--sink", "sink_name", metavar="NAME", help="The sink whose salt to use (needed when several are declared)."
)
def hash_command(value: str, sink_name: str | None) -> None:
    """Print VALUE's HMAC-SHA256 with a sink's salt, as that sink's records show matchable values.

    Search the sink's records for the printed hmac-sha256:... to find where a value (a leaked
    secret, say) was used, without the value ever being in the log.
    """
    from nexus_core.audit.config import AuditConfigError, salt_of
    from nexus_core.audit.records import hmac_value

    found = _sinks()
    if not found:
        fail(
            ExitCode.CONFIG,
            "No audit sink is declared",
            [],
            ["Declare one: [audit.sinks.NAME] in a configuration file"],
        )
    if sink_name is None:
        if len(found) > 1:
            names = ["sinks: " + ", ".join(s.name for s in found)]
            fail(ExitCode.CONFIG, "Several audit sinks are declared: which salt?", names,
                 [f"nexus audit hash VALUE --sink {found[0].name}"])  # fmt: skip
        sink = found[0]
    else:
        match = [s for s in found if s.name == sink_name]
        if not match:
            fail(ExitCode.CONFIG, f"No audit sink named {sink_name!r}", ["sinks: " + ", ".join(s.name for s in found)],
                 ["Use one of the names above"])  # fmt: skip
        sink = match[0]
    try:
        salt = salt_of(sink)
    except AuditConfigError as exc:
        fail(ExitCode.CONFIG, exc.message, [exc.where], [exc.hint] if exc.hint else [])
    except OSError as exc:
        fail(ExitCode.CONFIG, f"cannot keep the salt of audit sink {sink.name!r}: {exc.strerror or exc}")
    click.echo(hmac_value(salt, value))


@audit_group.command("verify")
@click.argument("path", required=False, metavar="[PATH]")
@click.option(
    "--key", "key_path", metavar="FILE", help="The Ed25519 public (or private) key that signed the checkpoints."
)
@format_option
def verify_command(path: str | None, key_path: str | None, fmt: str) -> None:
    """Check that a file sink's log (and its rotated .gz files) is intact.

    Reports the FIRST altered, deleted, inserted or reordered record, or a truncation, by
    file and line. Without PATH, the log of the declared file sink. Exit codes: 0 intact,
    1 tampered or damaged, 2 cannot read (or misused).
    """
    from nexus_core.audit import chain

    sink_key: str | None = None
    if path is None:
        files = [s for s in _sinks() if s.type == "file" and s.options.get("path")]
        if len(files) != 1:
            fail(ExitCode.CONFIG, "Which log? " + ("no file sink is declared" if not files else "several file sinks"),
                 [f"{s.name}: {s.options['path']}" for s in files], ["nexus audit verify PATH"])  # fmt: skip
        path = os.path.expanduser(str(files[0].options["path"]))
        sink_key = files[0].options.get("key")
    else:
        for s in _safe_sinks():
            if s.type == "file" and os.path.abspath(
                os.path.expanduser(str(s.options.get("path", "")))
            ) == os.path.abspath(path):
                sink_key = s.options.get("key")
    from nexus_core.audit.config import audit_dir

    default_private = os.path.expanduser(str(sink_key)) if sink_key else os.path.join(audit_dir(), "signing.key")
    chosen = key_path or next((p for p in (default_private.removesuffix(".key") + ".pub", default_private)
                               if os.path.exists(p)), None)  # fmt: skip
    public = None
    if chosen:
        try:
            public = chain.load_public_key(chosen)
        except (OSError, ValueError) as exc:
            fail(
                ExitCode.CONFIG,
                f"cannot use the key {chosen}: {exc}",
                [],
                ["give --key PATH of the signing key's .pub"],
            )
    head = None
    head_file = chain.head_path(os.path.dirname(default_private), path)
    if os.path.exists(head_file):
        try:
            with open(head_file, encoding="utf-8") as fh:
                head = json.load(fh)
        except (OSError, ValueError):
            head = None
    finding = chain.verify(path, public, head)
    if finding.kind in ("missing", "unreadable"):
        if fmt == "json":
            click.echo(json.dumps(finding.to_dict()))
            raise Exit(ExitCode.CONFIG)
        fail(ExitCode.CONFIG, finding.message, [], ["nexus audit verify PATH (the file sink's path)"])
    if fmt == "json":
        click.echo(json.dumps(finding.to_dict()))
    elif finding.ok:
        click.echo(f"{path}: {finding.message}")
        for note in finding.notes:
            click.echo(f"  note: {note}")
    else:
        click.echo(f"{finding.file}:{finding.line}: {finding.kind}: {finding.message}")
        click.echo(f"  ({finding.records} records verified before it)")
        for note in finding.notes:
            click.echo(f"  note: {note}")
    if not finding.ok:
        raise Exit(ExitCode.FAILED)


def _safe_sinks() -> list[Any]:
    from nexus_core.audit.config import AuditConfigError, load

    try:
        return load(_root())
    except AuditConfigError:
        return []
