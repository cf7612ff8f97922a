"""End to end: sudo passwords and the key search order, through the real CLI and the real bed.

* sudo with a password (``-K/--ask-sudo-pass`` on a terminal, ``NEXUS_SUDO_PASSWORD``
  otherwise): the bed's ``nexus_pw`` may sudo only after typing its password. The password
  must reach sudo and nothing else: not stdout, stderr or JSON events, not a process's
  arguments on the host, not the command's stdin when sudo did not ask for it.
* Auth order without an explicit identity: a real ``ssh-agent`` holding the bed key, then
  ``~/.ssh/id_ed25519`` under a temporary ``HOME`` (root's own ``~/.ssh`` is never read).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import PASSWORD, USER_KEY, USER_PW, SshBed
from plugins.nexus_ssh.tests.test_ssh_cli import write
from tests.helpers import run_in_pty

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

H1, H2 = "127.0.0.2", "127.0.0.3"
NEEDS_PASSWORD = f"sudo on {H1} asked for a password (or this user may not use sudo there)"


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that reads no ssh config, uses no agent and has no sudo password set."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env["SSH_AUTH_SOCK"] = ""  # "" (not unset): the caller's agent is ignored
    nexus_project.env["NEXUS_SUDO_PASSWORD"] = ""
    return nexus_project


def run(project: NexusProject, *args: str, **kw: Any) -> Outcome:
    return project.run(*args, timeout=60, **kw)


def sudo_nexusfile(project: NexusProject, bed: SshBed, body: str) -> None:
    """Tasks as ``nexus_pw`` (its own key), whose sudo wants its password every time."""
    write(project, bed, body, ssh_identity=bed.key_path("ed25519_pw"))


def assert_secret_absent(out: Outcome, secret: str) -> None:
    assert secret not in out.stdout, out
    assert secret not in out.stderr, out
    for event in out.events:
        assert secret not in json.dumps(event), event


def full_env(project: NexusProject, **extra: str) -> dict[str, str]:
    """The environment NexusProject.run would use (for runs started by hand)."""
    return {**os.environ, "NO_COLOR": "1", "CI": "1", **project.env, **extra}


def host_command_lines() -> list[str]:
    """Every process's full command line on this machine (the bed's hosts live here too)."""
    proc = subprocess.run(
        ["ps", "-eww", "-o", "args="], capture_output=True, text=True, timeout=10, check=True
    )
    return proc.stdout.splitlines()


# --- sudo with a password ---------------------------------------------------------------------


def test_sudo_password_from_env_runs_as_root_and_never_shows(project: NexusProject, sshbed: SshBed) -> None:
    sudo_nexusfile(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}"])
        def deploy():
            run("id -u", sudo=True)
            run("id -un", user="{USER_KEY}")
            run("sleep 2; echo slept", sudo=True)

        @task(deps=[deploy])
        def local():
            run("env | grep -c NEXUS_SUDO_PASSWORD || true")
        """,
    )
    env = full_env(project, NEXUS_SUDO_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "local", "--format", "json"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    saw_sleep = False
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            lines = host_command_lines()
            leaked = [line for line in lines if PASSWORD in line]
            assert not leaked, f"the sudo password is in a process's arguments: {leaked}"
            saw_sleep = saw_sleep or any("sleep 2; echo slept" in line for line in lines)
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert saw_sleep, "the process list was never sampled while the sudo command ran"
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    out = Outcome(proc.returncode, stdout, stderr, ("run", "local", "--format", "json"), events)
    assert out.code == 0, out
    lines = [e["line"] for e in out.of("command.output")]
    assert lines == ["0", USER_KEY, "slept", "0"], "root, sudo -u, and no password in local commands' env"
    assert_secret_absent(out, PASSWORD)


def test_sudo_password_never_reaches_a_command_sudo_did_not_ask_for(
    project: NexusProject, sshbed: SshBed
) -> None:
    # nexus_key has NOPASSWD: sudo leaves the password unread; the command must not get it.
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def deploy():
            run("cat; echo stdin-done", sudo=True)
            run("echo {PASSWORD}", sudo=True)
        """,
    )
    out = run(project, "run", "deploy", "--format", "json", env={"NEXUS_SUDO_PASSWORD": PASSWORD})
    assert out.code == 0, out
    lines = [e["line"] for e in out.of("command.output")]
    assert lines == ["stdin-done", "********"], "stdin is empty; a printed password is redacted"
    assert PASSWORD not in out.stdout.replace(f"echo {PASSWORD}", "")  # the command text itself is shown


def test_sudo_without_a_password_says_how_to_give_one(project: NexusProject, sshbed: SshBed) -> None:
    sudo_nexusfile(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}"])
        def deploy():
            run("id -u", sudo=True)
        """,
    )
    out = run(project, "run", "deploy")
    assert out.code == 1, out
    assert "Error: Command failed" in out.stderr
    assert f"Reason: {NEEDS_PASSWORD}" in out.stderr, out
    assert "NEXUS_SUDO_PASSWORD" in out.stderr and "NOPASSWD" in out.stderr
    js = run(project, "run", "deploy", "--format", "json")
    assert js.code == 1
    assert [e["reason"] for e in js.of("host.stop") if e.get("reason")] == [NEEDS_PASSWORD]


def test_wrong_sudo_password_fails_clearly_and_quickly(project: NexusProject, sshbed: SshBed) -> None:
    sudo_nexusfile(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}"])
        def deploy():
            run("id -u", sudo=True)
        """,
    )
    wrong = "not-the-password-1234"
    t0 = time.monotonic()
    out = run(project, "run", "deploy", "--format", "json", env={"NEXUS_SUDO_PASSWORD": wrong})
    took = time.monotonic() - t0
    assert out.code == 1, out
    assert took < 30, f"a wrong password must not leave sudo waiting for more ({took:.1f}s)"
    assert [e["reason"] for e in out.of("host.stop") if e.get("reason")] == [
        f"sudo on {H1} rejected the password"
    ]
    assert_secret_absent(out, wrong)
    text = run(project, "run", "deploy", env={"NEXUS_SUDO_PASSWORD": wrong})
    assert f"Reason: sudo on {H1} rejected the password" in text.stderr, text
    assert "-K/--ask-sudo-pass or NEXUS_SUDO_PASSWORD" in text.stderr
    assert_secret_absent(text, wrong)


def test_timeout_kills_a_password_sudo_command(project: NexusProject, sshbed: SshBed) -> None:
    # The kill goes through sudo too (root owns sudo and the command): it needs the password.
    sudo_nexusfile(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}"])
        def deploy():
            run("sleep 47; echo never", sudo=True, timeout=1)
        """,
    )
    out = run(project, "run", "deploy", "--format", "json", env={"NEXUS_SUDO_PASSWORD": PASSWORD})
    assert out.code == 4, out
    assert sshbed.wait_no_process("root", "sleep 47", timeout=10) == []
    assert sshbed.wait_no_process(USER_PW, "sleep 47", timeout=10) == []
    assert_secret_absent(out, PASSWORD)


def test_ask_sudo_pass_without_a_terminal_is_a_usage_error(project: NexusProject, sshbed: SshBed) -> None:
    sudo_nexusfile(
        project,
        sshbed,
        f"""
        @task(on=["{USER_PW}@{H1}"])
        def deploy():
            run("id -u", sudo=True)
        """,
    )
    ci = run(project, "run", "deploy", "-K")
    assert ci.code == 2, ci
    assert "--ask-sudo-pass needs a terminal" in ci.stderr and "CI is set" in ci.stderr
    assert "NEXUS_SUDO_PASSWORD" in ci.stderr
    piped = run(project, "run", "deploy", "--ask-sudo-pass", env={"CI": ""}, input="")
    assert piped.code == 2, piped
    assert "stdin is not a terminal" in piped.stderr


def _answer_prompts(project: NexusProject, *args: str) -> tuple[int, str, int]:
    """Run ``nexus ARGS`` on a terminal, typing the sudo password at its prompt: (exit, text, prompts).

    The password is typed once; a second prompt is left unanswered (the run then times out).
    """
    env = full_env(project)
    env.pop("CI", None)
    code, screen = run_in_pty(
        list(args), project.root, env, {b"SUDO password:": PASSWORD.encode() + b"\n"}, controlling=True
    )
    text = screen.replace("\r\n", "\n")
    return code, text, text.count("SUDO password:")


def test_ask_sudo_pass_prompts_once_on_a_terminal(project: NexusProject, sshbed: SshBed) -> None:
    sudo_nexusfile(
        project,
        sshbed,
        f"""
        hosts("pw", "{USER_PW}@{H1}", "{USER_PW}@{H2}")

        @task(on="pw")
        def deploy():
            run("id -u", sudo=True)
            run("id -u", sudo=True)
        """,
    )
    code, text, prompts = _answer_prompts(project, "run", "deploy", "-K", "--format", "json")
    assert code == 0, text
    assert prompts == 1, "one prompt per run, not per host or command"
    assert PASSWORD not in text, "getpass does not echo; nothing prints the password"
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [e["line"] for e in events if e.get("event") == "command.output"] == ["0"] * 4
    # nexus exec takes -K too: one prompt for every host
    exec_args = ("exec", "pw", "--sudo", "-K", "--format", "json", "--", "id -u")
    code, text, prompts = _answer_prompts(project, *exec_args)
    assert code == 0 and prompts == 1, text
    assert PASSWORD not in text
    hosts = [json.loads(line) for line in text.splitlines() if line.startswith('{"event": "exec.host"')]
    assert [h["stdout"] for h in hosts] == ["0\n", "0\n"], text


# --- key search order: agent, then ~/.ssh/id_* ------------------------------------------------


@pytest.fixture
def ssh_agent(tmp_path: Path, sshbed: SshBed) -> Iterator[str]:
    """A real ssh-agent (foreground, killed after the test) holding the bed's ed25519 key."""
    agent, add = shutil.which("ssh-agent"), shutil.which("ssh-add")
    if agent is None or add is None:
        pytest.skip("ssh-agent / ssh-add not installed (Debian package openssh-client)")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        [agent, "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert sock.exists(), "ssh-agent did not create its socket within 10s"
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        added = subprocess.run(
            [add, sshbed.key_path("ed25519")],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert added.returncode == 0, added.stderr
        listed = subprocess.run([add, "-l"], env=env, capture_output=True, text=True, timeout=10, check=False)
        assert "nexus-bed-ed25519" in listed.stdout, listed
        yield str(sock)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _auth_nexusfile(project: NexusProject, bed: SshBed) -> None:
    write(
        project,
        bed,
        f"""
        @task(on=["{H1}"])
        def whoami():
            run("id -un")
        """,
        ssh_identity=None,  # nothing explicit: agent, then ~/.ssh/id_*
    )


def _empty_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def test_agent_is_used_when_no_identity_is_configured(
    project: NexusProject, sshbed: SshBed, ssh_agent: str, tmp_path: Path
) -> None:
    _auth_nexusfile(project, sshbed)
    home = _empty_home(tmp_path)  # no ~/.ssh at all: only the agent can log in
    before = sshbed.auth_count(H1, "publickey")
    out = run(
        project, "run", "whoami", "--format", "json", env={"HOME": str(home), "SSH_AUTH_SOCK": ssh_agent}
    )
    assert out.code == 0, out
    assert [e["auth"] for e in out.of("ssh.connect")] == ["agent"]
    assert [e["line"] for e in out.of("command.output")] == [USER_KEY]
    assert sshbed.auth_count(H1, "publickey") > before
    # Control: the same run without the agent finds no key at all.
    none = run(project, "run", "whoami", env={"HOME": str(home), "SSH_AUTH_SOCK": ""})
    assert none.code == 3, none
    assert "no key found" in none.stderr


def test_default_key_in_home_is_used_without_agent(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    _auth_nexusfile(project, sshbed)
    home = _empty_home(tmp_path)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copyfile(sshbed.key_path("ed25519"), ssh_dir / "id_ed25519")
    os.chmod(ssh_dir / "id_ed25519", 0o600)
    out = run(project, "run", "whoami", "--format", "json", env={"HOME": str(home), "SSH_AUTH_SOCK": ""})
    assert out.code == 0, out
    assert [e["auth"] for e in out.of("ssh.connect")] == ["publickey ~/.ssh/id_ed25519"]
    assert [e["line"] for e in out.of("command.output")] == [USER_KEY]
