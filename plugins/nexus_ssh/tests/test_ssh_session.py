"""Session mode (``ssh_session_mode="shell"``) against real sshd, each case also in exec mode.

The rest of the suite runs in whichever mode ``NEXUS_SSH_SESSION_MODE`` selects (default:
the plugin's default); these tests pin the mode with the config key so both are always covered.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from nexus_core import markers, shell
from nexus_core.api import Cancel
from nexus_core.events import Log
from nexus_core.model import Command, Host
from nexus_core.testing.sshbed import HOME_ROOT, USER_KEY, SshBed
from tests.helpers import Out

from nexus_ssh import session as sess
from nexus_ssh.executor import _Lines, session_mode

pytestmark = pytest.mark.ssh

MakeExecutor = Callable[..., Any]
MODES = ["exec", "shell"]


def _host(bed: SshBed, i: int = 0) -> Host:
    return Host(bed.hosts[i].address, port=bed.port)


def _run(ex: Any, bed: SshBed, cmd: str | Command, timeout: float = 10, cancel: Cancel | None = None) -> Any:
    out = Out()
    command = Command(cmd) if isinstance(cmd, str) else cmd
    r = ex.run(_host(bed), command, out, cancel or Cancel(), timeout)
    return r, out


# --- units ---------------------------------------------------------------------------------


def test_mode_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sess.MODE_ENV, raising=False)
    assert session_mode({}, {}) == (sess.DEFAULT_MODE, "")
    monkeypatch.setenv(sess.MODE_ENV, "exec")
    assert session_mode({}, {}) == ("exec", "")
    assert session_mode({"ssh_session_mode": "shell"}, {}) == ("shell", "")  # config wins
    assert session_mode({}, {"ssh_session_mode": "shell"}) == ("shell", "")
    mode, problem = session_mode({"ssh_session_mode": "pty"}, {})
    assert mode == sess.DEFAULT_MODE and "ssh_session_mode='pty'" in problem


def test_framer_drops_only_the_sentinels_own_newline() -> None:
    token = "abc"
    end = sess.sentinel(token)
    for raw, want in [
        (b"x\n", ["x"]),
        (b"x", ["x"]),
        (b"", []),
        (b"x\n\n", ["x", ""]),
        (b"\n", [""]),
        (b"a\r\nb", ["a", "b"]),
    ]:
        got: list[str] = []
        lines = _Lines(
            "stdout", lambda _s, line, got=got: got.append(line), lambda _pg: None, deque(), None, end
        )
        data = raw + f"\n{end}7\n".encode()
        for i in range(len(data)):  # byte by byte: the sentinel may arrive in pieces
            lines.feed(data[i : i + 1])
        assert lines.done and lines.code == 7, raw
        assert got == want, raw


def test_command_input_quotes_and_frames() -> None:
    line = sess.command_input("exec /bin/sh -c 'echo hi'", "n0nce", "/usr/bin/setsid").decode()
    assert line.startswith("/usr/bin/setsid /bin/sh -c 'exec 2>&3 3>&-\n''echo hi' </dev/null;")
    assert line.count("NEXUS-END n0nce %s") == 2 and line.endswith(">&3\n")
    with pytest.raises(ValueError):
        sess.command_input("echo hi", "n", "/usr/bin/setsid")


def test_the_keepers_text_crosses_once_per_session() -> None:
    hello = sess.handshake_input("n0nce").decode()
    assert f"{shell.KEEPER_VAR}=" in hello and "nexus-keeper" not in hello  # the text, not a start
    line = sess.command_input("exec /bin/sh -c 'echo hi'", "n0nce", "/usr/bin/setsid", keeper=True).decode()
    args = f'"${shell.KEEPER_VAR}" "${shell.REPLAY_VAR}" "${shell.REPLAY_ALL_VAR}"'
    assert f"'echo hi' nexus {args} </dev/null;" in line
    assert f"{shell.REPLAY_VAR}=" in hello and f"{shell.REPLAY_ALL_VAR}=" in hello
    assert "NEXUS-SPOOL" not in line
    built = shell.build(
        "echo hi", marker=markers.Marker("r", "k", "h"), spool=True, spool_max=1 << 20, keeper_arg=True
    )
    inline = shell.build("echo hi", marker=markers.Marker("r", "k", "h"), spool=True, spool_max=1 << 20)
    assert "fallocate" not in built and "fallocate" in inline and len(built) < len(inline) - 2000
    assert "NEXUS-SPOOL" not in built and "NEXUS-SPOOL" in inline  # the replay's text too


# --- against sshd, both modes ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_output_edge_cases(sshbed: SshBed, make_executor: MakeExecutor, mode: str) -> None:
    ex, _ = make_executor(ssh_session_mode=mode)
    r, out = _run(ex, sshbed, "printf 'a\\n\\nb'; printf 'e1\\ne2' >&2; exit 7")
    assert r.status == "failed" and r.exit_code == 7
    assert out.of("stdout") == ["a", "", "b"] and out.of("stderr") == ["e1", "e2"]
    r, out = _run(ex, sshbed, "echo; echo")
    assert r.ok and out.of("stdout") == ["", ""]
    r, out = _run(ex, sshbed, "true")
    assert r.ok and out.lines == []
    long = 300_000
    r, out = _run(ex, sshbed, f"head -c {long} /dev/zero | tr '\\0' x; echo; echo tail")
    assert r.ok and out.of("stdout") == ["x" * long, "tail"]
    r, out = _run(ex, sshbed, "head -c 20000 /dev/urandom; echo; echo after-junk")
    assert r.ok and out.of("stdout")[-1] == "after-junk"
    r, out = _run(ex, sshbed, "cat; echo read-done")  # stdin is at EOF at once
    assert r.ok and out.of("stdout") == ["read-done"]
    assert r.duration < 5


@pytest.mark.parametrize("mode", MODES)
def test_output_imitating_the_framing_is_just_output(
    sshbed: SshBed, make_executor: MakeExecutor, mode: str
) -> None:
    ex, _ = make_executor(ssh_session_mode=mode)
    fake = "\\036NEXUS-END 0123456789abcdef 0"
    r, out = _run(ex, sshbed, f"printf '{fake}\\n'; printf '\\n{fake}\\n' >&2; echo still; exit 4")
    assert r.exit_code == 4
    assert out.of("stdout") == ["\x1eNEXUS-END 0123456789abcdef 0", "still"]
    assert out.of("stderr") == ["", "\x1eNEXUS-END 0123456789abcdef 0"]


@pytest.mark.parametrize("mode", MODES)
def test_env_and_cwd_do_not_leak(sshbed: SshBed, make_executor: MakeExecutor, mode: str) -> None:
    ex, _ = make_executor(ssh_session_mode=mode, ssh_pool_size=1)
    r, _ = _run(
        ex, sshbed, Command("cd /; export LEAK=1; umask 077; LOCAL=2", env=(("GIVEN", "g"),), cwd="/tmp")
    )
    assert r.ok
    r, out = _run(ex, sshbed, 'pwd; echo "${LEAK-unset} ${LOCAL-unset} ${GIVEN-unset}"; umask')
    assert r.ok and out.of("stdout")[1] == "unset unset unset"
    assert out.of("stdout")[0] != "/" and out.of("stdout")[2] != "0077"


@pytest.mark.parametrize("mode", MODES)
def test_status_files_are_written(sshbed: SshBed, make_executor: MakeExecutor, mode: str) -> None:
    ex, _ = make_executor(ssh_session_mode=mode)
    run_id = f"sess-{mode}-{time.time_ns()}"
    label = _host(sshbed).label
    marker = markers.Marker(run_id, markers.key("t", "h", 0), label)
    r, _ = _run(ex, sshbed, Command("echo hi; exit 3", marker=marker))
    assert r.exit_code == 3
    probe, out = _run(ex, sshbed, markers.probe_script(run_id, marker.key, label))
    assert probe.ok and markers.parse_probe(out.of("stdout")) == markers.ProbeResult("finished", 3)
    ex.remove_markers(_host(sshbed), run_id)
    probe, out = _run(ex, sshbed, markers.probe_script(run_id, marker.key, label))
    assert probe.ok and markers.parse_probe(out.of("stdout")) == markers.ProbeResult("never")


def _keeper_of(run_id: str, label: str) -> int:
    """The pid of the run's spool keeper on the bed host (0: none), waiting up to 5 s."""
    name = Path(markers.local_status_dir(run_id, label)).name
    folder = HOME_ROOT / USER_KEY / ".cache" / "nexus" / "runs" / name
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int((folder / ".keeper").read_text())
            os.kill(pid, 0)
            return pid
        time.sleep(0.05)
    return 0


@pytest.mark.parametrize("mode", [*MODES, "no-setsid"])
def test_spooled_commands_start_the_keeper_and_see_no_arguments(
    sshbed: SshBed, make_executor: MakeExecutor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a session the keeper's text is the shell's argument, shifted away before the command
    runs; on exec channels (and hosts without setsid) it is in the script: either way the
    keeper starts and the command's ``$#`` is 0."""
    if mode == "no-setsid":
        monkeypatch.setattr(
            sess, "handshake_input", lambda token: f"printf '\\036NEXUS-READY {token} -\\n'\n".encode()
        )
    ex, _ = make_executor(ssh_session_mode="exec" if mode == "exec" else "shell")
    run_id = f"keeper-{mode}-{time.time_ns()}"
    label = _host(sshbed).label
    try:
        # The first command is over before its keeper looks: that keeper leaves at once. The
        # second one's keeper stays while it runs (looked for meanwhile, from this thread).
        for i, cmd in enumerate(['echo "[$#][$1]"', 'sleep 2; echo "[$#][$1]"']):
            marker = markers.Marker(run_id, markers.key("t", "h", i), label)
            with ThreadPoolExecutor(1) as pool:
                running = pool.submit(_run, ex, sshbed, Command(cmd, marker=marker))
                pid = _keeper_of(run_id, label) if i == 1 else 0
                r, out = running.result()
            assert r.ok and out.of("stdout") == ["[0][]"], (mode, out.lines)
        assert pid, f"no keeper in {mode} mode"
    finally:
        ex.remove_markers(_host(sshbed), run_id)  # the folder gone, the keeper leaves at its next tick


def test_connections_never_wait_for_delayed_acks(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    import socket

    from nexus_ssh.connect import LowLatencySocket

    ex, _ = make_executor(ssh_pool_size=1)
    r, _ = _run(ex, sshbed, "true")
    assert r.ok
    (conn,) = [c for pool in ex._pools.values() for c in pool._idle]
    sock = conn.transport.sock
    assert isinstance(sock, LowLatencySocket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert conn.transport.remote_cipher == "aes128-gcm@openssh.com"  # AEAD: no per-packet HMAC in Python
    assert type(conn.transport.packetizer).__name__ == "TimerlessPacketizer"  # no Timer thread per host


@pytest.mark.parametrize("mode", MODES)
def test_timeout_then_the_next_command_runs(sshbed: SshBed, make_executor: MakeExecutor, mode: str) -> None:
    ex, _ = make_executor(ssh_session_mode=mode, ssh_pool_size=1)
    r, _ = _run(ex, sshbed, "echo started; sleep 34.5 & sleep 34.5; echo never", timeout=0.6)
    assert r.status == "timeout" and r.tail == ("started",)
    assert sshbed.wait_no_process(USER_KEY, "sleep 34.5") == []
    r, out = _run(ex, sshbed, "echo next")
    assert r.ok and out.lines == [("stdout", "next")]


@pytest.mark.parametrize("mode", MODES)
def test_interrupt_lets_the_command_clean_up(sshbed: SshBed, make_executor: MakeExecutor, mode: str) -> None:
    ex, _ = make_executor(ssh_session_mode=mode, ssh_pool_size=1)
    cancel = Cancel()
    timer = threading.Timer(0.6, cancel.raise_to, args=(Cancel.INTERRUPT,))
    timer.start()
    try:
        r, out = _run(
            ex, sshbed, "trap 'echo cleaning; exit 9' INT; echo ready; sleep 33.5; echo not-here", 20, cancel
        )
    finally:
        timer.cancel()
    assert r.status == "interrupted" and out.of("stdout") == ["ready", "cleaning"]
    assert sshbed.wait_no_process(USER_KEY, "sleep 33.5") == []
    r, out = _run(ex, sshbed, "echo next")
    assert r.ok and out.lines == [("stdout", "next")]


# --- shell mode only -----------------------------------------------------------------------


def test_one_shell_serves_sequential_commands(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor(ssh_session_mode="shell", ssh_pool_size=1)
    parents = set()
    for _ in range(5):
        r, out = _run(ex, sshbed, "echo $PPID")  # the command's sh is a child of the session shell
        assert r.ok
        parents.add(out.of("stdout")[0])
    assert len(parents) == 1 and len(ex._sessions) == 1


def test_session_killed_under_a_command_is_replaced(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, events = make_executor(ssh_session_mode="shell", ssh_pool_size=1)
    r, out = _run(ex, sshbed, "echo $PPID")
    first = out.of("stdout")[0]
    # The command holds the channel's pipes: the end is seen when it exits (Paramiko ignores
    # the server's exit-signal), then reported as the session's end, not as the command's.
    r, _ = _run(ex, sshbed, "echo bye; kill -KILL $PPID; sleep 0.5; echo done")
    assert r.status == "error" and "session ended" in r.reason and r.tail == ("bye", "done")
    assert ex.connection_count() == 1  # the connection stayed
    r, out = _run(ex, sshbed, "echo $PPID")
    assert r.ok and out.of("stdout")[0] != first
    assert not [e for e in events if e.name == "ssh.disconnect"]


def test_connection_lost_mid_command_is_a_clear_error(sshbed: SshBed, make_executor: MakeExecutor) -> None:
    ex, _ = make_executor(ssh_session_mode="shell", ssh_pool_size=1)
    assert _run(ex, sshbed, "true")[0].ok
    (conn,) = [c for p in ex._pools.values() for c in p._idle]
    threading.Timer(0.5, conn.transport.sock.close).start()
    r, _ = _run(ex, sshbed, "echo started; sleep 2.5")  # outlives the connection, as in exec mode
    # A connection failure of the host (exit 3), never retried: the command may still run there.
    assert r.status == "unreachable" and "connection was lost" in r.reason and not r.retryable
    r, out = _run(ex, sshbed, "echo again")
    assert r.ok and out.lines == [("stdout", "again")]


def test_host_without_setsid_uses_exec_channels(
    sshbed: SshBed, make_executor: MakeExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sess, "handshake_input", lambda token: f"printf '\\036NEXUS-READY {token} -\\n'\n".encode()
    )
    ex, events = make_executor(ssh_session_mode="shell", ssh_pool_size=1)
    for _ in range(2):
        r, out = _run(ex, sshbed, "echo $PPID; echo fine")
        assert r.ok and out.of("stdout")[1] == "fine"
    assert ex._sessions == {} and len(ex._no_session) == 1
    assert any(isinstance(e, Log) and "session mode unavailable" in e.message for e in events)


def test_unknown_mode_warns_and_uses_the_default(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex, events = make_executor(options={"ssh_session_mode": "nope"})
    assert ex.session_mode == sess.DEFAULT_MODE
    assert any(isinstance(e, Log) and e.level == "warning" and "nope" in e.message for e in events)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("cmd", "out", "err", "code"),
    [
        ("echo quick; echo quick-err >&2", ["quick"], ["quick-err"], 0),  # replayed at the end
        ("true", [], [], 0),  # nothing printed: no cat
        ("echo a; echo e1 >&2; sleep 1; echo b; printf 'no-eol'; exit 3", ["a", "b", "no-eol"], ["e1"], 3),
        ("printf 'x\\n\\n'; sleep 0.8; echo '' >&2", ["x", ""], [""], 0),  # followed, then replayed
    ],
)
def test_spooled_commands_show_each_line_once(
    sshbed: SshBed,
    make_executor: MakeExecutor,
    mode: str,
    cmd: str,
    out: list[str],
    err: list[str],
    code: int,
) -> None:
    ex, _ = make_executor(ssh_session_mode=mode)
    run_id, host = f"20261201-000000-{mode}", _host(sshbed)
    marker = markers.Marker(run_id, markers.key("t", host.label, 0), host.label)
    r, got = _run(ex, sshbed, Command(cmd, marker=marker))
    assert (r.exit_code, got.of("stdout"), got.of("stderr")) == (code, out, err), got.lines
    ex.remove_markers(host, run_id)


@pytest.mark.parametrize("mode", MODES)
def test_followed_commands_closing_while_output_flows_keep_the_connection(
    sshbed: SshBed, make_executor: MakeExecutor, mode: str
) -> None:
    """The follower channel is closed while the host still streams into it, on three hosts at
    once: with ``select()`` on channels, Paramiko's per-channel pipe made that race kill a
    healthy connection now and then ("the SSH connection was lost while the command ran")."""
    ex, events = make_executor(ssh_session_mode=mode)
    run_id = f"20261201-000001-{mode}"
    cmd = "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); sleep 0.01; done"
    failures: list[str] = []

    def host_loop(i: int) -> None:
        host = _host(sshbed, i)
        for n in range(4):
            marker = markers.Marker(run_id, markers.key("t", host.label, n), host.label)
            out = Out()
            r = ex.run(host, Command(cmd, marker=marker), out, Cancel(), 20)
            if r.status != "ok" or out.of("stdout") != [f"line {k}" for k in range(60)]:
                failures.append(f"{host.label} #{n}: {r.status} {r.reason} {len(out.of('stdout'))} lines")

    threads = [threading.Thread(target=host_loop, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert not [e for e in events if getattr(e, "reason", "") == "broken"], "a connection broke"
    for i in range(3):
        ex.remove_markers(_host(sshbed, i), run_id)


def test_waker_wakes_on_data_and_ignores_paramikos_clear() -> None:
    from nexus_ssh.wake import Waker

    w = Waker()
    assert not w.wait(0.01)
    w.set()
    w.clear()  # one buffer drained: others may still hold data, so the waker stays set
    assert w.wait(1) and not w.wait(0.01)
