"""Reliability over SSH: leftovers on hosts are pruned, interrupted hosts say why they did not
start, host output cannot drive the terminal, a closed pipe does not stop a remote run."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import HOME_ROOT, USER_KEY, SshBed
from tests.helpers import start_nexus, stopped, wait_for

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

RUNS = HOME_ROOT / USER_KEY / ".cache" / "nexus" / "runs"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the remote test user can write (the bed's hosts are this machine)."""
    path = Path(tempfile.mkdtemp(prefix="nexus-remote-rel-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def header(bed: SshBed) -> str:
    hosts = ", ".join(repr(h.address) for h in bed.hosts)
    return (
        "from nexus_core import config, hosts, hostname, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port}, "
        "interrupt_grace=0.3, terminate_grace=0.3)\n"
        f"hosts('web', {hosts})\n"
    )


def entry(name: str, days_old: float = 0, folder: bool = True) -> Path:
    """A status entry in the remote user's runs folder (owned by that user), ``days_old`` idle."""
    user = pwd.getpwnam(USER_KEY)
    RUNS.mkdir(parents=True, exist_ok=True)
    for p in (RUNS, RUNS.parent, RUNS.parent.parent):
        os.chown(p, user.pw_uid, user.pw_gid)
    path = RUNS / name
    if folder:
        path.mkdir(exist_ok=True)
        inner = path / "status"
        inner.write_text("x pid 1\n")
        os.chown(inner, user.pw_uid, user.pw_gid)
    else:
        path.write_text("x pid 1\n")
    os.chown(path, user.pw_uid, user.pw_gid)
    if days_old:
        stamp = time.time() - days_old * 86400
        for p in [*path.rglob("*"), path]:
            os.utime(p, (stamp, stamp))
    return path


def test_prune_removes_discarded_and_idle_entries_on_hosts(project, sshbed, shared_dir):
    h1 = sshbed.hosts[0].address
    project.write(
        header(sshbed)
        + f"""
@task(on=["{h1}"])
def slow():
    run("touch {shared_dir}/started; sleep 1")
"""
    )
    proc = start_nexus(project, "run", "slow")
    assert wait_for(lambda: (shared_dir / "started").exists(), timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    run_id = project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
    left = [p for p in RUNS.iterdir() if p.name.startswith(run_id)] if RUNS.exists() else []
    assert left, "the killed run left its status entry on the host"
    assert wait_for(lambda: all(" rc " in _text(p) for p in left), timeout=30)  # the orphan has ended
    assert project.run("pipelines", "discard", run_id).code == 0

    idle = entry("20200101-000000-aaaaaa@" + h1, days_old=10)
    idle_file = entry("20200102-000000-bbbbbb@" + h1, days_old=10, folder=False)
    young = entry("20991231-000000-cccccc@" + h1)
    not_ours = RUNS / "keep-me"
    not_ours.write_text("x")
    os.utime(not_ours, (time.time() - 30 * 86400,) * 2)
    try:
        result = project.run("pipelines", "prune", "--format", "json")
        assert result.code == 0, result
        by_host = {h["host"]: h for h in result.json()["hosts"]}
        assert set(by_host) == {"local", h1}  # the hosts the tasks run on, and this machine
        assert all(h["ok"] for h in by_host.values()), by_host
        removed = {name for h in by_host.values() for name in h["removed"]}
        assert {p.name for p in left} <= removed and idle.name in removed and idle_file.name in removed
        assert not idle.exists() and not idle_file.exists() and not any(p.exists() for p in left)
        assert young.exists() and not_ours.exists()
        text = project.run("pipelines", "prune")
        assert text.code == 0 and f"{h1}: removed 0 entries" in text.stdout, text
    finally:
        shutil.rmtree(young, ignore_errors=True)
        not_ours.unlink(missing_ok=True)


def _text(path: Path) -> str:
    if path.is_dir():
        return "".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())
    return path.read_text(errors="replace") if path.exists() else ""


def test_the_next_run_on_a_host_removes_idle_entries_once_a_day(project, sshbed):
    h1 = sshbed.hosts[0].address
    project.write(header(sshbed) + f'\n@task(on=["{h1}"])\ndef hello():\n    run("true")\n')
    idle = entry("20200103-000000-dddddd@" + h1, days_old=10)
    assert project.run("run", "hello").code == 0
    assert not idle.exists(), "the first run on the host prunes it"
    again = entry("20200104-000000-eeeeee@" + h1, days_old=10)
    try:
        assert project.run("run", "hello").code == 0
        assert again.exists(), "pruned less than a day ago: the run only cleans up after itself"
        db = Path(project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"
        con = sqlite3.connect(db)
        con.execute("UPDATE host_prunes SET at = at - 2 * 86400")
        con.commit()
        con.close()
        assert project.run("run", "hello").code == 0
        assert not again.exists()
    finally:
        shutil.rmtree(again, ignore_errors=True)


def test_state_retention_days_is_a_checked_config_key(project, sshbed):
    project.write(
        header(sshbed).replace("terminate_grace=0.3)", "terminate_grace=0.3, state_retention_days=0)")
    )
    result = project.run("validate")
    assert result.code == 2 and "state_retention_days" in result.stderr, result


def test_hosts_not_started_after_an_interrupt_say_so(project, sshbed, shared_dir):
    project.write(
        header(sshbed)
        + f"""
@task(on="web", strategy="rolling", batch=1)
def roll():
    run("touch {shared_dir}/started; sleep 20")
"""
    )
    proc = start_nexus(project, "run", "roll", "--format", "json")
    try:
        assert wait_for(lambda: (shared_dir / "started").exists(), timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    reasons = {e["host"]: e["reason"] for e in events if e["event"] == "host.stop"}
    first, *rest = [h.address for h in sshbed.hosts]
    assert all(reasons[h] == "not started: the run was interrupted" for h in rest), reasons
    assert "failed" not in reasons[first]
    (stop,) = [e for e in events if e["event"] == "task.stop"]
    assert stop["commands_executed"] == 1


def test_host_output_cannot_drive_the_terminal(project, sshbed):
    h1 = sshbed.hosts[0].address
    project.write(
        header(sshbed)
        + f'''
@task(on=["{h1}"])
def nasty():
    run(r"printf 'a\\033]0;pwned\\007b\\n'; printf 'c\\302\\233d\\n'; "
        r"printf 'e\\033]0;x\\007\\n' >&2; exit 2")
'''
    )
    for mode in ("-v", "-q"):
        result = project.run("run", "nasty", mode, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
        assert result.code == 1, result
        for text in (result.stdout, result.stderr):
            assert not re.search(r"\x1b(?!\[[0-9;]*m)|\x07|\x9b", text), repr(text)
        assert "^[]0;pwned^G" in result.stdout + result.stderr
    as_json = project.run("run", "nasty", "--format", "json")
    assert "\x1b" not in as_json.stdout and "\x9b" not in as_json.stdout
    assert "a\x1b]0;pwned\x07b" in [e["line"] for e in as_json.of("command.output")]


def test_a_closed_pipe_does_not_stop_a_remote_run(project, sshbed, shared_dir):
    project.write(
        header(sshbed)
        + f"""
@task(on="web")
def talk():
    run("for i in $(seq 1 2000); do echo line $i; done")

@task(deps=[talk], on="web")
def after():
    run("echo done > {shared_dir}/after-$(hostname 2>/dev/null || echo h)-$$")
"""
    )
    proc = start_nexus(project, "run", "after", "-v", stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    proc.wait(timeout=120)
    assert proc.returncode == 0
    assert len(list(shared_dir.glob("after-*"))) == 3


@pytest.mark.parametrize("stubborn", [False, True], ids=["plain", "ignores-int-and-term"])
def test_sighup_over_ssh_stops_every_host_exits_129_no_process_left(project, sshbed, shared_dir, stubborn):
    """The terminal or the SSH session of the user closes: like SIGTERM, on every host.

    ``stubborn``: the remote command ignores SIGINT and SIGTERM; the stop still ends it (KILL
    after the grace), in session mode as in exec mode.
    """
    tag = "47.25" if stubborn else "47.5"
    trap = "trap '' INT TERM; " if stubborn else ""
    project.write(
        header(sshbed)
        + f"""
@task(on="web")
def long():
    run("{trap}touch {shared_dir}/$(hostname)-$$; sleep {tag}; sleep {tag}")
"""
    )
    proc = start_nexus(project, "run", "long", start_new_session=True)
    try:
        assert wait_for(lambda: len(list(shared_dir.iterdir())) >= len(sshbed.hosts), timeout=30)
        assert wait_for(lambda: sshbed.processes_matching(USER_KEY, f"sleep {tag}"), timeout=10)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 129, (out, err)
    assert "SIGHUP (terminal closed)" in err and "Traceback" not in err, err
    assert sshbed.wait_no_process(USER_KEY, f"sleep {tag}", timeout=10) == [], "a remote command lived on"
    listed = project.run("pipelines", "--interrupted")
    assert listed.code == 0 and " interrupted " in listed.stdout, listed


def test_a_resume_that_cannot_ask_the_host_never_starts_its_command_again(project, sshbed, shared_dir):
    """The command the killed run started may have finished or may still run: when the host
    cannot be asked (no answer), the resume fails the host as unreachable instead of running
    the command a second time; the next resume asks again and finds it finished."""
    import socket

    h1 = sshbed.hosts[0].address
    log = shared_dir / "log"
    project.write(
        header(sshbed).replace(f"ssh_port={sshbed.port}", "ssh_port=int(__import__('os').environ['PORT'])")
        + "config(ssh_connect_attempts=1, ssh_connect_timeout=3)\n"
        + f"""
@task(on=["{h1}"])
def once():
    run("echo start >> {log}; sleep 2; echo done >> {log}")
    run("echo next >> {log}")
"""
    )
    proc = start_nexus(project, "run", "once", env={"PORT": str(sshbed.port)})
    assert wait_for(lambda: log.exists() and "start" in log.read_text(), timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind((h1, 0))
        closed = probe.getsockname()[1]
    away = project.run("resume", env={"PORT": str(closed)}, timeout=60)
    assert away.code == 3, away
    assert "not started again" in away.stdout + away.stderr, away
    assert wait_for(lambda: "done" in log.read_text(), timeout=30)  # the first run's command ends on its own
    back = project.run("resume", env={"PORT": str(sshbed.port)}, timeout=60)
    assert back.code == 0, back
    assert log.read_text().split() == ["start", "done", "next"], log.read_text()


def test_a_resume_keeps_the_interrupted_runs_hosts_and_its_continue_on_error(project, sshbed, shared_dir):
    """`run --resume -H ONE` closed a crashed run "ok" on that host alone (the others never ran
    nor were checked): refused, naming `nexus resume`. `nexus resume` keeps the run's
    --continue-on-error (a task after a failed one ran only when it was given again)."""
    h1, h2 = sshbed.hosts[0].address, sshbed.hosts[1].address
    project.write(
        header(sshbed)
        + f"""
@task(on=["{h1}", "{h2}"])
def slow():
    run(f"touch {shared_dir}/started-{{hostname()}}; sleep 2")

@task(on=["{h1}"])
def bad():
    run("false")

@task(on=["{h1}"], deps=[slow])
def after():
    run("touch {shared_dir}/after")
"""
    )
    proc = start_nexus(project, "run", "bad", "after", "--continue-on-error")
    assert wait_for(lambda: len(list(shared_dir.glob("started-*"))) == 2, timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    cut = project.run("run", "bad", "after", "--resume", "-H", h1, timeout=60)
    assert cut.code == 2, cut
    assert "would resume it on other hosts" in cut.stderr and "nexus resume " in cut.stderr, cut
    resumed = project.run("resume", timeout=60)
    assert resumed.code == 1, resumed  # bad failed, and after ran all the same
    assert (shared_dir / "after").exists(), resumed


def test_a_run_that_ends_ok_leaves_no_status_folder_after_a_signal_or_a_resume(project, sshbed, shared_dir):
    """A Ctrl+C whose grace lets the last command finish ends the run ok: its status folders
    were left on the hosts; so were those a resume asked about (the command had finished
    while Nexus was down)."""
    h1 = sshbed.hosts[0].address
    project.write(
        header(sshbed).replace("interrupt_grace=0.3", "interrupt_grace=20")
        + f"""
@task(on=["{h1}"])
def nap():
    run("touch {shared_dir}/started; sleep 1.5")
"""
    )

    def ours() -> list[Path]:
        run_id = project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
        return [p for p in RUNS.iterdir() if p.name.startswith(run_id)] if RUNS.exists() else []

    proc = start_nexus(project, "run", "nap")
    assert wait_for(lambda: (shared_dir / "started").exists(), timeout=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert ours() == []
    (shared_dir / "started").unlink()
    proc = start_nexus(project, "run", "nap")
    assert wait_for(lambda: (shared_dir / "started").exists(), timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert ours(), "the killed run left its status folder"
    resumed = project.run("resume", timeout=60)
    assert resumed.code == 0, resumed
    assert ours() == []


def test_runs_that_end_ok_leave_no_status_folder_whatever_the_keeper_is_doing(project, sshbed):
    """The run's spool keeper, leaving as the clean-up removed the folder, wrote its pid file
    between the clean-up's unlinks and its rmdir: a few percent of the hosts' folders stayed
    (with an empty .keeper), and pruning keeps young folders of runs that ended ok."""
    project.write(header(sshbed) + "\n@task(on='web')\ndef q():\n    run('true')\n")
    before = set(RUNS.iterdir()) if RUNS.exists() else set()
    for _ in range(15):
        assert project.run("run", "q", "-q", timeout=60).code == 0
    left = (set(RUNS.iterdir()) if RUNS.exists() else set()) - before
    assert not left, sorted((p.name, [c.name for c in p.iterdir()]) for p in left)


def test_a_host_done_while_the_run_stopped_loses_its_status_folder_at_the_resume(project, sshbed, shared_dir):
    """Ctrl+C during a rolling batch: the host whose command finished in the grace is done,
    but a stopping run cleans no host, and the resume skipped it: its folder stayed for good."""
    h1, h2, h3 = (h.address for h in sshbed.hosts[:3])
    project.write(
        header(sshbed).replace("interrupt_grace=0.3", "interrupt_grace=20")
        + f"""
@task(on=["{h1}", "{h2}", "{h3}"], strategy="rolling", batch=1)
def roll():
    run(f"touch {shared_dir}/started-{{hostname()}}; sleep 1")
"""
    )

    def ours() -> list[str]:
        run_id = project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
        return sorted(p.name for p in RUNS.iterdir() if p.name.startswith(run_id)) if RUNS.exists() else []

    proc = start_nexus(project, "run", "roll")
    assert wait_for(lambda: (shared_dir / f"started-{h2}").exists(), timeout=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert [name.rpartition("@")[2].split("_")[0] for name in ours()] == [h2], ours()
    resumed = project.run("resume", timeout=60)
    assert resumed.code == 0 and (shared_dir / f"started-{h3}").exists(), resumed
    assert ours() == []


def test_ctrl_c_stops_a_prune_waiting_for_a_host_that_never_answers(project, sshbed):
    """The first Ctrl+C did nothing while a host was connecting: the prune ended a minute later,
    at the connection's timeouts. Hosts still connecting are stopped at once now."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never says a word
    port = silent.getsockname()[1]
    try:
        target = f"{USER_KEY}@127.0.0.1:{port}"
        body = f'\nconfig(ssh_connect_timeout=30)\n\n@task(on=["{target}"])\ndef t():\n    run("true")\n'
        project.write(header(sshbed) + body)
        with stopped(start_nexus(project, "pipelines", "prune")) as proc:  # killed if an assertion fails
            time.sleep(2)
            began = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 130, (out, err)
            assert time.monotonic() - began < 10, (out, err)
            assert "Traceback" not in err
    finally:
        silent.close()
