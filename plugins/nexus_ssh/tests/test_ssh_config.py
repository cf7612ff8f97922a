"""End to end: OpenSSH client config options, through the real CLI and the real-sshd bed.

Every run points Nexus at a config file the test writes (``NEXUS_SSH_CONFIG``); the user's
``~/.ssh`` is never read and no agent is used. Covered here: ``Host`` patterns (with ``!``),
``Include``, ``HostName``, ``User``, ``Port``, ``IdentityFile``, ``IdentitiesOnly``,
``ProxyCommand`` (through the bed's bastion, tokens from the values Nexus really uses),
``StrictHostKeyChecking``, ``UserKnownHostsFile``, ``ServerAliveInterval`` and
``ConnectTimeout``. ``ProxyJump`` and aliases are in ``test_ssh_cli.py`` and the plugin's tests.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, USER_NOSUDO, SshBed
from plugins.nexus_ssh.tests.test_ssh_cli import H1, H2, REFUSED, run, wait_until, write

pytestmark = pytest.mark.ssh


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """No ssh config unless a test names one, no agent, never a prompt."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env["SSH_AUTH_SOCK"] = ""
    return nexus_project


def ssh_config(tmp_path: Path, text: str, name: str = "ssh_config") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def lines(out: Outcome) -> dict[str, list[str]]:
    """Output lines per host."""
    got: dict[str, list[str]] = {}
    for e in out.of("command.output"):
        got.setdefault(e["host"], []).append(e["line"])
    return got


def bare(project: NexusProject, body: str) -> None:
    """A nexusfile without any ssh_* config: everything comes from the ssh config file."""
    import textwrap

    project.write("from nexus_core import hosts, run, task\n" + textwrap.dedent(body).lstrip("\n"))


# --- Host patterns, Include, HostName, User, Port, IdentityFile, known hosts ------------------------


def test_patterns_include_and_first_value_wins(project: NexusProject, sshbed: SshBed, tmp_path: Path) -> None:
    inc = tmp_path / "conf.d"
    inc.mkdir()
    (inc / "10-app.conf").write_text(f"Host app-1\n  HostName {H1}\nHost app-2\n  HostName {H2}\n")
    cfg = ssh_config(
        tmp_path,
        f"Include {inc}/*.conf\n"
        # first obtained value wins: app-2 is excluded here, so it gets the User of "app-*"
        "Host app-* !app-2\n"
        f"  User {USER_NOSUDO}\n"
        "Host app-*\n"
        f"  User {USER_KEY}\n"
        f"  Port {sshbed.port}\n"
        f"  IdentityFile {sshbed.key_path('ecdsa')}\n"
        "Host *\n"
        f"  UserKnownHostsFile {sshbed.known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
        "  Port 1\n",  # never used: Port was already set by "app-*"
    )
    bare(
        project,
        """
        hosts("web", "app-1", "app-2")

        @task(on="web")
        def who():
            run("id -un")
        """,
    )
    out = run(project, "run", "who", "--format", "json", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 0, out
    assert lines(out) == {"app-1": [USER_NOSUDO], "app-2": [USER_KEY]}
    assert {e["auth"] for e in out.of("ssh.connect")} == {f"publickey {sshbed.key_path('ecdsa')}"}


def test_strict_host_key_checking_and_user_known_hosts_file(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")

    def config(strict: str) -> str:
        return ssh_config(
            tmp_path,
            f"Host h1\n  HostName {H1}\n  Port {sshbed.port}\n  User {USER_KEY}\n"
            f"  IdentityFile {sshbed.key_path('ed25519')}\n"
            f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking {strict}\n",
            name=f"ssh_config_{strict}",
        )

    bare(
        project,
        """
        hosts("web", "h1")

        @task(on="web")
        def ping():
            run("echo pong")
        """,
    )
    refused = run(project, "run", "ping", env={"NEXUS_SSH_CONFIG": config("yes")})
    assert refused.code == 3, refused
    assert known.read_text() == ""
    added = run(project, "run", "ping", "--format", "json", env={"NEXUS_SSH_CONFIG": config("accept-new")})
    assert added.code == 0, added
    assert f"[{H1}]:{sshbed.port} " in known.read_text()  # written to UserKnownHostsFile
    again = run(project, "run", "ping", env={"NEXUS_SSH_CONFIG": config("yes")})
    assert again.code == 0, again


# --- ProxyCommand ------------------------------------------------------------------------------------


def proxy_through_bastion(bed: SshBed) -> str:
    """An OpenSSH ``ssh -W`` through the bed's bastion (tokens left for Nexus to expand)."""
    assert bed.bastion is not None
    return (
        f"ssh -F none -q -W %h:%p -p {bed.port} -i {bed.key_path('ed25519')}"
        f" -o UserKnownHostsFile={bed.known_hosts} -o StrictHostKeyChecking=yes -o BatchMode=yes"
        f" {USER_KEY}@{bed.bastion.address}"
    )


def test_proxy_command_runs_the_task_on_the_target_through_the_bastion(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    assert sshbed.bastion is not None
    cfg = ssh_config(
        tmp_path,
        f"Host proxied\n  HostName {H2}\n  Port {sshbed.port}\n  User {USER_KEY}\n"
        f"  IdentityFile {sshbed.key_path('ed25519')}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {sshbed.known_hosts}\n  StrictHostKeyChecking yes\n"
        f"  ProxyCommand {proxy_through_bastion(sshbed)}\n",
    )
    bare(
        project,
        """
        hosts("web", "proxied")

        @task(on="web")
        def deploy():
            run("echo through the proxy; id -un")
        """,
    )
    bastion, target = sshbed.bastion.address, H2
    before = (sshbed.connection_count(bastion), sshbed.auth_count(bastion), sshbed.connection_count(target))
    out = run(project, "run", "deploy", "--format", "json", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 0, out
    assert lines(out) == {"proxied": ["through the proxy", USER_KEY]}
    assert wait_until(lambda: sshbed.connection_count(target) > before[2])
    assert wait_until(lambda: sshbed.auth_count(bastion) > before[1])
    # exactly one login on the bastion (the ssh -W), one connection to the target through it
    assert sshbed.connection_count(bastion) - before[0] == 1
    assert sshbed.auth_count(bastion) - before[1] == 1
    assert sshbed.connection_count(target) - before[2] == 1
    pre = run(project, "preflight", "deploy", "--skip-sudo-check", env={"NEXUS_SSH_CONFIG": cfg})
    assert pre.code == 0, pre
    assert "via ProxyCommand" in pre.stdout


def test_proxy_command_tokens_use_the_port_and_user_nexus_connects_with(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    """%p / %r / %h / %n / %% come from the values really used (Nexus's ssh_port / ssh_user),
    not from the ssh config alone (Paramiko would have used port 22 and the local user)."""
    record = tmp_path / "proxy-args"
    cfg = ssh_config(
        tmp_path,
        f"Host proxied\n  HostName {H1}\n"
        # Nexus runs it as OpenSSH does, "exec COMMAND" in /bin/sh: a compound command needs an sh
        f'  ProxyCommand sh -c \'echo "%n %h %p %r 100%%" > {record}; '
        f"exec {proxy_through_bastion(sshbed)}'\n",
    )
    write(
        project,
        sshbed,
        """
        hosts("web", "proxied")

        @task(on="web")
        def deploy():
            run("echo ok")
        """,
    )
    out = run(project, "run", "deploy", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 0, out
    assert record.read_text().split() == ["proxied", H1, str(sshbed.port), USER_KEY, "100%"]


def test_failing_proxy_command_exits_3_with_its_status_and_stderr(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    cfg = ssh_config(tmp_path, "Host proxied\n  ProxyCommand sh -c 'echo bastion said no >&2; exit 7'\n")
    write(
        project,
        sshbed,
        """
        hosts("web", "proxied")

        @task(on="web")
        def deploy():
            run("echo never")
        """,
    )
    t0 = time.monotonic()
    out = run(project, "run", "deploy", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 3, out
    assert time.monotonic() - t0 < 8, "a dead ProxyCommand is reported at once, not after a timeout"
    assert "exited with status 7" in out.stderr and "bastion said no" in out.stderr, out


# --- IdentitiesOnly ----------------------------------------------------------------------------------


def test_identities_only(project: NexusProject, sshbed: SshBed, tmp_path: Path) -> None:
    """~/.ssh/id_ed25519 (a key nexus_key accepts) is offered only without IdentitiesOnly."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copyfile(sshbed.key_path("ed25519"), home / ".ssh" / "id_ed25519")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    wrong = sshbed.key_path("ed25519_pw")  # only nexus_pw accepts it

    def config(identity: str, only: str) -> str:
        return ssh_config(
            tmp_path,
            f"Host h1\n  HostName {H1}\n  IdentityFile {identity}\n  IdentitiesOnly {only}\n",
            name=f"ssh_config_{Path(identity).name}_{only}",
        )

    write(
        project,
        sshbed,
        """
        hosts("web", "h1")

        @task(on="web")
        def who():
            run("id -un")
        """,
        ssh_identity=None,
    )
    env: dict[str, Any] = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    only = run(project, "run", "who", env={**env, "NEXUS_SSH_CONFIG": config(wrong, "yes")})
    assert only.code == 3, only
    tried = re.search(r"tried (.*)$", only.stderr, re.MULTILINE)
    assert tried is not None and tried.group(1) == f"publickey {wrong}", only  # not ~/.ssh/id_ed25519
    # control: the same config without IdentitiesOnly falls back to the default key
    loose = run(
        project, "run", "who", "--format", "json", env={**env, "NEXUS_SSH_CONFIG": config(wrong, "no")}
    )
    assert loose.code == 0, loose
    assert [e["auth"] for e in loose.of("ssh.connect")] == ["publickey ~/.ssh/id_ed25519"]
    # the IdentityFile alone logs in when it is the right key
    good = sshbed.key_path("rsa")
    ok = run(project, "run", "who", "--format", "json", env={**env, "NEXUS_SSH_CONFIG": config(good, "yes")})
    assert ok.code == 0, ok
    assert [e["auth"] for e in ok.of("ssh.connect")] == [f"publickey {good}"]
    assert lines(ok) == {"h1": [USER_KEY]}


# --- ServerAliveInterval -----------------------------------------------------------------------------


def test_server_alive_interval_sets_the_transport_keepalive(
    sshbed: SshBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramiko.transport import Transport

    from nexus_ssh.connect import Connector
    from nexus_ssh.settings import Resolver

    cfg = ssh_config(
        tmp_path,
        f"Host h1\n  HostName {H1}\n  Port {sshbed.port}\n  User {USER_KEY}\n"
        f"  IdentityFile {sshbed.key_path('ed25519')}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {sshbed.known_hosts}\n  ServerAliveInterval 7\n",
    )
    resolver = Resolver({}, {"ssh_config_file": cfg})
    spec = resolver.resolve("h1")
    assert spec.keepalive == 7
    set_on: list[int] = []
    real = Transport.set_keepalive

    def spy(self: Transport, interval: int) -> None:
        set_on.append(interval)
        real(self, interval)

    monkeypatch.setattr(Transport, "set_keepalive", spy)
    conn = Connector(resolver, {"ssh_no_agent": True, "ssh_password_prompt": False}).connect(spec)
    try:
        assert conn.alive()
        assert set_on == [7]
    finally:
        conn.close()
    assert Resolver({}, {"ssh_config_file": ""}).resolve(H1).keepalive == 0  # off unless configured


def test_run_with_server_alive_interval(project: NexusProject, sshbed: SshBed, tmp_path: Path) -> None:
    cfg = ssh_config(tmp_path, "Host *\n  ServerAliveInterval 1\n")
    write(
        project,
        sshbed,
        f"""
        hosts("web", "{H1}")

        @task(on="web")
        def slow():
            run("sleep 2.5; echo still here")
        """,
    )
    out = run(project, "run", "slow", "--format", "json", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 0, out
    assert lines(out) == {H1: ["still here"]}


# --- ConnectTimeout ----------------------------------------------------------------------------------


def test_connect_timeout_reaches_the_connect_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nexus_ssh import connect
    from nexus_ssh.errors import ConnectError
    from nexus_ssh.settings import Resolver

    cfg = ssh_config(tmp_path, f"Host dead\n  HostName {REFUSED}\n  Port 2\n  ConnectTimeout 1\n")
    resolver = Resolver({}, {"ssh_config_file": cfg})
    spec = resolver.resolve("dead")
    assert spec.connect_timeout == 1.0
    assert (
        Resolver({"ssh_connect_timeout": 4}, {"ssh_config_file": cfg}).resolve("dead").connect_timeout == 4.0
    )
    calls: list[tuple[tuple[str | bytes, int], float | None]] = []
    real = socket.create_connection

    def spy(
        address: tuple[str | bytes, int], timeout: float | None = None, *a: Any, **kw: Any
    ) -> socket.socket:
        calls.append((address, timeout))
        return real(address, timeout, *a, **kw)

    monkeypatch.setattr(connect.socket, "create_connection", spy)
    connector = connect.Connector(resolver, {"ssh_connect_attempts": 2, "ssh_retry_base": 0.01})
    with pytest.raises(ConnectError) as err:
        connector.connect(spec)
    assert err.value.kind == "refused"
    assert calls == [((REFUSED.encode(), 2), 1.0)] * 2  # an ASCII name goes as bytes (connect.py)


def test_connect_timeout_on_an_address_without_listener_fails_fast(
    project: NexusProject, sshbed: SshBed, tmp_path: Path
) -> None:
    cfg = ssh_config(tmp_path, f"Host dead\n  HostName {REFUSED}\n  ConnectTimeout 1\n")
    write(
        project,
        sshbed,
        """
        hosts("web", "dead")

        @task(on="web")
        def deploy():
            run("echo never")
        """,
    )
    t0 = time.monotonic()
    out = run(project, "run", "deploy", env={"NEXUS_SSH_CONFIG": cfg})
    assert out.code == 3, out
    assert time.monotonic() - t0 < 15
    assert f"Connection refused ({REFUSED} port {sshbed.port})" in out.stderr, out


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A loopback port that accepts TCP (the kernel does) but never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((REFUSED, 0))
    sock.listen(16)
    try:
        yield REFUSED, sock.getsockname()[1]
    finally:
        sock.close()


def test_connect_timeout_bounds_a_silent_server(
    project: NexusProject, sshbed: SshBed, tmp_path: Path, silent_server: tuple[str, int]
) -> None:
    """With the default (10 s, 3 attempts) this would take 30 s; ConnectTimeout 1 makes it a few seconds."""
    address, port = silent_server
    cfg = ssh_config(tmp_path, f"Host silent\n  HostName {address}\n  Port {port}\n  ConnectTimeout 1\n")
    write(
        project,
        sshbed,
        """
        hosts("web", "silent")

        @task(on="web")
        def deploy():
            run("echo never")
        """,
        ssh_port=None,
    )
    t0 = time.monotonic()
    out = run(project, "run", "deploy", env={"NEXUS_SSH_CONFIG": cfg})
    elapsed = time.monotonic() - t0
    assert out.code == 3, out
    assert elapsed < 20, f"took {elapsed:.1f} s"
    assert f"Connection timed out during the SSH handshake ({address} port {port})" in out.stderr, out


def test_connect_settings_that_cannot_work_are_refused_by_validate(
    project: NexusProject, sshbed: SshBed
) -> None:
    """ssh_connect_timeout=0 made every try fail with 'Operation now in progress' (and retry):
    a timeout, an idle timeout or a number of tries that cannot work is a validation error."""
    cases = [
        ("ssh_connect_timeout=0", "ssh_connect_timeout must be more than 0 seconds, not 0"),
        ("ssh_connect_timeout=-1", "ssh_connect_timeout must be more than 0 seconds, not -1"),
        ("ssh_idle_timeout=0", "ssh_idle_timeout must be more than 0 seconds, not 0"),
        ("ssh_connect_attempts=0", "ssh_connect_attempts must be >= 1, not 0"),
        ("ssh_connect_attempts=101", "ssh_connect_attempts must be at most 100, not 101"),
        # jump hosts were not checked at all: each passed validate and failed every host
        ("ssh_jump=[5]", "ssh_jump must be a host string or a list of host strings, not [5]"),
        ("ssh_jump='[::1'", "jump host '[::1': '[' without ']'"),
        ("ssh_jump=''", "ssh_jump is empty"),
        ("ssh_jump='a@b:99999'", "jump host 'a@b:99999': port 99999 out of range"),
    ]
    for setting, message in cases:
        project.write(
            f"from nexus_core import config, run, task\nconfig({setting})\n@task\ndef t():\n    run('true')\n"
        )
        out = run(project, "validate")
        assert out.code == 2, out
        assert "nexusfile.py:2" in out.stderr and message in out.stderr, out
    env = run(project, "validate", env={"NEXUS_SSH_CONNECT_TIMEOUT": "0"})
    assert env.code == 2 and "NEXUS_SSH_CONNECT_TIMEOUT" in env.stderr and "more than 0" in env.stderr, env
    fine = "config(ssh_connect_timeout=0.5, ssh_idle_timeout=5, ssh_connect_attempts=1, ssh_jump='[::1]:2,b')"
    project.write(f"from nexus_core import config, run, task\n{fine}\n@task\ndef t():\n    run('true')\n")
    assert run(project, "validate").code == 0


def test_ssh_connect_attempts_sets_the_tries_from_the_nexusfile_and_the_environment(
    project: NexusProject, sshbed: SshBed
) -> None:
    write(
        project,
        sshbed,
        f"""
        @task(on=["{REFUSED}"])
        def deploy():
            run("echo never")
        """,
        ssh_connect_attempts=1,
    )
    once = run(project, "run", "deploy")
    assert once.code == 3, once
    assert "connection attempt" not in once.stderr and " attempts" not in once.stderr, once
    twice = run(project, "run", "deploy", env={"NEXUS_SSH_CONNECT_ATTEMPTS": "2"})
    assert twice.code == 3, twice
    assert twice.stderr.count("connection attempt 1/2 failed") == 1, twice
    assert "connection attempt 2/" not in twice.stderr and "after 2 attempts" in twice.stderr, twice


def test_the_connector_and_the_pool_read_their_config_keys() -> None:
    from nexus_core.api import ExecutorContext

    from nexus_ssh.connect import Connector, connect_attempts
    from nexus_ssh.executor import SshExecutor
    from nexus_ssh.settings import Resolver

    assert connect_attempts({}, {}) == 3 and connect_attempts({}, {"ssh_connect_attempts": 5}) == 5
    # `nexus hosts` and preflight give the option: it wins over the config.
    assert connect_attempts({"ssh_connect_attempts": 1}, {"ssh_connect_attempts": 5}) == 1
    assert connect_attempts({}, {"ssh_connect_attempts": 10_000}) == 100
    resolver = Resolver({"ssh_connect_attempts": 7}, {"ssh_config_file": ""})
    assert Connector(resolver, {}).attempts == 7
    ctx = ExecutorContext(
        config={"ssh_idle_timeout": 5}, root=".", emit=lambda _e: None, run_id="t", options={}
    )
    ex = SshExecutor(ctx)
    try:
        assert ex.idle_timeout == 5.0
    finally:
        ex.close()
