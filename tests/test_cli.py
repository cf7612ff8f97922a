"""The CLI surface: help, list, init, version, completion, exit codes."""

from __future__ import annotations

import json

import pytest

SIMPLE = '''
from nexus_core import task, run

@task
def test():
    """Run the tests.

    More words that list does not show.
    """
    run("true")

@task(deps=[test])
def build():
    run("true")
'''


@pytest.mark.parametrize(
    "command", ["", "run", "validate", "list", "init", "version", "plugins", "preflight", "completion"]
)
def test_help_everywhere(nexus_project, command):
    args = [command, "--help"] if command else ["--help"]
    out = nexus_project.run(*args)
    assert out.code == 0, out
    assert "Usage" in out.stdout
    short = nexus_project.run(*([command, "-h"] if command else ["-h"]))
    assert short.code == 0 and "Usage" in short.stdout


def test_run_help_lists_every_documented_option(nexus_project):
    out = nexus_project.run("run", "--help")
    for option in (
        "--dry-run",
        "-n",
        "--verbose",
        "--quiet",
        "--continue-on-error",
        "--identity",
        "--user",
        "--parallel-limit",
        "--hosts",
        "-H",
        "--config",
        "--format",
        "--log-level",
        "--log-format",
    ):
        assert option in out.stdout, option


def test_list_shows_name_deps_target_and_first_docstring_line(nexus_project):
    nexus_project.write(SIMPLE)
    out = nexus_project.run("list")
    assert out.code == 0
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["test", "local"] and "Run the tests." in lines[0]
    assert "More words" not in out.stdout
    assert "build" in lines[1] and "(after test)" in lines[1]
    js = json.loads(nexus_project.run("list", "--format", "json").stdout)
    assert js["tasks"][1] == {
        "name": "build",
        "deps": ["test"],
        "on": "local",
        "strategy": "parallel",
        "description": "",
        "line": 11,
    }


def test_init_writes_a_working_starter_and_refuses_to_overwrite(nexus_project):
    out = nexus_project.run("init")
    assert out.code == 0, out
    assert nexus_project.nexusfile.exists()
    assert nexus_project.run("validate").code == 0
    assert nexus_project.run("run", "deploy", "-q").code == 0
    before = nexus_project.nexusfile.read_text()
    again = nexus_project.run("init")
    assert again.code == 2 and "already exists" in again.stderr
    assert nexus_project.nexusfile.read_text() == before


def test_init_where_nexusfile_py_is_a_folder_says_so_even_with_force(nexus_project):
    nexus_project.nexusfile.mkdir()
    for args in (("init",), ("init", "--force")):
        out = nexus_project.run(*args)
        assert out.code == 2, out
        assert "nexusfile.py is a folder here" in out.stderr and "internal error" not in out.stderr, out
    assert nexus_project.nexusfile.is_dir()


def test_version_shows_core_version(nexus_project):
    from nexus_core import __version__

    out = nexus_project.run("version")
    assert out.code == 0 and f"nexus-core {__version__}" in out.stdout
    assert nexus_project.run("--version").stdout.strip() == f"nexus {__version__}"
    js = json.loads(nexus_project.run("version", "--format", "json").stdout)
    assert js["nexus-core"] == __version__ and js["api"] == 1


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")])
def test_shell_completion_scripts(nexus_project, shell, marker):
    out = nexus_project.run("completion", shell)
    assert out.code == 0 and marker in out.stdout and "_NEXUS_COMPLETE" in out.stdout


def test_completion_completes_subcommands(nexus_project):
    out = nexus_project.run(env={"_NEXUS_COMPLETE": "bash_complete", "COMP_WORDS": "nexus ru", "COMP_CWORD": "1"})
    assert "run" in out.stdout


def test_unknown_command_suggests_the_closest(nexus_project):
    out = nexus_project.run("rnu", "build")
    assert out.code == 2 and "Did you mean 'run'" in out.stderr


def test_validate_ok_message_and_json(nexus_project):
    nexus_project.write(SIMPLE)
    out = nexus_project.run("validate")
    assert out.code == 0 and "is valid" in out.stdout
    js = json.loads(nexus_project.run("validate", "--format", "json").stdout)
    assert js["valid"] is True and js["tasks"] == 2


def test_exit_code_0_on_success_and_1_on_failure(nexus_project):
    nexus_project.write(SIMPLE + '\n@task\ndef bad():\n    run("false")\n')
    assert nexus_project.run("run", "build").code == 0
    assert nexus_project.run("run", "bad").code == 1


def test_run_options_that_contradict_each_other_are_usage_errors(nexus_project):
    nexus_project.write("from nexus_core import task, run\n\n@task\ndef a():\n    run('true')\n")
    both = nexus_project.run("run", "a", "--resume", "--no-resume")
    assert both.code == 2 and "--resume and --no-resume cannot be used together" in both.stderr, both
    window = nexus_project.run("run", "a", "--override-window")
    assert window.code == 2 and "--override-window needs --reason" in window.stderr, window
    assert nexus_project.run("run", "a", "--override-window", "--reason", "INC-1").code == 0
    twice = nexus_project.run("run", "a", "x=1", "--param", "x=2")
    assert twice.code == 2 and "x= is given twice, with different values ('1' and '2')" in twice.stderr, twice


def test_preflight_shows_tasks_that_run_together_as_one_step(nexus_project):
    nexus_project.write(
        "from nexus_core import task, run\n\n"
        "@task\ndef lint():\n    run('true')\n\n@task\ndef test():\n    run('true')\n\n"
        "@task(deps=[lint, test])\ndef build():\n    run('true')\n"
    )
    out = nexus_project.run("preflight", "build")
    assert out.code == 0, out
    assert "Dependencies resolved: [lint, test] -> build" in out.stdout + out.stderr, out


LIMIT_HOSTS = """
from nexus_core import hosts, run, task
hosts("web", "web-1.invalid", "web-2.invalid")

@task(on="web")
def deploy():
    run("echo deploy")
"""


def test_limit_is_the_hosts_option_under_ansibles_name(nexus_project):
    """`--limit` (docs/inventories.md: Ansible's `--limit` becomes `-H`) is `-H/--hosts` itself."""
    nexus_project.write(LIMIT_HOSTS)
    by_h = nexus_project.run("run", "deploy", "--list-hosts", "-H", "web-2*")
    by_limit = nexus_project.run("run", "deploy", "--list-hosts", "--limit", "web-2*")
    assert by_limit.code == 0, by_limit
    assert by_limit.stdout == by_h.stdout and "web-1" not in by_limit.stdout and "web-2.invalid" in by_limit.stdout
    both = nexus_project.run("run", "deploy", "--list-hosts", "--limit", "web-1*", "-H", "web-2*")
    assert both.code == 0 and "web-1.invalid" in both.stdout and "web-2.invalid" in both.stdout, both
    typo = nexus_project.run("run", "deploy", "--limit", "wbe", "--list-hosts")
    assert typo.code == 2 and "'wbe' matches no host or group" in typo.stderr, typo
    assert "--limit" in nexus_project.run("run", "--help").stdout
    assert "--limit" in nexus_project.run("preflight", "--help").stdout


def test_nexus_help_shows_the_help_of_nexus_or_of_a_command(nexus_project):
    """`nexus help [command]` was "No such command 'help'" (exit 2)."""
    top = nexus_project.run("help")
    assert top.code == 0 and "Usage: nexus [OPTIONS] COMMAND" in top.stdout, top
    run = nexus_project.run("help", "run")
    assert run.code == 0 and "Usage: nexus run [OPTIONS] [TASKS]..." in run.stdout, run
    assert "--dry-run" in run.stdout
    sub = nexus_project.run("help", "pipelines", "discard")
    assert sub.code == 0 and "Usage: nexus pipelines discard" in sub.stdout, sub
    typo = nexus_project.run("help", "rnu")
    assert typo.code == 2 and "No such command 'rnu' in `nexus`. Did you mean 'run'?" in typo.stderr, typo
    deeper = nexus_project.run("help", "run", "extra")
    assert deeper.code == 2 and "`nexus run` has no subcommands" in deeper.stderr, deeper
    assert "Traceback" not in typo.stderr + deeper.stderr
