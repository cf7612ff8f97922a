"""Handlers, wait_for, call() and artifacts on the local machine, through the real CLI."""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from nexus_core.engine import Failure
from nexus_core.output.report import failures_text
from nexus_core.output.style import Style
from tests.helpers import start_nexus, wait_for

HEADER = """
from nexus_core import artifact, call, config, handler, hostname, run, task, timestamp, wait_for
"""


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_handler_notified_three_times_runs_once_at_the_end_of_the_task(nexus_project):
    nexus_project.write(
        HEADER
        + """
@handler
def restart():
    run("echo restart >> log")

@task
def deploy():
    run("echo one >> log", notify=restart)
    run("echo two >> log", notify="restart")
    run("echo three >> log", notify=[restart])
    run("echo last >> log")
"""
    )
    out = nexus_project.run("run", "deploy", "--format", "json")
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["one", "two", "three", "last", "restart"]
    assert [e["handler"] for e in out.of("handler.stop")] == ["restart"]
    assert len(out.of("handler.notify")) == 1  # later notifications of a pending handler add nothing


def test_handlers_run_in_definition_order_and_may_notify_each_other(nexus_project):
    nexus_project.write(
        HEADER
        + """
@handler
def first():
    run("echo first >> log", notify="third")

@handler
def second():
    run("echo second >> log")

@handler
def third():
    run("echo third >> log")

@task
def deploy():
    run("true", notify=[second, first])
"""
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["first", "second", "third"]


def test_a_handler_is_not_notified_by_a_failed_or_skipped_command(nexus_project):
    nexus_project.write(
        HEADER
        + """
@handler
def restart():
    run("echo restart >> log")

@task
def deploy():
    run("false", notify=restart, continue_on_error=True)
    run("echo never", creates="nexusfile.py", notify=restart)
"""
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 0, out
    assert not (nexus_project.root / "log").exists()


FAILING = (
    HEADER
    + """
@handler
def restart():
    run("echo restart >> log")

@task
def deploy():
    run("echo changed >> log", notify=restart)
    run("test -f fixed")
"""
)


def test_a_handler_notified_before_a_failure_runs_after_nexus_resume(nexus_project):
    nexus_project.write(FAILING)
    out = nexus_project.run("run", "deploy", "--format", "json")
    assert out.code == 1, out
    assert lines(nexus_project.root / "log") == ["changed"]  # not run: the task failed on the host
    (nexus_project.root / "fixed").write_text("")
    out = nexus_project.run("resume", "--format", "json")
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["changed", "restart"]  # the command is not run again


def test_a_dry_run_after_a_failure_says_the_pending_handler_will_run(nexus_project):
    nexus_project.write(FAILING)
    failed = nexus_project.run("run", "deploy", "--format", "json")
    assert failed.code == 1, failed
    run_id = failed.of("pipeline.start")[0]["run_id"]
    dry = nexus_project.run("run", "deploy", "-n")
    assert f"handler restart (if notified; pending from run {run_id} on local: it runs):" in dry.stdout, dry


def test_force_handlers_runs_notified_handlers_on_a_host_that_failed(nexus_project):
    nexus_project.write(FAILING)
    out = nexus_project.run("run", "deploy", "--force-handlers", "--format", "json")
    assert out.code == 1, out
    assert lines(nexus_project.root / "log") == ["changed", "restart"]
    assert [e["forced"] for e in out.of("handler.start")] == [True]


#: A change that notifies restart, then a command that fails until the file ``fixed`` exists.
LEFT_PENDING = (
    HEADER
    + """
@handler
def restart():
    run("echo restart >> log")

@task
def deploy():
    run("test -f made || (touch made && echo changed >> log)", notify=restart)
    run("test -f fixed")
"""
)


def test_a_fresh_run_takes_over_the_handlers_a_failed_run_left_pending(nexus_project):
    # Ansible forgets them (ansible/ansible#10498): the change is made, the restart never comes.
    nexus_project.write(LEFT_PENDING)
    assert nexus_project.run("run", "deploy").code == 1
    (nexus_project.root / "fixed").write_text("")
    out = nexus_project.run("run", "deploy", "--no-resume", "--format", "json")
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["changed", "restart"]
    assert any("carried over" in e["by"] for e in out.of("handler.notify"))


def test_a_pending_handler_removed_since_is_said_not_dropped(nexus_project):
    """A failed run left 'restart' pending; the nexusfile then lost the handler (renamed): the
    next run dropped the notification without a word."""
    nexus_project.write(LEFT_PENDING)
    assert nexus_project.run("run", "deploy").code == 1
    (nexus_project.root / "fixed").write_text("")
    nexus_project.write(HEADER + '\n@task\ndef deploy():\n    run("echo again >> log")\n')
    out = nexus_project.run("run", "deploy", "--no-resume")
    assert out.code == 0, out
    assert "handler 'restart' notified by an earlier run no longer defined for this task: not run" in out.stderr, out


def test_a_handler_notified_before_a_kill_runs_after_nexus_resume(nexus_project):
    nexus_project.write(
        HEADER
        + """
@handler
def restart():
    run("echo restart >> log")

@task
def deploy():
    run("echo changed >> log", notify=restart)
    run("sleep 30")
"""
    )
    proc = start_nexus(nexus_project, "run", "deploy")
    assert wait_for(lambda: lines(nexus_project.root / "log") == ["changed"], timeout=20)
    assert wait_for(lambda: False, timeout=0.5) is False  # let the notification's checkpoint land
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    nexus_project.write(FAILING.replace('run("test -f fixed")', 'run("sleep 30")'))  # same plan
    out = nexus_project.run("resume", "--format", "json", timeout=90)
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["changed", "restart"]


def test_nexus_resume_takes_the_newest_failed_run_with_pending_handlers_over_an_older_interrupted_one(
    nexus_project,
):
    nexus_project.write(FAILING + '\n@task\ndef slow():\n    run("touch slow.started; sleep 30")\n')
    proc = start_nexus(nexus_project, "run", "slow")
    assert wait_for(lambda: (nexus_project.root / "slow.started").exists(), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    failed = nexus_project.run("run", "deploy", "--no-resume")
    assert failed.code == 1 and "Handlers notified and not run: restart" in failed.stderr, failed
    (nexus_project.root / "fixed").write_text("")
    out = nexus_project.run("resume", "--format", "json", timeout=60)
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["changed", "restart"]
    assert not any(e.get("task") == "slow" for e in out.events), "the older interrupted run is not the one resumed"


def test_nexus_resume_takes_the_newest_failed_run_over_an_older_interrupted_one(nexus_project):
    """Whatever made it fail: its summary said `Resume with: nexus resume ID`."""
    nexus_project.write(HEADER + """
@task
def slow():
    run("touch slow.started; sleep 30")

@task
def two():
    run("echo one >> log")
    run("test -f fixed && echo two >> log")
""")  # fmt: skip
    proc = start_nexus(nexus_project, "run", "slow")
    assert wait_for(lambda: (nexus_project.root / "slow.started").exists(), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    failed = nexus_project.run("run", "two", "--no-resume", "--format", "json")
    assert failed.code == 1, failed
    run_id = failed.of("pipeline.start")[0]["run_id"]
    text = nexus_project.run("run", "two", "--no-resume")  # the text summary says how to resume
    assert "Resume with: nexus resume " in text.stdout, text
    (nexus_project.root / "fixed").write_text("")
    out = nexus_project.run("resume", "--format", "json", timeout=60)
    assert out.code == 0, out
    assert out.of("pipeline.start")[0]["run_id"] != run_id  # the newest failed run: the text one
    assert not any(e.get("task") == "slow" for e in out.events), "the older interrupted run is not the one resumed"
    assert lines(nexus_project.root / "log") == ["one", "one", "two"]  # "one" not run again


def test_a_handler_notified_by_another_runs_after_it_also_after_a_resume(nexus_project):
    """`second` notifies `first`: with both pending (a resume, or a task notifying both),
    `first` runs after `second`, never before it (a reload before the restart it follows)."""
    nexus_project.write(HEADER + """
@handler
def first():
    run("echo first >> log")

@handler
def second():
    run("echo second >> log", notify=first)
    run("test -f fixed")

@task
def deploy():
    run("echo task >> log", notify=second)

@task
def both():
    run("echo task >> log", notify=[first, second])
""")  # fmt: skip
    assert nexus_project.run("run", "deploy").code == 1
    assert lines(nexus_project.root / "log") == ["task", "second"]
    (nexus_project.root / "fixed").write_text("")
    out = nexus_project.run("resume")
    assert out.code == 0, out
    assert lines(nexus_project.root / "log") == ["task", "second", "second", "first"]
    (nexus_project.root / "log").unlink()
    assert nexus_project.run("run", "both").code == 0
    assert lines(nexus_project.root / "log") == ["task", "second", "first"]


def test_handler_mistakes_are_reported_at_once_with_their_lines(nexus_project):
    nexus_project.write(
        HEADER
        + """
@handler
def restart():
    run("echo restart")

@task
def deploy():
    run("echo one", notify="restrat")
    wait_for("true", notify=restart)
    run("echo two", notify=deploy)
"""
    )
    source = nexus_project.nexusfile.read_text().splitlines()
    where = [i + 1 for i, line in enumerate(source) if "notify=" in line and "def" not in line]
    out = nexus_project.run("validate")
    assert out.code == 2, out
    text = out.stdout + out.stderr
    assert "notify= names no handler 'restrat'" in text and "did you mean 'restart'?" in text
    assert "wait_for() cannot notify handlers" in text
    assert "'deploy' is a task" in text
    assert len(where) == 3 and all(f"nexusfile.py:{n}:" in text for n in where), (where, text)


def test_wait_for_polls_until_the_command_succeeds(nexus_project):
    nexus_project.write(
        HEADER
        + """
@task
def deploy():
    run("(sleep 1; touch ready) > /dev/null 2>&1 &")
    wait_for("test -f ready", timeout=20, interval=0.2)
    run("echo up")
"""
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 0, out


def test_wait_for_times_out_with_the_last_output(nexus_project):
    nexus_project.write(
        HEADER
        + """
@task
def deploy():
    wait_for("echo not yet; exit 3", timeout=1, interval=0.2)
"""
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 4, out
    text = out.stdout + out.stderr
    # how long it really waited (up to the timeout: the last probe starts there) and how often it tried
    found = re.search(r"still failing after (\d+\.\d)s \((\d+) attempts, last: exit code 3\)", text)
    assert found and float(found[1]) >= 1.0 and int(found[2]) >= 3, text
    assert "not yet" in text


def test_call_runs_a_fabfile_function_locally(nexus_project):
    (nexus_project.root / "fabfile.py").write_text(
        "def deploy(c, version):\n"
        "    c.run(f'echo deploying {version}')\n"
        "    assert c.run('echo quiet-out; echo quiet-err >&2', hide=True).stdout == 'quiet-out\\n'\n"
        "    c.run('echo half-out; echo half-err >&2', hide='stdout')\n"
        "    c.put('source.txt', 'copy.txt')\n"
        "    return {'version': version}\n"
        "def broken(c):\n"
        "    c.run('echo before; exit 7')\n"
    )
    (nexus_project.root / "source.txt").write_text("payload\n")
    nexus_project.write(
        HEADER
        + """
from fabfile import broken, deploy

@task
def ship():
    call(deploy, "1.2")

@task(deps=[ship])
def fail():
    call(broken)
"""
    )
    out = nexus_project.run("run", "fail", "-v")
    assert out.code == 1, out
    assert "deploying 1.2" in out.stdout
    assert "quiet-" not in out.stdout and "half-out" not in out.stdout, out.stdout  # hide= is honoured
    assert "half-err" in out.stdout
    assert "deploy() returned {'version': '1.2'}" in out.stdout
    assert (nexus_project.root / "copy.txt").read_text() == "payload\n"
    text = out.stdout + out.stderr
    assert "broken(): command `echo before; exit 7` exited with 7" in text


def test_a_keyboard_interrupt_raised_by_a_called_function_fails_its_host_not_the_run(nexus_project):
    # call() functions run in worker threads, where a real Ctrl+C never arrives: this one is the function's.
    nexus_project.write(
        HEADER
        + """
def stop(c):
    raise KeyboardInterrupt()

@task
def deploy():
    call(stop)
"""
    )
    out = nexus_project.run("run", "deploy", "--format", "json")
    assert out.code == 1, out
    (stop,) = out.of("command.stop")
    assert stop["status"] == "failed" and stop["reason"] == "stop() raised KeyboardInterrupt", stop
    (end,) = out.of("pipeline.stop")  # the run ended and was recorded: not "crashed", not "Interrupted."
    assert end["status"] == "failed" and end["exit_code"] == 1
    assert out.of("error") == [] and out.of("pipeline.interrupt") == []
    text = nexus_project.run("run", "deploy")
    assert text.code == 1 and "raised KeyboardInterrupt itself" in text.stderr, text


def test_a_handler_that_takes_arguments_is_one_problem_at_its_line(nexus_project):
    nexus_project.write(
        HEADER
        + """
@handler
def witharg(x):
    run("echo hi")

@handler
def defaults(x=1, *more, **named):
    run("echo fine")

@task
def deploy():
    run("echo", notify=[witharg, defaults])
"""
    )
    line = nexus_project.nexusfile.read_text().splitlines().index("def witharg(x):")  # the @handler line
    out = nexus_project.run("validate")
    assert out.code == 2, out
    text = out.stdout + out.stderr
    assert (
        f"nexusfile.py:{line}: handler 'witharg' must take no arguments (it is called once per host with none)"
    ) in text
    assert "Validation failed\n" in text  # one problem: no TypeError, no "runs no commands" after it
    assert "TypeError" not in text and "runs no commands" not in text and "defaults" not in text


@dataclass(frozen=True)
class HandlerFailure(Failure):
    """A failure with the two fields the report reads about handlers (nexus_core.output.report)."""

    handler: str = ""
    pending_handlers: tuple[str, ...] = ()


PLAIN = Style(color=False, live=False, unicode=False, interactive=False)


def test_the_failure_report_lists_the_handlers_a_failure_left_pending():
    def failed(host: str, pending: tuple[str, ...], status: str = "failed") -> HandlerFailure:
        return HandlerFailure("deploy", host, "test -f fixed", status, 1, "exit code 1",
                              succeeded_before=("echo changed",), pending_handlers=pending)  # fmt: skip

    text = failures_text(PLAIN, [failed("web-1", ("restart",)), failed("web-2", ("restart",)), failed("web-3", ())])
    shared, alone = text.split("Error: Command failed")[1:]
    assert "same error on 2 hosts: web-1, web-2" in shared  # hosts that left the same handlers pending
    assert "Handlers notified and not run: restart" in shared
    assert "`nexus resume` runs the handlers notified and not run, or re-run with --force-handlers" in shared
    assert "Handlers" not in alone and "nexus resume" not in alone
    lost = failures_text(PLAIN, [failed("web-1", ("restart",), status="unreachable")])
    assert "Handlers notified and not run: restart" in lost and "--force-handlers" not in lost  # it would not apply


def test_the_failure_report_names_the_handler_whose_command_failed():
    f = HandlerFailure("deploy", "local", "exit 5", "failed", 5, "exit code 5", succeeded_before=("echo",),
                       handler="boom", pending_handlers=("boom", "third"))  # fmt: skip
    text = failures_text(PLAIN, [f])
    assert "Command: exit 5 (in handler 'boom')" in text
    assert "Handlers notified and not run: third" in text
    assert "`nexus resume` runs handler 'boom' again and the handlers notified and not run" in text


def test_the_handlers_left_pending_are_those_not_run_to_success_in_definition_order():
    from nexus_core.handlers import HandlerPlan, Pending

    plans = [HandlerPlan(name, ()) for name in ("first", "boom", "third", "never")]
    pending = Pending(notified=["third", "boom", "first"], ran={"first", "boom"}, succeeded={"first"})
    assert pending.left(plans) == ("boom", "third")  # boom failed, third did not run; never was not notified
    assert Pending(notified=["first"]).left(plans) == ("first",)


# The engine fills them: Failure.handler for a handler's failed command, Failure.pending_handlers
# with Pending.left() at the end of the host (after handlers forced by --force-handlers ran).
def test_a_failed_run_reports_the_handlers_it_left_pending(nexus_project):
    nexus_project.write(FAILING)
    out = nexus_project.run("run", "deploy")
    assert out.code == 1, out
    assert "Handlers notified and not run: restart" in out.stderr, out
    nexus_project.write(
        HEADER
        + """
@handler
def boom():
    run("exit 5")

@handler
def third():
    run("echo third")

@task
def deploy():
    run("true", notify=[boom, third])
"""
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 1, out
    assert "Command: exit 5 (in handler 'boom')" in out.stderr, out
    assert "Handlers notified and not run: third" in out.stderr, out


def test_artifacts_of_a_local_task_reach_its_dependents_and_are_listed(nexus_project):
    nexus_project.write(
        HEADER
        + """
config(artifact_retention=1)

@task
def build():
    run("mkdir -p dist/sub && echo wheel > dist/app.whl && echo doc > dist/sub/readme")
    artifact("dist/*.whl")
    artifact("dist/sub")

@task(deps=[build])
def check():
    run("rm -rf dist")

@task(deps=[check])
def ship():
    run("cat dist/app.whl dist/sub/readme")
"""
    )
    out = nexus_project.run("run", "ship", "-v")
    assert out.code == 0, out
    assert "wheel" in out.stdout and "doc" in out.stdout
    listing = nexus_project.run("artifacts", "--format", "json")
    assert listing.code == 0, listing
    (run,) = listing.json()["runs"]
    assert run["files"] == 2 and run["status"] == "ok"
    files = nexus_project.run("artifacts", run["run_id"], "--format", "json").json()["files"]
    assert sorted(f["path"] for f in files) == ["dist/app.whl", "dist/sub/readme"]
    assert all(len(f["sha256"]) == 64 for f in files)


def test_artifacts_are_removed_after_a_successful_run_and_kept_after_a_failed_one(nexus_project):
    nexus_project.write(
        HEADER
        + """
@task
def build():
    run("echo x > out.bin")
    artifact("out.bin")

@task(deps=[build])
def ship():
    run("test -f go")
"""
    )
    failed = nexus_project.run("run", "ship")
    assert failed.code == 1
    kept = nexus_project.run("artifacts", "--format", "json").json()["runs"]
    assert [r["status"] for r in kept] == ["failed"]
    assert f"Resume with: nexus resume {kept[0]['run_id']} (it delivers the artifacts" in failed.stdout, failed
    (nexus_project.root / "go").write_text("")
    out = nexus_project.run("resume")  # the newest run, failed with artifacts kept: as the report said
    assert out.code == 0, out
    assert "● build\n  └─ ✓ done before" in out.stdout, out  # the kept artifact, not a new build
    assert nexus_project.run("artifacts", "--format", "json").json()["runs"] == []


def test_an_artifact_that_matches_nothing_fails_the_task(nexus_project):
    nexus_project.write(
        HEADER
        + """
@task
def build():
    run("true")
    artifact("dist/*.whl")
"""
    )
    out = nexus_project.run("run", "build")
    assert out.code == 1, out
    assert "artifact('dist/*.whl') of task 'build' matched no file" in out.stdout + out.stderr


def test_context_functions_work_in_task_bodies(nexus_project):
    nexus_project.write(
        HEADER
        + """
import socket

@task
def show():
    run(f"echo host={hostname()} at={timestamp()}")
    assert hostname() == socket.gethostname()
"""
    )
    out = nexus_project.run("run", "show", "-n", "--format", "json")
    assert out.code == 0, out
    (event,) = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    cmd = event["plan"]["tasks"]["show"]["hosts"][0]["commands"][0]["cmd"]
    assert cmd.startswith("echo host=") and "at=20" in cmd


def test_a_template_notifies_only_when_it_changed_the_file(nexus_project):
    (nexus_project.root / "app.conf.j2").write_text("host={{ hostname() }} port={{ port }}\n")
    nexus_project.write(
        HEADER
        + """
from nexus_core import template

@handler
def reload():
    run("echo reload >> log")

@task
def deploy(port="80"):
    template("app.conf.j2", "app.conf", vars={"port": port}, notify=reload)
"""
    )
    assert nexus_project.run("run", "deploy").code == 0
    assert nexus_project.run("run", "deploy").code == 0  # unchanged: nothing to reload
    assert lines(nexus_project.root / "log") == ["reload"]
    assert nexus_project.run("run", "deploy", "port=81").code == 0
    assert lines(nexus_project.root / "log") == ["reload", "reload"]
    import socket

    assert (nexus_project.root / "app.conf").read_text() == f"host={socket.gethostname()} port=81\n"


def test_git_context_functions_in_a_task_body(nexus_project):
    import subprocess

    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=trunk"]
    nexus_project.write(HEADER + '\nfrom nexus_core import git_branch, git_sha\n\n@task\ndef show():\n'
                        '    run(f"echo {git_branch()} {git_sha()}")\n')  # fmt: skip
    subprocess.run([*git, "init", "-q"], cwd=nexus_project.root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=nexus_project.root, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=nexus_project.root, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=nexus_project.root, capture_output=True, text=True).stdout
    out = nexus_project.run("run", "show", "-v")
    assert out.code == 0, out
    assert f"trunk {sha.strip()}" in out.stdout


def test_artifact_globs_reach_the_shell_with_their_literal_parts_quoted():
    import subprocess

    from nexus_core.artifacts import _glob_words, path_problem

    assert _glob_words("dist/*.whl") == "dist/*.whl"
    word = _glob_words("it's $(rm -rf x)/*.txt")
    out = subprocess.run(["sh", "-c", f"printf '%s\\n' {word}"], capture_output=True, text=True, check=True)
    assert out.stdout == "it's $(rm -rf x)/*.txt\n"  # nothing ran; no match leaves the pattern as written
    assert path_problem("/etc/passwd") and path_problem("../x") and path_problem("")
    assert path_problem("dist/sub/[ab]*.tar.gz") is None


def test_a_wait_for_cut_short_by_the_task_timeout_says_to_give_the_task_longer(nexus_project):
    """wait_for(timeout=30) in a task of timeout=1: the task's time ended the wait, so the
    advice is @task(timeout=...), not wait_for(..., timeout=...) (which was already 30)."""
    nexus_project.write(HEADER + '\n@task(timeout=1)\ndef deploy():\n    wait_for("false", timeout=30, interval=0.2)\n')
    out = nexus_project.run("run", "deploy")
    assert out.code == 4, out
    assert "task timeout of 1s reached" in out.stderr, out
    assert "before wait_for's own timeout=30: give the task longer with @task(timeout=SECONDS)" in out.stderr, out
    assert "give it longer: wait_for(..., timeout=SECONDS)" not in out.stderr, out


def test_a_successful_run_of_another_project_keeps_the_artifacts_this_one_retains(nexus_project):
    """The artifact store is shared by every project ($XDG_DATA_HOME): each run is kept as
    long as its own project says (`artifact_retention`), not as long as the project that
    happens to run next says (its default, 0, removed every other project's runs)."""
    keeper = """
@task
def build():
    run("echo x > out.bin")
    artifact("out.bin")

@task(deps=[build])
def ship():
    run("test -f out.bin")
"""
    nexus_project.write(HEADER + "config(artifact_retention=1)\n" + keeper)
    assert nexus_project.run("run", "ship").code == 0
    other = nexus_project.root / "other"
    other.mkdir()
    (other / "nexusfile.py").write_text(HEADER + keeper)
    assert nexus_project.run("run", "ship", cwd=other).code == 0
    kept = nexus_project.run("artifacts", "--format", "json").json()["runs"]
    assert [r["status"] for r in kept] == ["ok"], kept


def test_a_call_whose_function_cannot_take_its_arguments_is_found_before_anything_runs(nexus_project):
    """``call(f, ...)`` calls ``f(c, ...)``: a function without a parameter for the connection,
    missing or unknown arguments, a task or a handler given to call() are problems at the
    call() line (exit 2), not a TypeError on every host."""
    nexus_project.write(
        HEADER
        + """
def noconn():
    pass

def needs(c, version):
    pass

@handler
def restart():
    run("true")

@task
def other():
    run("true")

@task
def deploy():
    run("touch ran")
    call(noconn)  # noconn
    call(needs)  # needs
    call(needs, "1", extra=2)  # extra
    call(restart)  # restart
    call(other)  # other
    call(needs, "1.0")
    call(print)
"""
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 2, out
    text = out.stdout + out.stderr
    lines = nexus_project.nexusfile.read_text().splitlines()

    def at(mark: str) -> str:
        return f"nexusfile.py:{next(i for i, line in enumerate(lines, 1) if line.endswith('# ' + mark))}: "

    assert at("noconn") + "call(noconn, ...): too many positional arguments" in text, text
    assert at("needs") + "call(needs, ...): missing a required argument: 'version'" in text, text
    assert at("extra") + "call(needs, ...): got an unexpected keyword argument 'extra'" in text, text
    assert at("restart") + "call() is given the handler 'restart'" in text, text
    assert at("other") + "call() is given the task 'other'" in text, text
    assert "5 problems" in text, text
    assert not (nexus_project.root / "ran").exists()


def test_one_artifact_path_from_two_tasks_that_a_task_depends_on_is_refused(nexus_project):
    """Which file the dependent got depended on which producer finished last: the same path
    is a problem before anything runs; the same file matched by two patterns with different
    bytes fails the dependent, naming both tasks."""
    nexus_project.write(
        HEADER
        + """
@task
def two():
    run("mkdir -p dist && echo two > dist/app.txt")
    artifact("dist/app.txt")

@task(deps=[two])
def one():
    run("mkdir -p dist && echo one > dist/app.txt")  # after two's was collected
    artifact("dist/app.txt")

@task(deps=[one, two])
def ship():
    run("cat dist/app.txt")
"""
    )
    out = nexus_project.run("run", "ship")
    assert out.code == 2, out
    assert "tasks 'one' and 'two' both declare artifact('dist/app.txt'), and task 'ship' depends on both" in (
        out.stdout + out.stderr
    ), out
    text = nexus_project.nexusfile.read_text()
    nexus_project.write(text.replace('artifact("dist/app.txt")', 'artifact("dist/*.txt")'))
    out = nexus_project.run("run", "ship")
    assert out.code == 1, out
    assert "artifact dist/app.txt comes from tasks 'one' and 'two' with different content" in out.stdout + out.stderr
