"""The CLI backend against a fake ``tailscale`` printing the recorded ``status --json`` shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_tailscale import cli
from nexus_tailscale.devices import parse_status
from nexus_tailscale.discovery import Answers, ask, resolve_backend
from nexus_tailscale.errors import TailscaleError
from nexus_tailscale.testing import SAMPLE, Peer, status_document, write_fake_cli


def by_name(tailnet):
    return {d.name: d for d in tailnet.devices}


def test_status_becomes_devices(fake_cli: Path):
    tailnet = cli.status(str(fake_cli))
    devices = by_name(tailnet)
    assert tailnet.backend == "cli" and tailnet.magic_dns_suffix == "tail1234.ts.net"
    assert devices["web-1"].dns_name == "web-1.tail1234.ts.net"
    assert devices["web-1"].addresses[0] == "100.64.0.11" and devices["web-1"].ipv6
    assert devices["web-1"].tags == ("tag:web", "tag:prod") and devices["web-1"].online
    assert devices["laptop"].tags == () and devices["laptop"].os == "macOS"
    assert not devices["old-box"].online
    assert devices["friend-nas"].shared and devices["friend-nas"].owner == "friend@example.org"
    assert devices["stale"].expired
    assert devices["web-2"].tailscale_ssh and devices["web-2"].ssh_host_keys
    assert not devices["web-1"].tailscale_ssh
    assert devices["nexus-controller"].is_self
    assert "sharee-phone" not in devices  # ShareeNode: hidden, as 'tailscale status' hides it


def test_daemon_not_running(tmp_path: Path):
    script = write_fake_cli(tmp_path, mode="daemon-down")
    with pytest.raises(TailscaleError) as err:
        cli.status(str(script))
    assert "tailscaled is not running" in str(err.value)
    assert "systemctl start tailscaled" in err.value.hint and err.value.exit_code == 3


@pytest.mark.parametrize(
    ("state", "words", "code"),
    [
        ("NeedsLogin", "not logged in", 2),
        ("Stopped", "Tailscale is stopped", 3),
        ("NeedsMachineAuth", "approve", 2),
    ],
)
def test_not_on_a_tailnet(tmp_path: Path, state: str, words: str, code: int):
    script = write_fake_cli(tmp_path, state=state)
    with pytest.raises(TailscaleError) as err:
        cli.status(str(script))
    assert words in str(err.value) and err.value.exit_code == code
    if state == "NeedsLogin":
        assert "tailscale up" in err.value.hint and "login.tailscale.com/a/" in str(err.value)


def test_other_failures_show_what_tailscale_said(tmp_path: Path):
    script = write_fake_cli(tmp_path, mode="broken")
    with pytest.raises(TailscaleError, match="unexpected error: boom"):
        cli.status(str(script))


def test_a_hanging_cli_times_out(tmp_path: Path):
    script = write_fake_cli(tmp_path, sleep=5)
    with pytest.raises(TailscaleError, match=r"did not answer within 0\.3 s") as err:
        cli.status(str(script), timeout=0.3)
    assert err.value.exit_code == 3


def test_not_json(tmp_path: Path):
    script = tmp_path / "tailscale"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    with pytest.raises(TailscaleError, match="printed no JSON"):
        cli.status(str(script))


def test_missing_cli_names_the_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TailscaleError) as err:
        resolve_backend({})
    assert "not installed" in str(err.value) and "TS_API_KEY" in err.value.hint and err.value.exit_code == 2
    with pytest.raises(TailscaleError, match="tailscale_cli='/nope/tailscale' is not an executable"):
        resolve_backend({"tailscale_cli": "/nope/tailscale"})


def test_configured_cli_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    script = write_fake_cli(tmp_path / "elsewhere")
    backend = resolve_backend({"tailscale_cli": str(script)})
    assert backend.kind == "cli" and backend.cli_path == str(script)
    assert len(ask(backend).devices) == len([p for p in SAMPLE if not p.sharee]) + 1


def test_one_question_per_run(fake_cli: Path):
    backend = resolve_backend({})
    answers = Answers()
    first = answers.fetch(backend)
    second = answers.fetch(backend)
    assert first is second
    calls = (fake_cli.parent / "tailscale.json.calls").read_text().splitlines()
    assert calls == ["status --json"]


def test_magic_dns_off_is_noticed():
    doc = status_document([Peer("a", "100.64.0.2")])
    doc["CurrentTailnet"]["MagicDNSEnabled"] = False
    assert parse_status(doc).magic_dns is False


def test_not_a_status_document():
    with pytest.raises(TailscaleError, match="no BackendState"):
        parse_status({"hello": 1})
