"""The test bed itself works: keys, passwords, sudo, bastion forwarding, counting."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import paramiko
import pytest
from nexus_core.testing.sshbed import (
    KEY_KINDS,
    KEY_PASSPHRASE,
    PASSWORD,
    USER_KEY,
    USER_NOSUDO,
    USER_PW,
    BedHost,
    SshBed,
)

pytestmark = pytest.mark.ssh


def _client(
    bed: SshBed, host: BedHost, user: str, *, sock: paramiko.Channel | None = None, **auth: object
) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.load_host_keys(bed.known_hosts)
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(
        host.address,
        host.port,
        username=user,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        sock=sock,
        **auth,
    )  # type: ignore[arg-type]
    return c


def _run(c: paramiko.SSHClient, cmd: str) -> tuple[int, str]:
    _, out, _ = c.exec_command(cmd, timeout=10)
    text = out.read().decode()
    return out.channel.recv_exit_status(), text


@pytest.fixture
def key_client(sshbed: SshBed) -> Iterator[paramiko.SSHClient]:
    c = _client(sshbed, sshbed.hosts[0], USER_KEY, key_filename=sshbed.key_path("ed25519"))
    yield c
    c.close()


def test_hosts_are_distinct_loopback_addresses(sshbed: SshBed) -> None:
    addrs = [h.address for h in sshbed.hosts]
    assert addrs == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert len({h.port for h in sshbed.hosts}) == 1 and sshbed.hosts[0].port != 22
    assert sshbed.bastion is not None and sshbed.bastion.address.startswith("127.")


@pytest.mark.parametrize("kind", sorted(KEY_KINDS))
def test_every_key_kind_logs_in_on_every_host(sshbed: SshBed, kind: str) -> None:
    auth: dict[str, object] = {"key_filename": sshbed.key_path(kind)}
    if kind.endswith("_pass"):
        auth["passphrase"] = KEY_PASSPHRASE
    for host in sshbed.hosts:
        c = _client(sshbed, host, USER_KEY, **auth)
        try:
            assert _run(c, "id -un") == (0, f"{USER_KEY}\n")
        finally:
            c.close()


def test_empty_home_and_plain_shell(key_client: paramiko.SSHClient) -> None:
    code, out = _run(key_client, 'ls -A "$HOME"; getent passwd "$(id -un)" | cut -d: -f7')
    assert code == 0
    # .cache may hold Nexus's per-run status files (of runs that did not succeed), .ansible the
    # benchmark's Ansible runs as the same user: no rc files
    assert [line for line in out.splitlines() if line not in (".cache", ".ansible")] == ["/bin/sh"]


def test_password_auth(sshbed: SshBed) -> None:
    c = _client(sshbed, sshbed.hosts[1], USER_PW, password=PASSWORD)
    try:
        assert _run(c, "id -un") == (0, f"{USER_PW}\n")
    finally:
        c.close()
    with pytest.raises(paramiko.AuthenticationException):
        _client(sshbed, sshbed.hosts[1], USER_PW, password="wrong").close()


def test_password_user_has_no_key_access(sshbed: SshBed) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        _client(sshbed, sshbed.hosts[0], USER_PW, key_filename=sshbed.key_path("ed25519")).close()


def test_sudo_for_key_user_only(sshbed: SshBed, key_client: paramiko.SSHClient) -> None:
    assert _run(key_client, "sudo -n true; echo $?")[1] == "0\n"
    assert _run(key_client, "sudo -n -u nexus_nosudo id -un")[1] == "nexus_nosudo\n"
    c = _client(sshbed, sshbed.hosts[0], USER_NOSUDO, key_filename=sshbed.key_path("rsa"))
    try:
        assert _run(c, "sudo -n true 2>/dev/null; echo $?")[1] != "0\n"
    finally:
        c.close()


def test_bastion_forwards_to_a_host(sshbed: SshBed) -> None:
    assert sshbed.bastion is not None
    jump = _client(sshbed, sshbed.bastion, USER_KEY, key_filename=sshbed.key_path("ed25519"))
    try:
        target = sshbed.hosts[2]
        transport = jump.get_transport()
        assert transport is not None
        chan = transport.open_channel("direct-tcpip", (target.address, target.port), ("127.0.0.1", 0))
        inner = _client(sshbed, target, USER_KEY, sock=chan, key_filename=sshbed.key_path("ed25519"))
        try:
            assert _run(inner, "echo through")[1] == "through\n"
        finally:
            inner.close()
    finally:
        jump.close()


def test_connection_counting(sshbed: SshBed) -> None:
    host = sshbed.hosts[2]
    before, before_auth = sshbed.connection_count(host.address), sshbed.auth_count(host.address)
    other = sshbed.connection_count(sshbed.hosts[1].address)
    clients = [_client(sshbed, host, USER_KEY, key_filename=sshbed.key_path("ecdsa")) for _ in range(3)]
    for c in clients:
        c.close()
    deadline = time.monotonic() + 5
    while sshbed.connection_count(host.address) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sshbed.connection_count(host.address) == before + 3
    assert sshbed.auth_count(host.address, "publickey") == before_auth + 3
    assert sshbed.connection_count(sshbed.hosts[1].address) == other


def test_processes_matching(sshbed: SshBed, key_client: paramiko.SSHClient) -> None:
    key_client.exec_command("sleep 41.5")
    deadline = time.monotonic() + 5
    while not sshbed.processes_matching(USER_KEY, "sleep 41.5") and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = sshbed.processes_matching(USER_KEY, "sleep 41.5")
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert sshbed.wait_no_process(USER_KEY, "sleep 41.5") == []
    assert sshbed.processes_matching(USER_NOSUDO, "sleep 41.5") == []


def test_large_beds_continue_in_the_next_127_blocks() -> None:
    from nexus_core.testing.sshbed import MAX_HOSTS, BedError, host_address

    firsts = [host_address(i) for i in (0, 239, 240, 999)]
    assert firsts == ["127.0.0.2", "127.0.0.241", "127.0.1.2", "127.0.4.41"]
    assert len({host_address(i) for i in range(1000)}) == 1000
    assert "127.0.0.250" not in {host_address(i) for i in range(MAX_HOSTS)}  # the bastion's
    with pytest.raises(BedError, match="host index"):
        host_address(MAX_HOSTS)
    with pytest.raises(BedError, match="max_startups"):
        SshBed(2, max_startups="lots")
