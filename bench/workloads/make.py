"""GNU make inputs: the diamond DAG as phony targets whose recipe is ``true``; ``make -n`` plan."""

from __future__ import annotations

from pathlib import Path

from bench.workloads import Invocation, diamond_dag, fresh_dir


def local_dag(root: Path, n_tasks: int, jobs: int) -> Invocation:
    """``make -j jobs`` on the diamond DAG (make echoes each recipe line: counted)."""
    work = fresh_dir(root, f"make-dag{n_tasks}")
    dag = diamond_dag(n_tasks)
    out = [f".PHONY: {' '.join(dag)}", f"all: {list(dag)[-1]}", ""]
    for name, deps in dag.items():
        out += [f"{name}: {' '.join(deps)}".rstrip(), "\ttrue", ""]
    (work / "Makefile").write_text("\n".join(out))
    return Invocation(
        tool="make",
        argv=["make", "-j", str(jobs), "-f", str(work / "Makefile"), list(dag)[-1]],
        cwd=str(work),
        expect_stdout=("true", n_tasks),
    )


def dry_run(root: Path, tasks: int, commands: int) -> Invocation:
    """``make -n`` on ``tasks`` targets (ten chains, like bench/core.py) of ``commands`` recipe lines."""
    work = fresh_dir(root, f"make-plan{tasks}x{commands}")
    out = []
    for i in range(tasks):
        dep = f"t{i - 10}" if i >= 10 else ""
        out += [f"t{i}: {dep}".rstrip()] + [f"\techo {i}-{j}" for j in range(commands)] + [""]
    (work / "Makefile").write_text(".PHONY: " + " ".join(f"t{i}" for i in range(tasks)) + "\n" + "\n".join(out))
    return Invocation(
        tool="make -n",
        argv=["make", "-n", "-f", str(work / "Makefile"), f"t{tasks - 1}", f"t{tasks - 2}"],
        cwd=str(work),
        expect_stdout=("echo", 2 * (tasks // 10) * commands),
    )
