"""Nexus inputs: a generated ``nexusfile.py`` run by the installed ``nexus`` CLI with ``-q``."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.workloads import Invocation, Target, diamond_dag, fresh_dir

_CLI: list[str] = []


def set_cli(argv: list[str]) -> None:
    """Use this command line for ``nexus`` (e.g. a frozen copy in a bench venv)."""
    _CLI[:] = argv


def nexus_cmd() -> list[str]:
    """The chosen CLI, else the console script next to this interpreter (as users run it), else PATH's."""
    if _CLI:
        return list(_CLI)
    script = Path(sys.executable).parent / "nexus"
    if script.exists():
        return [str(script)]
    import shutil

    found = shutil.which("nexus")
    return [found] if found else [sys.executable, "-m", "nexus_core"]


def remote(root: Path, target: Target, n_hosts: int, commands: list[str]) -> Invocation:
    """``commands`` in sequence on ``n_hosts`` hosts, all hosts at once (forks = host count)."""
    work = fresh_dir(root, f"nexus-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    host_list = ",\n    ".join(repr(f"{target.user}@{a}:{target.port}") for a in hosts)
    body = "\n".join(f"    run({c!r})" for c in commands)
    (work / "nexusfile.py").write_text(
        "from nexus_core import config, hosts, task, run\n\n"
        f"config(\n    ssh_identity={target.key!r},\n    ssh_known_hosts_file={target.known_hosts!r},\n"
        f"    parallel_limit={n_hosts},\n    forks={n_hosts},\n)\n\n"
        f"hosts(\n    'bench',\n    {host_list},\n)\n\n\n"
        "@task(on='bench')\ndef work():\n"
        f"{body}\n"
    )
    return Invocation(
        tool="nexus",
        argv=[*nexus_cmd(), "run", "work", "-q"],
        cwd=str(work),
        env={"NEXUS_SSH_CONFIG": "", "NO_COLOR": "1", "CI": "1"},
        # nexus-ssh's default session mode runs a host's commands in one shell session per
        # connection, so sshd logs one session per host (exit code 0 = every command ran).
        expect_sessions=n_hosts,
        expect_hosts=hosts,
    )


def exec_adhoc(root: Path, target: Target, n_hosts: int, command: str) -> Invocation:
    """``nexus exec all -p N -- COMMAND`` on the hosts of a generated nexusfile (W8)."""
    work = fresh_dir(root, f"nexus-exec-{n_hosts}")
    hosts = target.take(n_hosts)
    host_list = ",\n    ".join(repr(f"{target.user}@{a}:{target.port}") for a in hosts)
    (work / "nexusfile.py").write_text(
        "from nexus_core import config, hosts\n\n"
        f"config(ssh_identity={target.key!r}, ssh_known_hosts_file={target.known_hosts!r})\n\n"
        f"hosts(\n    'bench',\n    {host_list},\n)\n"
    )
    return Invocation(
        tool="nexus",
        argv=[*nexus_cmd(), "exec", "all", "-p", str(n_hosts), "--", *command.split()],
        cwd=str(work),
        env={"NEXUS_SSH_CONFIG": "", "NO_COLOR": "1", "CI": "1"},
        expect_stdout=(f"({n_hosts} hosts) | rc=0 >>" if n_hosts > 1 else "| rc=0 >>", 1),
        expect_sessions=n_hosts,
        expect_hosts=hosts,
    )


def dag_nexusfile(n_tasks: int, jobs: int) -> tuple[str, str]:
    """(nexusfile text, last task) of the diamond DAG of ``true`` tasks, ``jobs`` tasks at once."""
    dag = diamond_dag(n_tasks)
    out = ["from nexus_core import config, task, run", "", f"config(parallel_limit={jobs})", ""]
    for name, deps in dag.items():
        dep = f"deps=[{', '.join(deps)}]" if deps else ""
        out += [f"@task({dep})", f"def {name}():", '    run("true")', ""]
    return "\n".join(out), list(dag)[-1]


def local_dag(root: Path, n_tasks: int, jobs: int) -> Invocation:
    """The diamond DAG of ``true`` tasks, ``jobs`` tasks at once."""
    work = fresh_dir(root, f"nexus-dag{n_tasks}")
    text, last = dag_nexusfile(n_tasks, jobs)
    (work / "nexusfile.py").write_text(text)
    return Invocation(
        tool="nexus",
        argv=[*nexus_cmd(), "run", last, "-q"],
        cwd=str(work),
        env={"NO_COLOR": "1", "CI": "1", "NEXUS_NO_EMOJI": "1"},
        expect_stdout=(" t", n_tasks),
    )
