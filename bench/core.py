#!/usr/bin/env python3
"""Core benchmarks (nexus-core issue): start-up, a one-command run, validation, planning, memory.

Each figure is the median (and min-max) of several runs after a warm-up, measured on
this machine in one go. Results go to bench/results/core.{json,md}. Targets:
`nexus --version` and a one-command `nexus run` < 0.3 s; validating a 1,000-line
nexusfile < 0.1 s; planning 500 tasks x 100 commands < 1 s; peak RSS of a local run < 80 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def nexus_cmd() -> list[str]:
    """The installed console script (as users run it), else ``python -m nexus_core``."""
    script = Path(sys.executable).parent / "nexus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus_core"]


def run_measured(cmd: list[str], cwd: str) -> tuple[float, float, float]:
    """Run once; return wall seconds, CPU seconds and peak RSS (MB) of that one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def timed_process(cmd: list[str], cwd: str, runs: int) -> dict[str, float]:
    """Wall, CPU and peak RSS of a command, over ``runs`` runs after one warm-up."""
    run_measured(cmd, cwd)
    samples = [run_measured(cmd, cwd) for _ in range(runs)]
    return summary([s[0] for s in samples]) | {
        "cpu": statistics.median(s[1] for s in samples),
        "peak_rss_mb": max(s[2] for s in samples),
    }


def timed_call(fn: Callable[[], object], runs: int) -> dict[str, float]:
    """Wall time of an in-process call."""
    fn()
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return summary(walls)


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def big_nexusfile(lines: int) -> str:
    """A realistic nexusfile of about ``lines`` lines: groups, tasks with deps, several commands."""
    out = ["from nexus_core import config, hosts, task, run, env", "config(parallel_limit=8)", ""]
    i = 0
    while len(out) < lines:
        deps = f"deps=[t{i - 1}], " if i else ""
        out += [f"@task({deps}timeout=120)", f"def t{i}():", f'    """Task number {i}."""']
        out += [f'    run("echo step {j} of task {i}", retries=1)' for j in range(4)]
        out.append("")
        i += 1
    return "\n".join(out) + "\n"


def wide_nexusfile(tasks: int, commands: int) -> str:
    """``tasks`` tasks (ten independent chains) each recording ``commands`` commands."""
    out = ["from nexus_core import task, run", ""]
    for i in range(tasks):
        deps = f"deps=[t{i - 10}]" if i >= 10 else ""
        out += [
            f"@task({deps})",
            f"def t{i}():",
            f"    for j in range({commands}):",
            f'        run(f"echo {i}-{{j}}")',
            "",
        ]
    return "\n".join(out)


def main() -> None:
    """Run every core benchmark and write the results."""
    quick = "--quick" in sys.argv
    runs = 5 if quick else 15
    sys.path.insert(0, str(HERE.parent))
    from bench.run import compile_sources
    from nexus_core.loader import load_project
    from nexus_core.plan import build_plan
    from nexus_core.plugins import builtin_registry

    compile_sources()  # timed runs must not compile edited modules (PYTHONDONTWRITEBYTECODE)
    work = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    results: dict[str, dict[str, float]] = {}
    try:
        one = work / "one"
        one.mkdir()
        (one / "nexusfile.py").write_text('from nexus_core import task, run\n@task\ndef hi():\n    run("true")\n')
        nexus = nexus_cmd()
        results["nexus --version"] = timed_process([*nexus, "--version"], str(one), runs)
        results["nexus run (1 local command)"] = timed_process([*nexus, "run", "hi", "-q"], str(one), runs)
        results["python -c pass (floor)"] = timed_process([sys.executable, "-c", "pass"], str(one), runs)

        big = work / "big"
        big.mkdir()
        (big / "nexusfile.py").write_text(big_nexusfile(1000))
        registry = builtin_registry()

        def validate_big() -> None:
            build_plan(load_project(str(big / "nexusfile.py")), registry)

        results["load+validate 1,000-line nexusfile (in-process)"] = timed_call(validate_big, runs)
        results["nexus validate 1,000-line nexusfile"] = timed_process([*nexus, "validate"], str(big), runs)

        wide = work / "wide"
        wide.mkdir()
        (wide / "nexusfile.py").write_text(wide_nexusfile(500, 100))

        def plan_wide() -> None:
            build_plan(load_project(str(wide / "nexusfile.py")), registry)

        results["plan 500 tasks x 100 commands (in-process)"] = timed_call(plan_wide, max(3, runs // 3))
        results["nexus run -n 500x100 (dry-run, JSON)"] = timed_process(
            [*nexus, "run", "t499", "t498", "-n", "--format", "json"], str(wide), max(3, runs // 3)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(exist_ok=True)
    meta = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "runs": runs,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (RESULTS / "core.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [
        "# Core benchmarks",
        "",
        f"Python {meta['python']}, {meta['cpus']} CPUs, {runs} runs each, {meta['when']} UTC.",
        "",
        "| workload | median s | min-max s | CPU s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        cpu = f"{r['cpu']:.3f}" if "cpu" in r else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-"
        lines.append(f"| {name} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {cpu} | {rss} |")
    (RESULTS / "core.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
