"""The planning cache: networkx plans a graph shape once; later runs reuse the phases."""

from __future__ import annotations

import json

from nexus_core.loader import load_project
from nexus_core.plan import ValidationFailed, build_plan, dag_key
from nexus_core.plugins import builtin_registry

SOURCE = """
from nexus_core import task, run

@task
def a():
    run("true")

@task(deps=[a])
def b():
    run("true")

@task(deps=[a])
def c():
    run("true")

@task(deps=[b, c])
def d():
    run("true")
"""


class Memory:
    def __init__(self) -> None:
        self.data: dict[str, list[list[str]]] = {}
        self.hits = 0

    def cached_phases(self, key: str) -> list[list[str]] | None:
        found = self.data.get(key)
        self.hits += found is not None
        return found

    def cache_phases(self, key: str, phases: list[list[str]]) -> None:
        self.data[key] = phases


def plan_of(tmp_path, source: str, cache: Memory | None, requested=None):  # type: ignore[no-untyped-def]
    path = tmp_path / "nexusfile.py"
    path.write_text(source)
    return build_plan(load_project(str(path)), builtin_registry(), requested, cache=cache)


def test_cached_phases_equal_the_ones_networkx_computes(tmp_path):
    cold = plan_of(tmp_path, SOURCE, None)
    cache = Memory()
    first = plan_of(tmp_path, SOURCE, cache)
    second = plan_of(tmp_path, SOURCE, cache)
    assert cold.phases == first.phases == second.phases == (("a",), ("b", "c"), ("d",))
    assert cache.hits >= 2
    partial = plan_of(tmp_path, SOURCE, cache, ["b"])
    assert partial.phases == (("a",), ("b",))


def test_a_changed_graph_is_planned_again_and_cycles_are_never_cached(tmp_path):
    cache = Memory()
    plan_of(tmp_path, SOURCE, cache)
    changed = SOURCE.replace("@task(deps=[b, c])", "@task(deps=[b])")
    assert plan_of(tmp_path, changed, cache).phases == (("a",), ("b", "c"), ("d",))
    cyclic = SOURCE.replace("@task\ndef a():", '@task(deps=["d"])\ndef a():')
    try:
        plan_of(tmp_path, cyclic, cache)
    except ValidationFailed as exc:
        assert any("a -> d" in p.message or "cycle" in p.message for p in exc.problems)
    else:  # pragma: no cover
        raise AssertionError("a cycle must fail validation even with a warm cache")


def test_key_depends_on_names_and_deps_only():
    assert dag_key({"a": [], "b": ["a"]}) == dag_key({"a": [], "b": ["a", "a"]})
    assert dag_key({"a": [], "b": ["a"]}) != dag_key({"a": ["b"], "b": []})


def test_repeat_runs_do_not_import_networkx(nexus_project):
    nexus_project.write(SOURCE)
    assert nexus_project.run("run", "d", "-q").code == 0
    out = nexus_project.run("run", "d", "-q", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.code == 0
    assert "networkx" not in out.stderr
    js = json.loads(nexus_project.run("run", "d", "-n", "--format", "json").stdout)
    assert js["plan"]["phases"] == [["a"], ["b", "c"], ["d"]]
