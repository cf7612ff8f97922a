"""TailscaleSource, the host source behind discover("tailscale", ...), as the core calls it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nexus_core.plugin import DiscoveryError, HostSourceContext

from nexus_tailscale.source import TailscaleSource
from nexus_tailscale.testing import FakeApi, Peer, write_fake_cli


def source(config=None, notes=None) -> TailscaleSource:
    sink = notes if notes is not None else []
    return TailscaleSource(HostSourceContext(config=config or {}, root=".", warn=sink.append))


def test_hosts_carry_tags_os_addresses_and_facts(fake_cli: Path):
    notes: list[str] = []
    hosts = {h.name: h for h in source(notes=notes).discover({"tags": ["web"]})}
    assert set(hosts) == {"web-1", "web-2", "test-web-3", "old-box", "stale"}
    web1 = hosts["web-1"]
    assert web1.address == "web-1.tail1234.ts.net" and web1.online and web1.os == "linux"
    assert web1.tags == ("tag:web", "tag:prod") and web1.addresses[0] == "100.64.0.11"
    assert web1.facts["tailscale_backend"] == "cli" and "ssh_auth" not in web1.facts
    assert hosts["web-2"].facts["ssh_auth"] == "none" and hosts["web-2"].facts["tailscale_ssh"]
    assert not hosts["old-box"].online and not hosts["stale"].online
    assert not hosts["old-box"].target and not hosts["stale"].target
    assert web1.target
    assert notes == ["tailscale: node key expired on stale: log them in again (tailscale up)"]


def test_groups_share_one_question(fake_cli: Path):
    src = source()
    src.discover({"tags": ["web"]})
    src.discover({"tags": ["db"], "address": "ipv4"})
    assert (fake_cli.parent / "tailscale.json.calls").read_text().splitlines() == ["status --json"]


def test_a_failure_is_not_asked_again_for_the_next_group(tmp_path: Path):
    script = write_fake_cli(tmp_path, mode="daemon-down")
    src = source({"tailscale_cli": str(script)})
    for filters in ({"tags": ["web"]}, {"tags": ["db"]}):
        with pytest.raises(DiscoveryError, match="tailscaled is not running"):
            src.discover(filters)
    assert (tmp_path / "tailscale.json.calls").read_text().splitlines() == ["status --json"]


def test_a_device_without_the_address_kind_is_not_targeted_with_a_note(tmp_path: Path):
    script = write_fake_cli(tmp_path, [Peer("v4only", "100.64.0.5")])
    data = json.loads((tmp_path / "tailscale.json").read_text())
    for peer in data["status"]["Peer"].values():
        peer["TailscaleIPs"] = peer["TailscaleIPs"][:1]  # no IPv6 (e.g. a device with IPv6 disabled)
    (tmp_path / "tailscale.json").write_text(json.dumps(data))
    notes: list[str] = []
    (host,) = source({"tailscale_cli": str(script)}, notes).discover(
        {"hostname": "v4only", "address": "ipv6"}
    )
    assert host.online and not host.target  # the device is up; it just cannot be reached over IPv6
    assert notes == ["tailscale: v4only: no Tailscale IPv6 address: not targeted"]


def test_check_reports_bad_values_without_asking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tailscale at all: check must not need it
    assert source().check({"hostname": "(", "tags": ["web"]})[0].startswith("hostname='(' is not a valid")
    assert source().check({"tags": ["web"]}) == []


def test_errors_become_discovery_errors_with_the_fix(tmp_path: Path):
    script = write_fake_cli(tmp_path, state="NeedsLogin")
    with pytest.raises(DiscoveryError) as err:
        source({"tailscale_cli": str(script)}).discover({})
    assert "not logged in" in err.value.message and "tailscale up" in err.value.hint
    assert err.value.exit_code == 2


def test_api_backend_through_the_source(fake_api: FakeApi):
    config = {"tailscale_api_url": fake_api.url, "tailscale_api_key": "tskey-api-test"}
    hosts = source(config).discover({"os": "windows", "address": "ipv4"})
    found = [(h.name, h.address, h.facts["tailscale_backend"]) for h in hosts]
    assert found == [("win", "100.64.0.71", "api")]
    with pytest.raises(DiscoveryError) as err:
        source(config | {"tailscale_api_key": "tskey-api-old"}).discover({})
    assert "401" in err.value.message and err.value.exit_code == 2


def test_online_false_targets_offline_devices_that_still_say_they_are_offline(fake_cli: Path):
    """online= decides targeting only: the device's own state is what the host says."""
    hosts = {h.name: h for h in source().discover({"tags": ["web"], "online": False})}
    old = hosts["old-box"]
    assert old.target and not old.online and old.facts["tailscale_online"] is False
    assert hosts["web-1"].target and hosts["web-1"].online
    again = {h.name: h for h in source().discover({"tags": ["web"]})}
    assert not again["old-box"].target and not again["old-box"].online


def test_tailscale_ssh_host_keys_come_from_the_cli_not_the_api(fake_cli: Path, fake_api: FakeApi):
    """The CLI reports sshHostKeys (used as known hosts); the API v2 devices list has none."""
    from nexus_tailscale.testing import SAMPLE_SSH_HOST_KEY

    (web2,) = source().discover({"hostname": "^web-2$"})
    assert web2.facts["ssh_host_keys"] == [SAMPLE_SSH_HOST_KEY + " root@web-2"]
    config = {"tailscale_api_url": fake_api.url, "tailscale_api_key": "tskey-api-test"}
    (web2,) = source(config).discover({"hostname": "^web-2$"})
    assert web2.facts["ssh_auth"] == "none" and "ssh_host_keys" not in web2.facts
