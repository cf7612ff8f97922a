"""Validation through the real CLI: every problem at once, at its nexusfile line, with a hint; exit 2.

Each test writes a nexusfile with ``nexus_project`` and runs ``nexus validate`` (or ``run``) in a
subprocess. Lines are found by a marker comment in the source, so the tests say which line a
problem must point at without counting lines by hand.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

import nexus_core
from nexus_core.testing import NexusProject, Outcome

EXIT_CONFIG = 2
CORE_DIR = os.path.dirname(os.path.abspath(nexus_core.__file__))
HEADER = "from nexus_core import config, env, hosts, run, task, wait_for\n"


def write(project: NexusProject, source: str) -> str:
    """Write the nexusfile (dedented, with the usual import line first); return its text."""
    text = HEADER + textwrap.dedent(source).lstrip("\n")
    project.nexusfile.write_text(text, encoding="utf-8")
    return text


def line_of(text: str, marker: str) -> int:
    """1-based number of the first line of ``text`` containing ``marker``."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(f"marker {marker!r} not in the nexusfile")


def assert_clean(out: Outcome) -> None:
    """No Python traceback and nothing from inside nexus_core in what the user sees."""
    for stream in (out.stdout, out.stderr):
        assert "Traceback (most recent call last)" not in stream, str(out)
        assert CORE_DIR not in stream, str(out)
    assert "internal error" not in out.stderr, str(out)


def validate(project: NexusProject, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """``nexus validate`` without plugins (the core alone decides), checked to fail cleanly with 2."""
    out = project.run("validate", *args, env={"NEXUS_LOAD_PLUGINS": "", **(env or {})})
    assert out.code == EXIT_CONFIG, str(out)
    assert_clean(out)
    return out


def problem_lines(out: Outcome) -> list[str]:
    """The ``nexusfile.py:N: message`` lines of a text report."""
    return [line.strip() for line in out.stderr.splitlines() if line.strip().startswith("nexusfile.py:")]


def assert_reported(out: Outcome, line: int, *fragments: str) -> None:
    """A problem at ``nexusfile.py:line`` whose message (and hint, below it) contain ``fragments``."""
    lines = out.stderr.splitlines()
    for i, text in enumerate(lines):
        if text.strip().startswith(f"nexusfile.py:{line}: "):
            block = text + "\n" + (lines[i + 1] if i + 1 < len(lines) else "")
            if all(f in block for f in fragments):
                return
    raise AssertionError(f"no problem at nexusfile.py:{line} with {fragments}\n{out}")


# --- one test per kind of problem ---------------------------------------------------------------


def test_valid_nexusfile_passes(nexus_project: NexusProject) -> None:
    write(
        nexus_project,
        """
        config(parallel_limit=2)

        @task
        def build():
            run("echo build")

        @task(deps=[build], timeout=30)
        def test():
            run("echo test", retries=1, retry_delay=0.5)
        """,
    )
    out = nexus_project.run("validate", env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == 0, str(out)
    assert "valid" in out.stdout


def test_cycle_is_printed_in_dependency_order(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task(deps=["b"])  # a
        def a():
            run("echo a")

        @task(deps=["c"])
        def b():
            run("echo b")

        @task(deps=[a])
        def c():
            run("echo c")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# a"), "dependency cycle: a -> b -> c -> a", "remove one of these deps")
    assert out.stderr.count("dependency cycle") == 1


def test_self_dependency_is_a_cycle(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task(deps=["lint"])  # here
        def lint():
            run("ruff check")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "dependency cycle: lint -> lint")


def test_undefined_task_suggests_the_closest_name(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            run("make")

        @task(deps=["buld"])  # here
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "undefined task 'buld'", "did you mean 'build'?")


def test_dependency_on_a_plain_function(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        def helper():
            run("echo")

        @task(deps=[helper])  # here
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "depends on helper, which is not a task", "decorate it with @task")


def test_undefined_group_suggests_the_closest_name(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        hosts("web", "web-1.example.com")

        @task(on="wbe")  # here
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "undefined host group 'wbe'", "did you mean 'web'?")


def test_group_names_in_a_list_of_hosts_are_named_as_groups(nexus_project: NexusProject) -> None:
    """on=["web", "db"] was taken as two hosts called web and db (the dry run then could not
    resolve the host name 'web')."""
    src = write(
        nexus_project,
        """
        hosts("web", "web-1.example.com")
        hosts("db", "db-1.example.com")

        @task(on=["web", "db"])  # here
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "lists host groups 'web', 'db' among hosts", "on='web'")


def test_a_misspelt_transport_suggests_the_right_one(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task(on=["agnet://pi-1"])  # here
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "no agnet executor is installed", "did you mean 'agent'?")


def test_undefined_group_inside_a_group(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        hosts("web", "web-1.example.com")
        hosts("all", groups=["web", "dbs"])  # here
        hosts("db", "db.example.com")

        @task
        def build():
            run("make")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "undefined group 'dbs'", "did you mean 'db'?")


def test_empty_task(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            run("make")

        @task  # here
        def nothing():
            '''Does nothing yet.'''
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "task 'nothing' runs no commands", "add run(...) calls")


def test_unknown_task_option_suggests(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task(timout=30)  # here
        def build():
            run("make")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "has no option 'timout'", "did you mean 'timeout'?")


def test_unknown_run_option_suggests(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            run("make")
            run("make install", retrys=3)  # here
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "run() has no option 'retrys'", "did you mean 'retries'?")


def test_unknown_config_key_suggests(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        config(
            parallel_limit=4,
            paralel_limit=4,  # here
        )

        @task
        def build():
            run("make")
        """,
    )
    out = validate(nexus_project)
    # A config() call is located at its first line (where the call starts).
    assert_reported(
        out, line_of(src, "config("), "config() has no key 'paralel_limit'", "did you mean 'parallel_limit'?"
    )


@pytest.mark.parametrize(
    ("code", "fragments"),
    [
        ("@task(timeout='300')", ("timeout must be a number, not str", "timeout=300")),
        ("@task(timeout=-5)", ("timeout must be >= 0, not -5", "seconds")),
        ("@task(timeout=float('nan'))", ("timeout must be a finite number",)),
        ("@task(strategy='paralel')", ("unknown strategy 'paralel'", "did you mean 'parallel'?")),
        ("@task(strategy='rollin')", ("unknown strategy 'rollin'", "did you mean 'rolling'?")),
        ("@task(strategy=3)", ("strategy must be a string", "strategies: parallel, serial")),
        ("@task(idempotent='yes')", ("idempotent must be true/false, not str", "idempotent= takes")),
        ("@task(on=42)", ('on= must be "local", a group name or a list of hosts', 'on="web"')),
        ("@task(on=[])", ("on= is an empty list", "host strings")),
        ("@task(deps=[42])", ("depends on 42, which is not a task", "task names")),
        # An option of another strategy would change nothing: said, not silently ignored.
        (
            "@task(max_fail_percentage=50)",
            ("max_fail_percentage= is an option of the 'rolling' strategy", "add strategy='rolling' to @task"),
        ),
        ("@task(strategy='canary', batch=3)", ("batch= is an option of the 'rolling' strategy",)),
        ("@task(strategy='rolling', max_fail_percentage=150)", ("max_fail_percentage must be at most 100",)),
    ],
)
def test_wrong_task_option_values(nexus_project: NexusProject, code: str, fragments: tuple[str, ...]) -> None:
    src = write(
        nexus_project,
        f"""
        {code}  # here
        def build():
            run("make")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), *fragments)


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        ("run('make', sudo='yes')", ("sudo must be true/false, not str", "sudo= takes")),
        ("run('make', timeout=-1)", ("timeout must be >= 0, not -1", "timeout= takes")),
        ("run('make', retries=1.5)", ("retries must be an integer, not float", "retries= takes")),
        ("run('make', env=['A=1'])", ("env must be a dict, not list",)),
        ("run('')", ("run() needs a non-empty command string", 'run("the shell command")')),
        ("run(['make'])", ("run() needs a non-empty command string, got ['make']",)),
        # A few zeros too many: a validation error, not a retry wait the clock cannot hold
        # (it raised OverflowError mid-run) or a run that sleeps for a century.
        ("run('make', retries=1, retry_delay=1e12)", ("retry_delay must be at most 86,400 s (1 day)",)),
        ("run('make', retries=10**30)", ("retries must be at most 10,000",)),
        ("run('make', timeout=10**300)", ("timeout must be at most 31,536,000 s (365 days)",)),
        ("wait_for('true', timeout=1e20)", ("wait_for(): timeout must be a number of seconds above 0 and at most",)),
    ],
)
def test_wrong_run_option_values(nexus_project: NexusProject, call: str, fragments: tuple[str, ...]) -> None:
    src = write(
        nexus_project,
        f"""
        @task
        def build():
            {call}  # here
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), *fragments)


@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        ("parallel_limit=0", ("parallel_limit must be >= 1, not 0", "parallel_limit= takes")),
        ("parallel_limit='4'", ("parallel_limit must be an integer, not str",)),
        ("ssh_port=70000", ("ssh_port must be <= 65535",)),
        ("ssh_host_key_verification='strikt'", ("must be one of strict, accept_new, tofu, off", "'strict'")),
        ("log_level=True", ("log_level must be a string, not a bool",)),
        ("interrupt_grace=1e30", ("interrupt_grace must be at most 86,400 s (1 day)",)),
        ("log_retention_days=1e300", ("log_retention_days must be at most 36,500",)),
    ],
)
def test_wrong_config_values(nexus_project: NexusProject, setting: str, fragments: tuple[str, ...]) -> None:
    src = write(
        nexus_project,
        f"""
        config({setting})  # here

        @task
        def build():
            run("make")
        """,
    )
    # The ssh_* keys are nexus-ssh's: let it load to check their values.
    out = validate(nexus_project, env={"NEXUS_LOAD_PLUGINS": "nexus-ssh"} if setting.startswith("ssh_") else None)
    assert_reported(out, line_of(src, "# here"), *fragments)


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("web 1", "contains whitespace"),
        ("deploy@web-1:99999", "port 99999 is out of range 1-65535"),
        ("web-1:ssh", "port 'ssh' is not a number"),
        ("@web-1", "invalid user name"),
        ("[::1", "never closes it"),
        ("[web-1]:22", "is not an IPv6 address"),
        ("fe80::1::2", "not a valid IPv6 address"),
        ("web!1.example.com", "is not a valid host name"),
        ("", "empty host string"),
    ],
)
def test_unparsable_host_strings(nexus_project: NexusProject, host: str, fragment: str) -> None:
    src = write(
        nexus_project,
        f"""
        hosts("web", {host!r})  # group

        @task(on=[{host!r}])  # task
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# group"), "host group 'web'", fragment, "user@host:port")
    assert_reported(out, line_of(src, "# task"), "task 'deploy'", fragment)


def test_unset_environment_variable(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        TOKEN = env("NEXUS_TEST_SURELY_UNSET_TOKEN")  # load
        REGION = env("NEXUS_TEST_SURELY_UNSET_REGION", "eu-west-1")

        @task
        def deploy():
            run("echo " + env("NEXUS_TEST_SURELY_UNSET_TAG"))  # body
            run("echo " + REGION)
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# load"), "environment variable NEXUS_TEST_SURELY_UNSET_TOKEN is not set",
                    "export NEXUS_TEST_SURELY_UNSET_TOKEN=")  # fmt: skip
    assert_reported(out, line_of(src, "# body"), "NEXUS_TEST_SURELY_UNSET_TAG is not set")
    assert "REGION" not in out.stderr
    ok = nexus_project.run(
        "validate",
        env={"NEXUS_LOAD_PLUGINS": "", "NEXUS_TEST_SURELY_UNSET_TOKEN": "t", "NEXUS_TEST_SURELY_UNSET_TAG": "v1"},
    )
    assert ok.code == 0, str(ok)


def test_python_syntax_error_points_at_its_line(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            run("make"  # here
        """,
    )
    out = validate(nexus_project)
    lines = problem_lines(out)
    assert len(lines) == 1, str(out)
    assert "Python syntax error" in lines[0]
    assert lines[0].startswith(f"nexusfile.py:{line_of(src, '# here')}:")


def test_indentation_error(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
        run("make")  # here
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "Python syntax error", "indented block")


def test_exception_while_loading_is_located_in_the_nexusfile(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        SETTINGS = {"region": "eu"}
        ZONE = SETTINGS["zone"]  # here

        @task
        def build():
            run("make")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "KeyError: 'zone'", "while loading the nexusfile")
    # `nexus run build`: the load's failure alone, not also "no task named 'build'" (the
    # task is defined after the line that failed).
    ran = nexus_project.run("run", "build", env={"NEXUS_LOAD_PLUGINS": ""})
    assert ran.code == EXIT_CONFIG and "KeyError: 'zone'" in ran.stderr, ran
    assert "no task named" not in ran.stderr, ran


def test_exception_in_a_helper_module_points_at_the_calling_line(nexus_project: NexusProject) -> None:
    nexus_project.write("def version():\n    raise RuntimeError('no version file')\n", name="helpers.py")
    src = write(
        nexus_project,
        """
        import helpers

        VERSION = helpers.version()  # here
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "RuntimeError: no version file", "helpers.py:2")


def test_exception_in_a_task_body(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            run("make")
            1 / 0  # here
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "ZeroDivisionError", "in task 'build'")


def test_import_error_and_exit(nexus_project: NexusProject) -> None:
    src = write(nexus_project, "import nexus_surely_missing_module  # here\n")
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "ModuleNotFoundError", "nexus_surely_missing_module")
    src = write(nexus_project, "import sys\nsys.exit(3)  # here\n")
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "the nexusfile called exit(3)")


def test_run_outside_a_task_body_says_so(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        run("make")  # here

        @task
        def build():
            run("make")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "run() is called outside a task body", "@task")


def test_dsl_misuse_inside_a_task_body(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            config(parallel_limit=2)  # config
            hosts("web", "web-1")  # hosts
            run("make")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# config"), "config() is called inside a task body")
    assert_reported(out, line_of(src, "# hosts"), "hosts() is called inside a task body")


def test_duplicate_task_and_group(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        hosts("web", "web-1")
        hosts("web", "web-2")  # group

        @task
        def build():
            run("make")

        @task  # task
        def build():
            run("make all")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# group"), "host group 'web' is defined twice (first at line 2)")
    assert_reported(out, line_of(src, "# task"), "task 'build' is defined twice")


def test_no_tasks(nexus_project: NexusProject) -> None:
    write(nexus_project, "config(parallel_limit=2)\n")
    out = validate(nexus_project)
    assert "defines no tasks" in out.stderr
    assert "nexus init" in out.stderr


# --- every problem at once ----------------------------------------------------------------------


MANY = """
config(paralel_limit=4)  # config
hosts("web", "web-1.example.com", "deploy@web-2:0")  # group

@task(deps=["b"])  # cycle
def a():
    run("echo a")

@task(deps=["a"])
def b():
    run("echo b")

@task
def build():
    run("make", retrys=2)  # run-option

@task(deps=["buld"], timeout=-1, strategy="paralel")  # task
def deploy():
    run("echo " + env("NEXUS_TEST_SURELY_UNSET_X"))  # env

@task  # empty
def nothing():
    pass
"""


def test_every_problem_is_reported_in_one_run(nexus_project: NexusProject) -> None:
    src = write(nexus_project, MANY)
    out = validate(nexus_project)
    expected = [
        ("# config", ("config() has no key 'paralel_limit'", "did you mean 'parallel_limit'?")),
        ("# group", ("port 0 is out of range",)),
        ("# cycle", ("dependency cycle: a -> b -> a",)),
        ("# run-option", ("no option 'retrys'", "did you mean 'retries'?")),
        ("# task", ("undefined task 'buld'", "did you mean 'build'?")),
        ("# task", ("timeout must be >= 0, not -1",)),
        ("# task", ("unknown strategy 'paralel'", "did you mean 'parallel'?")),
        ("# env", ("NEXUS_TEST_SURELY_UNSET_X is not set",)),
        ("# empty", ("task 'nothing' runs no commands",)),
    ]
    for marker, fragments in expected:
        assert_reported(out, line_of(src, marker), *fragments)
    assert f"Validation failed ({len(expected)} problems)" in out.stderr
    assert len(problem_lines(out)) == len(expected)


def test_json_output_lists_every_problem(nexus_project: NexusProject) -> None:
    src = write(nexus_project, MANY)
    out = validate(nexus_project, "--format", "json")
    docs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(docs) == 1, str(out)
    doc = docs[0]
    assert doc["valid"] is False
    problems = doc["problems"]
    assert len(problems) == 9
    for p in problems:
        assert p["message"]
        assert p["hint"] is not None
        assert p["code"]
        assert Path(p["file"]).name == "nexusfile.py"
        assert isinstance(p["line"], int) and p["line"] > 0
    by_code = {p["code"] for p in problems}
    assert {"unknown-option", "bad-host", "cycle", "undefined-task", "bad-value", "env-unset", "empty-task"} <= by_code
    cycle = next(p for p in problems if p["code"] == "cycle")
    assert cycle["line"] == line_of(src, "# cycle")
    assert "a -> b -> a" in cycle["message"]
    typo = next(p for p in problems if "buld" in p["message"])
    assert typo["hint"] == "did you mean 'build'?"


def test_json_syntax_error(nexus_project: NexusProject) -> None:
    write(nexus_project, "@task\ndef build(:\n    run('make')\n")
    out = validate(nexus_project, "--format", "json")
    (doc,) = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert doc["valid"] is False
    (problem,) = doc["problems"]
    assert problem["code"] == "syntax"
    assert problem["line"] == 3


# --- nothing leaks from Nexus's insides ---------------------------------------------------------


BROKEN = {
    "syntax": "def (:\n",
    "null byte": "x = 1\0\n",
    "bad encoding": "x = '\udcff'\n",
    "keyword task name": "@task\ndef class():\n    run('x')\n",
    "raise": "raise ValueError('boom')\n",
    "recursion": "def f():\n    return f()\nf()\n",
    "keyboard-less exit": "raise SystemExit('bye')\n",
    "exception with broken str": (
        "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\nraise E()\n"
    ),
    "broken repr option": (
        "class R:\n    def __repr__(self):\n        raise RuntimeError('no')\n"
        "@task(timeout=R(), on=[R()], deps=[R()], strategy=R())\ndef a():\n    run('x')\n"
    ),
    "broken eq option": (
        "class R:\n    __hash__ = None\n    def __eq__(self, other):\n        raise RuntimeError('no')\n"
        "@task(on=R())\ndef a():\n    run('x')\n"
    ),
    "task of a non-function": "task(42)\ntask('x')\ntask(lambda: None)\n",
    "decorator with both": "def f():\n    run('x')\ntask(f, deps=[])\n",
    "huge int": "@task(timeout=10**5000)\ndef a():\n    run('x', timeout=-10**5000)\n",
    "task inside a body": "@task\ndef a():\n    @task\n    def b():\n        run('y')\n    run('x')\n",
    "body with parameters": "@task\ndef a(host):\n    run('x')\n",
    "env misuse": "env(None)\nenv(42)\nenv('A=B')\n",
    "hosts misuse": "hosts()\nhosts(42)\nhosts('local', 'x')\nhosts('g', 42, None, groups=7)\n",
}


@pytest.mark.parametrize("source", list(BROKEN.values()), ids=list(BROKEN))
def test_broken_nexusfiles_fail_cleanly(nexus_project: NexusProject, source: str) -> None:
    path = nexus_project.nexusfile
    data = (HEADER + source).encode("utf-8", "surrogateescape")
    path.write_bytes(data)
    out = validate(nexus_project)
    lines = problem_lines(out)
    assert lines, str(out)


# --- missing plugins ----------------------------------------------------------------------------


def _ssh_missing() -> tuple[str, str]:
    """What ``validate`` (which blocks every plugin) says about ssh hosts: blocked, or not installed."""
    from importlib import metadata

    try:
        metadata.distribution("nexus-ssh")
    except metadata.PackageNotFoundError:
        return "no ssh executor is installed", "pip install nexus-ssh"
    return "no ssh executor is loaded: nexus-ssh is installed but blocked by policy", "NEXUS_LOAD_PLUGINS"


def test_remote_group_without_an_executor_says_what_to_install(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        hosts("web", "deploy@web-1.example.com", "web-2.example.com:2222")

        @task(on="web")  # here
        def deploy():
            run("systemctl restart app", sudo=True)
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), *_ssh_missing())


def test_remote_host_list_without_an_executor(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task(on=["web-1", "[2001:db8::1]:22"])  # here
        def deploy():
            run("uptime")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "remote hosts (ssh)", _ssh_missing()[1])


# --- finding the nexusfile ----------------------------------------------------------------------


SIMPLE = """
@task
def build():
    run("echo built")
"""


def test_found_in_a_parent_folder(nexus_project: NexusProject) -> None:
    write(nexus_project, SIMPLE)
    deep = nexus_project.root / "src" / "pkg"
    deep.mkdir(parents=True)
    out = nexus_project.run("validate", cwd=deep, env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == 0, str(out)


def test_found_with_dash_c_and_nexus_config(nexus_project: NexusProject, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = elsewhere / "pipeline.py"
    other.write_text(HEADER + textwrap.dedent(SIMPLE), encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, env in [
        (("-c", str(other)), {}),
        (("--config", str(elsewhere / "pipeline.py")), {}),
        ((), {"NEXUS_CONFIG": str(other)}),
    ]:
        out = nexus_project.run("validate", *args, cwd=empty, env={"NEXUS_LOAD_PLUGINS": "", **env})
        assert out.code == 0, str(out)
    # -c wins over a nexusfile in the current folder
    write(nexus_project, "raise RuntimeError('not this one')\n")
    out = nexus_project.run("validate", "-c", str(other), env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == 0, str(out)


def test_not_found_suggests_nexus_init(nexus_project: NexusProject, tmp_path: Path) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    out = nexus_project.run("validate", cwd=empty)
    assert out.code == EXIT_CONFIG, str(out)
    assert_clean(out)
    assert "No nexusfile found" in out.stderr
    assert "nexus init" in out.stderr
    out = nexus_project.run("validate", "-c", str(empty / "missing.py"), cwd=empty)
    assert out.code == EXIT_CONFIG, str(out)
    assert "does not exist" in out.stderr
    out = nexus_project.run("run", "build", cwd=empty, env={"NEXUS_CONFIG": str(empty / "gone.py")})
    assert out.code == EXIT_CONFIG, str(out)
    assert f"{empty / 'gone.py'} (-c, or NEXUS_CONFIG) does not exist" in out.stderr  # where the path came from


# --- nexus run checks the same, before running anything -------------------------------------------


def test_run_unknown_task_suggests_and_runs_nothing(nexus_project: NexusProject) -> None:
    write(
        nexus_project,
        """
        @task
        def build():
            run("touch ran.txt")
        """,
    )
    out = nexus_project.run("run", "buld", env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == EXIT_CONFIG, str(out)
    assert_clean(out)
    assert "no task named 'buld'" in out.stderr
    assert "did you mean 'build'?" in out.stderr
    assert not (nexus_project.root / "ran.txt").exists()


def test_run_validates_everything_before_running(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def first():
            run("touch ran.txt")

        @task(deps=[first])
        def second():
            run("echo", timeout=-3)  # here
        """,
    )
    out = nexus_project.run("run", "second", env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == EXIT_CONFIG, str(out)
    assert_clean(out)
    assert_reported(out, line_of(src, "# here"), "timeout must be >= 0")
    assert not (nexus_project.root / "ran.txt").exists()


def test_a_download_every_host_would_write_to_one_local_path_is_a_problem(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        from nexus_core import download, hostname

        hosts("web", "a.example", "b.example")

        @task(on="web")
        def collect():
            download("/var/log/app.log", "logs/app.log")  # here
            download("/var/log/app.log", f"logs/{hostname()}.log")
        """,
    )
    out = nexus_project.run("validate")
    assert out.code == EXIT_CONFIG, out
    assert_clean(out)
    assert_reported(out, line_of(src, "# here"), "download() writes", "from 2 hosts", "hostname()")
    assert "logs/a.example.log" not in out.stderr


def test_a_keyboard_interrupt_the_nexusfile_raises_is_its_mistake_not_ctrl_c(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        @task
        def build():
            raise KeyboardInterrupt  # here
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# here"), "KeyboardInterrupt", "raised in task 'build'")
    ran = nexus_project.run("run", "build", env={"NEXUS_LOAD_PLUGINS": ""})
    assert ran.code == EXIT_CONFIG and "KeyboardInterrupt" in ran.stderr, ran


def test_ctrl_c_while_the_nexusfile_loads_still_stops_nexus(nexus_project: NexusProject) -> None:
    import signal
    import subprocess
    import sys
    import time

    nexus_project.write("import time\nfrom nexus_core import task, run\ntime.sleep(20)\n")
    env = {**os.environ, **nexus_project.env, "NEXUS_LOAD_PLUGINS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "nexus_core", "validate"], cwd=nexus_project.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(2.0)  # loading: inside time.sleep(20)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "KeyboardInterrupt" not in err


def test_a_group_whose_only_host_is_unparsable_is_reported_once(nexus_project: NexusProject) -> None:
    src = write(
        nexus_project,
        """
        hosts("weird", "-oProxyCommand=id")  # group

        @task(on="weird")
        def deploy():
            run("echo deploy")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(src, "# group"), "host group 'weird'", "is not a valid host name")
    assert "which has no hosts" not in out.stderr, out


def test_control_characters_in_a_nexusfiles_exception_are_shown_not_obeyed(nexus_project):
    """An exception's text reached the terminal raw: an OSC sequence set the window title."""
    nexus_project.write('from nexus_core import task\nraise RuntimeError("top level \\x1b]0;evil\\x07")\n')
    for args in (("list",), ("validate",), ("run", "x"), ("run",)):  # `run`: not "no task given"
        out = nexus_project.run(*args)
        assert out.code == 2, out
        assert "\x1b]" not in out.stderr and "\x07" not in out.stderr, (args, out.stderr)
        assert "top level ^[]0;evil^G" in out.stderr, (args, out.stderr)


def test_run_arguments_that_no_host_could_take_are_validation_errors(nexus_project: NexusProject) -> None:
    """A user name with shell characters, an empty user, an env name with '=' and NUL bytes
    passed `nexus validate` and failed half-way through the run (exit 1, after the earlier
    commands had run), or were ignored (user="")."""
    text = write(
        nexus_project,
        """
        @task
        def t():
            run("echo FIRST")
            run("id -un", user="root; touch X")  # shell
            run("true", user="")  # empty
            run("true", env={"AB=C": "y"})  # envname
            run("echo a\\x00b")  # nulcmd
            run("true", env={"A": "x\\x00y"})  # nulvalue
            run("true", only_if="test -f a\\x00b")  # nulguard
            run("id -un", user="postgres")
        """,
    )
    out = validate(nexus_project)
    assert_reported(out, line_of(text, "# shell"), "user must be a user name", "'root; touch X'")
    assert_reported(out, line_of(text, "# empty"), "user must be a user name", "not ''")
    assert_reported(out, line_of(text, "# envname"), "env name 'AB=C' is not a variable name")
    assert_reported(out, line_of(text, "# nulcmd"), "the command holds a NUL byte")
    assert_reported(out, line_of(text, "# nulvalue"), "env value of A holds a NUL byte")
    assert_reported(out, line_of(text, "# nulguard"), "the guard holds a NUL byte")
    assert len(problem_lines(out)) == 6, out
    ran = nexus_project.run("run", "t", env={"NEXUS_LOAD_PLUGINS": ""})
    assert ran.code == EXIT_CONFIG and "FIRST" not in ran.stdout, ran  # nothing ran


def test_the_only_task_depending_on_a_missing_one_is_not_told_no_tasks_are_defined(nexus_project: NexusProject) -> None:
    text = write(nexus_project, '@task(deps=["build"])  # dep\ndef deploy():\n    run("true")\n')
    out = validate(nexus_project)
    assert_reported(out, line_of(text, "# dep"), "depends on undefined task 'build'",
                    "no other task is defined: define a task 'build' or remove it from deps")  # fmt: skip
    assert "no tasks are defined" not in out.stderr


def test_a_misspelt_keyword_of_any_api_function_gets_the_nearest_name(nexus_project: NexusProject) -> None:
    """upload(recurse=True) was `TypeError: upload() got an unexpected keyword argument 'recurse'`
    with no suggestion, unlike run(sudoo=) or @task(stratgy=)."""
    nexus_project.write(
        'from nexus_core import task, upload\n\n@task\ndef t():\n    upload("nexusfile.py", "/tmp/x/", recurse=True)\n'
    )
    out = validate(nexus_project)
    assert_reported(out, 5, "upload() got an unexpected keyword argument 'recurse'", "did you mean 'recursive'?")
    assert "TypeError" not in out.stderr
    nexus_project.write("def helper():\n    pass\n\nhelper(nope=1)\n")  # the user's own function: Python's words
    own = validate(nexus_project)
    assert "TypeError: helper() got an unexpected keyword argument 'nope'" in own.stderr, own


@pytest.mark.parametrize("name", ["!web", "web,db", "a b", "web*", "tag:web", "@file", "x\x1b[31m"])
def test_a_group_name_that_h_would_read_as_a_pattern_is_refused(nexus_project: NexusProject, name: str) -> None:
    """hosts("!web", ...) was accepted, and `-H '!web'` then said it matched nothing."""
    nexus_project.write(f"from nexus_core import hosts, run, task\nhosts({name!r}, 'local')\n")
    out = validate(nexus_project)
    assert_reported(out, 2, "is not usable: -H reads", "use letters, digits")
    assert "\x1b" not in out.stderr


def test_group_names_with_dashes_dots_and_colons_stay_valid(nexus_project: NexusProject) -> None:
    nexus_project.write(
        "from nexus_core import hosts, run, task\nhosts('web-1', 'local')\nhosts('eu.prod:a', 'local')\n"
        "\n@task(on='web-1')\ndef t():\n    run('true')\n"
    )
    assert nexus_project.run("validate").code == 0


def test_validate_runs_a_where_over_written_out_hosts(nexus_project: NexusProject) -> None:
    """validate said valid; the run then refused `where= raised ZeroDivisionError`."""
    text = write(nexus_project, "hosts('g', 'local', where=lambda h: 1 / 0)  # where\n\n@task(on='g')\ndef t():\n"
                                "    run('true')\n")  # fmt: skip
    out = validate(nexus_project)
    assert_reported(out, line_of(text, "# where"), "where= raised ZeroDivisionError", "return True or False")


def test_a_require_dry_run_name_that_matches_no_task_is_reported(nexus_project: NexusProject) -> None:
    """require_dry_run(tasks=["deplyo"]) was accepted: the task it meant ran without the rule."""
    nexus_project.write(
        "from nexus_core import require_dry_run, run, task\nrequire_dry_run(tasks=['deplyo', 'b*'])\n\n"
        "@task\ndef deploy():\n    run('true')\n\n@task\ndef build():\n    run('true')\n"
    )
    out = validate(nexus_project)
    assert_reported(out, 2, "require_dry_run: 'deplyo' matches no task", "did you mean 'deploy'?")
    assert "'b*'" not in out.stderr  # a pattern that matches a task is fine
