"""``nexus exec`` through the real CLI on the local machine: output, folding, JSON, exit codes and
usage errors that need no SSH server (the SSH side is in plugins/nexus_ssh/tests/test_ssh_exec.py)."""

from __future__ import annotations

from nexus_core.testing import NexusProject

GROUPS = """
from nexus_core import hosts, run, task

hosts("web", "web-1.example.com", "web-2.example.com")
hosts("db", "db.example.com")

@task
def build():
    run("true")
"""


def test_local_command_prints_its_output_under_the_host(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "--", "echo", "hi")
    assert out.code == 0, out
    assert out.stdout.splitlines() == ["local | rc=0 >>", "hi"]
    assert "1 ok" in out.stderr


def test_words_after_dashes_go_to_the_shell_joined(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "--", "echo a | tr a b;", "echo", "$((1+2))")
    assert out.code == 0, out
    assert out.stdout.splitlines()[1:] == ["b", "3"]


def test_works_without_a_nexusfile_and_inside_one(nexus_project: NexusProject):
    assert not nexus_project.nexusfile.exists()
    out = nexus_project.run("exec", "local", "--", "pwd")
    assert out.code == 0, out
    assert out.stdout.splitlines()[1] == str(nexus_project.root)
    nexus_project.write(GROUPS)
    assert nexus_project.run("exec", "local", "--", "true").code == 0


def test_failing_command_exits_1_with_its_code_and_output(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "--", "echo out; echo err >&2; exit 7")
    assert out.code == 1, out
    assert out.stdout.splitlines() == ["local | FAILED | rc=7 >>", "out", "err"]


def test_json_is_one_object_per_host_then_a_summary(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "--format", "json", "--", "echo out; echo err >&2")
    assert out.code == 0, out
    (host,) = out.of("exec.host")
    assert host["host"] == "local" and host["status"] == "ok" and host["exit_code"] == 0
    assert host["stdout"] == "out\n" and host["stderr"] == "err\n"
    (summary,) = out.of("exec.summary")
    assert summary["exit_code"] == 0 and summary["hosts"] == 1 and summary["counts"] == {"ok": 1}


def test_timeout_exits_4(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "--timeout", "0.5", "--", "sleep 30")
    assert out.code == 4, out
    assert out.stdout.startswith("local | TIMEOUT >>"), out
    assert "task timeout" not in out.stdout + out.stderr, out  # exec has no task the user set a timeout on


def test_verbose_streams_lines_tagged_with_the_host(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "-v", "--", "echo one; echo two")
    assert out.code == 0, out
    assert out.stdout.splitlines() == ["local | one", "local | two", "local | rc=0"]


def test_verbose_lines_show_a_hosts_control_sequences_instead_of_obeying_them(nexus_project: NexusProject):
    out = nexus_project.run("exec", "local", "-v", "--", r"printf '\033]0;x\007t\n'")
    assert out.code == 0, out
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout, out
    assert out.stdout.splitlines()[0] == "local | ^[]0;x^Gt"


def test_usage_errors_exit_2(nexus_project: NexusProject):
    no_dashes = nexus_project.run("exec", "local", "echo", "hi")
    assert no_dashes.code == 2 and "put the command after --" in no_dashes.stderr, no_dashes
    empty = nexus_project.run("exec", "local", "--")
    assert empty.code == 2 and "no command after --" in empty.stderr, empty
    no_target = nexus_project.run("exec", "--", "id")  # it said "one TARGET before --, got 'id' and ''"
    assert no_target.code == 2 and "no TARGET before --" in no_target.stderr, no_target
    two_targets = nexus_project.run("exec", "web", "db", "--", "id")
    assert two_targets.code == 2 and "web,db" in two_targets.stderr, two_targets
    glob = nexus_project.run("exec", "web-*", "--", "id")
    assert glob.code == 2 and "without a nexusfile" in glob.stderr, glob
    missing = nexus_project.run("exec", "-c", "nope.py", "local", "--", "id")
    assert missing.code == 2 and "No nexusfile found" in missing.stderr, missing
    # a bad host string says what is wrong with it, as in a nexusfile, naming it once
    bracket = nexus_project.run("exec", "[::1", "--", "id")
    assert bracket.code == 2 and "opens '[' but never closes it" in bracket.stderr, bracket
    no_name = nexus_project.run("exec", "user@", "--", "id")
    assert no_name.code == 2 and "TARGET 'user@': host 'user@' has no host name" in no_name.stderr, no_name


def test_unknown_group_is_a_did_you_mean_error(nexus_project: NexusProject):
    nexus_project.write(GROUPS)
    out = nexus_project.run("exec", "wbe", "--", "id")
    assert out.code == 2, out
    assert "'wbe' matches no host or group" in out.stderr and "Did you mean 'web'?" in out.stderr
    excluded = nexus_project.run("exec", "web,!web-9", "--", "id")
    assert excluded.code == 2 and "'!web-9' matches no host or group" in excluded.stderr, excluded
    nothing_left = nexus_project.run("exec", "web,!web-*", "--", "id")
    assert nothing_left.code == 2 and "leaves no host" in nothing_left.stderr, nothing_left


def test_a_target_of_exclusions_only_starts_from_every_host(nexus_project: NexusProject):
    """As -H does: `!pattern` alone is every host of the nexusfile but those."""
    nexus_project.write(
        "from nexus_core import config, hosts\nconfig(ssh_connect_timeout=2, ssh_connect_attempts=1)\n"
        'hosts("web", "127.0.0.1:9", "127.0.0.1:7")\n'
    )
    out = nexus_project.run("exec", "!127.0.0.1:9", "--format", "json", "--", "true")
    assert out.code == 3, out  # nothing listens there: unreachable, but chosen
    assert [e["host"] for e in out.of("exec.host")] == ["127.0.0.1:7"], out
    as_json = nexus_project.run("exec", "wbe", "--format", "json", "--", "id")
    assert as_json.code == 2 and as_json.of("error"), as_json


def test_exec_runs_are_not_recorded_as_pipelines(nexus_project: NexusProject):
    nexus_project.write(GROUPS)
    assert nexus_project.run("exec", "local", "--", "true").code == 0
    out = nexus_project.run("pipelines", "--format", "json")
    assert out.code == 0, out
    assert "exec" not in out.stdout


def test_an_at_file_that_holds_no_hosts_is_named_by_its_lines_never_printed(nexus_project: NexusProject):
    """`nexus exec @.env -- id` by mistake: its lines are named by file and line, as -H does;
    the values (a password) were printed in the error, its hints and the JSON error."""
    nexus_project.write("SECRET=hunter2\nTOKEN=abc\n", ".env")
    for with_nexusfile in (False, True):
        if with_nexusfile:
            nexus_project.write(GROUPS)
        for fmt in ("text", "json"):
            out = nexus_project.run("exec", "@.env", "--format", fmt, "--", "id")
            said = out.stdout + out.stderr
            assert out.code == 2, out
            assert ".env:1: the pattern on this line" in said, out
            assert "hunter2" not in said and "TOKEN" not in said, out


def test_a_bare_word_in_a_project_without_hosts_says_it_is_tried_as_a_host(nexus_project):
    """README's `nexus exec web -- uptime` in a project declaring no hosts said only
    "Cannot resolve host name 'web'" (exit 3): nothing told that no group 'web' exists."""
    nexus_project.write("from nexus_core import run, task\n\n@task\ndef t():\n    run('true')\n")
    out = nexus_project.run("exec", "nexus-no-such-group", "--", "uptime")
    assert out.code == 3, out
    assert "Note: 'nexus-no-such-group' is not a group of the nexusfile (it declares no hosts)" in out.stderr, out
