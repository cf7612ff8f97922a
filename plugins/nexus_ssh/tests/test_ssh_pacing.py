"""Connection pacing against a real sshd that drops handshakes (a tiny ``MaxStartups``).

The bed here has its own sshd processes with ``MaxStartups 3``: a fourth unauthenticated
connection is dropped, as OpenSSH's default ``10:30:100`` drops from the tenth on.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.api import Cancel, CommandResult, ExecutorContext
from nexus_core.events import Event, Log
from nexus_core.model import Command, Host
from nexus_core.testing.sshbed import USER_KEY, SshBed
from tests.helpers import Out

from nexus_ssh.executor import SshExecutor
from nexus_ssh.options import config_options
from nexus_ssh.pacing import DEFAULT_CONNECT_CONCURRENCY, DEFAULT_JUMP_CONCURRENCY, Pacer, rate_problem

pytestmark = pytest.mark.ssh

N_HOSTS = 6


@pytest.fixture(scope="module")
def tight_bed() -> Iterator[SshBed]:
    """6 hosts and a bastion whose sshd refuse a 4th handshake in progress."""
    if os.geteuid() != 0:
        pytest.skip("the SSH test bed needs root (creates users, runs sshd)")
    bed = SshBed(N_HOSTS, port=0, bastion=True, max_startups="3")
    bed.start()
    yield bed
    bed.stop()


def _executor(
    bed: SshBed, tmp_path: Path, config_: dict[str, Any] | None = None, **options: Any
) -> tuple[SshExecutor, list[Event]]:
    assert bed.bastion is not None
    config = {
        "ssh_user": USER_KEY,
        "ssh_identity": bed.key_path("ed25519"),
        "ssh_known_hosts_file": bed.known_hosts,
        "ssh_jump": f"{USER_KEY}@{bed.bastion.address}:{bed.port}",
        **(config_ or {}),
    }
    opts: dict[str, Any] = {
        "ssh_config_file": "",
        "ssh_retry_base": 0.01,
        "ssh_no_agent": True,
        "ssh_password_prompt": False,
    }
    opts.update(options)
    events: list[Event] = []
    ctx = ExecutorContext(config=config, root=str(tmp_path), emit=events.append, run_id="pace", options=opts)
    return SshExecutor(ctx), events


def _all_at_once(ex: SshExecutor, bed: SshBed) -> list[CommandResult]:
    results: list[CommandResult | None] = [None] * N_HOSTS
    barrier = threading.Barrier(N_HOSTS)

    def one(i: int) -> None:
        barrier.wait(timeout=10)
        host = Host(bed.hosts[i].address, port=bed.port)
        results[i] = ex.run(host, Command("true"), Out(), Cancel(), 30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N_HOSTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in results), "a host thread did not finish"
    return [r for r in results if r is not None]


def _retries(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Log) and "connection attempt" in e.message]


def test_jump_cap_keeps_a_fleet_under_the_jump_hosts_maxstartups(tight_bed: SshBed, tmp_path: Path) -> None:
    # One try only: a dropped handshake would fail its host at once.
    ex, events = _executor(tight_bed, tmp_path, ssh_jump_concurrency=1, ssh_connect_attempts=1)
    try:
        results = _all_at_once(ex, tight_bed)
    finally:
        ex.close()
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert _retries(events) == []
    assert ex._connector is not None and ex._connector.pacer.jump_concurrency == 1


def test_the_process_cap_alone_keeps_logins_in_bounds(tight_bed: SshBed, tmp_path: Path) -> None:
    # No jump-host cap, one try: only ssh_connect_concurrency keeps the bastion's sshd from
    # seeing more logins at once than its MaxStartups 3.
    ex, events = _executor(
        tight_bed, tmp_path, ssh_jump_concurrency=0, ssh_connect_concurrency=2, ssh_connect_attempts=1
    )
    try:
        results = _all_at_once(ex, tight_bed)
    finally:
        ex.close()
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert _retries(events) == []
    assert ex._connector is not None and ex._connector.pacer.connect_concurrency == 2


def test_dropped_handshakes_are_retried_and_reported_never_silent(tight_bed: SshBed, tmp_path: Path) -> None:
    # No cap: 6 logins at once against MaxStartups 3. sshd may drop some (timing decides how
    # many); each drop must show up as a retry warning or as the host's failure reason.
    ex, events = _executor(
        tight_bed, tmp_path, ssh_jump_concurrency=0, ssh_connect_concurrency=0, ssh_connect_rate="0"
    )
    try:
        results = _all_at_once(ex, tight_bed)
    finally:
        ex.close()
    for r in results:
        if not r.ok:
            assert r.status == "unreachable" and "after 3 attempts" in r.reason, r
            assert any(w in r.reason.lower() for w in ("reset", "banner", "closed")), r.reason
    for message in _retries(events):
        assert "failed (" in message and "retrying in" in message, message
    # Every host either ran the command or said why not; with no failure, no silent gap either.
    assert len(results) == N_HOSTS
    # Each host's ssh.connect.start events count its attempts 1, 2, 3...: a host that failed
    # after 3 attempts shows all three.
    from nexus_ssh.events import SshConnectStart

    starts: dict[str, list[int]] = {}
    for e in events:
        if isinstance(e, SshConnectStart):
            starts.setdefault(e.host, []).append(e.attempt)
    assert len(starts) == N_HOSTS, starts
    assert all(seq == list(range(1, len(seq) + 1)) for seq in starts.values()), starts
    for i, r in enumerate(results):
        if not r.ok:
            assert starts[f"{tight_bed.hosts[i].address}:{tight_bed.port}"] == [1, 2, 3], r.reason
    assert sum(len(seq) - 1 for seq in starts.values()) >= len(_retries(events))


@pytest.mark.parametrize("why", ["login", "host key"])
def test_a_jump_host_that_refuses_is_asked_once_not_once_per_host_behind_it(
    tight_bed: SshBed, tmp_path: Path, why: str
) -> None:
    # A wrong jump user, or a jump host whose key is not known: another login there cannot
    # help, so the hosts behind it fail at once with the same reason. Each login made is a
    # failed login in the jump host's logs (fail2ban) and, failing fast, a fleet of them
    # overran its MaxStartups although ssh_jump_concurrency capped the logins in progress.
    assert tight_bed.bastion is not None
    bastion = tight_bed.bastion.address
    if why == "login":
        changed = {"ssh_jump": f"nexus_nosuchuser@{bastion}:{tight_bed.port}"}
    else:
        known = tmp_path / "known_hosts"
        lines = Path(tight_bed.known_hosts).read_text().splitlines()
        known.write_text("".join(f"{line}\n" for line in lines if bastion not in line))
        changed = {"ssh_known_hosts_file": str(known)}
    ex, _ = _executor(tight_bed, tmp_path, changed, ssh_jump_concurrency=1, ssh_connect_attempts=1)
    before = tight_bed.connection_count(bastion)
    try:
        results = _all_at_once(ex, tight_bed)
    finally:
        ex.close()
    assert all(r.status == "unreachable" for r in results), [(r.status, r.reason) for r in results]
    reasons = {r.reason for r in results}
    assert len(reasons) == 1, reasons
    assert ("Authentication failed" if why == "login" else "not known") in reasons.pop()
    assert tight_bed.connection_count(bastion) - before == 1


def test_pacer_defaults_and_rate_checks() -> None:
    pacer = Pacer({})
    assert pacer.rate == "200/second" and pacer.jump_concurrency == DEFAULT_JUMP_CONCURRENCY
    assert Pacer({"ssh_connect_rate": "0"}).rate == ""
    assert pacer.connect_concurrency == DEFAULT_CONNECT_CONCURRENCY == 128
    assert Pacer({"ssh_connect_concurrency": 0})._opening is None
    assert rate_problem("50/second") is None and rate_problem("0") is None
    problem = rate_problem("fast")
    assert problem is not None and "ssh_connect_rate" in problem and "200/second" in problem
    names = {o.name for o in config_options()}
    assert {"ssh_connect_rate", "ssh_jump_concurrency", "ssh_connect_concurrency"} <= names
    # The rate turns never block a connection that is within the rate (bounded by the loop).
    calls: list[float] = []

    def sleep(seconds: float) -> bool:
        calls.append(seconds)
        return True

    paced = Pacer({"ssh_connect_rate": "1000/second"})
    for _ in range(5):
        with paced.turn("", sleep):
            pass
    assert calls == []


def test_a_stop_while_waiting_for_the_rate_cancels_the_wait() -> None:
    pacer = Pacer({"ssh_connect_rate": "1/hour"})
    with pacer.turn("", lambda _s: True):
        pass
    from nexus_ssh.pacing import PacingCancelled

    with pytest.raises(PacingCancelled), pacer.turn("", lambda _s: False):
        pass


def test_a_login_the_server_dropped_is_a_retried_reset(tight_bed: SshBed, tmp_path: Path) -> None:
    """sshd dropping a connection between the key exchange and the key (its LoginGraceTime,
    reached on a client with hundreds of handshakes queued) is a reset, retried: not a wrong
    key ("No existing session"), which fails the host at once."""
    import socket

    from paramiko.transport import Transport

    from nexus_ssh.connect import handshake
    from nexus_ssh.errors import classify

    ex, _ = _executor(tight_bed, tmp_path)
    try:
        spec = ex.spec_for(Host(tight_bed.hosts[0].address, port=tight_bed.port))
        _, connector = ex._setup()
        t = Transport(socket.create_connection((spec.target.hostname, spec.target.port), timeout=10))
        try:
            handshake(t, 10.0)  # one wait, not Paramiko's 0.1 s steps: still a full key exchange
            assert t.is_active() and t.initial_kex_done
            t.close()  # what the server's drop looks like from here
            with pytest.raises(EOFError) as err:
                connector._authenticate(t, spec, spec.target)
        finally:
            t.close()
        failure = classify(err.value, spec.target)
        assert failure.kind == "reset" and failure.transient and failure.retryable
    finally:
        ex.close()


def test_the_gate_bounds_the_slots_hands_them_on_and_lets_a_stop_leave() -> None:
    from nexus_ssh.pacing import Gate, PacingCancelled

    gate = Gate(3)
    inside = [0]
    most = [0]
    guard = threading.Lock()

    def worker() -> None:
        gate.enter(lambda _s: True)
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.002)
        with guard:
            inside[0] -= 1
        gate.leave()

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert most[0] == 3 and gate._free == 3 and not gate._waiters

    # A waiter asked to stop leaves the line; the slot it may have been handed goes on.
    full = Gate(1)
    full.enter(lambda _s: True)
    with pytest.raises(PacingCancelled):
        full.enter(lambda _s: False)
    assert not full._waiters
    full.leave()
    assert full._free == 1


def test_an_integer_rate_is_that_many_a_second_and_a_count_of_0_is_refused() -> None:
    from nexus_ssh.pacing import rate_text

    assert Pacer({"ssh_connect_rate": 50}).rate == "50/second" and rate_text("50") == "50/second"
    assert Pacer({"ssh_connect_rate": 0}).rate == "" and rate_text("0") == "" and rate_text(None) == ""
    assert rate_problem(50) is None and rate_problem("50") is None and rate_problem("1/day") is None
    for zero in ("0/second", "0 per minute", "10/second;0/minute"):
        problem = rate_problem(zero)
        assert problem is not None and "lets no connection start" in problem, zero
        assert "'0' for no limit" in problem and "'20/second'" in problem
    negative = rate_problem(-5)
    assert negative is not None and "negative" in negative
    option = {o.name: o for o in config_options()}["ssh_connect_rate"]
    assert option.problem(50) is None and option.problem("0/second")
    assert "an integer N for N a second" in option.hint()


def test_a_long_wait_for_the_rate_is_told_once() -> None:
    from nexus_ssh.pacing import PacingCancelled, wait_text

    told: list[str] = []
    pacer = Pacer({"ssh_connect_rate": "1/hour"}, warn=told.append)
    with pacer.turn("", lambda _s: True):  # the hour's one connection
        pass
    for _ in range(3):  # each next one waits (then stops: the sleep says the run is stopping)
        with pytest.raises(PacingCancelled), pacer.turn("", lambda _s: False):
            pass
    assert len(told) == 1, told
    import re

    assert re.match(r"waiting for ssh_connect_rate \(1/hour\): next connection in (1h 0m|59m \d+s) ", told[0])
    assert "'0' for no limit" in told[0]
    assert (wait_text(12.2), wait_text(250), wait_text(86399)) == ("12s", "4m 10s", "23h 59m")
    # A short wait is not worth a warning.
    quiet: list[str] = []
    short = Pacer({"ssh_connect_rate": "1/second"}, warn=quiet.append)
    for _ in range(2):
        with short.turn("", lambda s: True):
            pass
    assert quiet == []


def _bed_project(nexus_project: Any, bed: SshBed, rate: Any, hosts: list[str]) -> Any:
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    nexus_project.write(
        "from nexus_core import config, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port}, ssh_connect_rate={rate!r})\n"
        f"@task(on={hosts!r})\n"
        "def deploy():\n"
        "    run('true')\n"
    )
    return nexus_project


def test_validate_refuses_a_rate_of_0_per_period_and_takes_an_integer(nexus_project: Any) -> None:
    nexus_project.write(
        'from nexus_core import config, run, task\nconfig(ssh_connect_rate="0/second")\n'
        "@task\ndef t():\n    run('true')\n"
    )
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "nexusfile.py:2" in out.stderr and "lets no connection start" in out.stderr, out
    assert "'0' for no limit" in out.stderr and "'20/second'" in out.stderr
    env = nexus_project.run("validate", env={"NEXUS_SSH_CONNECT_RATE": "0/minute"})
    assert env.code == 2 and "NEXUS_SSH_CONNECT_RATE" in env.stderr, env
    nexus_project.write(
        "from nexus_core import config, run, task\nconfig(ssh_connect_rate=50)\n"
        "@task\ndef t():\n    run('true')\n"
    )
    assert nexus_project.run("validate").code == 0
    assert nexus_project.run("validate", env={"NEXUS_SSH_CONNECT_RATE": "50"}).code == 0


def test_a_run_held_back_by_the_rate_says_so(nexus_project: Any, sshbed: SshBed) -> None:
    """`1/5 seconds` over two hosts: the second connection waits about 5 s, and the run says
    why instead of looking stuck (once), then finishes."""
    hosts = [f"{h.address}" for h in sshbed.hosts[:2]]
    project = _bed_project(nexus_project, sshbed, "1/5 seconds", hosts)
    out = project.run("run", "deploy", timeout=60)
    assert out.code == 0, out
    said = out.stderr.count("waiting for ssh_connect_rate (1/5 seconds): next connection in ")
    assert said == 1, out


# --- stops while connecting, probes paced and retried (preflight, hosts scan, exec) ---------

SILENT_HOSTS = ["127.0.0.210", "127.0.0.211", "127.0.0.212"]


class FakeServer:
    """A TCP listener on some loopback addresses (one port) that never speaks SSH.

    ``mode``: ``"silent"`` accepts and says nothing (a hung sshd); ``"drop"`` writes sshd's
    ``Exceeded MaxStartups`` and closes, as sshd does past its ``MaxStartups``; ``"full"``
    never accepts and has its one-place queue filled, so that the kernel ignores new SYNs (a
    host that never answers the TCP connect). One thread serves every address; :meth:`stop`
    closes the listeners and every connection held.
    """

    def __init__(self, addresses: list[str], mode: str) -> None:
        import selectors
        import socket

        self.mode = mode
        self.accepted = 0
        self._conns: list[Any] = []
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self.port = 0
        for address in addresses:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, self.port))
            self.port = s.getsockname()[1]
            self._listeners.append(s)
            if mode == "full":
                s.listen(0)
                for _ in range(2):  # the queue holds one (or two): the next SYN is dropped
                    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    c.setblocking(False)
                    c.connect_ex((address, self.port))
                    self._conns.append(c)
                continue
            s.listen(64)
            s.setblocking(False)
            self._sel.register(s, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="fake-sshd", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():  # bounded by stop(): the test always calls it
            for key, _ in self._sel.select(timeout=0.1):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                self.accepted += 1
                if self.mode == "drop":
                    with contextlib.suppress(OSError):
                        conn.sendall(b"Exceeded MaxStartups\r\n")
                    conn.close()
                else:
                    self._conns.append(conn)

    def stop(self) -> None:
        """Stop serving; close the listeners and the connections held."""
        self._stop.set()
        self._thread.join(timeout=5)
        for s in [*self._listeners, *self._conns]:
            with contextlib.suppress(OSError):
                s.close()
        self._sel.close()


def _syn_sent(port: int) -> int:
    """TCP connections of this machine waiting for a SYN-ACK from ``port`` (/proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "02" and int(fields[2].split(":")[1], 16) == port:
                count += 1
    return count


@contextlib.contextmanager
def fake_server(addresses: list[str], mode: str) -> Iterator[FakeServer]:
    """A :class:`FakeServer` for the block."""
    server = FakeServer(addresses, mode)
    try:
        yield server
    finally:
        server.stop()


def _fake_project(nexus_project: Any, bed: SshBed, hosts: list[str], port: int, **config: Any) -> Any:
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    extra = "".join(f", {k}={v!r}" for k, v in config.items())
    nexus_project.write(
        "from nexus_core import config, hosts, run, task\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={port}{extra})\n"
        f"hosts('fleet', *{hosts!r})\n"
        "@task(on='fleet')\n"
        "def deploy():\n"
        "    run('true')\n"
    )
    return nexus_project


@pytest.mark.parametrize("mode", ["silent", "full"])
def test_a_stop_abandons_connections_stuck_before_the_banner(
    nexus_project: Any, sshbed: SshBed, mode: str
) -> None:
    """Servers that accept TCP and never send a banner (or never answer the TCP connect),
    ssh_connect_timeout=60: one Ctrl+C ends the run within seconds (not a minute), each host
    "stopped while connecting"."""
    import signal
    import time

    from tests.helpers import start_nexus, stopped, wait_for

    with fake_server(SILENT_HOSTS, mode) as server:
        fillers = _syn_sent(server.port)  # the server's own, filling its queue ("full")
        project = _fake_project(nexus_project, sshbed, SILENT_HOSTS, server.port, ssh_connect_timeout=60)
        proc = start_nexus(project, "run", "deploy")
        with stopped(proc):
            if mode == "silent":
                assert wait_for(lambda: server.accepted >= len(SILENT_HOSTS), timeout=30), server.accepted
                time.sleep(0.5)  # Paramiko now waits for the banner
            else:  # the connects wait for a SYN-ACK that never comes
                assert wait_for(lambda: _syn_sent(server.port) >= fillers + len(SILENT_HOSTS), timeout=30)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
            took = time.monotonic() - t0
    assert took < 8, (took, stdout, stderr)
    assert proc.returncode == 130, (stdout, stderr)
    assert "stopped while connecting" in stdout + stderr, (stdout, stderr)


def test_preflight_names_a_dropped_handshake_and_retries_it(nexus_project: Any, sshbed: SshBed) -> None:
    """A server that answers ``Exceeded MaxStartups`` and closes (sshd past MaxStartups):
    preflight tries again (saying so), then names the drop, not "not an SSH server"."""
    with fake_server(SILENT_HOSTS[:1], "drop") as server:
        project = _fake_project(nexus_project, sshbed, SILENT_HOSTS[:1], server.port)
        out = project.run("preflight", "deploy", timeout=60)
        assert server.accepted == 3, (server.accepted, out)  # ssh_connect_attempts' default
        assert out.code == 3, out
        dry = project.run("run", "deploy", "--dry-run", timeout=60)  # its checks connect too
    assert dry.code == 3 and "dropped the connection before its banner" in dry.stdout + dry.stderr, dry
    text = out.stdout + out.stderr
    assert "dropped the connection before its banner" in text and "MaxStartups" in text, out
    assert "ssh_connect_rate" in text, out
    assert "not as an SSH server" not in text and "Check the port" not in text, out
    assert "connection attempt 1/3 failed" in out.stderr, out


@pytest.fixture(scope="module")
def default_throttle_bed() -> Iterator[SshBed]:
    """30 hosts on two sshd with OpenSSH's default ``MaxStartups 10:30:100``."""
    if os.geteuid() != 0:
        pytest.skip("the SSH test bed needs root (creates users, runs sshd)")
    bed = SshBed(30, port=0, bastion=False, max_startups="10:30:100")
    bed.start()
    yield bed
    bed.stop()


def _throttled_project(nexus_project: Any, bed: SshBed) -> Any:
    return _fake_project(
        nexus_project, bed, [h.address for h in bed.hosts], bed.port, ssh_connect_rate="40/second"
    )


def test_preflight_is_paced_and_reports_healthy_hosts_healthy(
    nexus_project: Any, default_throttle_bed: SshBed
) -> None:
    """30 healthy hosts checked 30 at once against sshd's default MaxStartups: every one passes
    (before, the burst made sshd drop some, reported as "not an SSH server")."""
    project = _throttled_project(nexus_project, default_throttle_bed)
    project.env["NEXUS_SSH_CONNECT_ATTEMPTS"] = "6"  # as for hosts scan below: not luck under load
    out = project.run("preflight", "deploy", "--parallel", "30", timeout=120)
    assert out.code == 0, out
    assert "not as an SSH server" not in out.stdout + out.stderr, out


def test_hosts_scan_is_paced_and_scans_every_host(nexus_project: Any, default_throttle_bed: SshBed) -> None:
    """``nexus hosts scan`` over 30 hosts at once: every host's keys, no error row."""
    project = _throttled_project(nexus_project, default_throttle_bed)
    # sshd drops at random above 10 handshakes: 30 at once on a loaded machine may drop one
    # host's three times in a row; six tries keep the test about pacing and retrying, not luck.
    project.env["NEXUS_SSH_CONNECT_ATTEMPTS"] = "6"
    out = project.run("hosts", "scan", "--parallel", "30", "--format", "json", timeout=120)
    assert out.code == 0, out
    (scan,) = [json.loads(line) for line in out.stdout.splitlines() if '"hosts.scan"' in line]
    rows = scan["hosts"]
    assert len(rows) == len(default_throttle_bed.hosts), out
    assert [r for r in rows if r["error"] or not r["keys"]] == [], out


def test_preflight_keeps_to_ssh_connect_rate(nexus_project: Any, sshbed: SshBed) -> None:
    """`1/4 seconds`: preflight's second connection to a host (the login after the banner
    probe) waits for the rate, and says so, as a run does."""
    project = _bed_project(nexus_project, sshbed, "1/4 seconds", [sshbed.hosts[0].address])
    out = project.run("preflight", "deploy", timeout=60)
    assert out.code == 0, out
    assert out.stderr.count("waiting for ssh_connect_rate (1/4 seconds)") == 1, out
