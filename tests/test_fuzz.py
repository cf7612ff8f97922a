"""A malformed nexusfile never crashes Nexus: fuzz the loader and the validator with hypothesis.

Random nexusfile *sources* (task graphs with cycles and self-deps, odd names, host strings,
option names and values of the wrong type, misuse of the DSL, syntax damage) are written to a
file, loaded with :func:`load_project` and planned with :func:`build_plan`. Every input must end
in a :class:`Plan` or a :class:`ValidationFailed` whose problems each have a message and, when
they come from the file, a location in it; never any other exception.
"""

from __future__ import annotations

import itertools
import keyword
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nexus_core import dsl
from nexus_core.loader import load_project
from nexus_core.model import Problem
from nexus_core.plan import Plan, ValidationFailed, build_plan, check_structure
from nexus_core.plugins import builtin_registry

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- ingredients --------------------------------------------------------------------------------

_GOOD_NAMES = st.sampled_from(
    ["build", "test", "deploy", "lint", "a", "b", "c", "_", "local", "task", "run", "café", "任务"]
)
_ODD_NAMES = st.one_of(
    st.sampled_from(sorted(keyword.kwlist)),  # def class(): is a syntax error
    st.sampled_from(["1abc", "a-b", "a b", ""]),  # not identifiers
)
VALID_NAMES = st.one_of(_GOOD_NAMES, _GOOD_NAMES, st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True))
NAMES = st.one_of(VALID_NAMES, _ODD_NAMES)

_GOOD_HOSTS = st.sampled_from(
    ["web-1", "deploy@web-2.example.com:2222", "[2001:db8::1]:22", "::1", "10.0.0.1", "ssh://web-3", "local"]
)
HOST_STRINGS = st.one_of(
    _GOOD_HOSTS,
    _GOOD_HOSTS,
    st.sampled_from(["web 1", "h:0", "h:99999", "[::1", "@h", "", "agent://db-1", "local://x", "999.1.1.1"]),
    st.text(alphabet="ab1.-_@:[]% /", max_size=12),
    st.text(max_size=8),
)

# Python source of option values, right and wrong
VALUES = st.sampled_from(
    [
        "None",
        "True",
        "False",
        "0",
        "1",
        "-1",
        "2.5",
        "-0.5",
        "10**400",
        "-10**5000",
        "float('nan')",
        "float('inf')",
        "'x'",
        "''",
        "'rolling'",
        "'parallel'",
        "'serial'",
        "'paralel'",
        "'25%'",
        "[]",
        "['a']",
        "{}",
        "{'A': 1}",
        "{1: object()}",
        "()",
        "object()",
        "print",
        "lambda: None",
        "b'x'",
        "'strict'",
        "'debug'",
    ]
)

TASK_KEYS = st.sampled_from(
    [
        "timeout",
        "timout",
        "strategy",
        "batch",
        "max_fail_percentage",
        "canary_hosts",
        "canary_wait",
        "idempotent",
        "retries",
        "nonsense",
    ]
)
RUN_KEYS = st.sampled_from(
    ["sudo", "user", "timeout", "retries", "retry_delay", "continue_on_error", "env", "cwd", "retrys", "shell"]
)
CONFIG_KEYS = st.sampled_from(
    [
        "ssh_user",
        "ssh_usr",
        "ssh_port",
        "ssh_host_key_verification",
        "ssh_pool_size",
        "ssh_connect_timeout",
        "parallel_limit",
        "paralel_limit",
        "forks",
        "log_level",
        "shell",
        "interrupt_grace",
        "x",
    ]
)
ENV_NAMES = st.sampled_from(["HOME", "PATH", "NEXUS_FUZZ_SURELY_UNSET", "A=B", ""])


def kwargs(keys: st.SearchStrategy[str], max_size: int = 3) -> st.SearchStrategy[str]:
    """``k=v, ...`` source with unique keys (duplicate keywords would always be a syntax error)."""
    sizes = st.sampled_from([0, 0, 0, 1, max_size])
    return sizes.flatmap(lambda n: st.dictionaries(keys, VALUES, max_size=n)).map(
        lambda d: ", ".join(f"{k}={v}" for k, v in d.items())
    )


@st.composite
def statement(draw: st.DrawFn) -> str:
    """One line of a task body."""
    kind = draw(st.integers(0, 15))
    if kind == 15 and draw(st.booleans()):
        return draw(st.sampled_from(["run('echo ' + str(host_var('port', 0)))", "run(str(host_var('port')))"]))
    if kind <= 4 or kind > 11:
        cmd = draw(st.sampled_from(["'echo hi'", "'make'", "''", "'   '", "42", "None", "'echo ' + hostname()"]))
        extra = draw(kwargs(RUN_KEYS))
        return f"run({cmd}{', ' + extra if extra else ''})"
    if kind == 5:
        return "pass"
    if kind == 6:
        name = draw(ENV_NAMES)
        default = draw(st.sampled_from(["", ", 'dflt'", ", None"]))
        return f"run('echo ' + str(env({name!r}{default})))"
    if kind == 7:
        return draw(
            st.sampled_from(["1 / 0", "raise ValueError('boom')", "[][1]", "undefined_name", "raise SystemExit(1)"])
        )
    if kind == 8:
        return f"config({draw(kwargs(CONFIG_KEYS, 1))})"
    if kind == 9:
        return "hosts('inner', 'h')"
    if kind == 10:
        return "@task\n    def nested():\n        run('x')"
    return "run(timestamp := 'echo t')"  # a walrus: valid Python, odd style


@st.composite
def task_source(draw: st.DrawFn, names: list[str], index: int, groups: list[str]) -> str:
    name = names[index]
    opts: list[str] = []
    if draw(st.booleans()):
        deps = draw(st.lists(st.one_of(st.sampled_from(names), NAMES), max_size=4))
        as_refs = draw(st.booleans())
        rendered = [d if as_refs and d.isidentifier() and not keyword.iskeyword(d) else repr(d) for d in deps]
        shape = draw(st.sampled_from(["list", "tuple", "single", "wrong"]))
        if shape == "list":
            opts.append(f"deps=[{', '.join(rendered)}]")
        elif shape == "tuple":
            opts.append(f"deps=({', '.join(rendered)},)" if rendered else "deps=()")
        elif shape == "single" and rendered:
            opts.append(f"deps={rendered[0]}")
        else:
            opts.append(f"deps={draw(VALUES)}")
    if draw(st.booleans()):
        on = draw(
            st.one_of(
                st.just("'local'"),
                st.sampled_from(groups or ["'web'"]).map(repr),
                NAMES.map(repr),
                st.lists(HOST_STRINGS, max_size=3).map(repr),
                VALUES,
            )
        )
        opts.append(f"on={on}")
    extra = draw(kwargs(TASK_KEYS))
    if extra:
        opts.append(extra)
    decorator = "@task" if not opts and draw(st.booleans()) else f"@task({', '.join(opts)})"
    body = draw(st.lists(statement(), max_size=4))
    doc = draw(st.sampled_from(["", "    '''Doc.'''\n"]))
    lines = "".join(f"    {s}\n" for s in body)
    return f"{decorator}\ndef {name}():\n{doc}{lines or '    pass' + chr(10)}"


#: Attribute values for host(...): good ones, and types a plan cannot hold.
ATTRIBUTE_VALUES = st.sampled_from(
    ["1", "'x'", "None", "True", "[1, 'a']", "{'k': [1]}", "object()", "{1: 2}", "{1, 2}", "b'x'", "''"]
)


@st.composite
def host_call(draw: st.DrawFn) -> str:
    """A ``host(...)`` entry with random (sometimes wrong) tags, vars or options."""
    args = [repr(draw(HOST_STRINGS))]
    if draw(st.booleans()):
        tags = st.lists(st.sampled_from(["a", "b c", ""]), max_size=2).map(repr)
        args.append(f"tags={draw(st.one_of(ATTRIBUTE_VALUES, tags))}")
    if draw(st.booleans()):
        args.append(
            f"vars={{'port': {draw(ATTRIBUTE_VALUES)}}}" if draw(st.booleans()) else f"vars={draw(ATTRIBUTE_VALUES)}"
        )
    if draw(st.sampled_from([False] * 5 + [True])):
        args.append("tag=['x']")
    return f"host({', '.join(args)})"


@st.composite
def nexusfile_source(draw: st.DrawFn) -> str:
    odd = draw(st.sampled_from([False] * 9 + [True]))  # sometimes task and group names that cannot work
    names = draw(st.lists(NAMES if odd else VALID_NAMES, min_size=0, max_size=6))
    groups = draw(st.lists(NAMES if odd else VALID_NAMES, max_size=3))
    parts = ["from nexus_core import config, env, host, host_var, hostname, hosts, run, task, timestamp\n"]
    if draw(st.booleans()):
        parts.append(f"config({draw(kwargs(CONFIG_KEYS))})\n")
    for group in groups:
        members = draw(st.lists(st.one_of(HOST_STRINGS.map(repr), host_call()), max_size=3))
        args = [repr(group), *members]
        if draw(st.booleans()):
            args.append(f"groups={draw(st.lists(st.one_of(st.sampled_from(groups), NAMES), max_size=2))!r}")
        parts.append(f"hosts({', '.join(args)})\n")
    if draw(st.sampled_from([False] * 9 + [True])):
        parts.append(draw(st.sampled_from(["run('top level')\n", "env('NEXUS_FUZZ_SURELY_UNSET')\n", "hosts()\n"])))
    for i in range(len(names)):
        parts.append(draw(task_source(names, i, groups)))
    source = "\n".join(parts)
    return source


@st.composite
def valid_nexusfile_source(draw: st.DrawFn) -> str:
    """A well-formed nexusfile: a random DAG of tasks (deps only on earlier tasks) on good hosts."""
    names = draw(st.lists(VALID_NAMES, min_size=1, max_size=7, unique=True))
    groups = draw(st.lists(st.from_regex(r"g[a-z0-9]{0,4}", fullmatch=True), max_size=2, unique=True))
    parts = ["from nexus_core import config, env, hostname, hosts, run, task\n"]
    if draw(st.booleans()):
        parts.append(f"config(parallel_limit={draw(st.integers(1, 20))}, log_level='info')\n")
    for group in groups:
        members = draw(st.lists(_GOOD_HOSTS.filter(lambda h: h != "local"), min_size=1, max_size=3))
        parts.append(f"hosts({group!r}, {', '.join(map(repr, members))})\n")
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), max_size=3, unique=True)) if i else []
        rendered = [d if draw(st.booleans()) else repr(d) for d in deps]
        opts = [f"deps=[{', '.join(rendered)}]"] if deps else []
        target = draw(st.sampled_from(["local", *groups, "list"]))
        if target == "list":
            opts.append(f"on={draw(st.lists(_GOOD_HOSTS, min_size=1, max_size=2))!r}")
        elif target != "local":
            opts.append(f"on={target!r}")
        if draw(st.booleans()):
            opts.append(f"timeout={draw(st.sampled_from(['0', '1', '2.5', '300', 'None']))}")
        if draw(st.booleans()):
            strategy = draw(st.sampled_from(["parallel", "serial", "rolling", "canary"]))
            opts.append(f"strategy={strategy!r}")
            if strategy == "rolling" and draw(st.booleans()):
                opts.append(f"batch={draw(st.sampled_from(['1', '2', repr('50%'), repr('100%')]))}")
                opts.append(f"max_fail_percentage={draw(st.sampled_from(['0', '10', '50.5']))}")
            if strategy == "canary" and draw(st.booleans()):
                opts.append(
                    f"canary_hosts={draw(st.integers(1, 3))}, canary_wait={draw(st.sampled_from(['0', '1.5']))}"
                )
        decorator = f"@task({', '.join(opts)})" if opts else "@task"
        commands = draw(
            st.lists(st.sampled_from(["'echo hi'", "'make'", "'echo ' + hostname()"]), min_size=1, max_size=3)
        )
        options = draw(st.sampled_from(["", ", retries=2", ", timeout=5, sudo=True", ", env={'A': 1}, cwd='sub'"]))
        body = "".join(f"    run({c}{options})\n" for c in commands)
        parts.append(f"{decorator}\ndef {name}():\n{body}")
    source = "\n".join(parts)
    # sometimes one mistake: a back edge (a cycle), a typo'd dep, or a bad value
    mistake = draw(st.sampled_from([None, None, None, "cycle", "typo", "value"]))
    if mistake == "cycle" and len(names) > 1:
        source += f"\n@task(deps=[{names[-1]!r}])\ndef {names[0]}_again():\n    run('x')\n"
        source = source.replace(f"def {names[0]}():", f"def {names[0]}():\n    pass", 1)
        source = source.replace(f"@task\ndef {names[0]}():", f"@task(deps=[{names[-1]!r}])\ndef {names[0]}():", 1)
    elif mistake == "typo":
        source += f"\n@task(deps=[{names[0] + 'x'!r}])\ndef zz_last():\n    run('x')\n"
    elif mistake == "value":
        source += f"\n@task(timeout={draw(VALUES)})\ndef zz_last():\n    run('x', retries={draw(VALUES)})\n"
    return source


@st.composite
def damaged(draw: st.DrawFn, sources: st.SearchStrategy[str]) -> str:
    """``sources``, sometimes with syntax damage: a character deleted or inserted, or the end cut off."""
    source = draw(sources)
    if not source or not draw(st.sampled_from([False, False, False, False, False, False, True])):
        return source
    for _ in range(draw(st.sampled_from([1, 1, 2]))):
        at = draw(st.integers(0, max(0, len(source) - 1)))
        action = draw(st.sampled_from(["delete", "insert", "truncate"]))
        if action == "delete":
            source = source[:at] + source[at + 1 :]
        elif action == "insert":
            source = source[:at] + draw(st.sampled_from(list("():[]'\"\n\t\\,=@ #\0"))) + source[at:]
        else:
            source = source[:at]
    event("damaged")
    return source


# --- the property -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_COUNTER = itertools.count()


def check_problems(problems: list[Problem], path: str, source: str) -> None:
    assert problems, "ValidationFailed without problems"
    n_lines = source.count("\n") + 2
    for p in problems:
        assert isinstance(p, Problem)
        assert isinstance(p.message, str) and p.message.strip(), p
        assert isinstance(p.hint, str), p
        assert isinstance(p.code, str) and p.code, p
        if p.message.startswith("--hosts"):
            continue  # a problem with the command line, not the file
        assert p.location is not None, p
        assert p.location.path == path, p
        assert 0 <= p.location.line <= n_lines, p
        p.to_dict()  # JSON output must work
        str(p.location)


def check_plan(plan: Plan) -> None:
    seen: set[str] = set()
    for phase in plan.phases:
        for name in phase:
            assert set(plan.tasks[name].deps) <= seen | set()  # deps run in earlier phases
        seen.update(phase)
    assert seen == set(plan.tasks)
    for t in plan.tasks.values():
        assert t.hosts
        assert any(hp.commands for hp in t.hosts)
        assert t.timeout >= 0
    plan.to_dict()


@FUZZ
@given(
    source=damaged(st.one_of(nexusfile_source(), valid_nexusfile_source())),
    requested=st.lists(NAMES, max_size=2),
    override=st.lists(HOST_STRINGS, max_size=2),
    with_ssh=st.booleans(),
)
def test_any_nexusfile_ends_in_a_plan_or_a_clean_validation_error(
    fuzz_dir: Path, source: str, requested: list[str], override: list[str], with_ssh: bool
) -> None:
    folder = fuzz_dir / f"p{next(_COUNTER)}"
    folder.mkdir()
    path = folder / "nexusfile.py"
    path.write_bytes(source.encode("utf-8", "surrogatepass"))
    cwd = os.getcwd()
    registry = builtin_registry()
    if with_ssh:  # as if nexus-ssh were installed: remote hosts can be planned
        registry.executors["ssh"] = type("FakeSSHExecutor", (), {})  # type: ignore[assignment]

    project = load_project(str(path))
    assert project.path == str(path)
    structure = check_structure(project, registry)  # what `nexus list` uses
    if structure:
        check_problems(structure, str(path), source)
    for req, hosts in ((None, None), (requested, override or None)):
        try:
            plan = build_plan(project, registry, req, host_override=hosts)
        except ValidationFailed as failed:
            check_problems(failed.problems, str(path), source)
            for code in sorted({p.code for p in failed.problems}):
                event(f"problem: {code}")
        else:
            # A plugin missing for tasks that are not run only warns (``plan.warnings``), and so
            # does a config() key of a plugin that is not loaded: a run ignores it, while
            # `nexus list` / `nexus validate` (every task checked) call it a problem.
            missing = {p.message for p in structure if p.code == "missing-plugin"}
            ignored = {w.message.removesuffix(", so it is ignored") for w in plan.warnings}
            assert not [p for p in structure if p.code != "missing-plugin"]
            assert req is not None or missing <= ignored
            assert all(w.code == "missing-plugin" for w in plan.warnings)
            check_plan(plan)
            event("plan")
    # nothing of the load stays behind
    assert os.getcwd() == cwd
    assert dsl.current_project() is None
