#!/usr/bin/env python3
"""Cloud bursting: time to ready agents with the ``local`` provider, provisioning overhead against moto.

    python bench/cloud.py                 # 5 local instances, 5 EC2 instances on moto, 3 runs
    python bench/cloud.py --count 3 --runs 1

1. **local**: a coordinator is started here (``nexus agent init``/``start --coordinator
   --no-agent``, temporary folders); each run times ``nexus cloud scale local=N`` until the
   scheduler lists N ready agents (polled with ``nexus agent status``), then terminates them.
2. **aws on moto**: moto's EC2 in server mode on 127.0.0.1; each run times ``nexus cloud scale
   aws=N`` (spot requests, image lookup, spot price history, certificates, user data) and
   reports it per instance, next to ``nexus cloud status`` as the CLI's fixed cost.

Results: ``bench/results/cloud.{md,json}``. Needs nexus-agent, nexus-aws and moto[server].
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def nexus(
    env: dict[str, str], *args: str, cwd: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real CLI with ``env`` added."""
    return subprocess.run([sys.executable, "-m", "nexus_core", *args], env={**os.environ, "CI": "1", **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_local(count: int, runs: int, root: Path) -> list[float]:
    port = free_port()
    env = {"NEXUS_AGENT_DIR": str(root / "certs"), "NEXUS_AGENT_STATE": str(root / "state"),
           "NEXUS_CLUSTER": f"tls://127.0.0.1:{port}", "XDG_STATE_HOME": str(root / "xdg")}  # fmt: skip
    project = root / "project"
    project.mkdir()
    (project / "nexusfile.py").write_text(f'from nexus_core import cloud\ncloud("local", count=(0, {count}))\n')
    assert nexus(env, "agent", "init", "--name", "hub").returncode == 0
    out = nexus(env, "agent", "start", "--coordinator", "--no-agent", "--name", "hub", "--port", str(port))
    assert out.returncode == 0, out.stderr
    times = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            out = nexus(env, "cloud", "scale", f"local={count}", cwd=str(project))
            assert out.returncode == 0, out.stderr
            for _ in range(1200):
                listed = nexus(env, "agent", "status", "--format", "json")
                agents = json.loads(listed.stdout)["agents"] if listed.returncode == 0 else []
                if sum(1 for a in agents if "burst" in a["tags"]) >= count:
                    break
                time.sleep(0.2)
            times.append(time.perf_counter() - start)
            nexus(env, "cloud", "terminate", "--all", cwd=str(project))
    finally:
        nexus(env, "cloud", "terminate", "--all", cwd=str(project))
        nexus(env, "agent", "stop")
    return times


def bench_moto(count: int, runs: int, root: Path) -> tuple[list[float], list[float]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "NEXUS_AGENT_DIR": str(root / "aws-certs"), "NEXUS_CLUSTER": "tls://127.0.0.1:9",
           "XDG_STATE_HOME": str(root / "aws-xdg")}  # fmt: skip
    project = root / "aws"
    project.mkdir()
    (project / "nexusfile.py").write_text(
        f'from nexus_core import cloud\ncloud("aws", region="us-east-1", count=(0, {count}), spot_fallback="fail")\n'
    )
    assert nexus(env, "agent", "init", "--name", "hub").returncode == 0
    scale, status = [], []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            out = nexus(env, "cloud", "scale", f"aws={count}", cwd=str(project))
            assert out.returncode == 0, out.stderr
            scale.append(time.perf_counter() - start)
            start = time.perf_counter()
            nexus(env, "cloud", "status", cwd=str(project))
            status.append(time.perf_counter() - start)
            nexus(env, "cloud", "terminate", "--all", cwd=str(project))
    finally:
        server.stop()
    return scale, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nexus-bench-cloud-") as tmp:
        local = bench_local(args.count, args.runs, Path(tmp))
        scale, status = bench_moto(args.count, args.runs, Path(tmp))
    data = {
        "count": args.count,
        "runs": args.runs,
        "load_before": load,
        "local_ready_s": local,
        "moto_scale_s": scale,
        "moto_status_s": status,
    }
    med = statistics.median
    lines = [
        f"# Cloud bursting ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load:.1f} before)",
        "",
        f"- `nexus cloud scale local={args.count}` to {args.count} ready agents: median {med(local):.1f} s "
        f"(runs: {', '.join(f'{t:.1f}' for t in local)})",
        f"- `nexus cloud scale aws={args.count}` on moto: median {med(scale):.2f} s, "
        f"{med(scale) / args.count * 1000:.0f} ms per instance; `nexus cloud status` alone {med(status):.2f} s",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cloud.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "cloud.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
