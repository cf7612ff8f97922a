#!/usr/bin/env python3
"""What Tailscale discovery adds to a run: 1,000 devices from a local API server (target < 50 ms).

Each figure is the median (and min-max) of several runs after a warm-up; wall time and CPU
time (user + system of the measured thread or process), since this machine's two cores are
shared and wall times swing with the load. Results go to bench/results/tailscale.{json,md}.

1. ``discover``: in-process, a fresh ``TailscaleSource`` asking the local API server for the
   1,000 devices and filtering them (HTTP round trip, JSON parsing, filters): the work a run
   does at plan time for its ``discover("tailscale", ...)`` groups.
2. ``run --list-hosts``: the figure of the target. ``nexus run hello --list-hosts`` (plans
   the run, connects to nothing) on all 1,000 devices (``discover("tailscale",
   online=False)``: offline ones targeted too), against the same run with the same 1,000
   hosts written out in ``hosts(...)``, alternating the two so that both see the same load:
   the difference is what discovery of 1,000 devices adds to a run, end to end (imports,
   HTTP, JSON, filters, the plan's record of the discovery; a new process each time, as a
   user runs it).
3. ``hosts list`` and ``run -n``: ``nexus hosts list`` (a group of 214 of the 1,000 devices)
   and ``nexus run -n`` (one device picked by name out of the 1,000), the same way. The
   devices' addresses are on loopback port 1, refused at once, so the dry run's
   connectivity check costs the same both ways.

Usage: ``python bench/tailscale.py [--runs N] [--name NAME]`` (default 15 runs; results in
``bench/results/NAME.{json,md}``, default ``tailscale``).

``--callgrind`` instead counts instructions (``valgrind --tool=callgrind``: deterministic,
whatever the load) of one warm ``nexus run hello --list-hosts`` on the 1,000 hosts written
out and discovered, and of ``nexus --version``; the difference is turned into milliseconds
at the rate ``nexus --version`` runs when the machine is idle (55 ms). ``--keep DIR`` keeps
the three ``callgrind.out`` files there (``callgrind_annotate DIR/discovered.out`` shows where
the instructions go).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEVICES = 1000
TARGET_S = 0.050
#: ``nexus --version`` on this machine when idle (bench/results/core.md).
IDLE_VERSION_S = 0.055


def summary(samples: list[float]) -> dict[str, float]:
    """Median, min and max of ``samples`` (seconds)."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def fleet() -> list[Any]:
    """1,000 devices: a quarter tagged web (one in twenty offline), the rest db/ci/untagged."""
    from nexus_tailscale.testing import Peer

    peers = []
    for i in range(DEVICES):
        kind = ("tag:web", "tag:db", "tag:ci", "")[i % 4]
        peers.append(
            Peer(
                f"node-{i:04d}",
                f"127.1.{i // 250}.{i % 250 + 1}",
                tags=(kind, "tag:prod") if kind else (),
                online=i % 20 != 0,
                os="linux" if i % 7 else "windows",
            )
        )
    return peers


def measure_discover(api_url: str, runs: int) -> dict[str, Any]:
    """In-process discovery: wall and this thread's CPU (the API server runs in another thread)."""
    from nexus_tailscale import api
    from nexus_tailscale.source import TailscaleSource

    from nexus_core.plugin import HostSourceContext

    config = {"tailscale_api_url": api_url, "tailscale_api_key": "tskey-api-bench"}
    walls: list[float] = []
    cpus: list[float] = []
    found = 0
    for i in range(runs + 1):
        api.reset_state()
        wall, cpu = time.perf_counter(), time.thread_time()
        hosts = TailscaleSource(HostSourceContext(config=config)).discover({"tags": ["tag:web"], "os": "linux"})
        if i:  # the first is the warm-up
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
        found = len(hosts)
    return {"wall": summary(walls), "cpu": summary(cpus), "hosts": found}


NEXUSFILE = """
from nexus_core import config, hosts, run, task{extra_import}

config(ssh_user="deploy", ssh_port=1, tailscale_api_url={url!r}, tailscale_api_key="tskey-api-bench")

hosts("web", {members})

@task(on="web")
def hello():
    run("echo hello")
"""


def _variants(api_url: str, filters: str) -> tuple[int, list[tuple[str, str, str]]]:
    """The number of hosts, and (name, members, import) of the group written out and discovered."""
    from nexus_tailscale.source import TailscaleSource

    from nexus_core.plugin import HostSourceContext

    config = {"tailscale_api_url": api_url, "tailscale_api_key": "tskey-api-bench"}
    found = TailscaleSource(HostSourceContext(config=config)).discover(eval(f"dict({filters})"))
    online = [h.address for h in found if (h.online if h.targeted is None else h.targeted)]
    literal = ", ".join(repr(a) for a in online)
    return len(online), [("literal", literal, ""), ("discovered", f'discover("tailscale", {filters})', ", discover")]


def _run_once(cmd: list[str], folder: Path, ok: tuple[int, ...]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``nexus`` process."""
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state"), "NEXUS_SSH_CONFIG": "", "NO_COLOR": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def measure_cli(api_url: str, runs: int, argv: list[str], filters: str, ok: tuple[int, ...]) -> dict[str, Any]:
    """``nexus ARGV`` with the group written out and discovered, alternately; the difference."""
    nexus = str(Path(sys.executable).parent / "nexus")
    out: dict[str, Any] = {"command": "nexus " + " ".join(argv), "filters": filters}
    samples: dict[str, list[tuple[float, float]]] = {"literal": [], "discovered": []}
    with tempfile.TemporaryDirectory() as tmp:
        out["hosts"], variants = _variants(api_url, filters)
        folders = {}
        for name, members, extra in variants:
            folders[name] = Path(tmp) / name
            folders[name].mkdir()
            text = NEXUSFILE.format(url=api_url, members=members, extra_import=extra)
            (folders[name] / "nexusfile.py").write_text(text)
        for i in range(runs + 1):
            for name, folder in folders.items():
                sample = _run_once([nexus, *argv], folder, ok)
                if i:  # the first round is the warm-up
                    samples[name].append(sample)
    for name, got in samples.items():
        out[name] = {"wall": summary([w for w, _ in got]), "cpu": summary([c for _, c in got])}
    out["added_wall"] = out["discovered"]["wall"]["median"] - out["literal"]["wall"]["median"]
    out["added_cpu"] = out["discovered"]["cpu"]["median"] - out["literal"]["cpu"]["median"]
    return out


def _instructions(cmd: list[str], folder: Path, ok: tuple[int, ...], out: Path | None = None) -> int:
    """Instructions of one ``nexus`` process under callgrind (its threads included); the
    callgrind output goes to ``out`` (default: the folder)."""
    import re

    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state"), "NEXUS_SSH_CONFIG": "", "NO_COLOR": "1"}
    out = out or folder / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, *cmd]
    proc = subprocess.run(valgrind, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    got = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode not in ok or not got:
        raise SystemExit(f"{' '.join(valgrind)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(got.group(1))


def measure_callgrind(api_url: str, keep: Path | None = None) -> dict[str, Any]:
    """Instructions of ``run --list-hosts`` on 1,000 hosts written out and discovered, and of
    ``--version``; ``keep``: a folder for the callgrind outputs (``NAME.out``)."""
    nexus = str(Path(sys.executable).parent / "nexus")
    argv = [nexus, "run", "hello", "--list-hosts"]
    with tempfile.TemporaryDirectory() as tmp:
        hosts, variants = _variants(api_url, "online=False")
        counts: dict[str, int] = {}
        for name, members, extra in variants:
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "nexusfile.py").write_text(NEXUSFILE.format(url=api_url, members=members, extra_import=extra))
            _run_once(argv, folder, (0,))  # warm: the state database exists, as at a user's second run
            counts[name] = _instructions(argv, folder, (0,), keep / f"{name}.out" if keep else None)
        counts["version"] = _instructions([nexus, "--version"], Path(tmp), (0,), keep / "version.out" if keep else None)
    per_ms = counts["version"] / (IDLE_VERSION_S * 1000)
    added = counts["discovered"] - counts["literal"]
    return {"hosts": hosts, "instructions": counts, "added_instructions": added, "added_ms": added / per_ms}


def measure_yardstick(runs: int) -> dict[str, Any]:
    """``nexus --version`` in the same session: 55 ms wall and CPU on this machine when idle
    (bench/results/core.md), so the figures above can be scaled when the machine is loaded."""
    nexus = str(Path(sys.executable).parent / "nexus")
    with tempfile.TemporaryDirectory() as tmp:
        got = [_run_once([nexus, "--version"], Path(tmp), (0,)) for _ in range(runs + 1)][1:]
    return {"wall": summary([w for w, _ in got]), "cpu": summary([c for _, c in got]), "idle_s": IDLE_VERSION_S}


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def report(results: dict[str, Any]) -> str:
    """The Markdown table of ``results``."""
    d = results["discover"]
    lines = [
        f"# Tailscale discovery of {DEVICES} devices (local API server)",
        "",
        f"Load average at start: {results['load']}. Medians of {results['runs']} runs (min-max).",
        "",
        "| what | wall | CPU |",
        "|---|---|---|",
        f"| discover in-process (HTTP + parse + filter; {d['hosts']} hosts kept) "
        f"| {_ms(d['wall']['median'])} ({_ms(d['wall']['min'])}-{_ms(d['wall']['max'])}) "
        f"| {_ms(d['cpu']['median'])} ({_ms(d['cpu']['min'])}-{_ms(d['cpu']['max'])}) |",
    ]
    for key in ("run_all", "hosts_list", "run"):
        r = results[key]
        for variant in ("literal", "discovered"):
            v = r[variant]
            how = "written out" if variant == "literal" else "discovered"
            lines.append(
                f"| `{r['command']}`, {r['hosts']} host(s) {how} "
                f"| {_ms(v['wall']['median'])} ({_ms(v['wall']['min'])}-{_ms(v['wall']['max'])}) "
                f"| {_ms(v['cpu']['median'])} ({_ms(v['cpu']['min'])}-{_ms(v['cpu']['max'])}) |"
            )
    y = results["yardstick"]
    lines.append(
        f"| `nexus --version` (yardstick: {_ms(IDLE_VERSION_S)} when idle) "
        f"| {_ms(y['wall']['median'])} ({_ms(y['wall']['min'])}-{_ms(y['wall']['max'])}) "
        f"| {_ms(y['cpu']['median'])} ({_ms(y['cpu']['min'])}-{_ms(y['cpu']['max'])}) |"
    )
    scale = IDLE_VERSION_S / y["cpu"]["median"]
    lines.append("")
    for key in ("run_all", "hosts_list", "run"):
        r = results[key]
        lines.append(
            f"- `{r['command']}`: discovery adds {_ms(r['added_wall'])} wall, {_ms(r['added_cpu'])} CPU; "
            f"scaled by the yardstick (x{scale:.2f}): {_ms(r['added_cpu'] * scale)} "
            f"(target < {TARGET_S * 1000:.0f} ms)"
        )
    lines.append(f"- in-process discovery: {_ms(d['cpu']['median'])} CPU; scaled: {_ms(d['cpu']['median'] * scale)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead (needs valgrind)")
    parser.add_argument("--keep", type=Path, help="with --callgrind: keep the callgrind outputs in this folder")
    parser.add_argument(
        "--name",
        default="tailscale",
        help="results go to NAME.{json,md} or NAME-callgrind.json (default tailscale; a session's own: tailscale-s5)",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from bench.run import compile_sources

    compile_sources("nexus_tailscale")  # timed runs must not compile modules (PYTHONDONTWRITEBYTECODE)
    try:
        from nexus_core import discover  # noqa: F401
    except ImportError:
        raise SystemExit("this nexus-core has no discover(): install the core with host discovery") from None
    from nexus_tailscale.testing import FakeApi

    load: Callable[[], str] = lambda: " ".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    if args.callgrind:
        with FakeApi(fleet(), api_keys={"tskey-api-bench"}) as server:
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
            got = measure_callgrind(server.url, args.keep.resolve() if args.keep else None)
        got["load"] = load()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}-callgrind.json").write_text(json.dumps(got, indent=2) + "\n")
        n = got["instructions"]
        print(
            f"nexus run hello --list-hosts, {got['hosts']} hosts: written out {n['literal'] / 1e6:.1f} M instructions, "
            f"discovered {n['discovered'] / 1e6:.1f} M; nexus --version {n['version'] / 1e6:.1f} M (55 ms idle): "
            f"discovery adds {got['added_instructions'] / 1e6:.1f} M = {got['added_ms']:.1f} ms"
        )
        return
    with FakeApi(fleet(), api_keys={"tskey-api-bench"}) as server:
        results = {
            "devices": DEVICES,
            "target_s": TARGET_S,
            "runs": args.runs,
            "load": load(),
            "discover": measure_discover(server.url, args.runs),
            "run_all": measure_cli(server.url, args.runs, ["run", "hello", "--list-hosts"], "online=False", (0,)),
            "hosts_list": measure_cli(server.url, args.runs, ["hosts", "list"], 'tags=["tag:web"]', (0,)),
            "run": measure_cli(server.url, args.runs, ["run", "-n", "hello"], 'hostname="^node-0001$"', (0, 3)),
            "yardstick": measure_yardstick(args.runs),
        }
    results["load_end"] = load()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
