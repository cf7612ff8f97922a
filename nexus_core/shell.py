"""Shell text for every shell transport: quoting, ``sudo=``, ``env=``, ``cwd=``, status files, spools.

Every executor that hands a command to ``/bin/sh`` (the local machine, a remote login session in exec or shell
mode, later an agent or a cloud "run command" API) builds its text here, so a command means
the same on every transport. Public API for executor plugins.

Three layers, each usable alone:

* :func:`body`: the user's command with its options. ``cwd`` becomes ``cd -- DIR || exit 1``,
  ``env`` becomes ``export NAME=VALUE`` (names must be shell names, values are quoted with
  :func:`shlex.quote`), ``sudo``/``user`` run the rest as ``sudo -n [-u USER] -- /bin/sh -c
  ...`` (``sudo -S -p ''`` when the transport feeds a password on stdin; sudo never prompts).
  The command itself runs through ``eval`` unchanged: a syntax error stays contained. A
  command of several lines stops at its first failing line (``set -e``), as a script would
  be expected to; ``set +e`` on a line of its own turns that off again.
* :func:`wrap`: the status-file wrapper (:mod:`nexus_core.markers`): the shell records its
  pid before the command and its exit code after, in the run's status folder on the host,
  outside any sudo. With ``spool=True`` the command's stdout and stderr go to two files in
  that folder (``KEY.out``, ``KEY.err``) instead of to the transport's pipes: a command then
  outlives the controller (a pipe to a dead ``nexus`` would kill it with SIGPIPE at its next
  line), and its output is still there to show on resume. ``replay=True`` (remote
  transports) ends the wrapper by writing the spools to its stdout (a small one with the
  shell's own ``read``, a larger one with ``exec cat``: see :func:`_replay`); the output
  reaches the controller at the end, after a line
  ``\\x1eNEXUS-SPOOL RC`` that separates the two streams and carries the exit code
  (:class:`SpoolSplitter` reads it back). Controllers that can read the files themselves
  (the local executor) use ``replay=False`` and follow the files while the command runs.
* :func:`build`: both, as one ``exec /bin/sh -c '...'`` string for a login shell of any kind.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Sequence

from nexus_core import markers
from nexus_core.markers import Marker
from nexus_core.options import USER_NAME

#: Start of the line that ends a replayed stdout spool; the exit code follows (``-``: unknown).
SPOOL_END = "\x1eNEXUS-SPOOL "
#: Start of the line that stands for the front of a spool the keeper cut; the offset of what
#: follows it in the spool file comes after (see :func:`keeper_script`).
SPOOL_CUT = "\x1eNEXUS-CUT "
#: Default of the ``spool_max_bytes`` config key: each spool file on a host holds at most about
#: this much while its command runs (the keeper cuts the front, keeping the last half).
SPOOL_MAX_BYTES = 4 << 20
#: Seconds between two looks of the keeper at a run's spools.
KEEPER_TICK = 1
#: Looks in a row without a running command of the run after which the keeper leaves (its
#: first look, as it starts, counts as the last but one: see :func:`keeper_script`).
KEEPER_IDLE = 2
#: Start of the process-group line a remote command prints first (see :func:`body`).
PG_MARKER = "\x1eNEXUS-PG "
#: Last word of a spooled wrapper's process-group line when its spool went to an earlier
#: command's files (``reuse`` of :func:`wrap`).
PG_REUSED = "reused"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Scripts that could replace the wrapper shell (exec) or take its EXIT trap over (trap).
_OWN_SHELL = re.compile(r"\b(?:exec|trap)\b")
_PG_PRINTF = "printf '\\036NEXUS-PG %s %s\\n'"
_PG_REUSED_PRINTF = f"printf '\\036NEXUS-PG %s %s {PG_REUSED}\\n'"


class CommandError(ValueError):
    """A command option that cannot be turned into safe shell text."""


def quote(value: str) -> str:
    """``value`` as one shell word (:func:`shlex.quote`)."""
    return shlex.quote(value)


def sudo_words(password: bool, user: str | None = None) -> str:
    """``sudo -n`` (never prompt) or ``sudo -S -p ''`` (password on stdin), with ``-u USER``."""
    if user is not None and not USER_NAME.match(user):
        raise CommandError(f"invalid user name {user!r} for sudo")
    words = "sudo -S -p ''" if password else "sudo -n"
    return words + (f" -u {quote(user)}" if user else "")


def _stop_at_first_failure(cmd: str) -> str:
    """``set -e`` before a command of several lines (one line: unchanged)."""
    return "set -e\n" + cmd if "\n" in cmd.strip() else cmd


def body(
    cmd: str,
    *,
    sudo: bool = False,
    user: str | None = None,
    env: Sequence[tuple[str, str]] = (),
    cwd: str | None = None,
    sudo_password: bool = False,
    pg: bool = False,
    shell: str = "/bin/sh",
    stdin: bool = False,
) -> str:
    """Shell text running ``cmd`` with its options (see the module docstring).

    ``pg``: first print ``\\x1eNEXUS-PG OUTER INNER`` on stderr: the process groups a remote
    controller signals to stop the command (``OUTER`` the shell the transport started,
    ``INNER`` the shell after sudo, which leads its own session under sudo's ``use_pty``).
    ``shell``: the shell sudo runs the command with. ``stdin``: the command reads the
    transport's standard input (after the password line, which it must skip itself), so it
    is not pointed at ``/dev/null``.
    """
    inner: list[str] = []
    if pg:
        inner.append(f'{_PG_PRINTF} "$NEXUS_PG_OUTER" "$$" >&2')
    if cwd:
        inner.append(f"cd -- {quote(cwd)} || exit 1")
    for name, value in env:
        if not _ENV_NAME.match(name):
            raise CommandError(f"invalid environment variable name {name!r}")
        inner.append(f"export {name}={quote(str(value))}")
    if pg:
        inner.append("unset NEXUS_PG_OUTER")
    elevated = sudo or bool(user)
    if elevated and sudo_password and not stdin:
        inner.append("exec </dev/null")  # an unread password line must never reach the command
    # eval, not another `sh -c`: one exec less per command; a syntax error in the command
    # is still contained (eval fails, the wrapper reports its exit code).
    inner.append(f"eval {quote(_stop_at_first_failure(cmd))}")
    inner_text = "\n".join(inner)
    if not elevated:
        return ('NEXUS_PG_OUTER="$$"\n' if pg else "") + inner_text
    words = sudo_words(sudo_password, user)
    if not pg:
        return f"exec {words} -- {quote(shell)} -c {quote(inner_text)}"
    # sudo resets the environment: pass the outer pgid as an argument instead.
    return f"exec {words} -- {quote(shell)} -c " + quote('NEXUS_PG_OUTER="$1"; shift\n' + inner_text) + ' nexus "$$"'


def wrap(
    script: str,
    marker: Marker,
    *,
    spool: bool = False,
    replay: bool = True,
    status_dir: str | None = None,
    pg: bool = False,
    spool_max: int | None = None,
    keeper_arg: bool = False,
    keeper_stay: bool = False,
    reuse: tuple[str, int] | None = None,
) -> str:
    """``script`` (complete shell text) run by a wrapper that records pid and exit code.

    The exit code is written by an ``EXIT`` trap of the shell that runs the script, so the
    wrapper costs no process at all: ``exit N``, ``set -e`` and syntax errors all reach the
    trap (dash and bash). A script that says ``exec`` or ``trap`` runs in a subshell
    instead (one fork), so that it cannot replace the wrapper or its trap.

    ``spool``: the script's output goes to the command's spool files (module docstring);
    ``replay``: then ``cat`` them to the wrapper's stdout at the end. ``status_dir``: the
    run's status folder as a shell word (default: :func:`markers.status_dir`, under the
    host user's cache). ``pg``: print ``\\x1eNEXUS-PG PID PID`` on stderr before the output
    moves to the spool, so a controller can signal the command while it runs.
    ``spool_max``: bound the run's spools on the host to about that many bytes each while
    the command runs, whatever becomes of the controller (see :func:`keeper_script`): the
    wrapper starts the run's keeper when none is alive (two built-ins per command).
    ``keeper_arg``: the keeper's text is not in the wrapper but its first argument (``$1``,
    shifted away before the command runs): a session shell holding it passes it to every
    command (:func:`keeper_start`); so is the replay's, the second (eval'd by the ``EXIT``
    trap): 1.5 KB that each command's line no longer carries to the host, where the session
    shell and the command's ``sh`` each read it (docs/decisions.md, "The replay's text"). The
    second holds the replay's usual paths only; the third, the whole replay, is parsed only
    by a command that needs it (:func:`_replay`'s ``rare``).
    ``keeper_stay``: more commands of the run follow on the host; a keeper this command starts
    stays for them instead of leaving at its first look (see :func:`keeper_script`).
    ``reuse``: (``NAME``, ``PGID``) the spool files ``NAME.out``/``NAME.err`` of an earlier
    command of the run on the host, whose output the controller has read whole, and that
    command's process group: when nothing of that group is left (a job it started in the
    background could still write to them), the spool goes to those files, truncated, instead
    of two new ones; a line ``KEY out NAME`` in the status file says so (:func:`spool_name`),
    and the process-group line ends with :data:`PG_REUSED`. New files cost the host more than
    the rest of a short command's spool together (ext4's inode allocation: docs/decisions.md,
    "Spool files reused on hosts").
    """
    k = marker.key
    d = status_dir or markers.status_dir(marker.run_id, marker.host)
    # Mode 0700 for the run's folder and the runs folder: the spools hold what commands print
    # (a `sudo` command's output, a secret's value before it is masked), and homes are often
    # 0755 (docs/decisions.md, "A sixth black-box trial": spools readable by every user).
    made = f'[ -d "$nexus_d" ] || {markers.OLD_LAYOUT} || mkdir -p -m 700 "${{nexus_d%/*}}" "$nexus_d"'
    folder = f"nexus_d={d}; {made}"
    pid = f'echo "{k} pid $$" >> "$nexus_d/status"'
    keeper = ""
    if spool_max:
        keeper += "; " + keeper_start(spool_max, from_arg=keeper_arg, stay=keeper_stay)
    if keeper_arg:  # the keeper's text ($1), the replay's ($2) and its rare paths' ($3): kept from the command
        keeper += '; nexus_r=$2; nexus_R=$3; [ "$#" -lt 3 ] || shift 3'
    record = f'echo "{k} rc $nexus_rc" >> "$nexus_d/status"'
    own = bool(_OWN_SHELL.search(script))
    if not spool:
        pro = f"{folder}; {pid}{keeper}"
        if own:
            return f'{pro}\n( {script}\n)\nnexus_rc=$?\n{record}; exit "$nexus_rc"'
        return f"{pro}; trap 'nexus_rc=$?; {record}' EXIT\n{script}"
    # The spools' paths are named once: the replay names them a dozen times (a shorter text
    # for the host's shells to read, twice per command in session mode).
    out, err = '"$nexus_o"', '"$nexus_e"'
    if replay:
        end = 'eval "$nexus_r"' if keeper_arg else _replay_text()
    else:
        end = 'exit "$nexus_rc"'
    # The spools are emptied by a built-in of their own (`command :`, not fatal), then opened
    # for appending: a file emptied by the descriptor that then writes it is written to disk
    # when that descriptor closes (ext4's auto_da_alloc: a flush per command, ~30-90 µs of
    # the host's CPU here; docs/decisions.md, "The spool's parse and flush"). A folder removed
    # under a running run (by hand) is made again, not fatal (the shell's one-line complaint
    # then reaches the command's stderr; silencing it would cost every command an open of
    # /dev/null and five calls to save and restore fd 2).
    redirect = f"4>&1 >>{out} 2>>{err}"
    files = f'nexus_o="$nexus_d/{k}.out"; nexus_e="$nexus_d/{k}.err"; {pid}'
    files += f'; {_PG_PRINTF} "$$" "$$" >&2' if pg else ""
    if reuse is not None:
        name, group = markers._SAFE.sub("_", reuse[0]), int(reuse[1])
        # The pid line and the line naming the files taken: one write to the status file.
        taken = (
            f'nexus_o="$nexus_d/{name}.out"; nexus_e="$nexus_d/{name}.err"; '
            f'printf \'{k} pid %s\\n{k} out {name}\\n\' "$$" >>"$nexus_d/status"'
        )
        taken += f'; {_PG_REUSED_PRINTF} "$$" "$$" >&2' if pg else ""
        # Built-ins only: `kill -0` fails once no process of the group is left (or none of it
        # is ours, which only a sudo command's could be: those are never offered).
        files = f"if [ {group} -gt 1 ] && ! kill -0 -{group} 2>&-; then {taken}; else {files}; fi"
    # The pid line comes before the keeper's start: a keeper this command starts sees it running.
    start = f'{folder}; {files}{keeper}; command : >{out} 2>{err} || mkdir -p -m 700 "$nexus_d"; exec {redirect}'
    if own:
        return f"{start}\n( {script}\n) 4>&-\nnexus_rc=$?; {record}; {end}"
    # A group, not `eval`: the body is Nexus's own text (the command in it is eval'd already),
    # so it is parsed once and sent unquoted.
    return f"{start}; trap 'nexus_rc=$?; {record}; {end}' EXIT\n{{ {script}\n}} 4>&-"


#: Largest stdout spool (in 512-byte blocks) replayed by the shell's own ``read``, without
#: starting ``cat`` (see :func:`_replay`).
SMALL_SPOOL_BLOCKS = 2


def _from_cut(path: str, cut: str, fd: str) -> str:
    """Shell text writing ``path`` to ``fd``: all of it, or, once the keeper cut its front
    (a ``.cut`` file holds the offset), a :data:`SPOOL_CUT` line and what follows the cut."""
    return (
        f"if [ -f {cut} ] && read nexus_c <{cut}; then "
        f'printf "\\036NEXUS-CUT %s\\n" "$nexus_c" >&{fd}; exec tail -c +$((nexus_c+1)) {path} >&{fd} 4>&-; '
        f"else exec cat {path} >&{fd} 4>&-; fi"
    )


def _replay(out: str, err: str, out_cut: str, err_cut: str, rare: str | None = None) -> str:
    """Shell text ending a spooled wrapper: the spools on fd 4, stdout's with its end line.

    Nothing printed: only the end line. A small stdout spool (at most
    :data:`SMALL_SPOOL_BLOCKS` blocks: the usual one-line answer) is replayed with the
    shell's ``read``, which costs no process; ``cat`` would cost an ``exec`` per command,
    about 1.4 ms of the host's CPU here (see docs/decisions.md). Its size is learnt without
    a process too: under a soft file-size limit of that many blocks, appending one newline
    (the first byte of the end line) fails when the file is larger. Larger spools, a shell
    without ``ulimit -S``, or a hard limit that could not be lifted again: ``cat``. Either
    way the stdout spool ends with the end line, as the follower and resume expect. The
    shell's ``read`` drops NUL bytes: a small binary answer loses them. The file is complete
    before anything is replayed: a reader gone (the controller killed) loses nothing.

    What the replay adds to the stdout spool (the newline, the end line) it writes on fd 1,
    which is that spool opened for appending (:func:`wrap`): no open per write.

    The replay's own messages (a refused ``ulimit``, a write over the limit) go nowhere: fd 2
    is pointed at ``/dev/null`` once for the rest of the wrapper (the command is over; its
    stderr spool is replayed on fd 4), not around each step. A small spool is read before its
    end line is appended, and the end line printed from memory: ``read`` takes one system
    call per byte, and the end line is 15 bytes (docs/decisions.md, "The spool's replay").

    ``rare``: the text only of the usual cases (nothing printed, or a small stdout and no
    stderr), running ``rare`` (the whole replay, from a variable) for the others: the host's
    shell parses every command's replay, and parsing the whole of it cost more than running
    it (docs/decisions.md, "The spool's parse and flush").
    """
    sep = 'printf "\\n\\036NEXUS-SPOOL %s\\n" "$nexus_rc"'
    last = 'printf "\\036NEXUS-SPOOL %s\\n" "$nexus_rc"'
    probe = f'ulimit -S -f unlimited && ulimit -S -f {SMALL_SPOOL_BLOCKS} && printf "\\n" && ulimit -S -f unlimited'
    # The lines are gathered and written at once: one write, one message of a remote transport
    # to the controller (a printf per line cost a message each: three for a one-line answer).
    small = (
        f'nexus_s=; while IFS= read -r nexus_l; do nexus_s="$nexus_s$nexus_l\n"; done <{out}; '
        f'{last}; printf "%s\\036NEXUS-SPOOL %s\\n" "$nexus_s" "$nexus_rc" >&4'
    )
    # A spool the keeper cut (longer than spool_max_bytes) is replayed from the cut.
    whole = _from_cut(out, out_cut, "4")
    large = f"ulimit -S -f unlimited; {sep}; [ -s {err} ] || {{ {whole}; }}; ( {whole} )"
    stdout = (
        f'if [ -s {out} ]; then trap "" XFSZ; if {probe}; then {small}; else {large}; fi; else {sep}; {sep} >&4; fi'
    )
    if rare is not None:
        return (
            f"command exec 2>/dev/null; if [ -s {err} ]; then {rare}; elif [ -s {out} ]; then "
            f'trap "" XFSZ; if {probe}; then {small}; else {rare}; fi; else {sep} >&4; fi'
        )
    stderr = f"if [ -s {err} ]; then {_from_cut(err, err_cut, '4')}; fi"
    return f"command exec 2>/dev/null; if [ -s {out} ] || [ -s {err} ]; then {stdout}; {stderr}; else {sep} >&4; fi"


def dropped_note(size: int) -> str:
    """The line standing for ``size`` bytes of output the spool keeper gave back before anyone
    read them (``spool_max_bytes``): one text for every reader, local or remote."""
    return f"[... {size} bytes of output dropped (spool_max_bytes) ...]"


def keeper_script() -> str:
    """Shell text of a run's spool keeper on one host (``$1`` the status folder, ``$2`` the bound,
    ``$3`` non-empty when more commands of the run follow on the host).

    One process per run and host, started by the wrapper of a command when none is alive, in
    a session of its own so that signals to a command's process group never reach it. It
    keeps the status file open and reads only the lines added since its last look (a
    command's ``pid`` line when it starts, its ``rc`` line when it ends), so it knows which
    commands of the run are running without reading the file again; ``kill -0`` drops one
    killed before its ``rc`` line. While one runs, every :data:`KEEPER_TICK` s one ``find``
    lists the spools whose disk use passed the bound; each has its front given back to the
    file system (``fallocate --punch-hole``: the size and every reader's offset stay, the
    blocks go), keeping the last half of the bound, and the offset of the cut is written to
    ``KEY.out.cut`` / ``KEY.err.cut`` for the readers (:func:`follow_script`, the replay).

    It looks once as soon as it starts: started by the run's first command on the host and
    that command already over (one short command per host: most runs over a fleet), it
    leaves at once, having started nothing (no ``sleep``, no ``find``), unless ``$3`` says
    that more commands follow (the task has more on the host: they would start it again, two
    programs more per host); started again later in the run (commands one after another), it
    stays as after any command. It leaves when
    the folder is gone (the host's end of the run, or pruning) or after :data:`KEEPER_IDLE`
    looks in a row without a running command. Leaving, it empties its pid file and looks
    once more: a command that started meanwhile saw it alive and started no other, so it
    stays for that one. Needs GNU ``find`` and util-linux
    ``fallocate`` (without them, nothing is bounded).
    """
    # (No single quote in the keeper's text: quoted twice, each would cost 17 characters.)
    return (
        'd=$1; max=$2; stay=$3; keep=$((max / 2)); idle=-1; seen=0; live=; trap "" HUP INT TERM PIPE\n'
        'exec 5<"$d/status" || exit 0\n'
        # Never a pid file in a folder being removed: a file made there between the clean-up's
        # unlinks and its rmdir left the run's folder behind (the wrapper wrote one already).
        '[ -f "$d/.keeper" ] || exit 0; echo $$ >"$d/.keeper"\n'
        "while :; do\n"
        # What started or ended since the last look (dash reads a byte per call: each once).
        "  while read -r k w n <&5; do\n"
        "    seen=$((seen + 1))\n"
        '    if [ "$w" = pid ]; then live="$live $k:$n"\n'
        '    elif [ "$w" = rc ]; then l=; for e in $live; do [ "${e%%:*}" = "$k" ] || l="$l $e"; done; live=$l\n'
        "    fi\n"
        "  done\n"
        '  l=; for e in $live; do kill -0 "${e#*:}" 2>/dev/null && l="$l $e"; done; live=$l\n'
        # The first look: the first command of the run here (its own lines only) leaves at once
        # when over; started again in a run of several commands, it waits as after a command.
        f'  [ "$idle" -ge 0 ] || if [ "$seen" -gt 2 ] || [ -n "$stay" ]; then idle=0; else idle={KEEPER_IDLE - 1}; fi\n'
        '  if [ -n "$live" ]; then idle=0\n'
        f'  elif [ "$((idle += 1))" -ge {KEEPER_IDLE} ]; then\n'
        # Leaving: give the claim up, then look once more (see the docstring).
        '    [ -f "$d/.keeper" ] && : >"$d/.keeper" || exit 0\n'
        "    while read -r k w n <&5; do\n"
        '      [ "$w" = pid ] && kill -0 "$n" 2>/dev/null && live="$live $k:$n"\n'
        "    done\n"
        '    [ -n "$live" ] && [ ! -s "$d/.keeper" ] || exit 0\n'
        '    echo $$ >"$d/.keeper"; idle=0\n'
        "  fi\n"
        f"  sleep {KEEPER_TICK} || exit 0\n"
        '  [ -d "$d" ] || exit 0\n'
        '  [ -z "$live" ] && continue\n'
        # One find a tick while a command runs, read without a pipeline (no subshell).
        '  found=$(find "$d" -maxdepth 1 -type f \\( -name "*.out" -o -name "*.err" \\)'
        ' -size +"$max"c -printf "%s %b %p\\n" 2>/dev/null)\n'
        '  [ -z "$found" ] || while read -r s b f; do\n'
        '    [ "$((b * 512))" -gt "$max" ] || continue\n'
        "    c=$(((s - keep) / 65536 * 65536))\n"
        '    [ "$c" -gt 0 ] && fallocate -p -o 0 -l "$c" "$f" 2>/dev/null && echo "$c" >"$f.cut"\n'
        "  done <<NEXUS_FOUND\n"
        "$found\n"
        "NEXUS_FOUND\n"
        "done"
    )


def keeper_start(spool_max: int, from_arg: bool = False, stay: bool = False) -> str:
    """Wrapper text starting the run's spool keeper unless it is alive (``$nexus_d`` set).

    A test and two built-ins when it is (``read`` of its pid file, ``kill -0``); else ``setsid`` runs it
    away from the command's process group and from every descriptor of the command, and the
    wrapper writes its pid (``$!``: ``setsid`` in a background job is no group leader, so it
    does not fork) to the pid file at once. The keeper's own write came a few milliseconds
    later, after ``setsid`` and ``sh`` had started: a session's next command, sent as soon as
    the first ended, found no pid and started a second keeper (two extra programs per host
    for every run of several commands; docs/decisions.md, "One spool keeper per host").
    ``from_arg``: the keeper's text is the wrapper's ``$1`` (:data:`KEEPER_VAR` of a session
    shell, see :func:`keeper_assignment`; :func:`wrap` shifts it away). The text
    (1.2 KB quoted) is then sent and parsed once per session, not with every command: that
    cost 4 % of the wall time of 10 hosts x 50 short commands (docs/decisions.md).
    """
    text = _KEEPER_START.get((spool_max, from_arg, stay))
    if text is None:  # the same for every command of a run: quoted once, not per command
        script = '"$1"' if from_arg else _quoted_keeper()
        text = (
            # An empty or missing pid file (no keeper yet, or it left): one stat, no redirection.
            '[ -s "$nexus_d/.keeper" ] && '
            '{ read -r nexus_k <"$nexus_d/.keeper" && kill -0 "$nexus_k"; } 2>&- || '
            f'{{ setsid /bin/sh -c {script} nexus-keeper "$nexus_d" {int(spool_max)}{" 1" if stay else ""}'
            ' </dev/null >/dev/null 2>&1 4>&- & echo $! >"$nexus_d/.keeper"; }'
        )
        _KEEPER_START[(spool_max, from_arg, stay)] = text
    return text


#: The session shell's variable holding the keeper's text (see :func:`keeper_start`).
KEEPER_VAR = "nexus_keeper"
#: The session shell's variable holding a spooled wrapper's replay (see :func:`wrap`): its
#: usual paths, and the variable holding the whole of it, which they run for the others.
REPLAY_VAR = "nexus_replay"
REPLAY_ALL_VAR = "nexus_replay_all"


@functools.cache
def _quoted_keeper() -> str:
    """:func:`keeper_script` as one shell word, quoted once per process."""
    return quote(keeper_script())


@functools.cache
def _replay_text() -> str:
    """The end of every spooled wrapper (:func:`_replay` over ``$nexus_o``/``$nexus_e``)."""
    return _replay('"$nexus_o"', '"$nexus_e"', '"$nexus_o.cut"', '"$nexus_e.cut"')


@functools.cache
def _quoted_replay() -> str:
    """The usual paths of :func:`_replay_text` (``rare``: ``$nexus_R``) as one shell word."""
    return quote(_replay('"$nexus_o"', '"$nexus_e"', '"$nexus_o.cut"', '"$nexus_e.cut"', rare='eval "$nexus_R"'))


@functools.cache
def _quoted_replay_all() -> str:
    """:func:`_replay_text` as one shell word, quoted once per process."""
    return quote(_replay_text())


def keeper_assignment() -> str:
    """Shell text setting :data:`KEEPER_VAR`, :data:`REPLAY_VAR` and :data:`REPLAY_ALL_VAR`
    (not exported: only passed as arguments)."""
    return f"{KEEPER_VAR}={_quoted_keeper()}\n{REPLAY_VAR}={_quoted_replay()}\n{REPLAY_ALL_VAR}={_quoted_replay_all()}"


def keeper_args() -> str:
    """The arguments a session shell holding :func:`keeper_assignment` passes to a command built
    with ``keeper_arg`` (after its ``$0``)."""
    return f'"${KEEPER_VAR}" "${REPLAY_VAR}" "${REPLAY_ALL_VAR}"'


def with_keeper_arg(script: str) -> str:
    """``script`` (from :func:`build` with ``keeper_arg``) made whole for a transport without a
    session shell holding the keeper's and the replay's texts: they follow as the arguments."""
    return f"{script} nexus {_quoted_keeper()} {_quoted_replay()} {_quoted_replay_all()}"


_KEEPER_START: dict[tuple[int, bool, bool], str] = {}


def build(
    cmd: str,
    *,
    sudo: bool = False,
    user: str | None = None,
    env: Sequence[tuple[str, str]] = (),
    cwd: str | None = None,
    marker: Marker | None = None,
    sudo_password: bool = False,
    spool: bool = False,
    stdin: bool = False,
    spool_max: int | None = None,
    keeper_arg: bool = False,
    keeper_stay: bool = False,
    reuse: tuple[str, int] | None = None,
) -> str:
    """The string a remote transport executes for ``cmd``: ``exec /bin/sh -c '...'``.

    The body prints its process groups first (``pg``), and with ``marker`` the status-file
    wrapper runs it outside any sudo (with ``spool``: replaying the spool at the end).
    The login shell may not be sh (bash, zsh, fish...): everything is handed to /bin/sh.
    ``keeper_arg``: the spool keeper's text comes as the script's first argument and the
    replay's two texts as the second and third (see :func:`keeper_start`); the caller appends
    all three (a session shell holding :func:`keeper_assignment`: ``nexus`` and
    :func:`keeper_args`; any other caller: :func:`with_keeper_arg`).
    ``keeper_stay``: as in :func:`wrap` (:attr:`~nexus_core.model.Command.more`).
    ``reuse``: an earlier command's spool files to take, as in :func:`wrap` (with ``spool``).
    """
    # A spooled wrapper prints the outer group itself; the body's line only adds the shell
    # behind sudo.
    pg = not (spool and marker is not None) or sudo or bool(user)
    text = body(cmd, sudo=sudo, user=user, env=env, cwd=cwd, sudo_password=sudo_password, pg=pg, stdin=stdin)
    if marker is not None:
        # The session leader writes the exit code (an EXIT trap, or a subshell when the
        # body says exec): same process group, and $$ still names the leader, so the kill
        # handle is unchanged.
        text = wrap(
            text,
            marker,
            spool=spool,
            replay=True,
            pg=spool,
            spool_max=spool_max if spool else None,
            keeper_arg=keeper_arg,
            keeper_stay=keeper_stay,
            reuse=reuse if spool else None,
        )
    return "exec /bin/sh -c " + quote(text)


def parse_pg(line: str) -> tuple[int, int] | None:
    """(outer, inner) process groups from a :data:`PG_MARKER` line, or None (a last word
    :data:`PG_REUSED` is allowed: see :func:`pg_reused`)."""
    if not line.startswith(PG_MARKER):
        return None
    parts = line[len(PG_MARKER) :].split()
    if len(parts) == 3 and parts[2] == PG_REUSED:
        parts.pop()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def pg_reused(line: str) -> bool:
    """Whether a :data:`PG_MARKER` line says the command's spool took an earlier command's
    files (``reuse`` of :func:`wrap`)."""
    return line.startswith(PG_MARKER) and line.endswith(" " + PG_REUSED)


def parse_spool_end(line: str) -> tuple[bool, int | None]:
    """(is the spool's end line, exit code or None) for one output line."""
    if not line.startswith(SPOOL_END):
        return False, None
    rest = line[len(SPOOL_END) :].strip()
    return True, markers.exit_status(int(rest)) if rest.lstrip("-").isdigit() else None


def follow_script(marker: Marker, status_dir: str | None = None) -> str:
    """Shell text streaming a running command's spool: stdout's file on stdout, stderr's on stderr.

    For a remote controller that wants a long command's output while it runs (the replay
    only comes at its end): ``tail -f`` from the first byte (or from the keeper's cut, after
    a :data:`SPOOL_CUT` line), until the reader goes away
    (GNU tail then exits at once; others at their next write). The spool is the command's
    own files or an earlier command's it took (:func:`markers.spool_name`).
    """
    d = status_dir or markers.status_dir(marker.run_id, marker.host)

    def one(ext: str) -> str:
        # From the keeper's cut, if any (a SPOOL_CUT line first): the front is a hole.
        cut = f'"$nexus_d/$name.{ext}.cut"'
        return (
            f"c=0; [ -f {cut} ] && read -r c <{cut} && "
            f'printf "\\036NEXUS-CUT %s\\n" "$c"; exec tail -c +$((c+1)) -f "$nexus_d/$name.{ext}"'
        )

    name = markers.spool_name(marker.key, '"$nexus_d/status"')
    return f"nexus_d={d}; {name}exec 3>&2 2>/dev/null; ( {one('out')} ) & exec >&3 3>&-; {one('err')}"


#: Bytes of a file name at most (``NAME_MAX`` of Linux's and the BSDs' file systems).
NAME_MAX = 255


def temp_name(name: str, tail: str) -> str:
    """The hidden temporary name ``.NAME`` + ``tail`` beside the file ``name``; when that
    would pass :data:`NAME_MAX` bytes, ``name`` is cut and followed by ``~`` and 8 hex
    digits of its sha256 (two long names that begin alike still get two temporary files)."""
    full = f".{name}{tail}"
    if len(full) <= NAME_MAX // 4:  # no character takes more than 4 bytes in UTF-8
        return full
    raw = full.encode("utf-8", "surrogateescape")
    if len(raw) <= NAME_MAX:
        return full
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    room = NAME_MAX - len(tail.encode("utf-8", "surrogateescape")) - len(digest) - 2
    # a character cut in two stays two bytes, which surrogateescape gives back as they were
    short = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "surrogateescape")
    return f".{short}~{digest}{tail}"


def nearest_existing(var: str) -> str:
    """Shell text moving ``$VAR`` up, one ``dirname`` at a time (256 at most), to the nearest
    path that exists: the folder ``mkdir -p`` would start from, and one ``df`` can look at."""
    return f'n=0; while [ ! -e "${var}" ] && [ "$n" -lt 256 ]; do {var}=$(dirname -- "${var}"); n=$((n+1)); done'
