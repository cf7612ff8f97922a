#!/usr/bin/env python3
"""Discovery benchmark: what discovering 1,000 hosts adds to a run (target: < 50 ms).

Two projects plan the same 1,000 SSH hosts with ``nexus run deploy --list-hosts`` (plans,
connects to nothing): one writes them out in ``hosts("fleet", ...)``, the other reads them
from an inventory file (``inventory("inventory.toml")``, then Ansible INI and YAML). The
difference of the medians is what discovery costs a run. The in-process figures time
``nexus_core.discovery.resolve`` alone (parse, convert, expand), cold (file changed) and
warm (file unchanged: the parsed inventory is reused).

    python bench/discovery.py [--hosts 1000] [--runs 7]

Results: bench/results/discovery.{json,md}. A plugin source over the network (nexus-tailscale
against its local API server) is measured by that plugin's own benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from core import RESULTS, nexus_cmd, summary, timed_process  # noqa: E402

TASK = '\n\n@task(on="fleet")\ndef deploy():\n    run("uptime")\n'


def names(n: int) -> list[str]:
    return [f"web-{i:04d}.example.com" for i in range(n)]


def write_projects(root: Path, n: int) -> dict[str, Path]:
    """One folder per way of naming the hosts; each nexusfile has the same task on group ``fleet``."""
    hosts = names(n)
    out: dict[str, Path] = {}

    def project(name: str, nexusfile: str, files: dict[str, str]) -> None:
        folder = root / name
        folder.mkdir()
        (folder / "nexusfile.py").write_text(nexusfile + TASK, encoding="utf-8")
        for fname, text in files.items():
            (folder / fname).write_text(text, encoding="utf-8")
        out[name] = folder

    head = "from nexus_core import discover, hosts, inventory, run, task\n"
    literal = ", ".join(f'"deploy@{h}"' for h in hosts)
    project("literal", head + f'hosts("fleet", {literal})\n', {})
    toml = 'user = "deploy"\n\n[groups.fleet]\nhosts = [\n' + "".join(f'  "{h}",\n' for h in hosts) + "]\n"
    toml += "".join(
        f'\n[hosts."{h}"]\ntags = ["rack-{i % 20}"]\nvars = {{ slot = {i} }}\n' for i, h in enumerate(hosts)
    )
    project("toml", head + 'inventory("inventory.toml")\n', {"inventory.toml": toml})
    ini = "[fleet]\n" + "".join(f"{h} ansible_user=deploy slot={i}\n" for i, h in enumerate(hosts))
    project("ini", head + 'inventory("hosts.ini")\n', {"hosts.ini": ini})
    yml = "all:\n  children:\n    fleet:\n      hosts:\n" + "".join(
        f"        {h}:\n          ansible_user: deploy\n          slot: {i}\n" for i, h in enumerate(hosts)
    )
    project("yaml", head + 'inventory("hosts.yml")\n', {"hosts.yml": yml})
    return out


def in_process(folder: Path, runs: int) -> dict[str, dict[str, float]]:
    """``resolve`` alone: cold (the file was touched: parsed again) and warm (parsed copy reused)."""
    from nexus_core.discovery import resolve
    from nexus_core.loader import load_project
    from nexus_core.plugins import PluginManager

    registry = PluginManager().registry
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        project = load_project(str(folder / "nexusfile.py"))
        inventory = next(p for p in folder.iterdir() if p.name != "nexusfile.py")
        cold, warm = [], []
        for _ in range(runs):
            os.utime(inventory)  # a new mtime: the inventory is read and parsed again
            start = time.perf_counter()
            found = resolve(project, registry)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            resolve(project, registry)
            warm.append(time.perf_counter() - start)
        assert found.found and all(len(f.hosts) == len(found.found[0].hosts) for f in found.found)
    finally:
        os.chdir(cwd)
    return {"cold": summary(cold), "warm": summary(warm)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from bench.run import compile_sources

    compile_sources()  # timed runs must not compile modules (PYTHONDONTWRITEBYTECODE)
    results: dict[str, object] = {
        "hosts": args.hosts,
        "runs": args.runs,
        "python": sys.version.split()[0],
        "load_average_before": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="nexus-bench-discovery-") as tmp:
        env_state = Path(tmp) / "state"
        os.environ["XDG_STATE_HOME"] = str(env_state)
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        os.environ["NEXUS_LOAD_PLUGINS"] = os.environ.get("NEXUS_LOAD_PLUGINS", "nexus-ssh")
        projects = write_projects(Path(tmp), args.hosts)
        cli: dict[str, dict[str, float]] = {}
        for name, folder in projects.items():
            cli[name] = timed_process([*nexus_cmd(), "run", "deploy", "--list-hosts"], str(folder), args.runs)
            print(f"nexus run --list-hosts, {name:7s}: median {cli[name]['median'] * 1000:7.1f} ms", flush=True)
        results["cli"] = cli
        base = cli["literal"]["median"]
        results["added_ms"] = {k: round((v["median"] - base) * 1000, 1) for k, v in cli.items() if k != "literal"}
        # CPU time of the child is far less sensitive than wall time to a machine others load
        base_cpu = cli["literal"]["cpu"]
        results["added_cpu_ms"] = {k: round((v["cpu"] - base_cpu) * 1000, 1) for k, v in cli.items() if k != "literal"}
        inproc = {name: in_process(folder, args.runs) for name, folder in projects.items() if name != "literal"}
        results["resolve"] = inproc
    results["load_average_after"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "discovery.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# Discovery of {args.hosts} hosts",
        "",
        f"`nexus run deploy --list-hosts` (plans {args.hosts} SSH hosts, connects to nothing), median of "
        f"{args.runs} runs after a warm-up; `added` is the difference with the same hosts written in the nexusfile.",
        f"`resolve()` is discovery alone, in process (cold: the file changed and is parsed; warm: the parsed "
        f"inventory is reused). Load average {results['load_average_before']:.1f} before, "
        f"{results['load_average_after']:.1f} after (2 cores).",
        "",
        "| hosts from | wall median (ms) | min-max (ms) | added wall (ms) | CPU median (ms) | added CPU (ms) "
        "| resolve() cold (ms) | resolve() warm (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in cli.items():
        added = results["added_ms"].get(name, 0.0) if isinstance(results["added_ms"], dict) else 0.0
        res = inproc.get(name)
        cold = f"{res['cold']['median'] * 1000:.1f}" if res else "-"
        warm = f"{res['warm']['median'] * 1000:.1f}" if res else "-"
        added_cpu = results["added_cpu_ms"].get(name, 0.0) if isinstance(results["added_cpu_ms"], dict) else 0.0
        lines.append(
            f"| {name} | {row['median'] * 1000:.0f} | {row['min'] * 1000:.0f}-{row['max'] * 1000:.0f} | "
            f"{added if name != 'literal' else '-'} | {row['cpu'] * 1000:.0f} | "
            f"{added_cpu if name != 'literal' else '-'} | {cold} | {warm} |"
        )
    (RESULTS / "discovery.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"median run-to-run spread: {statistics.median(r['max'] - r['min'] for r in cli.values()) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
