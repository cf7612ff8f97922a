"""Plugins as users meet them: fake *installed* distributions, the real CLI, policy, errors.

Every plugin here is a real ``*.dist-info`` with an ``entry_points.txt`` on a temporary
``PYTHONPATH`` entry (``tests/plugin_fixtures.py``); its module records its own import, so
"never imported" is checked, not assumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import plugin_fixtures
import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

from nexus_core.hosts import HostParseError, parse_host
from nexus_core.kinds import KINDS
from nexus_core.plugins import Policy

#: Every hook a fake plugin with every feature (``plugin_fixtures.FULL``) implements.
FULL_HOOKS = sorted(k.hook for k in KINDS)

FAKE_PROJECT = '''
from nexus_core import config, hosts, run, task

config(fake_endpoint="lab-1")
hosts("fakes", "fake://alpha", "fake://beta", "fake://gamma")


@task(on="fakes", fake_label="blue")
def deploy():
    """Deploy through the fake transport."""
    run("echo deploying")


@task(on="fakes", strategy="reverse")
def rollback():
    run("echo rolling back")
'''

LOCAL_PROJECT = """
from nexus_core import run, task

@task
def hello():
    run("echo hello-local")
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    return Logs(tmp_path / "imports.log", tmp_path / "runs.log")


@pytest.fixture
def project(nexus_project, site, logs):
    """A nexus project whose subprocesses see the fake distributions in ``site``."""
    site.mkdir()
    nexus_project.env.update(plugin_env(site, logs))
    return nexus_project


def plugin_rows(outcome) -> dict[str, dict]:
    """``nexus plugins --format json`` rows of third-party plugins, by distribution."""
    assert outcome.code == 0, outcome
    return {p["distribution"]: p for p in outcome.json()["plugins"] if not p["builtin"]}


def no_traceback(outcome) -> None:
    assert "Traceback" not in outcome.stderr, outcome
    assert "internal error" not in outcome.stderr, outcome


# --- policy: a blocked plugin is never imported ---------------------------------------------


def test_without_policy_every_installed_plugin_loads(project, site, logs):
    make_dist(site)
    rows = plugin_rows(project.run("plugins", "--format", "json"))
    assert rows["nexus-fake"]["loaded"] is True
    assert rows["nexus-fake"]["reason"] == "no policy (all installed plugins load)"
    assert logs.imported() == ["nexus_fake"]


def test_empty_NEXUS_LOAD_PLUGINS_blocks_every_plugin_without_importing_it(project, site, logs):
    make_dist(site)
    out = project.run("plugins", "--format", "json", env={"NEXUS_LOAD_PLUGINS": ""})
    row = plugin_rows(out)["nexus-fake"]
    assert (row["allowed"], row["loaded"], row["reason"]) == (False, False, "not in NEXUS_LOAD_PLUGINS")
    project.write(LOCAL_PROJECT)
    run = project.run("run", "hello", env={"NEXUS_LOAD_PLUGINS": ""})
    assert run.code == 0, run
    assert logs.imported() == []


def test_NEXUS_LOAD_PLUGINS_loads_only_the_listed_distributions(project, site, logs):
    make_dist(site)
    make_dist(site, "nexus-other", "1.0", features=("subscriber",))
    # Names compare normalised (PEP 503): case, "_" and "." do not matter.
    rows = plugin_rows(project.run("plugins", "--format", "json", env={"NEXUS_LOAD_PLUGINS": " Nexus_Fake , "}))
    assert rows["nexus-fake"]["loaded"] and rows["nexus-fake"]["reason"] == "listed in NEXUS_LOAD_PLUGINS"
    assert not rows["nexus-other"]["allowed"] and not rows["nexus-other"]["loaded"]
    assert logs.imported() == ["nexus_fake"]


def test_policy_file_blocks_an_unlisted_plugin_without_importing_it(project, site, logs):
    make_dist(site)
    path = project.policy(["nexus-other"])
    out = project.run("plugins", "--format", "json")
    row = plugin_rows(out)["nexus-fake"]
    assert (row["allowed"], row["loaded"]) == (False, False)
    assert row["reason"] == f"not allowed by {path}"
    assert out.json()["policy"] == str(path)
    text = project.run("plugins")
    assert "nexus-fake 0.3.0  [blocked]" in text.stdout
    assert logs.imported() == []


def test_policy_file_allows_a_plugin_within_its_version_range(project, site, logs):
    make_dist(site)
    path = project.policy(["nexus-fake>=0.3,<1"])
    row = plugin_rows(project.run("plugins", "--format", "json"))["nexus-fake"]
    assert row["loaded"] is True and row["reason"] == f"allowed by {path}"
    assert logs.imported() == ["nexus_fake"]


def test_plugin_version_outside_the_allowed_range_is_blocked_with_the_reason(project, site, logs):
    make_dist(site, version="0.3.0")
    path = project.policy(["nexus-fake>=1,<2"])
    row = plugin_rows(project.run("plugins", "--format", "json"))["nexus-fake"]
    assert not row["allowed"] and not row["loaded"]
    assert row["reason"] == f"version 0.3.0 not allowed by {path} (nexus-fake<2,>=1)"
    assert logs.imported() == []


def test_policy_file_in_XDG_CONFIG_HOME_is_found(project, site, logs):
    make_dist(site)
    path = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "policy.toml"
    path.parent.mkdir(parents=True)
    path.write_text('allow = ["nexus-someone-else"]\n')
    row = plugin_rows(project.run("plugins", "--format", "json"))["nexus-fake"]
    assert row["reason"] == f"not allowed by {path}"
    assert logs.imported() == []


@pytest.mark.parametrize(
    ("env", "policy"),
    [({"NEXUS_LOAD_PLUGINS": "nexus-fake"}, ["nexus-other"]), ({"NEXUS_LOAD_PLUGINS": "nexus-other"}, ["nexus-fake"])],
    ids=["env-allows-file-blocks", "file-allows-env-blocks"],
)
def test_environment_and_policy_file_must_both_allow_a_plugin(project, site, logs, env, policy):
    make_dist(site)
    project.policy(policy)
    row = plugin_rows(project.run("plugins", "--format", "json", env=env))["nexus-fake"]
    assert not row["loaded"]
    assert logs.imported() == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("allow = [nexus-fake", "cannot be read"),
        ('allow = "nexus-fake"', "'allow' must be a list"),
        ('alow = ["nexus-fake"]', "has no allow list"),
        (b"\xff\xfe", "cannot be read"),
    ],
    ids=["invalid-toml", "allow-not-a-list", "typo-no-allow", "not-utf8"],
)
def test_broken_policy_file_loads_nothing_and_says_why(project, site, logs, content, why):
    make_dist(site)
    path = project.root / "policy.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content + "\n")
    out = project.run("plugins", "--format", "json", env={"NEXUS_POLICY_FILE": str(path)})
    no_traceback(out)
    assert not plugin_rows(out)["nexus-fake"]["loaded"]
    assert f"plugin policy {path}: " in out.stderr and why in out.stderr, out
    assert "no plugin is loaded" in out.stderr
    assert any(why in e for e in out.json()["errors"])
    assert logs.imported() == []


def test_missing_NEXUS_POLICY_FILE_loads_nothing(project, site, logs):
    make_dist(site)
    missing = project.root / "nope.toml"
    out = project.run("plugins", "--format", "json", env={"NEXUS_POLICY_FILE": str(missing)})
    assert not plugin_rows(out)["nexus-fake"]["loaded"]
    assert f"plugin policy {missing}: NEXUS_POLICY_FILE names a file that does not exist" in out.stderr
    assert logs.imported() == []
    folder = project.root / "policies"
    folder.mkdir()
    out = project.run("plugins", "--format", "json", env={"NEXUS_POLICY_FILE": str(folder)})
    assert not plugin_rows(out)["nexus-fake"]["loaded"]
    assert f"plugin policy {folder}: NEXUS_POLICY_FILE names a folder, not a policy file" in out.stderr


def test_invalid_allow_entry_is_reported_and_blocks_only_that_entry(project, site, logs):
    make_dist(site)
    make_dist(site, "nexus-other", "1.0", features=("subscriber",))
    project.policy(["nexus-fake>=>1", "nexus-other"])
    out = project.run("plugins", "--format", "json")
    rows = plugin_rows(out)
    assert not rows["nexus-fake"]["loaded"] and rows["nexus-other"]["loaded"]
    assert "ignoring allow entry 'nexus-fake>=>1'" in out.stderr
    assert logs.imported() == ["nexus_other"]


# --- plugins that cannot load: a clear error naming the distribution -----------------------


def test_plugin_for_another_api_version_is_refused_naming_it_and_both_versions(project, site, logs):
    make_dist(site, "nexus-future", "2.0", features=("executor",), api_version=99)
    out = project.run("version")
    no_traceback(out)
    assert out.code == 0
    assert (
        "plugin nexus-future 2.0 targets plugin API version 99; nexus-core 0.1.0 provides API version 1: "
        "upgrade or remove nexus-future"
    ) in out.stderr
    assert "nexus-future 2.0 (failed)" in out.stdout
    row = plugin_rows(project.run("plugins", "--format", "json"))["nexus-future"]
    assert row["loaded"] is False and "API version 99" in row["error"]


def test_plugin_without_NEXUS_API_VERSION_is_refused(project, site):
    make_dist(site, "nexus-old", "0.0.1", features=("executor",), api_version=None)
    out = project.run("plugins")
    no_traceback(out)
    assert "plugin nexus-old 0.0.1 does not declare NEXUS_API_VERSION" in out.stderr
    assert "nexus-old 0.0.1  [failed]" in out.stdout


def test_plugin_that_raises_on_import_is_named_and_the_run_goes_on(project, site):
    make_dist(site, "nexus-broken", "0.1", features=("raise_on_import",))
    project.write(LOCAL_PROJECT)
    out = project.run("run", "hello")
    no_traceback(out)
    assert out.code == 0, out
    assert (
        "plugin nexus-broken 0.1 (nexus_broken) failed to import: RuntimeError: boom while importing on purpose"
    ) in out.stderr
    assert "hello" in out.stdout


def test_duplicate_executor_name_names_both_distributions_and_the_builtin_wins(project, site, logs):
    make_dist(site, "nexus-dupe", "0.1", features=("duplicate_local",))
    project.write(LOCAL_PROJECT)
    out = project.run("run", "hello", "-v")
    no_traceback(out)
    assert out.code == 0, out
    assert (
        "executor 'local' is registered twice: by nexus-core and by nexus-dupe; "
        "uninstall one of them or block it in the plugin policy"
    ) in out.stderr
    assert "hello-local" in out.stdout
    assert logs.records("run") == []  # the impostor ran nothing
    row = plugin_rows(project.run("plugins", "--format", "json"))["nexus-dupe"]
    assert "registered twice" in row["error"]
    assert "[allowed, with errors]" in project.run("plugins").stdout


def test_hook_with_an_unknown_argument_is_refused_by_name(project, site):
    dist = make_dist(site, "nexus-badsig", "0.2", features=())
    module = site / f"{dist.module}.py"
    module.write_text(
        module.read_text() + "\n\n@hookimpl\ndef nexus_subscribers(config, options, nonsense):\n    return []\n"
    )
    out = project.run("plugins", "--format", "json")
    no_traceback(out)
    assert "plugin nexus-badsig 0.2 (nexus_badsig) cannot be registered" in out.stderr
    assert "nonsense" in out.stderr
    assert not plugin_rows(out)["nexus-badsig"]["loaded"]


def test_hook_with_a_typo_in_its_name_is_reported(project, site):
    dist = make_dist(site, "nexus-typo", "0.2", features=())
    module = site / f"{dist.module}.py"
    module.write_text(module.read_text() + "\n\n@hookimpl\ndef nexus_executor():\n    return []\n")
    out = project.run("plugins")
    assert "plugin nexus-typo 0.2 implements nexus_executor, which is not a Nexus hook" in out.stderr


def test_plugin_raising_in_nexus_commands_is_named_and_help_still_works(project, site):
    dist = make_dist(site, "nexus-cmdfail", "0.1", features=())
    module = site / f"{dist.module}.py"
    module.write_text(
        module.read_text() + "\n\n@hookimpl\ndef nexus_commands():\n    raise ValueError('no commands today')\n"
    )
    out = project.run("--help")
    no_traceback(out)
    assert out.code == 0 and "Usage" in out.stdout
    assert "plugin nexus-cmdfail failed in nexus_commands: ValueError: no commands today" in out.stderr


# --- nexus plugins / nexus version ---------------------------------------------------------


def test_plugins_text_shows_distribution_version_hooks_and_state(project, site):
    make_dist(site)
    make_dist(site, "nexus-other", "1.0", features=("subscriber",))
    project.policy(["nexus-fake"])
    out = project.run("plugins")
    assert out.code == 0, out
    assert "nexus-fake 0.3.0  [allowed]  fake = nexus_fake" in out.stdout
    assert f"hooks: {', '.join(FULL_HOOKS)}" in out.stdout
    assert "nexus-other 1.0  [blocked]  other = nexus_other" in out.stdout
    assert (
        "nexus-core 0.1.0  [built-in]  hooks: nexus_executors, nexus_preflight_checks, nexus_secret_backends, "
        "nexus_strategies" in out.stdout
    )


def test_plugins_json_has_every_field(project, site):
    make_dist(site)
    out = project.run("plugins", "--format", "json", env={"NEXUS_LOAD_PLUGINS": "nexus-fake"})
    data = out.json()
    assert data["policy"] is None
    assert data["load_plugins"] == ["nexus-fake"]
    assert data["errors"] == []
    row = plugin_rows(out)["nexus-fake"]
    assert row == {
        "name": "fake", "distribution": "nexus-fake", "version": "0.3.0", "module": "nexus_fake",
        "allowed": True, "reason": "listed in NEXUS_LOAD_PLUGINS", "loaded": True,
        "hooks": FULL_HOOKS,
        "error": "", "builtin": False,
    }  # fmt: skip
    builtins = [p for p in data["plugins"] if p["builtin"]]
    assert {p["distribution"] for p in builtins} == {"nexus-core"}
    assert all(p["loaded"] and p["reason"] == "built-in" for p in builtins)


def test_version_lists_plugin_versions(project, site):
    make_dist(site)
    make_dist(site, "nexus-other", "1.2.3", features=("subscriber",))
    project.policy(["nexus-fake"])
    out = project.run("version")
    assert out.code == 0, out
    assert out.stdout.startswith("nexus-core 0.1.0 (plugin API 1")
    assert "nexus-fake 0.3.0\n" in out.stdout
    assert "nexus-other 1.2.3 (blocked)" in out.stdout
    data = json.loads(project.run("version", "--format", "json").stdout)
    # Other installed plugins (nexus-ssh in a development environment) may be listed too.
    assert data["plugins"].items() >= {"nexus-fake": "0.3.0", "nexus-other": "1.2.3"}.items()
    assert data["api"] == 1


# --- what plugins add ----------------------------------------------------------------------


@pytest.mark.hook("nexus_commands")
def test_plugin_cli_command_appears_in_help_and_runs(project, site):
    """nexus_commands: a plugin's click command is a ``nexus`` subcommand."""
    make_dist(site)
    helptext = project.run("--help")
    assert "fake-hello" in helptext.stdout and "Say hello from the fake plugin." in helptext.stdout
    out = project.run("fake-hello", "--name", "ops")
    assert out.code == 0, out
    assert out.stdout == "hello ops from nexus-fake\n"


def test_blocked_plugin_command_does_not_exist(project, site, logs):
    make_dist(site)
    out = project.run("fake-hello", env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == 2
    assert "No such command 'fake-hello'" in out.stderr
    assert logs.imported() == []


@pytest.mark.hook("nexus_executors", "nexus_config_options", "nexus_task_options")
def test_plugin_executor_runs_tasks_on_hosts_of_its_transport(project, site, logs):
    """nexus_executors, nexus_config_options, nexus_task_options: ``fake://`` hosts run through the plugin."""
    make_dist(site)
    project.write(FAKE_PROJECT)
    out = project.run("run", "deploy", "--format", "json")
    assert out.code == 0, out
    assert out.task_status("deploy") == "ok"
    runs = logs.records("run")
    assert sorted(r["host"] for r in runs) == ["alpha", "beta", "gamma"]
    assert {(r["transport"], r["cmd"], r["endpoint"]) for r in runs} == {("fake", "echo deploying", "lab-1")}
    assert {e["line"] for e in out.of("command.output")} == {
        f"fake[{h}] echo deploying" for h in ("alpha", "beta", "gamma")
    }
    assert len(logs.records("close")) == 1
    # prepare: once, with every host of the transport, before the first command
    kinds = [r["kind"] for r in logs.records()]
    assert kinds.count("prepare") == 1 and kinds.index("prepare") < kinds.index("run")
    assert logs.records("prepare")[0]["hosts"] == ["alpha", "beta", "gamma"]


def test_without_the_plugin_its_transport_and_options_are_validation_errors(project, site, logs):
    make_dist(site)
    project.write(FAKE_PROJECT)
    out = project.run("validate", "--format", "json", env={"NEXUS_LOAD_PLUGINS": ""})
    assert out.code == 2, out
    codes = {p["code"] for p in out.json()["problems"]}
    assert {"missing-plugin", "unknown-option"} <= codes
    messages = " ".join(p["message"] for p in out.json()["problems"])
    assert "no fake executor is installed" in messages and "fake_endpoint" in messages
    assert logs.imported() == []


@pytest.mark.hook("nexus_strategies")
def test_plugin_strategy_plans_the_host_order(project, site, logs):
    """nexus_strategies: ``strategy="reverse"`` from the plugin plans hosts last-first, one at a time."""
    make_dist(site)
    project.write(FAKE_PROJECT)
    dry = project.run("run", "rollback", "--dry-run", "--format", "json")
    assert dry.code == 0, dry
    task = dry.json()["plan"]["tasks"]["rollback"]
    assert task["strategy"] == "reverse"
    assert task["strategy_description"] == "reverse, one host at a time"
    assert task["batches"] == [["gamma"], ["beta"], ["alpha"]]
    assert logs.records("run") == []  # a dry run executes nothing


def test_plugin_strategy_runs_hosts_in_the_planned_order(project, site, logs):
    """nexus_strategies: the run follows the order the dry run showed."""
    make_dist(site)
    project.write(FAKE_PROJECT)
    out = project.run("run", "rollback", "--format", "json")
    assert out.code == 0, out
    assert [r["host"] for r in logs.records("run")] == ["gamma", "beta", "alpha"]
    assert [e["strategy"] for e in out.of("task.start")] == ["reverse"]


@pytest.mark.hook("nexus_preflight_checks")
def test_plugin_preflight_check_reports_on_the_plan(project, site):
    """nexus_preflight_checks: a plugin check runs with ``nexus preflight`` and in the dry run."""
    make_dist(site)
    project.write(FAKE_PROJECT)
    out = project.run("preflight", "deploy", "--format", "json")
    assert out.code == 0, out
    fake = [c for c in out.json()["checks"] if c["category"] == "Fake"]
    assert sorted(c["host"] for c in fake) == ["alpha", "beta", "gamma"]
    assert all(c["status"] == "ok" for c in fake)
    dry = project.run("run", "deploy", "--dry-run")
    assert "fake host answers" in dry.stdout


@pytest.mark.hook("nexus_subscribers")
def test_raising_subscriber_is_reported_by_name_and_the_run_succeeds(project, site, logs):
    """nexus_subscribers: one plugin's subscriber raises; the run and other subscribers go on."""
    make_dist(site)
    make_dist(site, "nexus-flaky", "0.1", features=("raising_subscriber",))
    project.write(FAKE_PROJECT)
    out = project.run("run", "deploy")
    no_traceback(out)
    assert out.code == 0, out
    assert (
        out.stderr.count(
            "event subscriber 'nexus-flaky' failed on pipeline.start (RuntimeError: subscriber exploded on purpose)"
        )
        == 1
    )
    seen = [r["event"] for r in logs.records("event")]
    assert seen[0] == "pipeline.start" and seen[-1] == "pipeline.stop"
    assert "command.stop" in seen


def test_an_executor_that_raises_fails_its_command_by_name_with_the_traceback_in_the_debug_log(project, site):
    make_dist(site)
    project.write(FAKE_PROJECT.replace('run("echo deploying")', 'run("crash now")'))
    out = project.run("run", "deploy")
    no_traceback(out)
    assert out.code == 1, out
    assert (
        "executor 'fake' (nexus-fake) failed: RuntimeError: the fake executor crashed on purpose"
        in out.stdout + out.stderr
    )
    debug = project.run("run", "deploy", "--log-level", "debug")
    assert debug.code == 1, debug
    assert "executor 'fake' raised on alpha" in debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr and "crashed on purpose" in debug.stderr


def test_subscriber_sees_every_event_of_a_json_run(project, site, logs):
    make_dist(site, features=("executor", "options", "subscriber"))
    project.write(FAKE_PROJECT.replace(', strategy="reverse"', ""))
    out = project.run("run", "deploy", "--format", "json")
    assert out.code == 0, out
    assert [r["event"] for r in logs.records("event")] == [e["event"] for e in out.events]


# --- hooks that plugins add -----------------------------------------------------------------


@pytest.mark.hook("nexus_addhooks")
def test_a_plugin_family_shares_a_hook_the_core_does_not_define(project, site):
    """nexus_addhooks: nexus-fake adds ``nexus_fake_greetings``; nexus-greeter implements it."""
    make_dist(site)
    make_dist(site, "nexus-greeter", "0.2", features=("greeting",))
    out = project.run("fake-greet", "ops")
    no_traceback(out)
    assert out.code == 0, out
    assert out.stdout == "nexus-greeter: hello ops\n"
    assert out.stderr == ""
    rows = plugin_rows(project.run("plugins", "--format", "json"))
    assert rows["nexus-greeter"]["hooks"] == ["nexus_fake_greetings"]
    assert rows["nexus-greeter"]["error"] == ""


def test_a_hook_whose_family_plugin_is_not_installed_is_reported_as_unknown(project, site):
    make_dist(site, "nexus-greeter", "0.2", features=("greeting",))
    out = project.run("plugins", "--format", "json")
    row = plugin_rows(out)["nexus-greeter"]
    assert "implements nexus_fake_greetings, which is not a Nexus hook" in row["error"]
    assert row["hooks"] == []


# --- lazy registrations ----------------------------------------------------------------------

LAZY_PROJECT = """
from nexus_core import hosts, run, task

hosts("lazies", "lazy://b", "lazy://a", "lazy://c")


@task
def hello():
    run("echo hello-local")


@task(on="lazies", strategy="lazy-order", lazy_step=2)
def spread():
    run("echo spreading")
"""


def test_a_registered_class_is_imported_only_when_a_plan_uses_it(project, site, logs):
    make_dist(site, "nexus-lazy", "0.4", features=("lazy",))
    project.write(LAZY_PROJECT)
    for args in (("--help",), ("run", "hello"), ("list",)):
        out = project.run(*args)
        assert out.code == 0, out
    assert set(logs.imported()) == {"nexus_lazy"}, "the classes module was imported by a run that does not use it"
    out = project.run("run", "spread", "--format", "json")
    assert out.code == 0, out
    assert "nexus_lazy_classes" in logs.imported()
    # The class takes its name from the registration, and the strategy its options.
    assert {(r["transport"], r["host"]) for r in logs.records("run")} == {("lazy", h) for h in "abc"}
    dry = project.run("run", "spread", "--dry-run", "--format", "json")
    assert dry.json()["plan"]["tasks"]["spread"]["batches"] == [["a", "b"], ["c"]]
    checks = project.run("preflight", "spread", "--format", "json").json()["checks"]
    lazy = [c for c in checks if c["category"] == "Lazy"]
    assert [c["message"] for c in lazy] == ["lazy check lazy-check at order 5"]


def test_a_strategy_option_from_a_registration_is_validated_before_import(project, site, logs):
    make_dist(site, "nexus-lazy", "0.4", features=("lazy",))
    project.write(LAZY_PROJECT.replace("lazy_step=2", "lazy_step=0"))
    out = project.run("run", "hello", "--format", "json")
    assert out.code == 2, out
    assert "lazy_step must be >= 1" in out.stdout


@pytest.mark.parametrize(
    ("transport", "why"),
    [
        ("nomodule", "cannot be loaded: no module named 'nexus_broken_gone'"),
        ("noclass", "cannot be loaded: module 'nexus_broken_classes' has no 'Gone'"),
        ("wrongbase", "is not a subclass of nexus_core.api.Executor"),
    ],
)
def test_a_broken_registration_is_reported_naming_the_plugin_never_a_traceback(project, site, transport, why):
    make_dist(site, "nexus-broken", "0.5", features=("broken",))
    project.write(f'''
from nexus_core import run, task

@task
def hello():
    run("echo hello-local")

@task(on=["{transport}://h1"])
def remote():
    run("echo hi")
''')
    assert project.run("run", "hello").code == 0  # a local run never imports the broken classes
    out = project.run("run", "remote")
    no_traceback(out)
    assert out.code == 2, out
    assert f"executor {transport!r} of plugin nexus-broken" in out.stderr and why in out.stderr
    listing = project.run("plugins", "--format", "json")
    no_traceback(listing)
    assert why in plugin_rows(listing)["nexus-broken"]["error"]


def test_a_registration_with_a_malformed_target_is_reported_at_start(project, site, monkeypatch):
    monkeypatch.setitem(
        plugin_fixtures.FEATURES,
        "malformed",
        """
        @hookimpl
        def nexus_executors():
            return [Registration("odd", "no colon here")]
        """,
    )
    make_dist(site, "nexus-odd", "0.1", features=("malformed",))
    out = project.run("plugins", "--format", "json")
    no_traceback(out)
    message = "plugin nexus-odd: executor 'odd' names its class as 'no colon here'; write \"package.module:Class\""
    assert message in out.json()["errors"]


# --- a missing plugin matters only for the tasks being run -----------------------------------

MIXED_PROJECT = """
from nexus_core import run, task


@task
def hello():
    run("echo hello-local")


@task(on=["{transport}://web-1"])
def deploy():
    run("echo deploying")
"""


def test_a_local_task_runs_when_another_task_needs_a_plugin_that_is_not_installed(project):
    # ssm: a transport no installed plugin provides (every known package is installed in this
    # repository; the "pip install" hint for a known one is checked in test_discovery/test_cloud).
    project.write(MIXED_PROJECT.format(transport="ssm"))
    out = project.run("run", "hello")
    no_traceback(out)
    assert out.code == 0, out
    assert "hello-local" in out.stdout
    warning = "Warning: task 'deploy' runs on remote hosts (ssm), but no ssm executor is installed"
    assert warning in out.stderr
    for args in (("validate",), ("run", "deploy")):
        strict = project.run(*args)
        no_traceback(strict)
        assert strict.code == 2, strict
        assert "no ssm executor is installed" in strict.stderr


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed("nexus-ssh"), reason="needs nexus-ssh installed (blocked by the test)")
def test_a_plugin_blocked_by_policy_is_reported_as_blocked_not_as_missing(project):
    project.write(MIXED_PROJECT.format(transport="ssh"))
    env = {"NEXUS_LOAD_PLUGINS": ""}
    out = project.run("run", "hello", env=env)
    assert out.code == 0, out
    blocked = "nexus-ssh is installed but blocked by policy (not in NEXUS_LOAD_PLUGINS)"
    assert blocked in out.stderr and "not installed" not in out.stderr
    strict = project.run("validate", env=env)
    assert strict.code == 2, strict
    assert f"no ssh executor is loaded: {blocked}" in strict.stderr
    assert "pip install" not in strict.stderr


def test_a_strategy_typo_suggests_the_built_in_strategy_and_no_package(project):
    project.write("""
from nexus_core import run, task

@task(on=["agent://h"], strategy="rollin")
def deploy():
    run("echo hi")
""")
    out = project.run("validate")
    assert out.code == 2, out
    assert "unknown strategy 'rollin'" in out.stderr and "did you mean 'rolling'?" in out.stderr
    assert "nexus-ssh" not in out.stderr


# --- pure parts ----------------------------------------------------------------------------


def test_host_string_with_a_scheme_picks_the_transport():
    host = parse_host("fake://deploy@alpha:2200")
    assert (host.transport, host.user, host.name, host.port) == ("fake", "deploy", "alpha", 2200)
    assert parse_host("web-1").transport == "ssh"
    assert parse_host("SSH://[::1]:22").transport == "ssh"
    for bad in ("fake://", "1x://a"):
        with pytest.raises(HostParseError):
            parse_host(bad)


def test_policy_normalises_names_and_refuses_invalid_versions(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('allow = ["Nexus.SSH>=0.1,<1", 7]\nextra = 1\n')
    policy = Policy.from_environment({"NEXUS_POLICY_FILE": str(path)})
    assert policy.check("nexus_ssh", "0.2.0") == (True, f"allowed by {path}")
    assert policy.check("nexus-ssh", "1.0")[0] is False
    allowed, why = policy.check("nexus-ssh", "not-a-version")
    assert not allowed and "not a valid version" in why
    assert any("unknown key(s) extra" in p for p in policy.problems)
    assert any("ignoring allow entry 7" in p for p in policy.problems)


def test_policy_without_any_source_allows_everything(tmp_path):
    policy = Policy.from_environment({"XDG_CONFIG_HOME": str(tmp_path)})
    if policy.source:  # pragma: no cover - a machine-wide /etc/nexus/policy.toml exists
        pytest.skip(f"system policy {policy.source} applies")
    assert policy.check("anything", "1.0") == (True, "no policy (all installed plugins load)")


def test_a_users_policy_file_narrows_the_system_allowlist_never_widens_it(tmp_path, monkeypatch):
    """A user's own policy file, or NEXUS_POLICY_FILE, was read instead of the machine's
    /etc/nexus/policy.toml and so could allow any plugin: the system list still applies."""
    from nexus_core import plugins

    system = tmp_path / "etc-policy.toml"
    system.write_text('allow = ["nexus-ssh", "nexus-vault>=1"]\n')
    monkeypatch.setattr(plugins, "SYSTEM_POLICY", str(system))
    mine = tmp_path / "config" / "nexus" / "policy.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text('allow = ["nexus-ssh", "nexus-vault", "nexus-evil"]\n')
    for environ in ({"XDG_CONFIG_HOME": str(tmp_path / "config")}, {"NEXUS_POLICY_FILE": str(mine)}):
        policy = Policy.from_environment(environ)
        assert policy.check("nexus-ssh", "0.1.0") == (True, f"allowed by {mine}")
        assert policy.check("nexus-evil", "1.0") == (False, f"not allowed by {system}")
        assert policy.check("nexus-vault", "0.5") == (False, f"version 0.5 not allowed by {system} (nexus-vault>=1)")
    mine.write_text('allow = ["nexus-vault"]\n')  # narrower: it holds
    assert Policy.from_environment({"NEXUS_POLICY_FILE": str(mine)}).check("nexus-ssh", "0.1.0") == (
        False,
        f"not allowed by {mine}",
    )
    system.write_text('alow = ["nexus-ssh"]\n')  # a broken system list still fails closed
    assert Policy.from_environment({"NEXUS_POLICY_FILE": str(mine)}).check("nexus-vault", "1.0")[0] is False
    system.write_text("[roles.ops]\ncan = []\n")  # an access policy only: no plugin limit of its own
    assert Policy.from_environment({"NEXUS_POLICY_FILE": str(mine)}).check("nexus-vault", "1.0")[0] is True


# --- the entry-point cache -------------------------------------------------------------------


#: The repository's own plugin distributions (installed in a development environment).
REAL_PLUGINS = {p.name.replace("_", "-") for p in (Path(__file__).resolve().parents[1] / "plugins").glob("nexus_*")}


def fakes(outcome) -> set[str]:
    """The fake distributions ``nexus plugins`` lists (the installed real plugins aside)."""
    return {d for d in plugin_rows(outcome) if d.startswith("nexus-") and d not in REAL_PLUGINS}


def cache_files(project) -> list[Path]:
    return sorted((Path(project.env["XDG_CACHE_HOME"]) / "nexus").glob("entry-points-*.json"))


def test_entry_point_cache_sees_a_plugin_installed_upgraded_or_removed_after_it_was_written(project, site):
    make_dist(site)
    assert fakes(project.run("plugins", "--format", "json")) == {"nexus-fake"}
    assert len(cache_files(project)) == 1
    # Installed later: a new dist-info folder changes the key.
    make_dist(site, "nexus-other", "1.0")
    assert fakes(project.run("plugins", "--format", "json")) == {"nexus-fake", "nexus-other"}
    # Entry points edited in place (same folder, same version): its entry_points.txt changed.
    info = site / "nexus_other-1.0.dist-info" / "entry_points.txt"
    info.write_text("[nexus]\nrenamed = nexus_other\n", encoding="utf-8")
    os.utime(info, ns=(info.stat().st_atime_ns, info.stat().st_mtime_ns + 1_000_000_000))
    rows = plugin_rows(project.run("plugins", "--format", "json"))
    assert rows["nexus-other"]["name"] == "renamed"
    # Removed.
    shutil.rmtree(site / "nexus_other-1.0.dist-info")
    assert fakes(project.run("plugins", "--format", "json")) == {"nexus-fake"}


def test_a_stale_or_broken_entry_point_cache_is_never_trusted(project, site):
    make_dist(site)
    plugin_rows(project.run("plugins", "--format", "json"))
    (path,) = cache_files(project)
    path.write_text("{not json", encoding="utf-8")
    assert fakes(project.run("plugins", "--format", "json")) == {"nexus-fake"}
    data = json.loads(path.read_text(encoding="utf-8"))  # rewritten
    data["entry_points"] = [["ghost", "nexus_ghost", "nexus-ghost", "1.0"]]
    path.write_text(json.dumps(data), encoding="utf-8")
    # A cache that matches the key is used as is: this one now names a plugin that does not exist...
    out = project.run("plugins", "--format", "json")
    assert "nexus-ghost" in {p["distribution"] for p in out.json()["plugins"]}
    # ...which NEXUS_PLUGIN_CACHE=0 bypasses (and a real install change would invalidate).
    out = project.run("plugins", "--format", "json", env={"NEXUS_PLUGIN_CACHE": "0"})
    assert fakes(out) == {"nexus-fake"}
    # ...and that a plugin policy never reads: what it vets is the installed metadata.
    out = project.run("plugins", "--format", "json", env={"NEXUS_LOAD_PLUGINS": "nexus-ghost,nexus-fake"})
    assert "nexus-ghost" not in {p["distribution"] for p in out.json()["plugins"]}
    assert fakes(out) == {"nexus-fake"}


# --- event types declared by plugins; failures grouped over hosts ---------------------------

EVENT_PROJECT = """
from nexus_core import hosts, run, task

hosts("pair", "fake://alpha", "fake://beta")


@task(on="pair")
def deploy():
    run("echo deploying")
"""


@pytest.mark.hook("nexus_event_types")
def test_plugin_event_type_joins_the_catalogue_and_the_json_output(project, site, logs):
    """nexus_event_types: an event class a plugin declares is emitted into ``--format json``."""
    make_dist(site, features=("executor", "event_type"))
    project.write(EVENT_PROJECT)
    out = project.run("run", "deploy", "--format", "json")
    assert out.code == 0, out
    found = out.of("fake.connect")
    assert sorted((e["host"], e["port"]) for e in found) == [("alpha", 7), ("beta", 7)]
    assert list(found[0]) == ["event", "run_id", "ts", "host", "port"]
    assert {e["run_id"] for e in found} == {out.of("pipeline.start")[0]["run_id"]}
    row = plugin_rows(project.run("plugins", "--format", "json"))["nexus-fake"]
    assert "nexus_event_types" in row["hooks"] and not row["error"]


def test_event_name_declared_twice_or_not_an_event_is_an_error_naming_the_plugin(project, site, logs):
    make_dist(site, "nexus-dup", "0.1", features=("duplicate_event",))
    project.write(LOCAL_PROJECT)
    out = project.run("run", "hello", "--format", "json")
    no_traceback(out)
    assert out.code == 0, out
    assert "event 'task.stop' is declared twice: by nexus-core and by nexus-dup" in out.stderr
    assert "nexus_event_types returned 'not a class'" in out.stderr
    assert [e["status"] for e in out.of("task.stop")] == ["ok"]  # the core's own event is kept


def test_the_same_error_on_many_hosts_is_reported_once_naming_them(project, site, logs):
    make_dist(site)
    project.write(
        FAKE_PROJECT.replace('run("echo rolling back")', 'run("echo rolling back; fail")').replace(
            ', strategy="reverse"', ""
        )
    )
    out = project.run("run", "rollback", "--continue-on-error")
    assert out.code == 1, out
    assert out.stderr.count("Error: Command failed") == 1, out.stderr
    # hosts in the order they failed (they run in parallel)
    head = re.search(r"Error: Command failed \(same error on 3 hosts: (.+)\)\n", out.stderr)
    assert head and sorted(head[1].split(", ")) == ["alpha", "beta", "gamma"], out.stderr
    assert f"Hosts: {head[1]}\n" in out.stderr and "Host: " not in out.stderr
    assert "Reason: fake failure" in out.stderr


@pytest.mark.skipif(not _installed("nexus-ssh"), reason="needs nexus-ssh installed (blocked by the test)")
def test_a_config_key_of_a_blocked_plugin_says_blocked_not_install(project):
    project.write("""
from nexus_core import config, run, task

config(ssh_user="deploy")

@task
def hello():
    run("echo hi")
""")
    env = {"NEXUS_LOAD_PLUGINS": ""}
    strict = project.run("validate", env=env)
    assert strict.code == 2, strict
    assert "'ssh_user' needs the nexus-ssh plugin: nexus-ssh is installed but blocked by policy" in strict.stderr
    assert "pip install" not in strict.stderr
    out = project.run("run", "hello", env=env)
    assert out.code == 0 and "blocked by policy" in out.stderr, out


def test_a_config_key_of_a_plugin_not_installed_names_the_package(project):
    project.write("""
from nexus_core import config, run, task

config(aws_region="eu-west-1")

@task
def hello():
    run("echo hi")
""")
    strict = project.run("validate")
    assert strict.code == 2, strict
    assert "config() key 'aws_region' needs the nexus-aws plugin, which is not loaded" in strict.stderr
    assert "pip install nexus-aws" in strict.stderr
