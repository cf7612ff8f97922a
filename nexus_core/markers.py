"""Status files that let Nexus ask a host what happened to a command after a crash.

Each command of a run is wrapped so that, on the host that runs it, the wrapper appends a
line with its pid before the command starts (``KEY pid PID``) and one with its exit code
when it ends (``KEY rc CODE``). The lines go to one file per run and host under the host
user's cache dir (``${XDG_CACHE_HOME:-$HOME/.cache}/nexus/runs/RUN_ID@HOST``). On resume,
:func:`probe_script` asks the host whether the command is still running, finished (and
with what code), was killed, or never started. The file is removed as soon as the host has
nothing left to run (:func:`cleanup_script`).

One file, appended to, rather than two new files per command: creating files is what
costs most on some disks (about 1 ms each seen on this project's CI machine), appending a
line costs almost nothing, and the ``runs`` folder is made once per user, not once per
run. Lines shorter than ``PIPE_BUF`` are appended atomically, so parallel tasks on one
host never mix their lines.

Executors call :func:`wrap` around the shell text they run, *outside* ``sudo``, so the
file always belongs to the connecting user. Public API for executor plugins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _name(run_id: str, host: str) -> str:
    return _SAFE.sub("_", run_id) + (f"@{_SAFE.sub('_', host)}" if host else "")


def status_file(run_id: str, host: str = "") -> str:
    """The shell expression (double-quoted) of a run's status file for one host.

    One file per run and host (``RUN_ID@HOST``): several hosts may share a home (NFS,
    aliases of one machine), and one host's cleanup must not take another's lines away.
    """
    return f'"${{XDG_CACHE_HOME:-$HOME/.cache}}/nexus/runs/{_name(run_id, host)}"'


def key(task: str, host: str, index: int) -> str:
    """A word-safe key for one command of one task on one host."""
    return _SAFE.sub("_", f"{task}.{host}.{index}")


@dataclass(frozen=True)
class Marker:
    """Where a command's status lines go: its ``run_id`` and ``host`` file, under its ``key``."""

    run_id: str
    key: str
    host: str = ""


def prologue(marker: Marker) -> str:
    """Shell text to run first: make the ``runs`` folder if needed, append our pid.

    Only shell built-ins run once the folder exists (from the first run on, for good).
    """
    f = status_file(marker.run_id, marker.host)
    make_dir = '[ -d "${nexus_f%/*}" ] || mkdir -p "${nexus_f%/*}"'
    return f'nexus_f={f}; {make_dir}; echo "{marker.key} pid $$" >> "$nexus_f"'


def epilogue(marker: Marker) -> str:
    """Shell lines to run last, with the command's exit code in ``$rc``."""
    return f'echo "{marker.key} rc $rc" >> "$nexus_f"; exit "$rc"'


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
    return f'{prologue(marker)}; trap \'echo "{marker.key} rc $?" >> "$nexus_f"\' EXIT\n{script}'


def probe_script(run_id: str, marker_key: str, host: str = "") -> str:
    """Shell text printing ``finished CODE``, ``running``, ``killed`` or ``never`` for a command.

    Built-ins only. The last attempt counts: a ``pid`` line forgets an earlier ``rc``.
    """
    f = status_file(run_id, host)
    k = marker_key
    return (
        f"f={f}; pid=; rc=\n"
        f'if [ -f "$f" ]; then while read -r k w v; do if [ "$k" = "{k}" ]; then '
        f'if [ "$w" = pid ]; then pid=$v; rc=; elif [ "$w" = rc ]; then rc=$v; fi; fi; done < "$f"; fi\n'
        f'if [ -n "$rc" ]; then echo "finished $rc"; '
        f'elif [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo running; '
        f'elif [ -n "$pid" ]; then echo killed; else echo never; fi'
    )


def cleanup_line(run_id: str, host: str = "") -> str:
    """Shell text removing a run's status file for a host, to run inside a shell that goes on."""
    return f"rm -f {status_file(run_id, host)}"


def cleanup_script(run_id: str, host: str = "") -> str:
    """Shell text removing a run's status file for a host (one process: ``rm``)."""
    return f"exec {cleanup_line(run_id, host)}"


def local_status_file(run_id: str, host: str = "") -> str:
    """The status file of a run (for one host) on this machine, as a path."""
    import os

    from nexus_core.state.paths import cache_dir

    return os.path.join(cache_dir(), "runs", _name(run_id, host))


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
