#!/usr/bin/env python3
"""What Tailscale discovery adds to a run: 1,000 devices from a local API server (target < 50 ms).

Three figures, each the median (and min-max) of several runs after a warm-up:

1. ``discover``: in-process, a fresh ``TailscaleSource`` asking the local API server for
   1,000 devices and filtering them (HTTP round trip, JSON parsing, filters): the work a
   run does for its first ``discover("tailscale", ...)`` group.
2. ``import``: importing the source's modules in a new interpreter (``tenacity``, ``limits``,
   ``pybreaker``, ``urllib``) minus a bare interpreter: the one-off cost the run pays.
3. ``run``: ``nexus run -n`` of a task on 250 discovered hosts against the same task on the
   same hosts written out by hand (a dry run: planning and output, no SSH), when the
   installed core resolves ``discover(...)``; the difference is what discovery adds end to end.

Results go to bench/results/tailscale.{json,md}. Usage: ``python bench/tailscale.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEVICES = 1000
TARGET_S = 0.050


def summary(samples: list[float]) -> dict[str, float]:
    """Median, min and max of ``samples`` (seconds)."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def timed(fn: Callable[[], object], runs: int) -> dict[str, float]:
    """Wall time of ``fn()`` over ``runs`` calls after one warm-up."""
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return summary(out)


def fleet() -> list[object]:
    """1,000 devices: a quarter tagged web (a fifth of them offline), the rest db/ci/untagged."""
    from nexus_tailscale.testing import Peer

    peers = []
    for i in range(DEVICES):
        kind = ("tag:web", "tag:db", "tag:ci", "")[i % 4]
        peers.append(
            Peer(
                f"node-{i:04d}",
                f"100.64.{i // 250}.{i % 250 + 1}",
                tags=(kind, "tag:prod") if kind else (),
                online=i % 20 != 0,
                os="linux" if i % 7 else "windows",
            )
        )
    return peers


def measure_discover(api_url: str, runs: int) -> dict[str, float]:
    from nexus_core.plugin import HostSourceContext

    from nexus_tailscale import api
    from nexus_tailscale.source import TailscaleSource

    config = {"tailscale_api_url": api_url, "tailscale_api_key": "tskey-api-bench", "tailscale_api_rate": "1000/second"}
    found: list[int] = []

    def once() -> None:
        api.reset_state()
        hosts = TailscaleSource(HostSourceContext(config=config)).discover({"tags": ["tag:web"], "os": "linux"})
        found.append(len(hosts))

    result = timed(once, runs)
    return result | {"hosts": found[-1]}


def measure_import(runs: int) -> dict[str, float]:
    code_bare = "import nexus_core.plugin"
    code_full = "import nexus_core.plugin, nexus_tailscale.source"

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    run(code_full)
    bare = [run(code_bare) for _ in range(runs)]
    full = [run(code_full) for _ in range(runs)]
    return summary([f - b for f, b in zip(sorted(full), sorted(bare), strict=True)])


NEXUSFILE = """
from nexus_core import config, hosts, run, task{extra_import}

config(ssh_user="deploy", tailscale_api_url={url!r}, tailscale_api_key="tskey-api-bench")

hosts("web", {members})

@task(on="web")
def hello():
    run("echo hello")
"""


def measure_run(api_url: str, runs: int) -> dict[str, object]:
    try:
        from nexus_core import discover  # noqa: F401
    except ImportError:
        return {"skipped": "the installed nexus-core has no discover() yet"}
    from nexus_core.plugin import HostSourceContext

    from nexus_tailscale.source import TailscaleSource

    config = {"tailscale_api_url": api_url, "tailscale_api_key": "tskey-api-bench"}
    hosts = TailscaleSource(HostSourceContext(config=config)).discover({"tags": ["tag:web"]})
    literal = ", ".join(repr(h.address) for h in hosts if h.online)
    nexus = str(Path(sys.executable).parent / "nexus")
    out: dict[str, object] = {"hosts": literal.count(",") + 1}
    with tempfile.TemporaryDirectory() as tmp:
        for name, members, extra in (
            ("literal", literal, ""),
            ("discovered", 'discover("tailscale", tags=["tag:web"])', ", discover"),
        ):
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "nexusfile.py").write_text(NEXUSFILE.format(url=api_url, members=members, extra_import=extra))

            def once(folder: Path = folder) -> None:
                proc = subprocess.run([nexus, "run", "-n", "hello"], cwd=folder, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"nexus run -n failed ({proc.returncode}):\n{proc.stderr[-2000:]}")

            out[name] = timed(once, runs)
    literal_s = out["literal"]["median"]  # type: ignore[index]
    discovered_s = out["discovered"]["median"]  # type: ignore[index]
    out["added"] = discovered_s - literal_s
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    from nexus_tailscale.testing import FakeApi

    with FakeApi(fleet(), api_keys={"tskey-api-bench"}) as server:  # type: ignore[arg-type]
        results = {
            "devices": DEVICES,
            "target_s": TARGET_S,
            "discover": measure_discover(server.url, args.runs),
            "import": measure_import(max(5, args.runs // 3)),
            "run": measure_run(server.url, max(5, args.runs // 3)),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tailscale.json").write_text(json.dumps(results, indent=2) + "\n")
    d, i, r = results["discover"], results["import"], results["run"]
    lines = [
        f"# Tailscale discovery of {DEVICES} devices (local API server)",
        "",
        "| what | median | min | max |",
        "|---|---|---|---|",
        f"| discover (HTTP + parse + filter, {d['hosts']} hosts kept) | {d['median'] * 1000:.1f} ms "
        f"| {d['min'] * 1000:.1f} ms | {d['max'] * 1000:.1f} ms |",
        f"| import of the source's modules | {i['median'] * 1000:.1f} ms | {i['min'] * 1000:.1f} ms "
        f"| {i['max'] * 1000:.1f} ms |",
    ]
    if "added" in r:
        lines += [
            f"| `nexus run -n`, {r['hosts']} hosts written out | {r['literal']['median'] * 1000:.0f} ms "
            f"| {r['literal']['min'] * 1000:.0f} ms | {r['literal']['max'] * 1000:.0f} ms |",
            f"| `nexus run -n`, the same hosts discovered | {r['discovered']['median'] * 1000:.0f} ms "
            f"| {r['discovered']['min'] * 1000:.0f} ms | {r['discovered']['max'] * 1000:.0f} ms |",
            "",
            f"Added to a run: {r['added'] * 1000:.1f} ms (target < {TARGET_S * 1000:.0f} ms).",
        ]
    else:
        lines += ["", f"End-to-end run: {r['skipped']}."]
    (RESULTS / "tailscale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
