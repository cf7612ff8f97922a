"""With ``--format json``, an error before a run is one JSON object on stdout (and text without it)."""

from __future__ import annotations

import json

import pytest


def one_error(out) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The single JSON object a failed command printed on stdout."""
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out
    error = json.loads(lines[0])
    assert set(error) == {"event", "code", "headline", "context", "suggestions"}, error
    assert error["event"] == "error" and error["code"] == out.code, error
    return error


@pytest.mark.parametrize("command", ["run", "validate", "list", "preflight", "run-no-task"])
def test_no_nexusfile_is_one_json_error(nexus_project, command):
    # `nexus run` alone in a folder without a nexusfile said "Missing argument 'TASKS...'":
    # no task runs the default one, and the missing nexusfile is what to fix.
    words = ["run"] if command == "run-no-task" else [command, *(["deploy"] if command in ("run", "preflight") else [])]
    out = nexus_project.run(*words, "--format", "json")
    assert out.code == 2, out
    error = one_error(out)
    assert error["headline"] == "No nexusfile found"
    assert "Create one with: nexus init" in error["suggestions"]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "headline"),
    [
        (["run", "deploy", "--format=json", "--bogus"], "No such option '--bogus'"),
        (["run", "deploy", "--format", "json", "-p", "0"], "Invalid value for '-p'"),
        (["frobnicate", "--format", "json"], "No such command 'frobnicate'."),
    ],
)
def test_usage_errors_are_one_json_error(nexus_project, args, headline):
    out = nexus_project.run(*args)
    assert out.code == 2, out
    error = one_error(out)
    assert error["headline"].startswith(headline), error
    assert error["context"][0].startswith("Usage: nexus"), error
    assert error["suggestions"][0].startswith("Run: nexus") and error["suggestions"][0].endswith("--help")


def test_an_unknown_run_id_is_one_json_error(nexus_project):
    out = nexus_project.run("resume", "nope", "--format", "json")
    assert out.code == 2
    assert one_error(out)["headline"] == "No run 'nope'"


def test_text_errors_are_unchanged(nexus_project):
    out = nexus_project.run("run", "deploy")
    assert out.code == 2 and out.stdout == ""
    assert out.stderr.startswith("Error: No nexusfile found")
    alone = nexus_project.run("run")
    assert alone.code == 2 and alone.stdout == ""
    assert alone.stderr.startswith("Error: No nexusfile found") and "nexus init" in alone.stderr


def test_a_format_json_after_double_dash_is_not_an_option(nexus_project):
    out = nexus_project.run("run", "--", "--format", "json")
    assert out.code == 2 and out.stdout == ""
    assert "No nexusfile found" in out.stderr


def test_the_format_setting_and_the_last_format_option_decide_errors_too(nexus_project):
    """``NEXUS_FORMAT`` / config.toml's ``format`` are ``--format``'s default for errors before a
    run as for the run itself, and the last ``--format`` given wins."""
    out = nexus_project.run("run", "deploy", env={"NEXUS_FORMAT": "json"})
    assert out.code == 2 and one_error(out)["headline"] == "No nexusfile found"
    usage = nexus_project.run("run", "--bogus", env={"NEXUS_FORMAT": "json"})
    assert usage.code == 2 and one_error(usage)["headline"].startswith("No such option")
    config = nexus_project.root / "xdg-config" / "nexus"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('format = "json"\n')
    from_file = nexus_project.run("run", "deploy", env={"XDG_CONFIG_HOME": str(config.parent)})
    assert from_file.code == 2 and one_error(from_file)["headline"] == "No nexusfile found"
    last = nexus_project.run("run", "deploy", "--format", "json", "--format", "text")
    assert last.code == 2 and last.stdout == "" and "No nexusfile found" in last.stderr


def test_prints_of_the_nexusfile_go_to_stderr_so_json_stays_json(nexus_project):
    nexus_project.write(
        'from nexus_core import run, task\nprint("hello from import")\n\n'
        '@task\ndef a():\n    print("hello from body")\n    run("true")\n'
    )
    for args in (("run", "a"), ("validate",), ("list",), ("run", "a", "-n")):
        out = nexus_project.run(*args, "--format", "json")
        assert out.code == 0, out
        assert [json.loads(line) for line in out.stdout.splitlines()], out
        assert "hello from import" in out.stderr, out
    assert "hello from body" in nexus_project.run("run", "a", "--format", "json").stderr


def test_a_problem_without_a_line_has_a_null_line_not_line_0(nexus_project):
    nexus_project.write('from nexus_core import run, task\n\n@task\ndef build():\n    run("true")\n')
    out = nexus_project.run("run", "buidl", "--format", "json")
    assert out.code == 2, out
    (problem,) = json.loads(out.stdout.strip().splitlines()[-1])["problems"]
    assert problem["message"] == "no task named 'buidl'" and problem["hint"] == "did you mean 'build'?"
    assert problem["file"].endswith("nexusfile.py") and problem["line"] is None


@pytest.mark.parametrize("command", ["resume", "logs"])
def test_an_empty_run_id_is_refused_not_taken_as_the_newest_run(nexus_project, command):
    out = nexus_project.run(command, "")
    assert out.code == 2 and "An empty RUN_ID" in out.stderr, out
