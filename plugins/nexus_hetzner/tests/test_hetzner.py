"""nexus-hetzner against a local server speaking the Hetzner Cloud API, through the real
``nexus cloud`` commands and the unmodified hcloud SDK."""

from __future__ import annotations

import json
from typing import Any

from nexus_core.testing import NexusProject

from nexus_hetzner.provider import label_value, selector, tag_value

BASE = 'from nexus_core import cloud\ncloud("hetzner", server_type="cx22", location="fsn1"{extra})\n'


def declare(project: NexusProject, extra: str = "") -> None:
    project.write(BASE.format(extra=extra))


def test_labels_round_trip_and_select() -> None:
    for value in ("true", "manual", "tls://127.0.0.1:9", "host:123", "burst,gpu", "a_b", "", "-x-"):
        encoded = label_value(value)
        assert len(encoded) <= 63 and tag_value(encoded) == value, (value, encoded)
    assert label_value("tls://127.0.0.1:9") == "x_tls_3A_2F_2F127.0.0.1_3A9_x"
    long = "tls://" + "c" * 80 + ":8786"
    assert label_value(long).startswith("h-") and len(label_value(long)) <= 63
    assert selector({"nexus:managed": "true", "team": "ml"}) == "nexus/managed=true,team=ml"


def test_servers_with_labels_user_data_prices_status_and_terminate(hetzner: NexusProject, hetzner_api: Any) -> None:
    declare(hetzner, ', tags={"team": "ml"}, max_runtime=600, user_data="echo hi", ssh_keys=["me"]')
    out = hetzner.run("cloud", "scale", "hetzner=2")
    assert out.code == 0 and "hetzner: 0 -> 2 instance(s), started hetzner-" in out.stdout, out
    servers = hetzner_api.live()
    assert len(servers) == 2
    for s in servers:
        labels = s["labels"]
        assert labels["nexus/managed"] == "true" and labels["nexus/run"] == "manual" and labels["team"] == "ml"
        assert labels["nexus/cluster"] == "x_tls_3A_2F_2F127.0.0.1_3A9_x" and labels["nexus/provider"] == "hetzner"
        assert s["location"]["name"] == "fsn1" and s["server_type"]["name"] == "cx22"
        assert s["image_requested"] == "ubuntu-24.04" and s["ssh_keys_requested"] == ["me"]
        script = s["user_data"]
        assert script.splitlines()[2].startswith("shutdown -h +10")  # the self-destruct comes first
        assert "BEGIN CERTIFICATE" in script and "--join 127.0.0.1:9" in script
        assert script.rstrip().endswith("echo hi")
    selectors = [q for m, p, q in hetzner_api.requests if m == "GET" and p == "/servers"]
    assert selectors  # listing went through a label selector (the query string)
    status = hetzner.run("cloud", "status", "--format", "json")
    rows = json.loads(status.stdout)["instances"]
    assert len(rows) == 2 and {r["zone"] for r in rows} == {"fsn1"}, status
    # fsn1's gross price of cx22 (0.006 net + 19 %) at the default 1.2 dollars per euro
    assert {round(r["hourly_price"], 6) for r in rows} == {round(0.006 * 1.19 * 1.2, 6)}
    assert {r["tags"]["nexus:cluster"] for r in rows} == {"tls://127.0.0.1:9"}
    assert hetzner.run("cloud", "terminate", "--all").code == 0
    assert hetzner_api.live() == []


def test_resource_unavailable_falls_back_to_the_next_location(hetzner: NexusProject, hetzner_api: Any) -> None:
    declare(hetzner, ', fallback_locations=["nbg1", "hel1"]')
    hetzner_api.sold_out.update({"fsn1": 5, "nbg1": 5})
    out = hetzner.run("cloud", "scale", "hetzner=1")
    assert out.code == 0, out
    assert "no capacity in fsn1" in out.stderr and "no capacity in nbg1" in out.stderr
    (made,) = hetzner_api.live()
    assert made["location"]["name"] == "hel1"
    hetzner.run("cloud", "terminate", "--all")

    declare(hetzner, ', fallback_locations=["nbg1"]')
    hetzner_api.sold_out.update({"fsn1": 5, "nbg1": 5})
    out = hetzner.run("cloud", "scale", "hetzner=1")
    assert out.code == 1 and "no Hetzner server could start: fsn1:" in out.stderr, out
    assert "fallback_locations" in out.stderr and hetzner_api.live() == []


def test_cost_limit_uses_the_worst_location_price_and_unknown_types_are_named(
    hetzner: NexusProject, hetzner_api: Any
) -> None:
    # worst case over fsn1 and hel1: hel1's 0.008 net -> 0.011424 $/h; 0.025 allows two
    declare(hetzner, ', fallback_locations=["hel1"], max_hourly_cost=0.025')
    out = hetzner.run("cloud", "scale", "hetzner=5")
    assert out.code == 1 and "hetzner: 0 -> 2 instance(s)" in out.stdout and "max_hourly_cost" in out.stderr, out
    hetzner.run("cloud", "terminate", "--all")
    hetzner.write('from nexus_core import cloud\ncloud("hetzner", server_type="cx99")\n')
    out = hetzner.run("cloud", "scale", "hetzner=1")
    assert out.code == 2 and "Hetzner Cloud has no server type 'cx99'" in out.stderr and "cx22" in out.stderr, out


def test_rate_limits_are_retried_and_the_token_is_explained(hetzner: NexusProject, hetzner_api: Any) -> None:
    declare(hetzner)
    hetzner_api.throttled["GET /servers"] = 1
    out = hetzner.run("cloud", "status", "--format", "json")
    assert out.code == 0 and json.loads(out.stdout)["instances"] == [], out
    assert hetzner_api.throttled["GET /servers"] == 0  # the 429 was answered, and retried
    out = hetzner.run("cloud", "status", env={"HCLOUD_TOKEN": "wrong"})
    assert out.code == 2 and "Hetzner Cloud rejected the token from HCLOUD_TOKEN (unauthorized" in out.stderr, out
    out = hetzner.run("cloud", "status", env={"HCLOUD_TOKEN": ""})
    assert out.code == 2 and "no Hetzner Cloud API token: looked in HCLOUD_TOKEN" in out.stderr, out
    out = hetzner.run("cloud", "status", env={"HCLOUD_ENDPOINT": "http://127.0.0.1:9/v1"})
    assert out.code == 3 and "Hetzner Cloud could not be reached to list servers" in out.stderr, out
