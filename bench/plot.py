"""Draw bench/results/sweep.png (W4: wall time against host count) from peers.json.

Run by bench/run.py with the ``tools`` venv's Python (matplotlib lives there):
``python plot.py peers.json sweep.png``.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(src: str, dst: str) -> None:
    """One line per tool: median wall time, min-max as error bars."""
    data = json.load(open(src))
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for key, case in data["cases"].items():
        if not key.startswith("W4@"):
            continue
        n = int(case["params"]["hosts"])
        for tool, r in case["tools"].items():
            if "wall" in r:
                w = r["wall"]
                series.setdefault(tool, []).append((n, w["median"], w["min"], w["max"]))
    if not series:
        print("plot: no W4 results; sweep.png not written")
        return
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = {"nexus": dict(linewidth=2.8, color="black", marker="o", zorder=5)}
    for tool, pts in sorted(series.items(), key=lambda kv: (kv[0] != "nexus", kv[0])):
        pts.sort()
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        kw = styles.get(tool, dict(linewidth=1.5, marker="s"))
        ax.errorbar(xs, ys, yerr=err, label=tool, capsize=3, **kw)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hosts (loopback sshd bed)")
    ax.set_ylabel("wall time, s (median, min-max bars)")
    meta = data["meta"]
    ax.set_title(f"W4: 1 command on N hosts, all in parallel ({meta['cpus']} CPUs{', quick' if meta['quick'] else ''})")
    ax.grid(True, which="both", alpha=0.3)
    xs_all = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(xs_all)
    ax.set_xticklabels([str(x) for x in xs_all])
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst)
    print(f"plot written: {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
