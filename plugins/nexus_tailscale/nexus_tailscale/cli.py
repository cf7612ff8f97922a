"""The CLI backend: ``tailscale status --json`` on this machine.

No credentials needed: the local daemon knows the peers this machine may reach (the ACLs
already applied). Failures become :class:`~nexus_tailscale.errors.TailscaleError` with the
fix: ``tailscale`` not installed (exit 2), the daemon not running or not answering (exit 3),
not logged in (exit 2), stopped (exit 3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from nexus_tailscale.devices import Tailnet, parse_status
from nexus_tailscale.errors import CONFIG, CONNECTION, TailscaleError

#: Where the macOS app keeps its CLI when it is not on PATH.
MACOS_CLI = "/Applications/Tailscale.app/Contents/MacOS/Tailscale"


def find_cli(configured: str | None = None) -> str | None:
    """The ``tailscale`` executable: ``configured`` (a path or a name on PATH), else PATH, else macOS's."""
    if configured:
        path = os.path.expanduser(configured)
        if os.sep in path:
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        return shutil.which(path)
    found = shutil.which("tailscale")
    if found:
        return found
    return MACOS_CLI if os.access(MACOS_CLI, os.X_OK) else None


def missing_cli(configured: str | None) -> TailscaleError:
    """The error for a ``tailscale`` that cannot be found."""
    if configured:
        return TailscaleError(
            f"tailscale_cli={configured!r} is not an executable file",
            hint="point config(tailscale_cli=...) at the tailscale binary, or leave it out to use PATH",
            exit_code=CONFIG,
        )
    return TailscaleError(
        "the tailscale CLI is not installed (no 'tailscale' on PATH)",
        hint="install Tailscale (https://tailscale.com/download) or set config(tailscale_cli=PATH); "
        "or use the API: TS_API_KEY=tskey-api-... or TS_OAUTH_ID/TS_OAUTH_SECRET",
        exit_code=CONFIG,
    )


def status(cli: str, timeout: float = 10.0) -> Tailnet:
    """Run ``CLI status --json`` and read its devices; raises :class:`TailscaleError`."""
    argv = [cli, "status", "--json"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise TailscaleError(
            f"'tailscale status --json' did not answer within {timeout:g} s",
            hint="check that tailscaled is healthy (tailscale status), "
            "or raise config(tailscale_timeout=...)",
            exit_code=CONNECTION,
        ) from exc
    except OSError as exc:
        raise TailscaleError(
            f"cannot run {cli}: {exc.strerror or exc}",
            hint="point config(tailscale_cli=...) at the tailscale binary",
            exit_code=CONFIG,
        ) from exc
    err = proc.stderr.strip()
    if proc.returncode != 0:
        last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
        if "tailscaled" in err or "connect to local" in err.lower() or "daemon" in err.lower():
            raise TailscaleError(
                "tailscaled is not running on this machine",
                context=[f"tailscale said: {last}"],
                hint="start it (sudo systemctl start tailscaled), then: tailscale up",
                exit_code=CONNECTION,
            )
        raise TailscaleError(
            "'tailscale status --json' failed",
            context=[f"tailscale said: {last}"],
            hint="run it yourself to see why: tailscale status",
            exit_code=CONNECTION,
        )
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise TailscaleError(
            "'tailscale status --json' printed no JSON",
            context=[
                f"first line: {proc.stdout.strip().splitlines()[0][:120]}"
                if proc.stdout.strip()
                else "(empty)"
            ],
            hint="is this tailscale 1.x? check: tailscale version",
            exit_code=CONFIG,
        ) from exc
    return parse_status(data)
