"""Invoke inputs: the diamond DAG as ``@task(pre=[...])`` tasks running ``c.run("true")``.

Invoke has no parallel execution: it runs the deduplicated pre-tasks one after the other.
``--echo`` prints each command, which is how the run is checked.
"""

from __future__ import annotations

from pathlib import Path

from bench.workloads import Invocation, diamond_dag, fresh_dir


def local_dag(root: Path, n_tasks: int, invoke_bin: str) -> Invocation:
    """``invoke --echo tLAST`` on the diamond DAG."""
    work = fresh_dir(root, f"invoke-dag{n_tasks}")
    dag = diamond_dag(n_tasks)
    out = ["from invoke import task", ""]
    for name, deps in dag.items():
        pre = f"pre=[{', '.join(deps)}]" if deps else ""
        out += [f"@task({pre})", f"def {name}(c):", '    c.run("true")', "", ""]
    (work / "tasks.py").write_text("\n".join(out))
    return Invocation(
        tool="invoke",
        argv=[invoke_bin, "--echo", list(dag)[-1]],
        cwd=str(work),
        expect_stdout=("true", n_tasks),
        note="sequential (Invoke has no parallel runner)",
    )
