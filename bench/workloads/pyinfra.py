"""pyinfra 3 inputs: a Python inventory with per-host SSH data and a deploy of ``server.shell``.

Run as ``pyinfra -y --parallel N inventory.py deploy.py``. ``ssh_config_file`` is not read
(no ``~/.ssh/config`` here); the bed's key and known_hosts are given as host data with strict
host key checking.
"""

from __future__ import annotations

from pathlib import Path

from bench.workloads import Invocation, Target, fresh_dir


def remote(root: Path, target: Target, n_hosts: int, commands: list[str], pyinfra_bin: str) -> Invocation:
    """One ``server.shell`` operation with ``commands``, on ``n_hosts`` hosts in parallel."""
    work = fresh_dir(root, f"pyinfra-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    data = {
        "ssh_port": target.port,
        "ssh_user": target.user,
        "ssh_key": target.key,
        "ssh_known_hosts_file": target.known_hosts,
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }
    (work / "inventory.py").write_text(f"_DATA = {data!r}\nbench = [(a, dict(_DATA)) for a in {hosts!r}]\n")
    (work / "deploy.py").write_text(
        f"from pyinfra.operations import server\n\nserver.shell(name='bench', commands={commands!r})\n"
    )
    return Invocation(
        tool="pyinfra",
        argv=[pyinfra_bin, "-y", "--parallel", str(n_hosts), "inventory.py", "deploy.py"],
        cwd=str(work),
        expect_sessions=n_hosts * len(commands),
        expect_hosts=hosts,
    )


def exec_adhoc(root: Path, target: Target, n_hosts: int, command: str, pyinfra_bin: str) -> Invocation:
    """``pyinfra -y --parallel N inventory.py exec -- COMMAND`` on :func:`remote`'s inventory (W8)."""
    inv = remote(root, target, n_hosts, [command], pyinfra_bin)
    inv.argv = [pyinfra_bin, "-y", "--parallel", str(n_hosts), "inventory.py", "exec", "--", *command.split()]
    inv.expect_sessions = n_hosts
    return inv
