"""Status folders that let Nexus ask a host what happened to a command after a crash.

Each command of a run is wrapped (:func:`nexus_core.shell.wrap`) so that, on the host that
runs it, the wrapper appends a line with its pid before the command starts (``KEY pid PID``)
and one with its exit code when it ends (``KEY rc CODE``). The lines go to one ``status``
file per run and host, in the run's status folder under the host user's cache dir
(``${XDG_CACHE_HOME:-$HOME/.cache}/nexus/runs/RUN_ID@HOST/``); beside it, each command's
output spool (``KEY.out``, ``KEY.err``), so a command outlives the controller and its output
can be shown on resume. On resume, :func:`probe_script` asks the host whether the command is
still running, finished (and with what code), was killed, or never started, and
:func:`spool_script` prints the end of its output. The folder is removed as soon as the host
has nothing left to run (:func:`cleanup_script`); everything of a run on a host is in it.

One status file, appended to, rather than a file per command: lines shorter than
``PIPE_BUF`` are appended atomically, so parallel tasks on one host never mix their lines.
The folder is made once per run and host (the first command's ``mkdir``).

Executors wrap the shell text they run *outside* ``sudo``, so the folder always belongs to
the connecting user. Public API for executor plugins.
"""

from __future__ import annotations

import re

from nexus_core.records import Record

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _name(run_id: str, host: str) -> str:
    return _SAFE.sub("_", run_id) + (f"@{_SAFE.sub('_', host)}" if host else "")


#: The runs folder on a host, as a shell expression (double-quoted).
RUNS_DIR = '"${XDG_CACHE_HOME:-$HOME/.cache}/nexus/runs"'


def status_dir(run_id: str, host: str = "") -> str:
    """The shell expression (double-quoted) of a run's status folder for one host.

    One folder per run and host (``RUN_ID@HOST``): several hosts may share a home (NFS,
    aliases of one machine), and one host's cleanup must not take another's files away.
    """
    return RUNS_DIR[:-1] + f'/{_name(run_id, host)}"'


#: Shell text, with ``$nexus_d`` set to a run's status folder: when a status *file* from
#: Nexus 0.1 is where the folder belongs (a run interrupted before an upgrade, now resumed),
#: it becomes the folder's ``status`` file, keeping its lines (same format). False otherwise.
OLD_LAYOUT = (
    '{ [ -f "$nexus_d" ] && mv -f "$nexus_d" "$nexus_d.v1" && mkdir -p -m 700 "$nexus_d" '
    '&& mv -f "$nexus_d.v1" "$nexus_d/status"; }'
)


def adopt_old_layout(folder: str) -> None:
    """:data:`OLD_LAYOUT` on this machine: a 0.1 status file at ``folder`` becomes ``folder/status``."""
    import os

    if os.path.isfile(folder):
        os.replace(folder, folder + ".v1")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.replace(folder + ".v1", os.path.join(folder, "status"))


def status_file(run_id: str, host: str = "") -> str:
    """The shell expression (double-quoted) of a run's status file for one host."""
    return status_dir(run_id, host)[:-1] + '/status"'


def key(task: str, host: str, index: int) -> str:
    """A word-safe key for one command of one task on one host."""
    return _SAFE.sub("_", f"{task}.{host}.{index}")


class Marker(Record):
    """Where a command's status lines go: its ``run_id`` and ``host`` file, under its ``key``."""

    __slots__ = ("run_id", "key", "host")
    run_id: str
    key: str
    host: str

    def __init__(self, run_id: str, key: str, host: str = "") -> None:
        self._init(run_id, key, host)


def _read_marker(run_id: str, marker_key: str, host: str) -> str:
    """Shell text setting ``$pid`` and ``$rc`` of a command from the run's status file
    (built-ins only; the last attempt counts: a ``pid`` line forgets an earlier ``rc``).
    A resume runs it while the run is being stopped too: the run's signals do not end it."""
    f, d, k = status_file(run_id, host), status_dir(run_id, host), marker_key
    return (
        f"trap '' INT TERM HUP; f={f}; [ -f {d} ] && f={d}; pid=; rc=\n"
        f'if [ -f "$f" ]; then while read -r k w v; do if [ "$k" = "{k}" ]; then '
        f'if [ "$w" = pid ]; then pid=$v; rc=; elif [ "$w" = rc ]; then rc=$v; fi; fi; done < "$f"; fi\n'
    )


def probe_script(run_id: str, marker_key: str, host: str = "") -> str:
    """Shell text printing ``finished CODE``, ``running``, ``killed`` or ``never`` for a command.

    Without an exit code, a command runs while its wrapper or any process of its group (the
    wrapper leads it) is alive: a signal can end the wrapper and leave the command that
    ignores it running, which a look at the wrapper alone took for stopped. Zombies do not
    count (a killed child its new parent has not reaped yet): where ``/proc`` is, a group
    that ``kill -0`` still finds is looked for a process that is not one."""
    return (
        _read_marker(run_id, marker_key, host)
        + _LIVE_GROUP
        + (
            'if [ -n "$rc" ]; then echo "finished $rc"; '
            'elif [ -n "$pid" ] && { kill -0 "$pid" 2>/dev/null || live_group "$pid"; }; then echo running; '
            'elif [ -n "$pid" ]; then echo killed; else echo never; fi'
        )
    )


#: Shell function: whether process group ``$1`` holds a process that is not a zombie
#: (``kill -0`` alone, where there is no ``/proc``). Fields of ``/proc/PID/stat`` after the
#: command's name: state, parent, group.
_LIVE_GROUP = (
    'live_group() { kill -0 "-$1" 2>/dev/null || return 1; [ -r /proc/self/stat ] || return 0; '
    'for f in /proc/[0-9]*/stat; do read -r s <"$f" 2>/dev/null || continue; s=${s##*") "}; '
    'set -- "$1" $s; [ "$2" != Z ] && [ "$4" = "$1" ] && return 0; done; return 1; }\n'
)


def signal_script(run_id: str, marker_key: str, signal_name: str, host: str = "") -> str:
    """Shell text sending ``signal_name`` (INT, TERM, KILL) to a command of the run that is
    still running: to its process group (its wrapper started it in a session of its own),
    else to its wrapper. Built-ins only; a finished or unknown command is left alone."""
    if signal_name not in ("INT", "TERM", "KILL"):
        raise ValueError(f"signal_script: no signal {signal_name!r}")
    return _read_marker(run_id, marker_key, host) + (
        f'if [ -z "$rc" ] && [ -n "$pid" ]; then kill -{signal_name} "-$pid" 2>/dev/null || '
        f'kill -{signal_name} "$pid" 2>/dev/null; fi; exit 0'
    )


def spool_name(marker_key: str, status: str) -> str:
    """Shell text setting ``$name`` to the name of a command's spool files (``NAME.out``, ``NAME.err``)
    and ``$gone`` non-empty when a later command of the run took them over.

    A command's spool is ``KEY.out``/``KEY.err``, unless its wrapper took the files of an
    earlier command whose output the controller had read (``reuse`` of
    :func:`nexus_core.shell.wrap`): it then wrote ``KEY out NAME`` to the status file
    ``status`` (a shell word), and a later command taking the same files writes such a line
    with its own key. Built-ins only; the last attempt of a command counts."""
    k = marker_key
    return (
        f'name={k}; gone=; if [ -f {status} ]; then while read -r a w v; do if [ "$a" = "{k}" ]; then '
        f'if [ "$w" = pid ]; then name={k}; gone=; elif [ "$w" = out ]; then name=$v; gone=; fi; '
        f'elif [ "$w" = out ] && [ "$v" = "$name" ]; then gone=1; fi; done < {status}; fi\n'
    )


#: What :func:`spool_script` prints for a command whose spool files a later command took.
SPOOL_TAKEN = "[output not kept on the host: it was shown when the command ran]"


def spool_script(run_id: str, marker_key: str, host: str = "", cap: int = 65536) -> str:
    """Shell text printing the last ``cap`` bytes of a command's stdout spool, then a line
    ``\\x1eNEXUS-SPOOL -``, then the end of its stderr spool (the format a wrapper with
    ``replay`` ends with; read it with :class:`nexus_core.shell.SpoolReader`). A spool longer
    than ``cap`` starts with a line saying how much was left out, and at a whole line. A spool
    a later command took over (:func:`spool_name`): :data:`SPOOL_TAKEN` instead."""
    d = status_dir(run_id, host)[:-1]
    k = marker_key
    cap = int(cap)
    end = (  # one spool's end: its size (one `wc`), the note, then whole lines only
        f'n=$(wc -c <"$f"); if [ "$n" -gt {cap} ]; then '
        f'echo "[... $((n - {cap})) bytes of output before this were not kept for the resume ...]"; '
        f'tail -c {cap} "$f" | tail -n +2; else cat "$f"; fi'
    )
    return (
        spool_name(k, status_file(run_id, host))
        + f'if [ -n "$gone" ]; then echo "{SPOOL_TAKEN}"; printf \'\\n\\036NEXUS-SPOOL -\\n\'; exit 0; fi\n'
        + f'o={d}/$name.out"; e={d}/$name.err"; if [ -f "$o" ]; then f=$o; {end}; fi; '
        f"printf '\\n\\036NEXUS-SPOOL -\\n'; "
        f'if [ -f "$e" ]; then f=$e; {end}; fi; exit 0'
    )


def cleanup_line(run_id: str, host: str = "") -> str:
    """Shell text removing a run's status folder for a host, to run inside a shell that goes on.

    A second ``rm`` only when the first left the folder: the run's spool keeper, leaving as
    the clean-up runs, may have written its pid file between the first's unlinks and its
    ``rmdir`` (a folder left behind on a few percent of hosts)."""
    d = status_dir(run_id, host)
    return f"rm -rf {d} 2>/dev/null || rm -rf {d}"


def cleanup_script(run_id: str, host: str = "") -> str:
    """Shell text removing a run's status folder for a host (``rm``, and again when needed,
    as :func:`cleanup_line`)."""
    d = status_dir(run_id, host)
    return f"rm -rf {d} 2>/dev/null || exec rm -rf {d}"


def local_status_dir(run_id: str, host: str = "") -> str:
    """The status folder of a run (for one host) on this machine, as a path."""
    import os

    from nexus_core.state.paths import cache_dir

    return os.path.join(cache_dir(), "runs", _name(run_id, host))


def local_status_file(run_id: str, host: str = "") -> str:
    """The status file of a run (for one host) on this machine, as a path."""
    import os

    return os.path.join(local_status_dir(run_id, host), "status")


class ProbeResult(Record):
    """What a host says about a command: ``state`` finished, running, killed, never or unknown."""

    __slots__ = ("state", "exit_code")
    state: str
    exit_code: int | None

    def __init__(self, state: str, exit_code: int | None = None) -> None:
        self._init(state, exit_code)


def exit_status(code: int) -> int:
    """The exit status a process gets for a shell's ``$?``: ``dash`` keeps ``exit 300`` as 300
    in ``$?`` (an EXIT trap sees it), the process exits 44, as every transport reports it."""
    return code & 0xFF if code > 255 else code


def parse_probe(lines: list[str]) -> ProbeResult:
    """Read the output of :func:`probe_script`."""
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "finished" and len(words) == 2 and words[1].lstrip("-").isdigit():
            return ProbeResult("finished", exit_status(int(words[1])))
        if words[0] in ("running", "killed", "never"):
            return ProbeResult(words[0])
    return ProbeResult("unknown")
