"""Plain OpenSSH in a shell loop: one background job per host, then ``wait``.

``ssh-loop``: with one command (W1/W3/W4) one ``ssh`` per host. With several (W2/W7) each
host's job opens one master connection (``ControlMaster``) and runs its commands one by one,
each as its own ``ssh`` over that connection, stopping at the first failure: what a careful
shell script does to get every command's exit code without a new connection each time.

``ssh-joined`` (several commands only): one session per host running the commands joined
with ``&&`` - no per-command result, so not a task runner's job; it is shown as the floor of
what SSH itself costs (one OpenSSH session per host), not as
a peer. ``-F none``: no user ssh config; the client's default key exchange.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.workloads import Invocation, Target, fresh_dir


def _ssh(target: Target) -> str:
    return shlex.join(
        [
            "ssh", "-F", "none", "-n", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={target.known_hosts}",
            "-i", target.key, "-p", str(target.port), "-l", target.user,
        ]
    )  # fmt: skip


def _background(hosts: list[str]) -> list[str]:
    """Script lines running the script's ``host`` function for every host in the background."""
    return [
        "# every host at once; fail if any fails",
        "pids=''",
        f"for h in {' '.join(hosts)}; do",
        '  host "$h" &',
        '  pids="$pids $!"',
        "done",
        "rc=0",
        "for p in $pids; do wait $p || rc=1; done",
        "exit $rc",
    ]


def remote(root: Path, target: Target, n_hosts: int, commands: list[str]) -> Invocation:
    """One background job per host: one ``ssh`` per command (over a master connection when several)."""
    work = fresh_dir(root, f"shell-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    ssh = _ssh(target)
    if len(commands) == 1:
        body = [f'host() {{ {ssh} "$1" {shlex.quote(commands[0])}; }}']
    else:
        cm = work / "cm"
        cm.mkdir()
        body = [
            "# one master connection per host, then every command as its own session over it",
            "host() {",
            f'  cp={shlex.quote(str(cm))}/"$1"',
            f'  {ssh} -o ControlMaster=yes -o ControlPath="$cp" -N -f "$1" || return 1',
            "  rc=0",
            "  while :; do",
            *(f'    {ssh} -o ControlPath="$cp" "$1" {shlex.quote(c)} || {{ rc=1; break; }}' for c in commands),
            "    break",
            "  done",
            f'  {ssh} -o ControlPath="$cp" -O exit "$1" 2>/dev/null',
            "  return $rc",
            "}",
        ]
    (work / "run.sh").write_text("\n".join(["#!/bin/sh", *body, *_background(hosts)]) + "\n")
    return Invocation(
        tool="ssh-loop",
        argv=["/bin/sh", str(work / "run.sh")],
        cwd=str(work),
        expect_stdout=("hello", n_hosts * len(commands)),
        expect_sessions=n_hosts * len(commands),
        expect_hosts=hosts,
        note="a master connection per host, one ssh session per command" if len(commands) > 1 else "",
    )


def joined(root: Path, target: Target, n_hosts: int, commands: list[str]) -> Invocation:
    """The floor: one ``ssh`` per host running all ``commands`` joined with ``&&``."""
    work = fresh_dir(root, f"joined-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    body = [f'host() {{ {_ssh(target)} "$1" {shlex.quote(" && ".join(commands))}; }}']
    (work / "run.sh").write_text("\n".join(["#!/bin/sh", *body, *_background(hosts)]) + "\n")
    return Invocation(
        tool="ssh-joined",
        argv=["/bin/sh", str(work / "run.sh")],
        cwd=str(work),
        expect_stdout=("hello", n_hosts * len(commands)),
        expect_sessions=n_hosts,
        expect_hosts=hosts,
        note="floor, not a peer: one session per host, its commands joined with &&",
    )
