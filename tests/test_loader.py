"""Finding and loading nexusfiles in-process: isolation, relative paths, errors at the file's own line."""

from __future__ import annotations

import os
import sys
import textwrap
import types
from pathlib import Path

import pytest

from nexus_core import dsl
from nexus_core.loader import NexusfileNotFound, find_nexusfile, load_project
from nexus_core.model import Problem, Project
from nexus_core.plan import Plan, ValidationFailed, build_plan
from nexus_core.plugins import builtin_registry
from nexus_core.registry import Registry
from nexus_core.testing import NexusProject

HEADER = "from nexus_core import config, env, hostname, hosts, run, task\n"


def make(folder: Path, source: str, **files: str) -> Path:
    """Write ``folder/nexusfile.py`` (with the import line) and extra files; return the nexusfile."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    path = folder / "nexusfile.py"
    path.write_text(HEADER + textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, marker: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(marker)


def plan_of(path: Path, registry: Registry | None = None) -> Plan:
    return build_plan(load_project(str(path)), registry or builtin_registry())


def problems_of(path: Path, registry: Registry | None = None) -> list[Problem]:
    with pytest.raises(ValidationFailed) as err:
        plan_of(path, registry)
    return err.value.problems


def commands(plan: Plan, task: str) -> list[str]:
    return [c.cmd for hp in plan.tasks[task].hosts for c in hp.commands]


# --- finding ------------------------------------------------------------------------------------


def test_find_in_folder_and_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_CONFIG", raising=False)
    path = make(tmp_path / "proj", "")
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_nexusfile(start=str(deep)) == str(path)
    assert find_nexusfile(start=str(tmp_path / "proj")) == str(path)
    monkeypatch.chdir(deep)
    assert find_nexusfile() == str(path)


def test_find_explicit_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_CONFIG", raising=False)
    path = make(tmp_path / "proj", "")
    other = tmp_path / "other.py"
    other.write_text("", encoding="utf-8")
    assert find_nexusfile(str(other), start=str(tmp_path / "proj")) == str(other)
    assert find_nexusfile(str(tmp_path / "proj")) == str(path)  # a folder means its nexusfile.py
    monkeypatch.setenv("NEXUS_CONFIG", str(other))
    assert find_nexusfile(start=str(tmp_path / "proj")) == str(other)
    with pytest.raises(NexusfileNotFound, match="does not exist"):
        find_nexusfile(str(tmp_path / "missing.py"))


def test_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_CONFIG", raising=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NexusfileNotFound, match="or its parents"):
        find_nexusfile(start=str(tmp_path / "empty"))


# --- isolation ----------------------------------------------------------------------------------

ISOLATED = """
import helpers

@task
def {name}():
    run("echo " + helpers.VALUE)

@task
def late():
    import helpers as again  # imported at plan time, from this project's folder too
    run("echo late " + again.VALUE)
"""


def test_two_nexusfiles_in_one_process_share_nothing(tmp_path: Path) -> None:
    path_sys = list(sys.path)
    cwd = os.getcwd()
    helpers_before = sys.modules.get("helpers")  # another test may have one: it must stay as it was
    a = make(tmp_path / "a", ISOLATED.format(name="alpha"), **{"helpers.py": "VALUE = 'from-a'\n"})
    b = make(tmp_path / "b", ISOLATED.format(name="beta"), **{"helpers.py": "VALUE = 'from-b'\n"})

    project_a = load_project(str(a))
    project_b = load_project(str(b))
    assert not project_a.problems and not project_b.problems
    assert list(project_a.tasks) == ["alpha", "late"]
    assert list(project_b.tasks) == ["beta", "late"]

    plan_a = build_plan(project_a, builtin_registry())
    plan_b = build_plan(project_b, builtin_registry())
    assert commands(plan_a, "alpha") == ["echo from-a"]
    assert commands(plan_b, "beta") == ["echo from-b"]
    assert commands(plan_a, "late") == ["echo late from-a"]
    assert commands(plan_b, "late") == ["echo late from-b"]

    # nothing of either project stays behind in the process
    assert sys.modules.get("helpers") is helpers_before
    assert not any(str(tmp_path) in (getattr(m, "__file__", None) or "") for m in list(sys.modules.values()))
    assert sys.path == path_sys
    assert os.getcwd() == cwd
    assert dsl.current_project() is None


def test_a_module_of_the_same_name_loaded_elsewhere_is_shadowed_then_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = types.ModuleType("helpers")
    foreign.VALUE = "foreign"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "helpers", foreign)
    a = make(tmp_path / "a", ISOLATED.format(name="alpha"), **{"helpers.py": "VALUE = 'from-a'\n"})
    plan = plan_of(a)
    assert commands(plan, "alpha") == ["echo from-a"]
    assert commands(plan, "late") == ["echo late from-a"]
    assert sys.modules["helpers"] is foreign


def test_globals_do_not_leak_between_loads(tmp_path: Path) -> None:
    a = make(tmp_path / "a", 'SECRET = "a"\nconfig(parallel_limit=3)\n@task\ndef t():\n    run("echo")\n')
    b = make(tmp_path / "b", "print(SECRET)  # here\n")
    project_a = load_project(str(a))
    project_b = load_project(str(b))
    assert project_a.config == {"parallel_limit": 3}
    assert project_b.config == {}
    assert not project_b.tasks
    (problem,) = project_b.problems
    assert problem.message == "NameError: name 'SECRET' is not defined"
    assert problem.location is not None and problem.location.line == line_of(b, "# here")


def test_loading_the_same_file_twice_gives_fresh_projects(tmp_path: Path) -> None:
    path = make(tmp_path / "a", '@task\ndef t():\n    run("echo")\n')
    first, second = load_project(str(path)), load_project(str(path))
    assert first is not second
    assert list(first.tasks) == list(second.tasks) == ["t"]
    assert not second.problems  # not "defined twice"


def test_nexusfile_module_name_and_file(tmp_path: Path) -> None:
    path = make(tmp_path / "a", '@task\ndef t():\n    run(__name__ + " " + __file__)\n')
    plan = plan_of(path)
    assert commands(plan, "t") == [f"nexusfile {path}"]
    assert "nexusfile" not in sys.modules


# --- relative paths and working directory -------------------------------------------------------


def test_relative_paths_resolve_against_the_nexusfile_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    root = tmp_path / "proj"
    path = make(
        root,
        """
        import os
        VERSION = open("VERSION").read().strip()
        LOAD_CWD = os.getcwd()

        @task
        def build():
            run("echo " + VERSION + " " + LOAD_CWD + " " + os.getcwd())
            run("make", cwd="sub")
            run("make", cwd="/abs/path")
        """,
        VERSION="1.2.3\n",
    )
    plan = plan_of(path)
    assert plan.root == str(root)
    first, sub, absolute = plan.tasks["build"].hosts[0].commands
    assert first.cmd == f"echo 1.2.3 {root} {root}"
    assert sub.cwd == str(root / "sub")
    assert absolute.cwd == "/abs/path"
    assert os.getcwd() == str(elsewhere)


def test_local_commands_run_in_the_nexusfile_folder(nexus_project: NexusProject) -> None:
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def where():
            run("pwd > where.txt")
            run("pwd > here.txt", cwd="sub")
        """
    )
    (nexus_project.root / "sub").mkdir()
    deep = nexus_project.root / "a" / "b"
    deep.mkdir(parents=True)
    out = nexus_project.run("run", "where", cwd=deep, env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == 0, str(out)
    root = nexus_project.root.resolve()
    assert Path((nexus_project.root / "where.txt").read_text().strip()).resolve() == root
    assert Path((nexus_project.root / "sub" / "here.txt").read_text().strip()).resolve() == root / "sub"
    assert not (deep / "where.txt").exists()


# --- errors at the nexusfile's own line ---------------------------------------------------------


def test_syntax_error_line(tmp_path: Path) -> None:
    path = make(tmp_path / "a", "@task\ndef t(:  # here\n    run('x')\n")
    (problem,) = load_project(str(path)).problems
    assert problem.code == "syntax"
    assert problem.location is not None
    assert (problem.location.path, problem.location.line) == (str(path), line_of(path, "# here"))
    assert "def t(:" in problem.hint


def test_null_byte_is_located(tmp_path: Path) -> None:
    path = tmp_path / "nexusfile.py"
    path.write_bytes(b"x = 1\ny = 2\0\n")
    (problem,) = load_project(str(path)).problems
    assert problem.code == "syntax"
    assert problem.location is not None and problem.location.line == 2
    assert "null byte" in problem.message


def test_unreadable_nexusfile(tmp_path: Path) -> None:
    (problem,) = load_project(str(tmp_path / "missing.py")).problems
    assert "cannot read the nexusfile" in problem.message


def test_exception_in_a_helper_is_located_at_the_calling_line(tmp_path: Path) -> None:
    path = make(
        tmp_path / "a",
        """
        from tools import fetch

        DATA = fetch()  # here
        """,
        **{"tools.py": "def fetch():\n    raise OSError('offline')\n"},
    )
    (problem,) = load_project(str(path)).problems
    assert problem.message == "OSError: offline"
    assert problem.location is not None and problem.location.line == line_of(path, "# here")
    assert "tools.py:2" in problem.hint


def test_exception_in_a_task_body_is_located_in_the_body(tmp_path: Path) -> None:
    path = make(
        tmp_path / "a",
        """
        def helper(x):
            return x["missing"]  # deepest

        @task  # task
        def t():
            run("echo")
            helper({})
        """,
    )
    (problem,) = problems_of(path)
    assert problem.message == "KeyError: 'missing'"
    assert problem.location is not None and problem.location.line == line_of(path, "# deepest")
    assert "in task 't'" in problem.hint


def test_a_task_parameter_without_an_argument_points_at_the_task(tmp_path: Path) -> None:
    # A task function's parameters are its CLI arguments: a missing one is a validation
    # problem naming task and parameter, never a TypeError from calling the body.
    path = make(tmp_path / "a", "@task  # task\ndef t(host):\n    run('x')\n")
    with pytest.raises(ValidationFailed) as err:
        build_plan(load_project(str(path)), builtin_registry(), params={})
    (problem,) = err.value.problems
    assert problem.message == "task 't' needs parameter 'host' (str)"
    assert problem.hint == "pass host=VALUE"
    assert problem.location is not None and problem.location.line == line_of(path, "# task")


def test_exception_with_a_broken_str_is_still_reported(tmp_path: Path) -> None:
    path = make(
        tmp_path / "a",
        "class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\nraise Odd()  # here\n",
    )
    (problem,) = load_project(str(path)).problems
    assert problem.message == "Odd"
    assert problem.location is not None and problem.location.line == line_of(path, "# here")


def test_bodies_are_not_evaluated_after_a_load_failure(tmp_path: Path) -> None:
    path = make(
        tmp_path / "a",
        """
        @task
        def t():
            run(LATER)

        raise RuntimeError("stop")  # here
        LATER = "echo"
        """,
    )
    (problem,) = problems_of(path)
    assert problem.message == "RuntimeError: stop"


# --- the DSL outside a load ---------------------------------------------------------------------


def test_run_outside_a_task_body_is_an_error_that_says_so() -> None:
    with pytest.raises(dsl.NexusfileError, match=r"run\(\) can only be called inside a task body"):
        dsl.run("echo hi")


def test_config_and_hosts_outside_a_load() -> None:
    with pytest.raises(dsl.NexusfileError, match=r"config\(\) can only be used in a nexusfile"):
        dsl.config(parallel_limit=2)
    with pytest.raises(dsl.NexusfileError, match=r"hosts\(\) can only be used in a nexusfile"):
        dsl.hosts("web", "web-1")


def test_task_outside_a_load_keeps_the_function_usable() -> None:
    @dsl.task(deps=["x"])
    def build() -> str:
        return "built"

    assert build() == "built"
    assert dsl.task(build) is build


def test_from_nexus_core_import_hosts_is_the_function() -> None:
    import nexus_core
    import nexus_core.hosts  # the submodule must not replace the DSL function
    import nexus_core.plan

    assert nexus_core.hosts is dsl.hosts
    assert callable(nexus_core.hosts)
    assert sys.modules["nexus_core.hosts"].parse_host  # type: ignore[attr-defined]


# --- plan-time evaluation -----------------------------------------------------------------------


def test_body_is_evaluated_once_per_target_host(tmp_path: Path) -> None:
    registry = builtin_registry()
    registry.executors["ssh"] = type("FakeSSHExecutor", (), {})  # type: ignore[assignment]
    path = make(
        tmp_path / "a",
        """
        CALLS = []
        hosts("web", "web-1", "deploy@web-2:2222")

        @task(on="web")
        def deploy():
            CALLS.append(hostname())
            run("echo restart " + hostname())

        @task
        def local():
            CALLS.append("local")
            run("echo local")
        """,
    )
    project = load_project(str(path))
    plan = build_plan(project, registry)
    assert [hp.host.name for hp in plan.tasks["deploy"].hosts] == ["web-1", "web-2"]
    assert [[c.cmd for c in hp.commands] for hp in plan.tasks["deploy"].hosts] == [
        ["echo restart web-1"],
        ["echo restart web-2"],
    ]
    assert project.tasks["deploy"].func.__globals__["CALLS"] == ["web-1", "web-2", "local"]
    assert plan.tasks["deploy"].hosts[1].host.user == "deploy"
    assert plan.tasks["deploy"].hosts[1].host.port == 2222


def test_nested_groups_and_dedupe(tmp_path: Path) -> None:
    registry = builtin_registry()
    registry.executors["ssh"] = type("FakeSSHExecutor", (), {})  # type: ignore[assignment]
    path = make(
        tmp_path / "a",
        """
        hosts("web", "web-1", "web-2")
        hosts("db", "db-1", "web-1")
        hosts("all", groups=["web", "db"])

        @task(on="all")
        def uptime():
            run("uptime")
        """,
    )
    plan = plan_of(path, registry)
    assert [hp.host.name for hp in plan.tasks["uptime"].hosts] == ["web-1", "web-2", "db-1"]


def test_project_is_plain_data(tmp_path: Path) -> None:
    path = make(tmp_path / "a", '@task\ndef t():\n    "Say hi."\n    run("echo hi")\n')
    project = load_project(str(path))
    assert isinstance(project, Project)
    assert project.tasks["t"].summary == "Say hi."
    assert project.source_hash and len(project.source_hash) == 64
    assert plan_of(path).to_dict()["tasks"]["t"]["hosts"][0]["commands"][0]["cmd"] == "echo hi"
