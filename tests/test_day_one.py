"""Day-one features through the real CLI, on the local machine: task parameters, default and
dependency-only tasks, run() guards (creates/only_if/unless), and -H/--list-hosts checks that
need no SSH server (the SSH side is in tests/ssh/test_ssh_limit.py)."""

from __future__ import annotations

import json

from nexus_core.testing import NexusProject

PARAMS = '''
from nexus_core import run, task

@task
def build(version: str, jobs: int = 2, canary: bool = False, ratio: float = 0.5):
    """Build one version."""
    run(f"echo build {version} jobs={jobs} canary={canary} ratio={ratio}")

@task(deps=[build])
def ship(version: str):
    run(f"echo ship {version}")
'''


def lines(out, event: str = "command.output") -> list[str]:
    return [e["line"] for e in out.of(event)]


# --- task parameters -------------------------------------------------------------------------------


def test_key_value_words_are_task_arguments_typed_from_annotations(nexus_project: NexusProject):
    nexus_project.write(PARAMS)
    out = nexus_project.run("run", "ship", "version=1.2", "canary=yes", "jobs=8", "--format", "json")
    assert out.code == 0, out
    assert lines(out) == ["build 1.2 jobs=8 canary=True ratio=0.5", "ship 1.2"]
    same = nexus_project.run("run", "build", "--param", "version=3", "--param", "canary=0", "--format", "json")
    assert same.code == 0, same
    assert lines(same) == ["build 3 jobs=2 canary=False ratio=0.5"]


def test_missing_or_mistyped_arguments_are_validation_errors(nexus_project: NexusProject):
    nexus_project.write(PARAMS)
    missing = nexus_project.run("run", "ship")
    assert missing.code == 2, missing
    assert "task 'build' needs parameter 'version' (str)" in missing.stderr
    assert "pass version=VALUE" in missing.stderr and "TypeError" not in missing.stderr
    bad = nexus_project.run("run", "build", "version=1", "jobs=many", "canary=maybe")
    assert bad.code == 2, bad
    assert "task 'build': parameter 'jobs' (int): expected an integer, not 'many'" in bad.stderr
    assert "parameter 'canary' (bool): expected true/false" in bad.stderr
    # each problem's hint names its own parameter (not the first required one)
    assert "pass jobs=VALUE, e.g. jobs=3" in bad.stderr and "pass canary=VALUE, e.g. canary=true" in bad.stderr
    empty = nexus_project.run("run", "build", "=5")
    assert empty.code == 2 and "argument '=5'" in empty.stderr, empty
    typo = nexus_project.run("run", "build", "version=1", "verison=2")
    assert typo.code == 2 and "no task of this run takes a parameter 'verison'" in typo.stderr
    assert "did you mean 'version'?" in typo.stderr
    assert nexus_project.run("run", "build", "--param", "version").code == 2
    js = nexus_project.run("validate", "build", "--format", "json")
    assert js.code == 2 and js.json()["problems"][0]["code"] == "bad-param"
    assert nexus_project.run("validate", "ship", "version=1").code == 0


def test_list_shows_parameters(nexus_project: NexusProject):
    nexus_project.write(PARAMS)
    out = nexus_project.run("list")
    assert out.code == 0, out
    assert "build(version: str, jobs: int = 2, canary: bool = False, ratio: float = 0.5)" in out.stdout
    rows = {r["name"]: r for r in nexus_project.run("list", "--format", "json").json()["tasks"]}
    assert rows["ship"]["params"] == [{"name": "version", "type": "str", "required": True, "default": None}]
    assert rows["build"]["params"][2] == {"name": "canary", "type": "bool", "required": False, "default": False}


def test_unsupported_parameter_kinds_are_reported(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def a(*hosts, when: list = []):
            run("true")
        """
    )
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "parameter *hosts is not supported" in out.stderr
    assert "parameter 'when' has type 'list'; use str, int, float or bool" in out.stderr


def test_resume_reuses_the_arguments_of_the_run(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def deploy(version: str):
            run(f"echo step1 {version}")
            run(f"test -e go && echo step2 {version}")
        """
    )
    first = nexus_project.run("run", "deploy", "version=7", "--format", "json")
    assert first.code == 1, first
    run_id = first.of("pipeline.start")[0]["run_id"]
    (nexus_project.root / "go").write_text("")
    again = nexus_project.run("resume", run_id, "--format", "json")
    assert again.code == 0, again
    assert lines(again) == ["step2 7"]


# --- default and dependency-only tasks ------------------------------------------------------------


def test_default_task_from_config_or_decorator(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import config, run, task
        config(default="build")

        @task
        def lint():
            run("echo lint")

        @task(deps=[lint])
        def build():
            run("echo build")
        """
    )
    out = nexus_project.run("run", "--format", "json")
    assert out.code == 0, out
    assert lines(out) == ["lint", "build"]
    assert "[default]" in nexus_project.run("list").stdout
    nexus_project.write(
        """
        from nexus_core import run, task

        @task(default=True)
        def hello():
            run("echo hi")
        """
    )
    assert lines(nexus_project.run("run", "--format", "json")) == ["hi"]


def test_without_a_default_run_lists_the_tasks_and_exits_2(nexus_project: NexusProject):
    nexus_project.write(PARAMS)
    out = nexus_project.run("run")
    assert out.code == 2, out
    assert "No task given, and the nexusfile has no default task" in out.stderr
    assert "build(version: str" in out.stderr and "ship(version: str)" in out.stderr
    assert 'config(default="build")' in out.stderr


def test_a_bad_default_is_a_validation_error(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import config, run, task
        config(default="biuld")

        @task
        def build():
            run("true")
        """
    )
    out = nexus_project.run("run")
    assert out.code == 2, out
    assert "config(default=...) names undefined task 'biuld'" in out.stderr and "did you mean 'build'?" in out.stderr


def test_a_task_with_deps_and_no_commands_groups_them(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def lint():
            run("echo lint")

        @task
        def test():
            run("echo test")

        @task(deps=[lint, test])
        def all():
            pass

        @task
        def empty():
            pass
        """
    )
    out = nexus_project.run("run", "all", "--format", "json")
    assert out.code == 0, out
    assert sorted(lines(out)) == ["lint", "test"] and out.task_status("all") == "ok"
    bad = nexus_project.run("run", "empty")
    assert bad.code == 2 and "task 'empty' runs no commands" in bad.stderr


# --- guards ---------------------------------------------------------------------------------------

GUARDS = """
from nexus_core import run, task

@task
def setup():
    run("echo made > made.txt", creates="made.txt")
    run("echo only", only_if="test -e flag")
    run("echo unless", unless="test -e flag")
    run("echo last")
"""


def test_guards_skip_commands_with_the_reason(nexus_project: NexusProject):
    nexus_project.write(GUARDS)
    first = nexus_project.run("run", "setup", "--format", "json")
    assert first.code == 0, first
    assert lines(first) == ["unless", "last"]
    skipped = {e["command"]: e["reason"] for e in first.of("command.stop") if e["status"] == "skipped"}
    assert skipped == {"echo only": "only_if: `test -e flag` exited 1"}
    (nexus_project.root / "flag").write_text("")
    second = nexus_project.run("run", "setup")
    assert second.code == 0, second
    assert "echo made > made.txt ⊘" in second.stdout or "creates: made.txt exists" in second.stdout
    assert "creates: made.txt exists" in second.stdout
    assert "unless: `test -e flag` succeeded" in second.stdout
    assert "Completed" in second.stdout


def test_dry_run_checks_creates_locally_and_never_runs_guard_commands(nexus_project: NexusProject):
    nexus_project.write(GUARDS.replace("test -e flag", "touch ran-a-guard"))
    (nexus_project.root / "made.txt").write_text("")
    out = nexus_project.run("run", "setup", "-n")
    assert out.code == 0, out
    assert "[creates:made.txt]" in out.stdout and "would skip: made.txt exists" in out.stdout
    assert "would check only_if (commands do not run in a dry run)" in out.stdout
    assert not (nexus_project.root / "ran-a-guard").exists()
    js = nexus_project.run("run", "setup", "-n", "--format", "json").json()
    cmds = js["plan"]["tasks"]["setup"]["hosts"][0]["commands"]
    assert cmds[0]["creates"] == "made.txt" and cmds[1]["only_if"] == "touch ran-a-guard"
    assert "creates" not in cmds[3]


def test_a_failing_guard_command_is_not_a_failure(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def t():
            run("echo x", only_if="exit 3")
        """
    )
    out = nexus_project.run("run", "t", "--format", "json")
    assert out.code == 0, out
    assert [e["reason"] for e in out.of("command.stop")] == ["only_if: `exit 3` exited 3"]


def test_bad_guard_values_are_validation_errors(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def t():
            run("echo x", creates=3, unles="true")
        """
    )
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "creates must be a string" in out.stderr and "did you mean 'unless'?" in out.stderr


# --- -H and --list-hosts without connecting -------------------------------------------------------

HOSTS = """
from nexus_core import hosts, run, task
hosts("web", "web-1.invalid", "deploy@web-2.invalid:2222")
hosts("db", "db-1.invalid")

@task
def build():
    run("echo build")

@task(on="db", deps=[build])
def migrate():
    run("echo migrate")

@task(on="web", deps=[migrate])
def deploy():
    run("echo deploy")
"""


def test_list_hosts_connects_to_nothing(nexus_project: NexusProject):
    nexus_project.write(HOSTS)
    out = nexus_project.run("run", "deploy", "--list-hosts")
    assert out.code == 0, out
    assert out.stdout.splitlines() == [
        "build (1 host):", "  local",
        "migrate (1 host):", "  db-1.invalid",
        "deploy (2 hosts):", "  web-1.invalid", "  web-2.invalid:2222",
        "4 unique hosts",
    ]  # fmt: skip
    js = nexus_project.run("run", "deploy", "--list-hosts", "-H", "web-2*", "--format", "json").json()
    assert [(t["task"], t["hosts"], t["skipped"]) for t in js["tasks"]] == [
        ("build", ["local"], None),
        ("deploy", ["web-2.invalid:2222"], None),
        ("migrate", [], "no host of the task matches -H web-2*"),
    ]
    assert js["tasks"][1]["addresses"] == ["deploy@web-2.invalid:2222"]


def test_h_mistakes_are_validation_errors(nexus_project: NexusProject):
    nexus_project.write(HOSTS)
    local_only = nexus_project.run("run", "build", "-H", "web")
    assert local_only.code == 2, local_only
    assert "all run on the local machine" in local_only.stderr
    typo = nexus_project.run("run", "deploy", "-H", "wbe", "--list-hosts")
    assert typo.code == 2 and "'wbe' matches no host or group" in typo.stderr and "did you mean 'web'?" in typo.stderr
    empty = nexus_project.run("run", "deploy", "-H", "", "--list-hosts")
    assert empty.code == 2 and "-H/--hosts is empty" in empty.stderr
    js = nexus_project.run("run", "deploy", "-H", "nope", "--list-hosts", "--format", "json")
    assert js.code == 2 and json.loads(js.stdout)["problems"][0]["code"] == "bad-limit"
    # every pattern matches something, yet together they leave the run nothing: said, not "Completed (0 tasks)"
    nexus_project.write(HOSTS.replace('@task(on="db", deps=[build])', '@task(on="db")'))
    nothing = nexus_project.run("run", "migrate", "-H", "web")
    assert nothing.code == 2 and "no host of this run's tasks is left" in nothing.stderr, nothing
    # no exclusion was given: the fix is to name one of the task's hosts, not to drop one
    assert "none that the tasks asked for run on" in nothing.stderr and "drop an exclusion" not in nothing.stderr
    excluded = nexus_project.run("run", "migrate", "-H", "!db-1.invalid")
    assert excluded.code == 2 and "drop an exclusion (!NAME, &NAME)" in excluded.stderr, excluded


def test_h_from_a_file(nexus_project: NexusProject):
    nexus_project.write(HOSTS)
    nexus_project.write("# only the first web host\nweb-1.invalid\n", name="limit.txt")
    out = nexus_project.run("run", "deploy", "--list-hosts", "-H", "@limit.txt")
    assert out.code == 0, out
    assert "deploy (1 host):\n  web-1.invalid" in out.stdout
    assert "migrate: skipped (no host of the task matches -H @limit.txt)" in out.stdout


def test_h_from_the_wrong_file_names_its_lines_without_repeating_them(nexus_project: NexusProject):
    """``-H @.env`` by mistake: each line that matches nothing is named by FILE:LINE, never
    printed (a secret would be), and past five the rest are counted."""
    nexus_project.write(HOSTS)
    secrets = [f"TOKEN_{n}=s3cr3t-{n}" for n in range(8)]
    nexus_project.write("\n".join(["web-1.invalid", *secrets, "api key", ""]), name=".env")
    out = nexus_project.run("run", "deploy", "--list-hosts", "-H", "@.env")
    assert out.code == 2, out
    assert "s3cr3t" not in out.stdout + out.stderr and "api key" not in out.stdout + out.stderr
    assert "-H @.env:10: a pattern with whitespace" in out.stderr, out
    nexus_project.write("\n".join(["web-1.invalid", *secrets, ""]), name=".env")
    out = nexus_project.run("run", "deploy", "--list-hosts", "-H", "@.env", "--format", "json")
    assert out.code == 2 and "s3cr3t" not in out.stdout + out.stderr, out
    messages = [p["message"] for p in json.loads(out.stdout)["problems"]]
    assert messages == [
        *(f"-H @.env:{n}: the pattern on this line matches no host or group" for n in range(2, 7)),
        "-H @: 3 more lines match no host or group (.env:7, .env:8, .env:9)",
    ]


# --- completion -----------------------------------------------------------------------------------


def complete(project: NexusProject, words: str) -> list[str]:
    parts = words.split(" ")
    env = {"_NEXUS_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    out = project.run(env=env)
    assert out.code == 0, out
    return [line.split(",", 1)[1] for line in out.stdout.splitlines()]


def test_completion_of_tasks_parameters_hosts_and_runs(nexus_project: NexusProject):
    nexus_project.write(HOSTS.replace("def build():", "def build(version: str, canary: bool = False):")
                        + '\nprint("a nexusfile that prints")\n')  # fmt: skip
    assert complete(nexus_project, "nexus run ") == ["build", "migrate", "deploy"]
    assert complete(nexus_project, "nexus run d") == ["deploy"]
    assert complete(nexus_project, "nexus run build c") == ["canary="]
    assert complete(nexus_project, "nexus run deploy -H web,!we") == [
        "web,!web",
        "web,!web-1.invalid",
        "web,!web-2.invalid:2222",
    ]
    nexus_project.write(PARAMS)
    nexus_project.run("run", "build", "version=1")
    (run_id,) = [r["id"] for r in nexus_project.run("pipelines", "--format", "json").json()["runs"]]
    assert complete(nexus_project, "nexus logs ") == [run_id]
    assert complete(nexus_project, "nexus resume ") == [run_id]
    assert complete(nexus_project, "nexus pipelines discard ") == [run_id]
