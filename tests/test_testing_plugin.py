"""``nexus_core.testing``, the opt-in pytest plugin for plugin authors, tested as they use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

import nexus_core.testing
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.project import parse_events, wants_json

pytest_plugins = ["pytester"]

AUTHOR_TESTS = '''
import os

def test_my_executor_runs_on_its_hosts(nexus_project):
    nexus_project.env["PYTHONPATH"] = os.environ["FAKE_SITE"]
    nexus_project.policy(["nexus-fake>=0.3"])
    nexus_project.write("""
        from nexus_core import hosts, run, task
        hosts("lab", "fake://one", "fake://two")

        @task(on="lab")
        def hello():
            run("echo hi")
    """)
    result = nexus_project.run("run", "hello", "--format", "json")
    assert result.code == 0, result
    assert result.task_status("hello") == "ok"
    assert sorted(e["host"] for e in result.of("host.stop")) == ["one", "two"]


def test_a_failing_assertion_shows_the_outcome(nexus_project):
    nexus_project.write("""
        from nexus_core import run, task

        @task
        def broken():
            run("echo about-to-fail; exit 3")
    """)
    result = nexus_project.run("run", "broken")
    assert result.code == 0, result
'''


def test_plugin_authors_test_their_plugin_with_the_nexus_project_fixture(pytester, tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site)
    monkeypatch.setenv("FAKE_SITE", str(site))
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest_subprocess("-p", "nexus_core.testing", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    # The failure message carries the command, exit code and both streams (Outcome.__str__).
    result.stdout.fnmatch_lines(["*nexus run broken -> 1*", "*--- stdout*", "*about-to-fail*"])


def test_the_fixture_is_opt_in(pytester):
    pytester.makepyfile("def test_uses_it(nexus_project):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'nexus_project' not found*"])


def test_project_is_isolated_from_the_callers_nexus_environment(nexus_project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("this is not python(\n")
    monkeypatch.setenv("NEXUS_CONFIG", str(elsewhere))
    monkeypatch.setenv("NEXUS_LOAD_PLUGINS", "")
    monkeypatch.setenv("NEXUS_POLICY_FILE", str(tmp_path / "missing.toml"))
    site = tmp_path / "site"
    logs = Logs(tmp_path / "imports.log", tmp_path / "runs.log")
    make_dist(site)
    nexus_project.env.update(plugin_env(site, logs))
    nexus_project.write("from nexus_core import run, task\n\n@task\ndef hello():\n    run('echo isolated')\n")
    out = nexus_project.run("list", "--format", "json")
    assert out.code == 0, out
    assert [t["name"] for t in out.json()["tasks"]] == ["hello"]
    assert out.stderr == ""
    assert logs.imported() == ["nexus_fake"]  # the caller's NEXUS_LOAD_PLUGINS did not apply
    xdg = Path(nexus_project.env["XDG_CONFIG_HOME"])
    assert xdg.is_relative_to(tmp_path)


def test_policy_helper_writes_the_policy_the_cli_reads(nexus_project, tmp_path):
    site = tmp_path / "site"
    logs = Logs(tmp_path / "imports.log", tmp_path / "runs.log")
    make_dist(site)
    nexus_project.env.update(plugin_env(site, logs))
    path = nexus_project.policy(["nexus-other"])
    assert path.read_text() == 'allow = ["nexus-other"]\n'
    assert path.is_relative_to(Path(nexus_project.env["XDG_CONFIG_HOME"]))
    data = nexus_project.run("plugins", "--format", "json").json()
    assert data["policy"] == str(path)
    assert logs.imported() == []


def test_outcome_parses_json_lines_into_events(nexus_project):
    nexus_project.write("from nexus_core import run, task\n\n@task\ndef a():\n    run('echo one')\n")
    out = nexus_project.run("run", "a", "--format", "json", env={"EXTRA": "1"})
    assert isinstance(out, Outcome) and out.code == 0, out
    assert out.events[0]["event"] == "pipeline.start" and out.events[-1]["event"] == "pipeline.stop"
    assert out.task_status("a") == "ok" and out.task_status("nope") is None
    assert [e["line"] for e in out.of("command.output")] == ["one"]
    assert out.args == ("run", "a", "--format", "json")


def test_write_dedents_and_creates_folders(tmp_path):
    project = NexusProject(tmp_path)
    path = project.write("\n    x = 1\n    y = 2\n", name="sub/dir/file.py")
    assert path.read_text() == "x = 1\ny = 2\n"
    assert project.nexusfile == tmp_path / "nexusfile.py"
    policy = project.policy(["nexus-a>=1"])  # no XDG folders given: the policy lives in the project
    assert policy == tmp_path / "policy.toml"
    assert project.env["NEXUS_POLICY_FILE"] == str(policy)


def test_outcome_parses_events_for_the_equals_form_of_format(nexus_project):
    # `--format=json` is one argument: it used to leave Outcome.events empty without a word.
    nexus_project.write("from nexus_core import run, task\n\n@task\ndef a():\n    run('echo one')\n")
    out = nexus_project.run("run", "a", "--format=json")
    assert out.code == 0, out
    assert out.task_status("a") == "ok"
    assert [e["line"] for e in out.of("command.output")] == ["one"]


def test_wants_json_reads_the_format_option_only():
    assert wants_json(["run", "a", "--format", "json"])
    assert wants_json(["run", "a", "--format=json"])
    assert not wants_json(["run", "a", "--format", "text"])
    assert not wants_json(["run", "json"])  # a task named json
    assert not wants_json(["run", "a", "--log-format", "json"])  # logs go to stderr
    assert not wants_json(["run", "--", "--format=json"])
    assert not wants_json(["run", "a", "--format"])


def test_parse_events_keeps_json_objects_only():
    assert parse_events('{"event": "x"}\n1\nnot json\n[1]\n{"event": "y"}\n') == [{"event": "x"}, {"event": "y"}]


def test_the_package_keeps_its_exports_and_imports_no_pytest():
    # sshbed serves scripts (bench/) that do not have pytest: the package must not need it.
    code = (
        "import sys, nexus_core.testing as t, nexus_core.testing.sshbed as b\n"
        "assert 'pytest' not in sys.modules, 'pytest imported'\n"
        "assert t.NexusProject and t.Outcome and t.ISOLATED_VARIABLES and b.SshBed\n"
        "assert callable(t.nexus_project) and t.ExecutorConformance\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nexus_core.testing.nope  # noqa: B018


def test_tests_support_sshbed_still_imports():
    from nexus_core.testing import sshbed
    from tests.support import sshbed as old

    assert old.SshBed is sshbed.SshBed and old.USER_KEY == sshbed.USER_KEY


NAMELESS_CONFORMANCE = """
import pytest

from nexus_core.plugin import CommandResult, Executor, ExecutorContext, Host
from nexus_core.testing.conformance import ExecutorConformance


class Nameless(Executor):  # no name on the class: Nexus would set it from the registration
    def run(self, host, command, on_output, cancel, timeout):
        return CommandResult("ok", exit_code=0)


class TestNameless(ExecutorConformance):
    @pytest.fixture
    def make_executor(self, tmp_path):
        def make():
            return Nameless(ExecutorContext(config={}, root=str(tmp_path), emit=lambda e: None, run_id="t"))

        return make

    @pytest.fixture
    def host(self):
        return Host("box-1", transport="fake")
"""


def test_the_conformance_suite_names_an_executor_built_as_the_docs_show(pytester):
    """The docs build the executor directly (no registration gives its class a name): the
    suite names it after the host's transport, so the cases that mention the name run."""
    pytester.makepyfile(test_nameless=NAMELESS_CONFORMANCE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "connection")
    result.assert_outcomes(passed=1)
