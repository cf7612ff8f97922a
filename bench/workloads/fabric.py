"""Plain Fabric: a ``ThreadingGroup`` over every host, ``group.run(cmd)`` per command.

That is the floor of what Paramiko gives a Python tool: no inventory, no plan, no events.
Host keys are checked against the bed's known_hosts (RejectPolicy), the bed's key only.
The script checks every result itself (exit 0 and ``hello`` on stdout) and prints a count.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.workloads import Invocation, Target, fresh_dir

SCRIPT = r"""
import json, sys
from fabric import Config, ThreadingGroup
from paramiko import RejectPolicy

spec = json.load(open(sys.argv[1]))
config = Config(overrides={"load_ssh_configs": False})
group = ThreadingGroup(
    *spec["hosts"],
    user=spec["user"],
    port=spec["port"],
    config=config,
    connect_kwargs={"key_filename": [spec["key"]], "look_for_keys": False, "allow_agent": False},
)
for c in group:
    c.client.load_host_keys(spec["known_hosts"])
    c.client.set_missing_host_key_policy(RejectPolicy())
ok = 0
try:
    for cmd in spec["commands"]:
        results = group.run(cmd, hide=True, warn=False)
        for conn, r in results.items():
            if r.exited != 0 or "hello" not in r.stdout:
                sys.exit(f"{conn.host}: {cmd!r} exited {r.exited}: {r.stdout!r} {r.stderr!r}")
            ok += 1
finally:
    group.close()
print(f"hello ok {ok}")
"""


def remote(root: Path, target: Target, n_hosts: int, commands: list[str], python: str) -> Invocation:
    """``commands`` through one ThreadingGroup of ``n_hosts`` hosts."""
    work = fresh_dir(root, f"fabric-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    (work / "fab_bench.py").write_text(SCRIPT.lstrip())
    (work / "spec.json").write_text(
        json.dumps(
            {
                "hosts": hosts,
                "user": target.user,
                "port": target.port,
                "key": target.key,
                "known_hosts": target.known_hosts,
                "commands": commands,
            }
        )
    )
    return Invocation(
        tool="fabric",
        argv=[python, str(work / "fab_bench.py"), str(work / "spec.json")],
        cwd=str(work),
        expect_stdout=(f"hello ok {n_hosts * len(commands)}", 1),
        expect_sessions=n_hosts * len(commands),
        expect_hosts=hosts,
    )
