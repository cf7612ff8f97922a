"""Status files that let Nexus ask a host what happened to a command after a crash.

Each command of a run is wrapped so that, on the host that runs it, the wrapper writes
its pid before the command starts and its exit code when it ends, into a per-run folder
under the host user's cache dir (``${XDG_CACHE_HOME:-$HOME/.cache}/nexus/runs/RUN_ID``).
On resume, :func:`probe_script` asks the host whether the command is still running,
finished (and with what code), was killed, or never started. The folder is removed at the
end of a successful run (:func:`cleanup_script`).

Executors call :func:`wrap` around the shell text they run, *outside* ``sudo``, so the
files always belong to the connecting user. Public API for executor plugins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def run_dir(run_id: str, host: str = "") -> str:
    """The shell expression (double-quoted) of a run's status folder for one host.

    One folder per run and host (``RUN_ID@HOST``): several hosts may share a home (NFS,
    aliases of one machine), and one host's cleanup must not take another's files away.
    """
    name = _SAFE.sub("_", run_id) + (f"@{_SAFE.sub('_', host)}" if host else "")
    return f'"${{XDG_CACHE_HOME:-$HOME/.cache}}/nexus/runs/{name}"'


def key(task: str, host: str, index: int) -> str:
    """A file-name-safe key for one command of one task on one host."""
    return _SAFE.sub("_", f"{task}.{host}.{index}")


@dataclass(frozen=True)
class Marker:
    """Which status files a command writes: its ``run_id`` and ``host`` folder, and its ``key``."""

    run_id: str
    key: str
    host: str = ""


def prologue(marker: Marker) -> str:
    """Shell lines to run first: create the folder (once per host and run), write our pid.

    Only shell built-ins run when the folder exists: the files of earlier commands stay
    until the folder is removed when the host is done.
    """
    d = run_dir(marker.run_id, marker.host)
    return f'nexus_d={d}; [ -d "$nexus_d" ] || mkdir -p "$nexus_d"; echo $$ > "$nexus_d/{marker.key}.pid"'


def epilogue(marker: Marker) -> str:
    """Shell lines to run last, with the command's exit code in ``$rc``."""
    return f'echo "$rc" > "$nexus_d/{marker.key}.rc"; exit "$rc"'


# Scripts that could replace the wrapper shell (exec) or take its EXIT trap over (trap).
_OWN_SHELL = re.compile(r"\b(?:exec|trap)\b")


def wrap(script: str, marker: Marker) -> str:
    """``script`` (complete shell text) run by a wrapper that records pid and exit code.

    The exit code is written by an ``EXIT`` trap of the shell that runs the script, so the
    wrapper costs no process at all: ``exit N``, ``set -e`` and syntax errors all reach the
    trap (dash and bash). A script that says ``exec`` or ``trap`` runs in a subshell
    instead (one fork), so that it cannot replace the wrapper or its trap.
    """
    if _OWN_SHELL.search(script):
        return f"{prologue(marker)}\n( {script}\n)\nrc=$?\n{epilogue(marker)}"
    return f"{prologue(marker)}; trap 'echo $? > \"$nexus_d/{marker.key}.rc\"' EXIT\n{script}"


def probe_script(run_id: str, marker_key: str, host: str = "") -> str:
    """Shell text printing ``finished CODE``, ``running``, ``killed`` or ``never`` for a command."""
    d = run_dir(run_id, host)
    k = marker_key
    return (
        f'd={d}; if [ -f "$d/{k}.rc" ]; then echo "finished $(cat "$d/{k}.rc")"; '
        f'elif [ -f "$d/{k}.pid" ] && kill -0 "$(cat "$d/{k}.pid")" 2>/dev/null; then echo running; '
        f'elif [ -f "$d/{k}.pid" ]; then echo killed; else echo never; fi'
    )


def cleanup_script(run_id: str, host: str = "") -> str:
    """Shell text removing a run's status folder for a host (one process: ``rm``)."""
    return f"exec rm -rf {run_dir(run_id, host)}"


def local_run_dir(run_id: str, host: str = "") -> str:
    """The status folder of a run (for one host) on this machine, as a path."""
    import os

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = _SAFE.sub("_", run_id) + (f"@{_SAFE.sub('_', host)}" if host else "")
    return os.path.join(cache, "nexus", "runs", name)


@dataclass(frozen=True)
class ProbeResult:
    """What a host says about a command: ``state`` finished, running, killed, never or unknown."""

    state: str
    exit_code: int | None = None


def parse_probe(lines: list[str]) -> ProbeResult:
    """Read the output of :func:`probe_script`."""
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "finished" and len(words) == 2 and words[1].lstrip("-").isdigit():
            return ProbeResult("finished", int(words[1]))
        if words[0] in ("running", "killed", "never"):
            return ProbeResult(words[0])
    return ProbeResult("unknown")
