"""The ssh executor against real sshd: streaming, sudo, pooling, timeouts, auth, host keys, jumps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nexus_core.api import Cancel
from nexus_core.model import Command, Host
from nexus_core.testing.sshbed import KEY_PASSPHRASE, PASSWORD, USER_KEY, USER_NOSUDO, USER_PW, SshBed
from tests.helpers import Out

from nexus_ssh.events import SshConnect, SshDisconnect, SshError

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

MakeExecutor = Callable[..., Any]


def _host(bed: SshBed, i: int = 0, user: str | None = None) -> Host:
    return Host(bed.hosts[i].address, user=user, port=bed.port)


def _wait_count(bed: SshBed, address: str, at_least: int, timeout: float = 5) -> int:
    deadline = time.monotonic() + timeout
    while bed.connection_count(address) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return bed.connection_count(address)


# --- running commands ----------------------------------------------------------------------


def test_streams_lines_and_exit_code(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    out = Out()
    r = ex.run(
        _host(sshbed), Command("echo one; echo two >&2; printf 'no-newline'; exit 3"), out, Cancel(), 10
    )
    assert r.status == "failed" and r.exit_code == 3 and not r.ok
    assert ("stdout", "one") in out.lines and ("stderr", "two") in out.lines
    assert ("stdout", "no-newline") in out.lines
    # stdout and stderr are separate streams: their relative order is not guaranteed
    assert "no-newline" in r.tail and "exit code 3" in r.reason
    r = ex.run(_host(sshbed), Command("true"), out, Cancel(), 10)
    assert r.ok and r.exit_code == 0


def test_lines_arrive_while_the_command_runs(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    seen: list[float] = []
    r = ex.run(
        _host(sshbed),
        Command("echo a; sleep 0.6; echo b"),
        lambda _s, _line: seen.append(time.monotonic()),
        Cancel(),
        10,
    )
    assert r.ok and len(seen) == 2 and seen[1] - seen[0] > 0.4


def test_sudo_user_env_cwd_are_quoted(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    out = Out()
    env = (("ODD", "a b'c\"$HOME;`x`"),)
    r = ex.run(
        _host(sshbed),
        Command('id -un; pwd; printf "%s\\n" "$ODD"', sudo=True, env=env, cwd="/tmp"),
        out,
        Cancel(),
        10,
    )
    assert r.ok, r
    assert [line for _, line in out.lines] == ["root", "/tmp", "a b'c\"$HOME;`x`"]
    out.lines.clear()
    r = ex.run(_host(sshbed), Command("id -un", user=USER_NOSUDO), out, Cancel(), 10)
    assert r.ok and out.lines == [("stdout", USER_NOSUDO)]


def test_sudo_without_rights_fails_without_prompt(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor(ssh_user=USER_NOSUDO)
    r = ex.run(_host(sshbed), Command("true", sudo=True), Out(), Cancel(), 10)
    assert r.status == "failed" and r.exit_code == 1


def test_bad_env_name_is_an_error(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    r = ex.run(_host(sshbed), Command("true", env=(("A;rm", "x"),)), Out(), Cancel(), 10)
    assert r.status == "error" and not r.retryable


# --- pooling ---------------------------------------------------------------------------------


def test_fifty_commands_use_at_most_pool_size_connections(
    sshbed: SshBed, make_executor: MakeExecutor
) -> None:
    ex, events = make_executor()
    host = _host(sshbed, 1)
    before = sshbed.connection_count(host.name)
    results = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            r = ex.run(host, Command("echo x"), Out(), Cancel(), 10)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(5,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 50 and all(r.ok for r in results)
    opened = _wait_count(sshbed, host.name, before + 1) - before
    assert 1 <= opened <= 4
    assert ex.connection_count() <= 4
    assert sum(1 for e in events if e.name == "ssh.pool.checkout") == 50


def test_sequential_commands_share_one_connection(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor(ssh_pool_size=2)
    host = _host(sshbed, 2)
    before = sshbed.connection_count(host.name)
    for _ in range(10):
        assert ex.run(host, Command("true"), Out(), Cancel(), 10).ok
    assert _wait_count(sshbed, host.name, before + 1) - before == 1


def test_stale_connection_is_replaced(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, events = make_executor()
    host = _host(sshbed, 0)
    assert ex.run(host, Command("true"), Out(), Cancel(), 10).ok
    # Break the pooled connection under the executor's feet (as a server restart would).
    for pool in ex._pools.values():
        for conn in pool._idle:
            conn.transport.sock.close()
    r = ex.run(host, Command("echo again"), Out(), Cancel(), 10)
    assert r.ok, r
    assert any(isinstance(e, SshDisconnect) and e.reason.startswith("stale") for e in events)


def test_idle_connections_are_closed(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, events = make_executor(options={"ssh_idle_timeout": 0.3})
    assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok
    assert ex.connection_count() == 1
    deadline = time.monotonic() + 5

    def said() -> bool:  # the idle closer emits its event just after the count drops
        return any(isinstance(e, SshDisconnect) and e.reason == "idle" for e in events)

    while (ex.connection_count() or not said()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ex.connection_count() == 0
    assert said()
    assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok  # reconnects


def test_a_host_with_work_left_keeps_one_connection_until_it_is_done(
    sshbed: SshBed, make_executor: MakeExecutor
) -> None:
    """Between two tasks a host may wait longer than ssh_idle_timeout: it is not logged in again."""
    ex, events = make_executor(options={"ssh_idle_timeout": 0.3})
    host = _host(sshbed)
    ex.prepare([host])
    assert ex.run(host, Command("true"), Out(), Cancel(), 10).ok
    time.sleep(1.0)  # past the idle timeout, with the sweeper's period of 0.075 s
    assert ex.connection_count() == 1
    assert not any(isinstance(e, SshDisconnect) for e in events)
    assert ex.run(host, Command("true"), Out(), Cancel(), 10).ok
    assert sum(isinstance(e, SshConnect) for e in events) == 1  # the same connection
    ex.host_done(host)
    deadline = time.monotonic() + 5
    while ex.connection_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ex.connection_count() == 0
    assert any(isinstance(e, SshDisconnect) and e.reason == "idle" for e in events)


# --- timeouts and cancellation -----------------------------------------------------------------


def test_timeout_leaves_no_remote_process(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    r = ex.run(_host(sshbed), Command("echo started; sleep 37; echo never"), Out(), Cancel(), 0.8)
    assert r.status == "timeout" and "0.8s" in r.reason and r.tail == ("started",)
    assert sshbed.wait_no_process(USER_KEY, "sleep 37") == []
    assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok  # connection still usable


def test_timeout_with_sudo_kills_root_process(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    r = ex.run(_host(sshbed), Command("sleep 36.5 & sleep 36.5", sudo=True), Out(), Cancel(), 0.8)
    assert r.status == "timeout"
    assert sshbed.wait_no_process("root", "sleep 36.5") == []


@pytest.mark.parametrize("level", [Cancel.INTERRUPT, Cancel.TERMINATE, Cancel.KILL])
def test_cancel_signals_the_remote_group(sshbed: SshBed, make_executor: MakeExecutor, level: int) -> None:
    ex, _ = make_executor()
    cancel = Cancel()
    timer = threading.Timer(0.5, cancel.raise_to, args=(level,))
    timer.start()
    try:
        r = ex.run(_host(sshbed), Command("sleep 35.5"), Out(), cancel, 20)
    finally:
        timer.cancel()
    assert r.status == "interrupted"
    assert r.duration < 10
    assert sshbed.wait_no_process(USER_KEY, "sleep 35.5") == []


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa", "ed25519_pass"])
def test_each_key_kind(sshbed: SshBed, make_executor: MakeExecutor, kind: str) -> None:
    ex, events = make_executor(
        options={"ssh_key_passphrase": KEY_PASSPHRASE}, ssh_identity=sshbed.key_path(kind)
    )
    r = ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10)
    assert r.ok, r
    assert any(e.name == "ssh.connect" and "id_" + kind in e.auth for e in events)  # type: ignore[attr-defined]


def test_password_auth_when_given(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, events = make_executor(options={"ssh_password": PASSWORD}, ssh_user=USER_PW)
    out = Out()
    assert ex.run(_host(sshbed), Command("id -un"), out, Cancel(), 10).ok
    assert out.lines == [("stdout", USER_PW)]
    assert any(e.name == "ssh.connect" and e.auth == "password" for e in events)  # type: ignore[attr-defined]


def test_auth_failure_is_not_retried(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, events = make_executor(ssh_user=USER_PW)  # key-less user, no password given, no prompt
    host = _host(sshbed, 2)
    before = sshbed.connection_count(host.name)
    r = ex.run(host, Command("true"), Out(), Cancel(), 10)
    assert r.status == "unreachable" and not r.retryable
    assert r.reason.startswith("Authentication failed for nexus_pw@")
    assert _wait_count(sshbed, host.name, before + 1) - before == 1
    assert any(isinstance(e, SshError) for e in events)


def test_refused_is_retried_three_times(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor()
    r = ex.run(Host("127.0.0.9", port=sshbed.port), Command("true"), Out(), Cancel(), 10)
    assert r.status == "unreachable" and r.retryable
    head = r.reason
    assert "Connection refused" in head and "after 3 attempts" in head and "\n" not in head
    assert any("nc -zv" in line for line in r.hint.splitlines())


# --- host keys -------------------------------------------------------------------------------


def test_strict_refuses_unknown_host(sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    ex, _ = make_executor(ssh_known_hosts_file=str(kh))
    r = ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10)
    assert r.status == "unreachable" and not r.retryable and "not known" in r.reason


def test_accept_new_records_the_key(sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path) -> None:
    kh = tmp_path / "sub" / "known_hosts"
    ex, _ = make_executor(ssh_known_hosts_file=str(kh), ssh_host_key_verification="accept_new")
    assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok
    assert f"[{sshbed.hosts[0].address}]:{sshbed.port} " in kh.read_text()
    ex2, _ = make_executor(ssh_known_hosts_file=str(kh))  # strict now passes
    assert ex2.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok


def test_tofu_and_off_do_not_write(sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    for policy in ("tofu", "off"):
        ex, _ = make_executor(ssh_known_hosts_file=str(kh), ssh_host_key_verification=policy)
        assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok
    assert not kh.exists()


def test_an_unreadable_known_hosts_file_is_never_trusted_on_first_use(
    sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    """tofu connected silently when ssh_known_hosts_file could not be read (a folder): its lines
    might have named the host with another key. Every policy but off now refuses, naming the file."""
    folder = tmp_path / "known_hosts.d"
    folder.mkdir()
    for policy in ("strict", "accept_new", "tofu"):
        ex, _ = make_executor(ssh_known_hosts_file=str(folder), ssh_host_key_verification=policy)
        r = ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10)
        assert r.status == "unreachable" and not r.retryable, (policy, r)
        assert f"the known_hosts file {folder} cannot be read (Is a directory)" in r.reason, policy
    ex, _ = make_executor(ssh_known_hosts_file=str(folder), ssh_host_key_verification="off")
    assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok


def test_changed_key_is_loud(sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path) -> None:
    import paramiko

    fake = paramiko.Ed25519Key.from_path(sshbed.key_path("ed25519"))  # any other ed25519 key
    kh = tmp_path / "known_hosts"
    name = f"[{sshbed.hosts[0].address}]:{sshbed.port}"
    kh.write_text(f"# first line\n{name} ssh-ed25519 {fake.get_base64()}\n")
    for policy in ("strict", "accept_new", "tofu"):
        ex, _ = make_executor(ssh_known_hosts_file=str(kh), ssh_host_key_verification=policy)
        r = ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10)
        assert r.status == "unreachable" and not r.retryable
        text = r.reason + "\n" + r.hint
        assert "HOST KEY CHANGED" in r.reason and str(kh) in text and "line 2" in text
        assert text.count("SHA256:") == 2


def test_hashed_known_hosts_lines_are_matched(
    sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    """HashKnownHosts files: a hashed line is found (and named by its line when it disagrees)."""
    import paramiko
    from paramiko.hostkeys import HostKeys

    name = f"[{sshbed.hosts[0].address}]:{sshbed.port}"
    listed = Path(sshbed.known_hosts).read_text().splitlines()
    real = [ln.split() for ln in listed if ln.startswith(name + " ")]
    assert real, "the bed lists its hosts in its known_hosts"
    lines = ["# hashed, as ssh-keygen -H writes them"]
    lines += [f"{HostKeys.hash_host(f'other-{i}')} ssh-ed25519 {real[0][2]}" for i in range(50)]
    lines += [f"{HostKeys.hash_host(name)} {kind} {b64}" for _, kind, b64 in real]
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(lines) + "\n")
    ex, _ = make_executor(ssh_known_hosts_file=str(kh))
    assert ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10).ok
    fake = paramiko.Ed25519Key.from_path(sshbed.key_path("ed25519"))
    changed = f"{HostKeys.hash_host(name)} ssh-ed25519 {fake.get_base64()}"
    kh.write_text("\n".join([*lines[:51], changed]) + "\n")
    ex, _ = make_executor(ssh_known_hosts_file=str(kh))
    r = ex.run(_host(sshbed), Command("true"), Out(), Cancel(), 10)
    assert r.status == "unreachable" and "HOST KEY CHANGED" in r.reason and "line 52" in r.reason + r.hint


# --- ~/.ssh/config and jump hosts --------------------------------------------------------------


def _write_ssh_config(bed: SshBed, tmp_path: Path, extra: str = "") -> Path:
    inc = tmp_path / "conf.d" / "bed.conf"
    inc.parent.mkdir()
    inc.write_text(
        f"Host web\n  HostName {bed.hosts[1].address}\n  Port {bed.port}\n{extra}"
        f"Host bastion\n  HostName {bed.bastion.address if bed.bastion else ''}\n  Port {bed.port}\n"
    )
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Include {inc.parent}/*.conf\n"
        f"Host *\n  User {USER_KEY}\n  IdentityFile {bed.key_path('rsa')}\n"
        f"  UserKnownHostsFile {bed.known_hosts}\n  StrictHostKeyChecking yes\n  ConnectTimeout 5\n"
    )
    return cfg


def test_ssh_config_is_honoured(sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path) -> None:
    cfg = _write_ssh_config(sshbed, tmp_path)
    ex, events = make_executor(
        options={"ssh_config_file": str(cfg)}, ssh_user=None, ssh_identity=None, ssh_known_hosts_file=None
    )
    before = sshbed.connection_count(sshbed.hosts[1].address)
    out = Out()
    r = ex.run(Host("web"), Command("id -un"), out, Cancel(), 10)
    assert r.ok, r
    assert out.lines == [("stdout", USER_KEY)]
    assert _wait_count(sshbed, sshbed.hosts[1].address, before + 1) == before + 1
    assert any(e.name == "ssh.connect" and "id_rsa" in e.auth for e in events)  # type: ignore[attr-defined]


def test_nexus_settings_win_over_ssh_config(
    sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    cfg = _write_ssh_config(sshbed, tmp_path)
    ex, _ = make_executor(options={"ssh_config_file": str(cfg)}, ssh_user=USER_NOSUDO, ssh_identity=None)
    out = Out()
    assert ex.run(Host("web"), Command("id -un"), out, Cancel(), 10).ok
    assert out.lines == [("stdout", USER_NOSUDO)]


def test_proxyjump_from_ssh_config(sshbed: SshBed, make_executor: MakeExecutor, tmp_path: Path) -> None:
    assert sshbed.bastion is not None
    cfg = _write_ssh_config(sshbed, tmp_path, extra="  ProxyJump bastion\n")
    ex, _ = make_executor(
        options={"ssh_config_file": str(cfg)}, ssh_user=None, ssh_identity=None, ssh_known_hosts_file=None
    )
    before = sshbed.connection_count(sshbed.bastion.address)
    assert ex.run(Host("web"), Command("true"), Out(), Cancel(), 10).ok
    assert _wait_count(sshbed, sshbed.bastion.address, before + 1) == before + 1


def test_ssh_jump_single_and_multi_hop(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    assert sshbed.bastion is not None
    bastion = f"{USER_KEY}@{sshbed.bastion.address}:{sshbed.port}"
    before = sshbed.connection_count(sshbed.bastion.address)
    ex, _ = make_executor(ssh_jump=bastion)
    out = Out()
    assert ex.run(_host(sshbed, 2), Command("echo via"), out, Cancel(), 10).ok
    assert out.lines == [("stdout", "via")]
    assert _wait_count(sshbed, sshbed.bastion.address, before + 1) == before + 1
    hop2 = f"{sshbed.hosts[0].address}:{sshbed.port}"
    before0 = sshbed.connection_count(sshbed.hosts[0].address)
    ex2, _ = make_executor(ssh_jump=[bastion, hop2])
    assert ex2.run(_host(sshbed, 2), Command("true"), Out(), Cancel(), 10).ok
    assert _wait_count(sshbed, sshbed.hosts[0].address, before0 + 1) == before0 + 1


def test_jump_to_dead_target_is_unreachable(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    assert sshbed.bastion is not None
    ex, _ = make_executor(ssh_jump=f"{USER_KEY}@{sshbed.bastion.address}:{sshbed.port}")
    r = ex.run(Host("127.0.0.9", port=sshbed.port), Command("true"), Out(), Cancel(), 10)
    assert r.status == "unreachable" and "127.0.0.9" in r.reason
