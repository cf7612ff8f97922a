#!/usr/bin/env python3
"""nexus-agent benchmark: N agents on this machine, against Nexus over SSH and the peers on the same work.

- **memory per agent**: the resident memory (VmRSS) of each agent process once idle, and of
  the coordinator (scheduler only, ``--no-agent``).
- **CLI, cold**: ``nexus run`` of ``50 × 1`` (one ``echo`` on each of 50 agents,
  ``on=all_agents()``) and ``10 × 50`` (50 commands in sequence on each of 10 agents,
  ``on=any_of(10)``): what a user waits for, Python start-up, Dask's import and the TLS
  connection included.
- **warm**: the same work through one connected ``AgentExecutor`` in this process (the cost
  a long-lived client pays: connection set-up paid once), hosts at once in threads as the
  engine runs them; and **dispatch per command**: 200 ``true`` in sequence on one agent,
  wall time per command minus the command's own run time on the agent.
- **SSH**: the same two workloads through ``nexus run`` on loopback sshd hosts of the
  test bed (``nexus_core.testing.sshbed``; root only; ``--no-ssh`` skips it), and through
  pyinfra and Fabric on the same hosts (installed by ``bench/peers.py``, inputs from
  ``bench/workloads`` as ``bench/run.py`` uses them).

Results: bench/results/agents.{json,md}. ``--agents N`` (default 50), ``--runs R`` (default 3),
``--quick`` (10 agents, 1 run), ``--no-cli`` (warm and dispatch only), ``--no-ssh``,
``--out NAME`` (results as bench/results/NAME.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def nexus(
    env: dict[str, str], *args: str, cwd: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the ``nexus`` CLI of this Python with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "nexus_core", *args],
        env={**os.environ, "NO_COLOR": "1", "CI": "1", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def must(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 when gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def timed(env: dict[str, str], cwd: str, *args: str) -> float:
    started = time.perf_counter()
    must(nexus(env, *args, cwd=cwd), "nexus " + " ".join(args))
    return time.perf_counter() - started


def nexusfile(n1: int, wide: int, per_host: int, cluster: str) -> str:
    body = "\n".join(f"    run('echo {i}')" for i in range(per_host))
    return (
        "from nexus_core import all_agents, any_of, config, run, task\n\n"
        f"config(cluster={cluster!r}, parallel_limit={max(n1, wide)}, forks={max(n1, wide)})\n\n"
        f"@task(on=all_agents())\ndef one():\n    run('echo hello')\n\n"
        f"@task(on=any_of({wide}))\ndef many():\n{body}\n"
    )


def start_cluster(env: dict[str, str], n: int, port: int) -> dict[str, int]:
    must(nexus(env, "agent", "init", "--name", "hub"), "agent init")
    must(nexus(env, "agent", "start", "--coordinator", "--no-agent", "--name", "hub", "--port", str(port)),
         "start coordinator")  # fmt: skip
    names = [f"a{i:02d}" for i in range(n)]
    for name in names:
        must(nexus(env, "agent", "cert", name), f"cert {name}")
    batch = 5  # agents started at once (2 cores: more only queue for the CPU)
    for i in range(0, n, batch):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "nexus_core", "agent", "start", "--name", name, "--join", f"127.0.0.1:{port}",
                 "--max-concurrent-tasks", "2"],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in names[i : i + batch]
        ]  # fmt: skip
        for p in procs:
            out, err = p.communicate(timeout=300)
            if p.returncode != 0:
                raise SystemExit(f"agent start failed: {out}{err}")
    pids = {}
    for path in Path(env["NEXUS_AGENT_STATE"]).glob("*.pid"):
        pids[path.stem] = int(path.read_text().strip())
    return pids


def warm(env: dict[str, str], cluster: str, n1: int, wide: int, per_host: int, runs: int) -> dict[str, object]:
    """The same work through one connected executor in this process; dispatch per command."""
    os.environ.update(env)
    from nexus_agent import cluster as agent_cluster
    from nexus_agent.executor import AgentExecutor

    from nexus_core.plugin import Cancel, Command, ExecutorContext, Host

    ctx = ExecutorContext(config={"cluster": cluster}, root=".", emit=lambda _e: None, run_id="bench")
    ex = AgentExecutor(ctx)
    ex.prepare([])
    names = sorted(a.name for a in agent_cluster.agents(ex._connect()))
    lock = threading.Lock()

    def on_host(name: str, cmds: list[str]) -> None:
        for c in cmds:
            r = ex.run(Host(name, transport="agent"), Command(c), lambda _s, _l: None, Cancel(), 60)
            if not r.ok:
                with lock:
                    raise SystemExit(f"warm run failed on {name}: {r}")

    def work(hosts: list[str], cmds: list[str]) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda h: on_host(h, cmds), hosts))
        return time.perf_counter() - started

    work(names[:2], ["true"])  # first use: imports on the agents
    one = [work(names[:n1], ["echo hello"]) for _ in range(runs)]
    many = [work(names[:wide], [f"echo {i}" for i in range(per_host)]) for _ in range(runs)]
    # Dispatch: the round trip of one command, minus what the command itself took on the agent.
    from nexus_agent.runner import run_command

    client = ex._connect()
    host = Host(names[0], transport="agent")
    total, inside, count = 0.0, 0.0, 200
    for _ in range(count):
        t0 = time.perf_counter()
        r = ex.run(host, Command("true"), lambda _s, _l: None, Cancel(), 60)
        total += time.perf_counter() - t0
        assert r.ok, r
    for _ in range(20):  # the command alone, run by the same code on the agent
        inside += client.submit(run_command, {"id": "x", "topic": "none", "cmd": "true"}, workers=[names[0]],
                                pure=False).result()["duration"]  # fmt: skip
    per_cmd = total / count * 1000
    own = inside / 20 * 1000
    ex.close()
    return {
        "one_s": summary(one),
        "many_s": summary(many),
        "round_trip_ms": per_cmd,
        "command_on_agent_ms": own,
        "dispatch_ms": per_cmd - own,
    }


def ssh(n1: int, wide: int, per_host: int, runs: int, work: Path) -> dict[str, object]:
    """The same workloads through ``nexus run`` over SSH on the test bed's loopback hosts."""
    from nexus_core.testing.sshbed import USER_KEY, SshBed

    bed = SshBed(max(n1, wide), port=0, bastion=False, log_level="INFO")
    bed.start()
    try:
        hosts = ", ".join(repr(f"{USER_KEY}@{h.address}:{h.port}") for h in bed.hosts)
        body = "\n".join(f"    run('echo {i}')" for i in range(per_host))
        (work / "nexusfile.py").write_text(
            "from nexus_core import config, hosts, run, task\n\n"
            f"config(ssh_identity={bed.key_path()!r}, ssh_known_hosts_file={bed.known_hosts!r}, "
            f"parallel_limit={max(n1, wide)}, forks={max(n1, wide)})\n\n"
            f"hosts('all', {hosts})\n"
            f"hosts('wide', {', '.join(repr(f'{USER_KEY}@{h.address}:{h.port}') for h in bed.hosts[:wide])})\n\n"
            "@task(on='all')\ndef one():\n    run('echo hello')\n\n"
            f"@task(on='wide')\ndef many():\n{body}\n"
        )
        env = {"NEXUS_SSH_CONFIG": ""}
        out: dict[str, object] = {
            "one_s": summary([timed(env, str(work), "run", "one", "-q") for _ in range(runs)]),
            "many_s": summary([timed(env, str(work), "run", "many", "-q") for _ in range(runs)]),
        }
        out["peers"] = peers_on(bed, n1, wide, per_host, runs, work)
        return out
    finally:
        bed.stop()


def peers_on(bed: Any, n1: int, wide: int, per_host: int, runs: int, work: Path) -> dict[str, object]:
    """pyinfra and Fabric on the same two workloads and hosts (``bench/peers.py`` installs them).

    The inputs are ``bench/run.py``'s (``bench/workloads``): pyinfra one ``server.shell`` of the
    commands per host, ``--parallel`` = hosts; Fabric a ``ThreadingGroup``. A peer that cannot
    be installed is left out (reported as such), never faked.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import peers as peers_mod
    from bench.workloads import Target, fabric, pyinfra
    from nexus_core.testing.sshbed import USER_KEY

    target = Target(
        user=USER_KEY,
        key=bed.key_path(),
        known_hosts=bed.known_hosts,
        port=bed.port,
        addresses=tuple(h.address for h in bed.hosts),
    )
    found = peers_mod.ensure_all(["pyinfra", "fabric"])
    results: dict[str, object] = {}
    cases = (("one_s", n1, ["echo hello"]), ("many_s", wide, [f"echo hello {i}" for i in range(per_host)]))
    for name, peer in found.items():
        if not peer.ok:
            results[name] = {"error": "not installed"}
            continue
        row: dict[str, object] = {"version": peer.version}
        for key, n, commands in cases:
            root = work / f"{name}-{key}"
            root.mkdir(exist_ok=True)
            if name == "pyinfra":
                inv = pyinfra.remote(root, target, n, commands, peer.script("pyinfra"))
            else:
                inv = fabric.remote(root, target, n, commands, peer.python)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                proc = subprocess.run(
                    inv.argv, cwd=inv.cwd, env={**os.environ, **inv.env}, capture_output=True, text=True,
                    timeout=900, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed on {key}: {(proc.stdout + proc.stderr)[-800:]}")
                times.append(time.perf_counter() - started)
            row[key] = summary(times)
        results[name] = row
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ssh", action="store_true")
    parser.add_argument("--no-cli", action="store_true", help="warm and dispatch figures only")
    parser.add_argument("--out", default=None, metavar="NAME",
                        help="results as bench/results/NAME.{json,md} (default agents, agents-quick)")  # fmt: skip
    args = parser.parse_args()
    n = 10 if args.quick else args.agents
    runs = 1 if args.quick else args.runs
    wide, per_host = min(10, n), 50
    tmp = Path(tempfile.mkdtemp(prefix="nexus-bench-agents-"))
    import socket

    with socket.socket() as probe:  # a port free on 127.0.0.1 now
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {
        "NEXUS_AGENT_DIR": str(tmp / "certs"),
        "NEXUS_AGENT_STATE": str(tmp / "state"),
        "XDG_STATE_HOME": str(tmp / "xdg-state"),
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
        "NEXUS_CLUSTER": f"tls://127.0.0.1:{port}",
    }
    results: dict[str, object] = {"agents": n, "wide": wide, "runs": runs, "load_before": os.getloadavg()[0]}
    try:
        t0 = time.perf_counter()
        pids = start_cluster(env, n, port)
        results["start_s"] = time.perf_counter() - t0
        time.sleep(3)  # idle
        agent_rss = [rss_kib(p) / 1024 for name, p in pids.items() if name != "hub"]
        results["memory_mib"] = {"per_agent": summary(agent_rss), "coordinator": rss_kib(pids["hub"]) / 1024}
        project = tmp / "project"
        project.mkdir()
        (project / "nexusfile.py").write_text(nexusfile(n, wide, per_host, env["NEXUS_CLUSTER"]))
        results["load_cli"] = os.getloadavg()[0]
        if not args.no_cli:
            must(nexus(env, "run", "one", "-q", cwd=str(project)), "warm-up run")
            results["cli"] = {
                "one_s": summary([timed(env, str(project), "run", "one", "-q") for _ in range(runs)]),
                "many_s": summary([timed(env, str(project), "run", "many", "-q") for _ in range(runs)]),
            }
        results["load_warm"] = os.getloadavg()[0]
        results["warm"] = warm(env, env["NEXUS_CLUSTER"], n, wide, per_host, runs)
        results["load_after"] = os.getloadavg()[0]
    finally:
        nexus(env, "agent", "stop", timeout=300)
    RESULTS.mkdir(exist_ok=True)
    stem = args.out or ("agents-quick" if args.quick else "agents")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_ssh and os.geteuid() == 0:
        ssh_dir = tmp / "ssh"
        ssh_dir.mkdir()
        results["load_ssh"] = os.getloadavg()[0]
        results["ssh"] = ssh(n, wide, per_host, runs, ssh_dir)
        results["load_end"] = os.getloadavg()[0]
    shutil.rmtree(tmp, ignore_errors=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(report(results))
    print(report(results))
    return 0


LOAD_KEYS = ("load_before", "load_warm", "load_after")


def report(r: dict[str, object]) -> str:
    def med(d: object, key: str) -> str:
        v = (d or {}).get(key) if isinstance(d, dict) else None
        return f"{v['median']:.2f} s" if isinstance(v, dict) else "-"

    n = r["agents"]
    cli, warm_, ssh_ = r.get("cli", {}), r.get("warm", {}), r.get("ssh", {})
    mem = r.get("memory_mib", {})
    lines = [
        f"# nexus-agent: {n} agents on this machine ({r['runs']} run(s), medians)",
        "",
        f"Cluster start (coordinator + {n} agents, 5 at a time): {r.get('start_s', 0):.1f} s",
        f"Memory: {mem.get('per_agent', {}).get('median', 0):.0f} MiB per idle agent (VmRSS), "
        f"coordinator {mem.get('coordinator', 0):.0f} MiB",
        "Load average (1 min) before the cluster started, before the warm part, after it: "
        + ", ".join(f"{r[k]:.1f}" if isinstance(r.get(k), float) else "-" for k in LOAD_KEYS),
        "Load average (1 min) before the cold CLI part, before the SSH and peers part, after it: "
        + ", ".join(
            f"{r[k]:.1f}" if isinstance(r.get(k), float) else "-" for k in ("load_cli", "load_ssh", "load_end")
        ),
        "",
        "| workload | nexus run (agents, cold CLI) | warm executor (agents) | nexus run (SSH) "
        "| pyinfra (SSH) | Fabric (SSH) |",
        "|---|---|---|---|---|---|",
    ]
    peers = ssh_.get("peers", {}) if isinstance(ssh_, dict) else {}
    for label, key in ((f"{n} × 1", "one_s"), (f"{r.get('wide', 10)} × 50", "many_s")):
        lines.append(
            f"| {label} | {med(cli, key)} | {med(warm_, key)} | {med(ssh_, key)} "
            f"| {med(peers.get('pyinfra'), key)} | {med(peers.get('fabric'), key)} |"
        )
    lines.append("")
    if isinstance(warm_, dict) and "dispatch_ms" in warm_:
        lines.append(
            f"Dispatch per command (warm, one agent, 200 × `true` in sequence): round trip "
            f"{warm_['round_trip_ms']:.1f} ms, of which the command on the agent "
            f"{warm_['command_on_agent_ms']:.1f} ms: "
            f"dispatch {warm_['dispatch_ms']:.1f} ms"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
