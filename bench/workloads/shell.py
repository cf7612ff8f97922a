"""Plain OpenSSH in a shell loop: one ``ssh`` per host in the background, then ``wait``.

With one command (W1/W3/W4) that is exactly one connection per command. With several (W2/W7)
the host's commands go through one session joined with ``&&`` - not what a task runner does
per command, but the floor of what SSH itself costs (the "one OpenSSH session per host" line
of DESIGN.md section 8). ``-F none``: no user ssh config; the client's default key exchange.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.workloads import Invocation, Target, fresh_dir


def remote(root: Path, target: Target, n_hosts: int, commands: list[str]) -> Invocation:
    """One background ``ssh`` per host running ``commands`` (joined with ``&&`` when several)."""
    work = fresh_dir(root, f"shell-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    ssh = shlex.join(
        [
            "ssh", "-F", "none", "-n", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={target.known_hosts}",
            "-i", target.key, "-p", str(target.port), "-l", target.user,
        ]
    )  # fmt: skip
    remote_cmd = shlex.quote(" && ".join(commands))
    script = [
        "#!/bin/sh",
        "# one ssh per host, all in the background; fail if any fails",
        "pids=''",
        f"for h in {' '.join(hosts)}; do",
        f'  {ssh} "$h" {remote_cmd} &',
        '  pids="$pids $!"',
        "done",
        "rc=0",
        "for p in $pids; do wait $p || rc=1; done",
        "exit $rc",
    ]
    (work / "run.sh").write_text("\n".join(script) + "\n")
    return Invocation(
        tool="ssh-loop",
        argv=["/bin/sh", str(work / "run.sh")],
        cwd=str(work),
        expect_stdout=("hello", n_hosts * len(commands)),
        expect_sessions=n_hosts,
        expect_hosts=hosts,
        note="one ssh session per host, its commands joined with &&" if len(commands) > 1 else "",
    )
