"""Plugin loading and pure helpers (no sshd needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_ssh import plugin, remote
from nexus_ssh.errors import classify
from nexus_ssh.settings import Endpoint, Resolver, SettingsError, parse_hop

_PLUGIN = Path(__file__).resolve().parents[1]
_ROOT = _PLUGIN.parents[1]


def test_plugin_entry_is_cheap_and_declares_the_api() -> None:
    code = (
        "import sys, nexus_ssh.plugin as p; "
        "assert p.NEXUS_API_VERSION == 1; "
        "bad = [m for m in ('paramiko', 'fabric', 'invoke', 'cryptography') if m in sys.modules]; "
        "assert not bad, bad; "
        "[reg] = p.nexus_executors(); "
        "assert (reg.name, reg.target) == ('ssh', 'nexus_ssh.executor:SshExecutor'); "
        "[check] = p.nexus_preflight_checks(); "
        "assert check.target == 'nexus_ssh.preflight:SshHostsCheck' and check.details['order'] == 10; "
        "heavy = ('paramiko', 'fabric', 'nexus_ssh.executor', 'nexus_ssh.preflight'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "assert not bad, bad"
    )
    env_path = f"{_PLUGIN}:{_ROOT}"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin"})


def test_registered_classes_load_with_the_names_of_their_registrations() -> None:
    from nexus_core.plugins import PluginManager

    registry = PluginManager(report=lambda _msg: None).registry
    executor = registry.executors["ssh"]
    assert executor.__module__ == "nexus_ssh.executor"
    assert (executor.name, executor.supports_markers) == ("ssh", True)
    check = registry.checks["ssh-hosts"]
    assert (check.name, check.category, check.order) == ("ssh-hosts", "Host Connectivity", 10)
    assert registry.owners["executor:ssh"] == "nexus-ssh"


def test_config_option_declared() -> None:
    opts = {o.name: o for o in plugin.nexus_config_options()}
    assert set(opts) == {
        "ssh_user",
        "ssh_identity",
        "ssh_port",
        "ssh_known_hosts_file",
        "ssh_host_key_verification",
        "ssh_jump",
        "ssh_pool_size",
        "ssh_connect_timeout",
        "ssh_connect_attempts",
        "ssh_idle_timeout",
        "ssh_config_file",
        "ssh_connect_rate",
        "ssh_jump_concurrency",
        "ssh_connect_concurrency",
        "ssh_session_mode",
    }
    assert opts["ssh_connect_rate"].problem("fast") and opts["ssh_connect_rate"].problem("50/second") is None
    assert opts["ssh_jump_concurrency"].default == 8
    assert opts["ssh_connect_concurrency"].default == 128
    mode = opts["ssh_session_mode"]
    assert mode.choices == ("exec", "shell") and mode.default == "shell" and mode.help
    assert mode.problem("shell") is None and "one of" in (mode.problem("pty") or "")


def test_build_quotes_everything() -> None:
    text = remote.build("echo hi", sudo=True, user="www-data", env=(("X", "a'b"),), cwd="/srv/my app")
    assert text.startswith("exec /bin/sh -c ")
    with pytest.raises(remote.CommandError):
        remote.build("x", env=(("1BAD", "v"),))
    with pytest.raises(remote.CommandError):
        remote.build("x", user="root; rm -rf /")


def test_marker_parsing() -> None:
    assert remote.parse_marker(remote.MARKER + "12 34") == (12, 34)
    assert remote.parse_marker("hello") is None
    assert remote.parse_marker(remote.MARKER + "x y") is None


def test_parse_hop() -> None:
    assert parse_hop("u@h:2200") == ("u", "h", 2200)
    assert parse_hop("h") == (None, "h", None)
    assert parse_hop("[::1]:22") == (None, "::1", 22)
    with pytest.raises(SettingsError):
        parse_hop("h:x")


def test_classify_dns_and_refused() -> None:
    ep = Endpoint("web", "web.example", 22, "u")
    dns = classify(socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ep)
    assert dns.kind == "dns" and not dns.transient and "web.example" in dns.reason
    ref = classify(ConnectionRefusedError(), ep)
    assert ref.kind == "refused" and ref.transient and ref.reason.startswith("Connection refused")
    to = classify(TimeoutError(), ep)
    assert to.kind == "timeout" and to.transient
    # A login the server did not answer in time is a slow handshake (retried), not a wrong key.
    from nexus_ssh.errors import LoginTimeout

    login = classify(LoginTimeout("no answer to the login within 10 s"), ep)
    assert login.kind == "timeout" and login.transient and "Authentication" not in login.reason


def test_resolver_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c"
    cfg.write_text("Host web\n  HostName 127.0.0.7\n  User cfguser\n  Port 2200\n  ProxyJump j1,u@j2:23\n")
    r = Resolver({}, {"ssh_config_file": str(cfg)})
    spec = r.resolve("web")
    assert (spec.target.hostname, spec.target.user, spec.target.port) == ("127.0.0.7", "cfguser", 2200)
    assert [h.label for h in spec.hops] == ["j1", "j2"] and spec.hops[1].port == 23
    spec = Resolver(
        {"ssh_user": "nx", "ssh_port": 2222, "ssh_jump": None}, {"ssh_config_file": str(cfg)}
    ).resolve("web", port=2300)
    assert (spec.target.user, spec.target.port) == ("nx", 2300)
    assert Resolver({"ssh_jump": "none"}, {"ssh_config_file": str(cfg)}).resolve("web").hops == ()


def test_proxy_command_tokens_use_the_resolved_values(tmp_path: Path) -> None:
    cfg = tmp_path / "c"
    cfg.write_text(
        "Host p\n  HostName 127.0.0.7\n  ProxyCommand nc -X 5 -x %%proxy %h %p # %r %n ~\n"
        "Host q\n  ProxyCommand none\nHost bad\n  ProxyCommand nc %x\n"
    )
    r = Resolver({"ssh_user": "nx", "ssh_port": 2222}, {"ssh_config_file": str(cfg)})
    assert r.resolve("p").proxy_command == "nc -X 5 -x %proxy 127.0.0.7 2222 # nx p " + str(Path.home())
    assert "127.0.0.7 23 " in (r.resolve("p", port=23).proxy_command or "")
    assert r.resolve("q").proxy_command is None
    with pytest.raises(SettingsError, match="unknown token %x"):
        r.resolve("bad")


# --- Paramiko without invoke -----------------------------------------------------------------

_LOOKUP = (
    "import sys; from nexus_ssh.settings import load_ssh_config; "
    "cfg = load_ssh_config(sys.argv[1]); print(cfg.lookup('web').get('user')); "
    "print('invoke' in sys.modules and sys.modules['invoke'] is not None)"
)


@pytest.mark.parametrize(
    ("config", "user", "invoke_loaded"),
    [
        ("Host web\n  User plain\n", "plain", False),
        ('Match exec "true"\n  User fromexec\n', "fromexec", True),
        ('Host web\n  Match exec "false"\n', None, True),
    ],
)
def test_invoke_is_imported_only_for_match_exec(tmp_path, config, user, invoke_loaded):
    path = tmp_path / "config"
    path.write_text(config)
    out = subprocess.run(
        [sys.executable, "-c", _LOOKUP, str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(user), str(invoke_loaded)]
    # invoke stays importable afterwards
    code = _LOOKUP + "; import invoke; print(invoke.__name__)"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.split()[-1] == "invoke", out.stderr


def test_paramiko_is_imported_without_importlib_metadata_and_knows_its_version() -> None:
    code = (
        "import sys; from nexus_ssh.settings import import_paramiko; import_paramiko(); "
        "import paramiko; print(paramiko.__version__); print('importlib.metadata' in sys.modules); "
        "from importlib import metadata; print(metadata.version('paramiko')); "
        "print(type(metadata.distribution('paramiko')).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    version, loaded, real, dist = out.stdout.split()
    assert loaded == "False"  # the stand-in is gone, nothing else pulled the module in
    assert version == real  # the banner's version is Paramiko's own
    assert dist == "PathDistribution"  # the real module answers everything afterwards


def test_the_event_types_are_registered_by_name_and_load_on_first_use() -> None:
    """nexus_event_types names ``nexus_ssh.events``' classes: a start imports none of them."""
    code = (
        "import sys; from nexus_core.plugin import PluginManager; "
        "reg = PluginManager().registry; "
        "assert 'nexus_ssh.events' not in sys.modules; "
        "from nexus_ssh.events import EVENT_TYPES; "
        "assert [reg.event_types[c.name] for c in EVENT_TYPES] == list(EVENT_TYPES); "
        "assert reg.owners['event:ssh.connect'] == 'nexus-ssh'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_first_connections_under_the_rate_do_not_load_limits() -> None:
    code = (
        "import sys\n"
        "from nexus_ssh.pacing import Pacer\n"
        "p = Pacer({})\n"
        "for _ in range(5):\n"
        "    p._rate_turn(lambda s: True)\n"
        "print('limits' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_the_limiter_counts_the_connections_made_before_it_existed() -> None:
    from nexus_ssh.pacing import Pacer, PacingCancelled

    pacer = Pacer({"ssh_connect_rate": "3/minute"})
    waits: list[float] = []

    def no_wait(seconds: float) -> bool:
        waits.append(seconds)
        return False  # a stop request: the turn is refused instead of waiting

    for _ in range(3):  # two let through at once, the third by the limiter (with the two counted)
        pacer._rate_turn(no_wait)
    assert waits == []
    with pytest.raises(PacingCancelled):
        pacer._rate_turn(no_wait)  # the window is full: 3 in the last minute
    assert len(waits) == 1 and 0 < waits[0] <= 5.0


def test_the_limiter_forgets_the_connections_made_before_its_window() -> None:
    """Connections let through before the limiter existed count only while inside its window:
    two made 2 s before a 3/second limiter is needed leave it room for three more at once."""
    import time

    from nexus_ssh.pacing import Pacer, PacingCancelled

    pacer = Pacer({"ssh_connect_rate": "3/second"})
    waits: list[float] = []

    def no_wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    for _ in range(2):
        pacer._rate_turn(no_wait)
    pacer._stamps[:] = [time.time() - 2.0] * len(pacer._stamps)  # as if they started 2 s ago
    for _ in range(3):
        pacer._rate_turn(no_wait)
    assert waits == []
    with pytest.raises(PacingCancelled):
        pacer._rate_turn(no_wait)  # now the window is full: 3 in the last second
    assert len(waits) == 1


def test_the_socket_reads_ahead_and_never_returns_more_than_asked() -> None:
    """One kernel read serves several of Paramiko's exact-size reads, in order."""
    from nexus_ssh.connect import LowLatencySocket

    a, b = socket.socketpair()
    try:
        sock = LowLatencySocket(a)
        payload = bytes(range(256)) * 64  # 16 KiB: more than one read-ahead
        b.sendall(payload)
        got = b""
        for size in (16, 1, 4000, 5, 100_000, 7) * 20:
            if len(got) == len(payload):
                break
            part = sock.recv(size)
            assert 0 < len(part) <= size
            got += part
        assert got == payload
        b.sendall(b"xy")
        assert sock.recv(1) == b"x" and sock.recv(10) == b"y"
    finally:
        a.close()
        b.close()


def test_the_handshake_timeout_is_a_deadline_not_a_thread() -> None:
    """Paramiko's packetizer hook: no ``threading.Timer`` per connection, same timeout."""
    import threading
    import time

    from nexus_ssh.connect import timerless_packetizer

    a, b = socket.socketpair()
    try:
        before = threading.active_count()
        pk = timerless_packetizer()(a)
        assert not pk.handshake_timed_out()
        pk.start_handshake(0.05)
        assert threading.active_count() == before
        assert not pk.handshake_timed_out()
        time.sleep(0.06)
        assert pk.handshake_timed_out()
        pk.complete_handshake()
        assert not pk.handshake_timed_out()
    finally:
        a.close()
        b.close()
