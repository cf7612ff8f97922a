"""The shell text sent to the server: env, cwd, sudo, and a process-group handle for kills.

Closing an exec channel does not stop the remote command when no PTY was allocated
(sshd sends no signal without a terminal). So every command runs under a tiny ``/bin/sh``
wrapper that first prints its process-group ids on stderr, on one marker line the executor
strips from the output::

    \\x1eNEXUS-PG <outer> <inner>

``outer`` is the login session's shell: sshd makes it a session and process-group leader,
so ``kill -- -outer`` reaches every process of the command (sudo included, when sudo
does not use a pty). ``inner`` is the shell that runs the user's command after sudo: with
sudo's ``use_pty`` (Debian's default) it leads its own session, so ``kill -- -inner``
reaches that tree. To stop a command (timeout, cancel) the executor opens a second exec
channel on the same connection and signals both groups: TERM, a short grace, then KILL
(or INT / TERM / KILL for the cancel levels); as root through ``sudo -n`` when the command
used sudo. Daemons that ``setsid`` themselves away escape, as they would from any shell.

Sudo never prompts: without a password it runs as ``sudo -n`` (fails at once when a password
is required). With ``sudo_password=True`` it runs as ``sudo -S -p ''``: the executor writes
the password and then EOF on the channel's stdin (never in any argument, so ``ps`` on the host
cannot show it), and the shell behind sudo points its stdin at ``/dev/null`` first, so the
command never reads the password when sudo did not need it (NOPASSWD, cached credentials).

User-supplied values (env values, cwd, sudo user) are always quoted with :func:`shlex.quote`;
env names must be valid shell names. The command itself runs through ``eval`` unchanged. The
text is built by the core's :mod:`nexus_core.shell`, shared by every shell transport; with a
status marker the command's output goes to its spool on the host and is replayed at its end.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from nexus_core.plugin import shell

CommandError = shell.CommandError
parse_pg = shell.parse_pg

__all__ = ["MARKER", "CommandError", "build", "kill_command", "kill_script", "parse_marker"]

MARKER = shell.PG_MARKER
#: (outer, inner) from a marker line, or None.
parse_marker = parse_pg


#: The exec request string for a command (see the module docstring): the core's shell builder,
#: which every shell transport shares (status file, spool, sudo, env, cwd).
build = shell.build


def _sudo(password: bool) -> str:
    """``sudo -n`` (never prompt), or ``sudo -S -p ''`` (password on stdin, no prompt text)."""
    return shell.sudo_words(password)


def kill_script(groups: Sequence[int], signals: Sequence[str], grace: float) -> str:
    """Signal each process group; between signals wait up to ``grace`` s for them to go.

    Prints nothing; exits 0. Runs under ``sh``; ``sleep 0.1`` needs GNU or busybox sleep.
    """
    pgs = " ".join(str(int(g)) for g in groups if int(g) > 1)
    steps = max(1, int(grace / 0.1))
    lines = [
        f"pgs='{pgs}'",
        'alive() { for g in $pgs; do kill -0 "-$g" 2>/dev/null && return 0; done; return 1; }',
    ]
    for i, sig in enumerate(signals):
        if sig not in ("INT", "TERM", "KILL", "HUP"):
            raise CommandError(f"unsupported signal {sig!r}")
        lines.append(f'for g in $pgs; do kill -{sig} "-$g" 2>/dev/null; done')
        if i < len(signals) - 1:
            lines.append(f"i=0; while [ $i -lt {steps} ] && alive; do sleep 0.1; i=$((i+1)); done")
            lines.append("alive || exit 0")
    lines.append("exit 0")
    return "\n".join(lines)


def kill_command(
    groups: Sequence[int],
    signals: Sequence[str],
    grace: float,
    *,
    sudo: bool,
    user: str | None,
    sudo_password: bool = False,
) -> str:
    """The exec string that runs :func:`kill_script` with the rights the command had.

    With ``sudo_password`` each sudo reads one password line from stdin (send it twice).
    """
    script = shlex.quote(kill_script(groups, signals, grace))
    if not (sudo or user):
        return f"exec /bin/sh -c {script}"
    # Root can signal sudo and the command; fall back to the target user when sudo is limited.
    s = _sudo(sudo_password)
    alt = f" || {s} -u {shlex.quote(user)} -- /bin/sh -c {script}" if user else ""
    return "exec /bin/sh -c " + shlex.quote(f"{s} -- /bin/sh -c {script} 2>/dev/null{alt}")
