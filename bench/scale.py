#!/usr/bin/env python3
"""Nexus at 100, 250 and 1,000 hosts against pyinfra and Fabric (and Ansible at 100).

    python bench/scale.py                         # W1 and W4 at 100, 250, 1000 hosts, 1 round
    python bench/scale.py --sizes 250 --runs 2    # while iterating
    python bench/scale.py --tools nexus --sizes 1000 --out scale-nexus

Workloads (not run.py's W4, which is a host-count sweep of one command):

- **W1**: one command (``echo hello``) on every host, all hosts at once.
- **W4**: a 3-step pipeline on every host: Nexus runs three tasks chained by ``deps``
  (``prepare`` -> ``build`` -> ``finish``, one command each); pyinfra one operation with the
  three commands, Fabric three ``group.run`` calls, Ansible three ``raw`` tasks.

Needs root: it starts a bed of ``max(sizes)`` loopback hosts (``nexus_core/testing/sshbed.py``:
63 sshd processes of 16 addresses for 1,000 hosts, on 127.0.0.2... 127.0.4.41, port 2298 by
default) and stops it at exit. It raises its own ``RLIMIT_NOFILE`` soft limit to the hard
limit before anything starts (tools inherit it: 1,000 connections need more than the usual
1,024 descriptors). Every run is checked as in run.py (exit code, output, sshd's logs show
every host reached). Client CPU (user+sys, ``wait4``), wall time and peak RSS (``ru_maxrss``
of the largest process) come from the same runs. Results: ``bench/results/scale.{md,json}``
and ``bench/results/scale.svg`` (wall time against hosts, drawn by this script).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import peers as peers_mod  # noqa: E402
from bench import run as run_mod  # noqa: E402
from bench.run import RESULTS, WORK, Case, SshdWatch, ToolResult, compile_sources, loadavg, log, measure  # noqa: E402
from bench.workloads import Invocation, Target, ansible, fabric, fresh_dir, nexus, pyinfra  # noqa: E402

W4_COMMANDS = ["echo hello prepare", "echo hello build", "echo hello finish"]
TOOLS = ("nexus", "pyinfra", "fabric", "ansible-tuned")
ANSIBLE_MAX_HOSTS = 100  # Ansible takes minutes beyond this on 2 cores


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, target


def sized(target: Target, n: int) -> Target:
    """``target`` with a known_hosts file of its first ``n`` hosts only.

    Every tool gets the file a fleet of that size would have: Paramiko's ``HostKeys.load``
    (Fabric, pyinfra) checks each line against those read before, so a 2,000-line file of
    the whole 1,000-host bed made each of Fabric's 100 connections spend seconds on it.
    """
    wanted = {f"[{a}]:{target.port}" for a in target.take(n)}
    lines = [ln for ln in Path(target.known_hosts).read_text().splitlines(True) if ln.split(" ", 1)[0] in wanted]
    path = Path(target.known_hosts).with_name(f"known_hosts-{n}")
    path.write_text("".join(lines))
    return dataclasses.replace(target, known_hosts=str(path))


def nexus_pipeline(root: Path, target: Target, n_hosts: int) -> Invocation:
    """W4 for Nexus: three chained tasks, one command each, on every host."""
    work = fresh_dir(root, f"nexus-pipeline-{n_hosts}")
    hosts = target.take(n_hosts)
    host_list = ",\n    ".join(repr(f"{target.user}@{a}:{target.port}") for a in hosts)
    steps = [("prepare", ""), ("build", "deps=[prepare], "), ("finish", "deps=[build], ")]
    body = "".join(
        f"\n\n@task({dep}on='bench')\ndef {name}():\n    run({cmd!r})\n"
        for (name, dep), cmd in zip(steps, W4_COMMANDS, strict=True)
    )
    (work / "nexusfile.py").write_text(
        "from nexus_core import config, hosts, task, run\n\n"
        f"config(\n    ssh_identity={target.key!r},\n    ssh_known_hosts_file={target.known_hosts!r},\n"
        f"    parallel_limit={n_hosts},\n    forks={n_hosts},\n)\n\n"
        f"hosts(\n    'bench',\n    {host_list},\n)\n{body}"
    )
    return Invocation(
        tool="nexus",
        argv=[*nexus.nexus_cmd(), "run", "finish", "-q"],
        cwd=str(work),
        env={"NEXUS_SSH_CONFIG": "", "NO_COLOR": "1", "CI": "1"},
        # Session mode: one shell session per pooled connection, kept across the three tasks.
        expect_sessions=n_hosts,
        expect_hosts=hosts,
    )


def invocations(
    key: str, work: Path, target: Target, n: int, peers: dict[str, peers_mod.Peer], tools: list[str]
) -> dict[str, Invocation]:
    """Every selected tool's inputs for workload ``key`` on ``n`` hosts."""
    commands = ["echo hello"] if key == "W1" else W4_COMMANDS
    out: dict[str, Invocation] = {}
    if "nexus" in tools:
        out["nexus"] = nexus.remote(work, target, n, commands) if key == "W1" else nexus_pipeline(work, target, n)
    if "pyinfra" in tools and peers["pyinfra"].ok:
        out["pyinfra"] = pyinfra.remote(work, target, n, commands, peers["pyinfra"].script("pyinfra"))
    if "fabric" in tools and peers["fabric"].ok:
        out["fabric"] = fabric.remote(work, target, n, commands, peers["fabric"].python)
    if "ansible-tuned" in tools and peers["ansible"].ok and n <= ANSIBLE_MAX_HOSTS:
        playbook = peers["ansible"].script("ansible-playbook")
        out["ansible-tuned"] = ansible.remote(work, target, n, commands, playbook, tuned=True)
    return out


def rounds(case: Case, invs: dict[str, Invocation], watch: SshdWatch, runs: int, versions: dict[str, str]) -> None:
    """``runs`` rounds, every tool once per round in rotating order, all recorded (no warm-up:
    the smaller sizes ran every tool before, and a 1,000-host Fabric run takes minutes)."""
    order = list(invs)
    case.load.append(loadavg())
    for tool, inv in invs.items():
        case.tools[tool] = ToolResult(tool, versions.get(tool, ""), inv.note)
    failed: set[str] = set()
    try:
        for rnd in range(runs):
            walls: dict[str, float] = {}
            for tool in order[rnd % len(order) :] + order[: rnd % len(order)]:
                if tool in failed:
                    continue
                sample = measure(invs[tool], watch)
                if sample.error:
                    failed.add(tool)
                    case.tools[tool].error = f"run {rnd + 1}: {sample.error}"
                    log(f"{case.key} {tool} FAILED: {sample.error}")
                    continue
                walls[tool] = sample.wall
                case.tools[tool].samples.append(sample)
                log(f"{case.key} {tool}: {sample.wall:.2f}s wall, {sample.cpu:.2f}s CPU, {sample.rss_mb:.0f} MB")
            case.rounds.append(walls)
    finally:
        case.load.append(loadavg())


# --- report ------------------------------------------------------------------------------------


def _med(r: dict[str, object], what: str) -> float | None:
    v = r.get(what)
    return float(v["median"]) if isinstance(v, dict) and "median" in v else None  # type: ignore[index]


def render(data: dict[str, object]) -> str:
    """The Markdown report: one table for every workload and size."""
    cases: dict[str, dict[str, object]] = data["cases"]  # type: ignore[assignment]
    lines = [
        "# Nexus at scale: W1 and W4 at 100, 250 and 1,000 hosts",
        "",
        f"Generated by `bench/scale.py` on {data['date']} ({data['seconds']:.0f} s, {data['runs']} round(s) "
        f"per case, medians). Open-files limit raised to {data['nofile']} for the run. "
        "Ratios are Nexus / tool, round by round (below 1: Nexus is faster / uses less)."
        + (" The hosts' homes on a journaled ext4 (`--journaled`)." if data.get("journaled") else ""),
        "",
        "| case | tool | wall s | client CPU s | peak RSS MB | sshd CPU s | Nexus/tool wall | Nexus/tool CPU | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, case in cases.items():
        tools: dict[str, dict[str, object]] = case["tools"]  # type: ignore[assignment]
        base = tools.get("nexus", {})
        load = case.get("load_avg_before_after", [])
        for tool, r in tools.items():
            if "error" in r and "wall" not in r:
                first = str(r["error"]).splitlines()[0]
                lines.append(f"| {key} | {tool} | failed: {first} | | | | | | |")
                continue
            wall, cpu, rss, srv = (_med(r, w) for w in ("wall", "cpu", "rss_mb", "server_cpu"))
            bw, bc = _med(base, "wall"), _med(base, "cpu")
            rw = f"{bw / wall:.2f}" if tool != "nexus" and bw and wall else ""
            rc = f"{bc / cpu:.2f}" if tool != "nexus" and bc and cpu else ""
            lines.append(
                f"| {key} | {tool} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {srv:.1f} | {rw} | {rc} | "
                f"{'-'.join(f'{x:.1f}' for x in load)} |"  # type: ignore[union-attr]
            )
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v), ""]  # type: ignore[union-attr]
    return "\n".join(lines)


COLORS = {"nexus": "#1f77b4", "pyinfra": "#d62728", "fabric": "#2ca02c", "ansible-tuned": "#9467bd"}


def svg_plot(data: dict[str, object]) -> str:
    """Wall time against hosts, one line per tool and workload (W1 solid, W4 dashed), log-log."""
    import math

    cases: dict[str, dict[str, object]] = data["cases"]  # type: ignore[assignment]
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for key, case in cases.items():
        wl, _, n = key.partition("@")
        for tool, r in case["tools"].items():  # type: ignore[attr-defined]
            w = _med(r, "wall")
            if w:
                series.setdefault((wl, tool), []).append((int(n), w))
    width, height, pad = 640, 420, 60
    xs = [n for pts in series.values() for n, _ in pts] or [100, 1000]
    ys = [w for pts in series.values() for _, w in pts] or [1, 10]
    x0, x1 = math.log10(min(xs) * 0.8), math.log10(max(xs) * 1.25)
    y0, y1 = math.log10(min(ys) * 0.7), math.log10(max(ys) * 1.4)

    def px(n: float) -> float:
        return pad + (math.log10(n) - x0) / (x1 - x0) * (width - 2 * pad)

    def py(w: float) -> float:
        return height - pad - (math.log10(w) - y0) / (y1 - y0) * (height - 2 * pad)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">Wall time against hosts '
        "(W1 solid, W4 dashed; log-log)</text>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">hosts</text>',
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">wall s</text>',
    ]
    for n in sorted(set(xs)):
        out.append(f'<text x="{px(n):.1f}" y="{height - pad + 16}" text-anchor="middle">{n}</text>')
    for w in (0.5, 1, 2, 5, 10, 20, 50, 100, 200):
        if y0 <= math.log10(w) <= y1:
            out.append(f'<text x="{pad - 6}" y="{py(w) + 4:.1f}" text-anchor="end">{w:g}</text>')
            out.append(f'<line x1="{pad}" y1="{py(w):.1f}" x2="{width - pad}" y2="{py(w):.1f}" stroke="#ddd"/>')
    legend_y = pad
    for (wl, tool), pts in sorted(series.items()):
        pts.sort()
        color = COLORS.get(tool, "#555")
        dash = ' stroke-dasharray="6,4"' if wl == "W4" else ""
        path = " ".join(f"{px(n):.1f},{py(w):.1f}" for n, w in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{px(n):.1f}" cy="{py(w):.1f}" r="3" fill="{color}"/>' for n, w in pts]
        out.append(
            f'<line x1="{width - pad - 150}" y1="{legend_y}" x2="{width - pad - 125}" y2="{legend_y}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{width - pad - 120}" y="{legend_y + 4}">{tool} {wl}</text>')
        legend_y += 16
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    """Parse options, start the bed, run every case, write the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,250,1000", help="host counts (max 2400)")
    ap.add_argument("--only", default="W1,W4", help="workloads: W1, W4")
    ap.add_argument("--runs", type=int, default=1, help="rounds per case (after one checked warm-up)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    ap.add_argument("--port", type=int, default=2298)
    ap.add_argument("--out", default="scale", help="results/OUT.{md,json} and OUT.svg")
    ap.add_argument(
        "--journaled",
        action="store_true",
        help="the hosts' homes on a fresh ext4 with a journal (a loop device made for the sitting), as on"
        " a server: this VM's root ext4 has none, and there a new file costs a scan of the inodes freed in"
        " the last minutes (see bench/ab.py's journaled())",
    )
    args = ap.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [w for w in only if w not in ("W1", "W4")] + [t for t in tools if t not in TOOLS]
    if bad or not sizes or min(sizes) < 1 or args.runs < 1:
        raise SystemExit(f"bad options: {bad or args.sizes or args.runs}; see --help")
    # Started in the background by a shell, SIGINT may be ignored: restore it, and make SIGTERM
    # an exit too, so that the bed's atexit stop runs whichever way the bench is ended.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_mod.RUN_TIMEOUT = 900.0  # one run's bound: Fabric on 1,000 hosts takes minutes
    before, nofile = raise_nofile()
    log(f"open-files limit: {before} -> {nofile}")
    t_start = time.monotonic()
    peers = peers_mod.ensure_all(["pyinfra", "fabric", "ansible"])
    compile_sources()
    versions = {name: p.version for name, p in peers.items() if p.ok}
    versions["ansible-tuned"] = versions.pop("ansible", "")
    versions["nexus"] = "working tree"
    from nexus_core.testing.sshbed import USER_KEY, SshBed

    if args.journaled:
        from ab import journaled  # bench/ is the script's folder: importable as is

        with journaled():
            cases = sitting(args, sizes, only, tools, peers, versions, t_start, nofile, SshBed, USER_KEY)
    else:
        cases = sitting(args, sizes, only, tools, peers, versions, t_start, nofile, SshBed, USER_KEY)
    data = write(args.out, cases, t_start, args.runs, nofile, versions, args.journaled)
    print(render(data))


def sitting(
    args: argparse.Namespace,
    sizes: list[int],
    only: list[str],
    tools: list[str],
    peers: dict[str, peers_mod.Peer],
    versions: dict[str, str],
    t_start: float,
    nofile: int,
    bed_class: Any,
    user: str,
) -> list[Case]:
    """Start the bed, run every case (results written as they come), stop the bed."""
    n_bed = max(sizes)
    log(f"starting the sshd bed: {n_bed} hosts, port {args.port}")
    bed = bed_class(n_hosts=n_bed, port=args.port, bastion=False, start_timeout=180)
    atexit.register(bed.stop)
    bed.start()
    target = Target(
        user=user,
        key=bed.key_path("ed25519"),
        known_hosts=bed.known_hosts,
        port=bed.port,
        addresses=tuple(h.address for h in bed.hosts),
    )
    watch = SshdWatch(bed)
    cases: list[Case] = []
    try:
        for n in sizes:
            for key in only:
                title = f"{key}: {n} hosts x " + ("1 command" if key == "W1" else "a 3-step pipeline")
                log(title)
                case = Case(f"{key}@{n}", title, {"hosts": n})
                invs = invocations(key, WORK / "scale" / f"{key}-{n}", sized(target, n), n, peers, tools)
                rounds(case, invs, watch, args.runs, versions)
                cases.append(case)
                write(args.out, cases, t_start, args.runs, nofile, versions, args.journaled)  # kept as it goes
    finally:
        bed.stop()
    return cases


def write(
    out: str,
    cases: list[Case],
    t_start: float,
    runs: int,
    nofile: int,
    versions: dict[str, str],
    journaled: bool = False,
) -> dict[str, object]:
    """Write results/OUT.{json,md,svg} with the cases so far; returns the data."""
    data: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.monotonic() - t_start,
        "runs": runs,
        "nofile": nofile,
        "load_end": loadavg(),
        "versions": versions,
        "journaled": journaled,
        "cases": {c.key: c.as_json() for c in cases},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{out}.json").write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / f"{out}.md").write_text(render(data))
    (RESULTS / f"{out}.svg").write_text(svg_plot(data))
    return data


if __name__ == "__main__":
    main()
