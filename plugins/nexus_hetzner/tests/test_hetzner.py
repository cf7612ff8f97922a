"""nexus-hetzner against a local server speaking the Hetzner Cloud API, through the real
``nexus cloud`` commands and the unmodified hcloud SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nexus_core.plugin import CloudError
from nexus_core.testing import NexusProject

from nexus_hetzner.provider import HetznerProvider, label_value, selector, tag_value

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
    # without the opt-in servers only power off at max_runtime, and still bill: said once, loudly
    assert "WARNING: at max_runtime (600 s) these servers only power off" in out.stderr, out
    assert "nexus cloud reap" in out.stderr and out.stderr.count("WARNING") == 1
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
        assert script.rstrip().endswith("echo hi") and "self-destruct.py" not in script
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


def test_an_unknown_location_is_named_with_the_locations_there_are(hetzner: NexusProject, hetzner_api: Any) -> None:
    hetzner.write('from nexus_core import cloud\ncloud("hetzner", location="fsn9", fallback_locations=["hel1"])\n')
    out = hetzner.run("cloud", "scale", "hetzner=1")
    assert out.code == 2 and "Hetzner Cloud has no location 'fsn9'" in out.stderr, out
    assert "locations are fsn1, hel1, nbg1" in out.stderr and "Traceback" not in out.stderr
    assert hetzner_api.live() == []  # not started in the fallback location either
    # with a cost limit the price is looked up first: it said "reports no price" (exit 1)
    hetzner.write('from nexus_core import cloud\ncloud("hetzner", location="fsn9", max_hourly_cost=1.0)\n')
    out = hetzner.run("cloud", "scale", "hetzner=1")
    assert out.code == 2 and "Hetzner Cloud has no location 'fsn9'" in out.stderr, out
    assert "no price" not in out.stderr and hetzner_api.live() == []
    hetzner.write('from nexus_core import cloud\ncloud("hetzner", server_type="ccx13", location="fsn1")\n')
    out = hetzner.run("cloud", "scale", "hetzner=1")  # a location that exists, without the type
    assert out.code == 1 and "ccx13 is not offered in fsn1" in out.stderr, out


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


# --- the self-destruct ------------------------------------------------------------------------

SCRIPT_START = "cat > /root/.config/nexus/self-destruct.py <<'NEXUS_SELF_DESTRUCT_EOF'\n"


def self_destruct_script(user_data: str) -> str:
    """The Python script the user data writes (what runs on the server)."""
    assert SCRIPT_START in user_data, user_data
    return user_data.split(SCRIPT_START, 1)[1].split("\nNEXUS_SELF_DESTRUCT_EOF\n", 1)[0] + "\n"


def run_on_server(script: Path, api: Any, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run a server's self-destruct here: the metadata service is the fake API's, and the
    poweroff is a stub (on PATH and by name), so nothing happens to this machine."""
    stub = folder / "bin"
    stub.mkdir(exist_ok=True)
    for name in ("shutdown", "poweroff"):
        (stub / name).write_text(f'#!/bin/sh\necho {name} "$@" >> {folder / "powered-off"}\n')
        (stub / name).chmod(0o755)
    env = {
        "PATH": f"{stub}:{os.environ['PATH']}",
        "NEXUS_HETZNER_METADATA_URL": api.url.removesuffix("/v1") + "/hetzner/v1/metadata",
        "NEXUS_SELF_DESTRUCT_POWEROFF": f"echo poweroff >> {folder / 'powered-off'}",
    }
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def test_a_server_deletes_itself_and_only_itself(hetzner: NexusProject, hetzner_api: Any, tmp_path: Path) -> None:
    declare(hetzner, ', self_destruct="delete", max_runtime=2')
    token, self_token = hetzner_api.token, hetzner_api.self_token
    out = hetzner.run("cloud", "scale", "hetzner=2", env={"HCLOUD_SELF_DESTRUCT_TOKEN": self_token})
    assert out.code == 0 and "WARNING" not in out.stderr, out
    # the token was checked once, on the first server, with the token itself
    checks = [(p, t) for (m, p, _), t in zip(hetzner_api.requests, hetzner_api.tokens, strict=True) if t == self_token]
    assert len(checks) == 1 and checks[0][0].startswith("/servers/"), checks
    mine, other = sorted(hetzner_api.live(), key=lambda s: int(s["id"]))
    user_data = mine["user_data"]
    lines = user_data.splitlines()
    assert lines[2].startswith("shutdown -h +1") and lines[3].startswith("# nexus-hetzner: delete this server")
    assert lines.index("set -e") > lines.index("NEXUS_SELF_DESTRUCT_EOF")  # before anything that can fail
    assert subprocess.run(["sh", "-n"], input=user_data, text=True, check=False).returncode == 0
    assert self_token in user_data and token not in user_data
    script = tmp_path / "self-destruct.py"
    script.write_text(self_destruct_script(user_data))

    hetzner_api.requests.clear()
    hetzner_api.tokens.clear()
    hetzner_api.metadata_id = str(mine["id"])
    done = run_on_server(script, hetzner_api, tmp_path)
    assert done.returncode == 0 and f"deleted server {mine['id']} ({mine['name']})" in done.stdout, done
    assert [s["id"] for s in hetzner_api.live()] == [other["id"]]
    assert [(m, p) for m, p, _ in hetzner_api.requests if m == "DELETE"] == [("DELETE", f"/servers/{mine['id']}")]
    assert set(hetzner_api.tokens) == {self_token}
    assert not (tmp_path / "powered-off").exists()

    # the metadata names another server (a wrong id): the script deletes nothing and powers off
    hetzner_api.requests.clear()
    hetzner_api.metadata_id = str(other["id"])
    done = run_on_server(script, hetzner_api, tmp_path)
    assert done.returncode == 1 and "not deleting it" in done.stdout, done
    assert [s["id"] for s in hetzner_api.live()] == [other["id"]]
    assert not [m for m, _, _ in hetzner_api.requests if m == "DELETE"]
    assert (tmp_path / "powered-off").read_text() == "poweroff\n"
    assert hetzner.run("cloud", "terminate", "--all").code == 0


def test_the_self_destruct_needs_a_usable_token(hetzner: NexusProject, hetzner_api: Any) -> None:
    declare(hetzner, ', self_destruct="delete"')
    out = hetzner.run("cloud", "scale", "hetzner=1", env={"HCLOUD_SELF_DESTRUCT_TOKEN": ""})
    assert out.code == 2 and 'self_destruct="delete" needs the API token' in out.stderr, out
    assert "HCLOUD_SELF_DESTRUCT_TOKEN" in out.stderr and "project of their own" in out.stderr
    assert not [m for m, p, _ in hetzner_api.requests if m == "POST"]  # refused before anything started
    out = hetzner.run("cloud", "scale", "hetzner=2", env={"HCLOUD_SELF_DESTRUCT_TOKEN": "another-project"})
    assert out.code == 2 and "the self-destruct token" in out.stderr and "was deleted again" in out.stderr, out
    assert hetzner_api.live() == [] and len([m for m, p, _ in hetzner_api.requests if m == "POST"]) == 1


def test_a_secret_token_in_a_command_that_decrypts_none_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HCLOUD_SELF_DESTRUCT_TOKEN", raising=False)
    settings = {"self_destruct": "delete", "self_destruct_token": "***"}
    with pytest.raises(CloudError, match=r"is a secret\(\.\.\.\), which only `nexus run` decrypts"):
        HetznerProvider.self_destruct_token(settings)
    monkeypatch.setenv("HCLOUD_SELF_DESTRUCT_TOKEN", "from-env")
    assert HetznerProvider.self_destruct_token(settings) == "from-env"
    assert HetznerProvider.self_destruct_token({**settings, "self_destruct_token": "given"}) == "given"
    assert HetznerProvider.self_destruct_token({"self_destruct": "poweroff"}) is None


def test_what_the_sdk_retried_is_not_retried_again_and_each_failure_says_what_it_is() -> None:
    """A dead API was retried by the SDK (6 tries) and then 4 times more by the core: over 400 s of
    silence. A broken answer read as '200: OK'; a lasting rate limit came without advice."""
    import requests
    from hcloud import APIException
    from nexus_core.plugin import CloudContext

    from nexus_hetzner.provider import HetznerProvider

    provider = HetznerProvider(CloudContext(config={}, settings={}))

    def failing(exc: BaseException) -> Any:
        def fn() -> None:
            raise exc

        return fn

    with pytest.raises(CloudError) as timed_out:
        provider._call("list servers", failing(requests.exceptions.ReadTimeout("read timed out")))
    assert "Hetzner Cloud did not answer (list servers)" in str(timed_out.value) and not timed_out.value.retryable
    with pytest.raises(CloudError) as broken:
        provider._call("list servers", failing(APIException(200, "OK", {"content": b'{"servers": [{"id'})))
    assert "answer to list servers could not be read (HTTP 200, 17 bytes" in str(broken.value)
    with pytest.raises(CloudError) as limited:
        provider._call("list servers", failing(APIException("rate_limit_exceeded", "limit reached", None)))
    assert not limited.value.retryable and "3,600 API requests an hour" in (limited.value.hint or "")
    with pytest.raises(CloudError) as gateway:
        provider._call("list servers", failing(APIException(502, "Bad Gateway", None)))
    assert not gateway.value.retryable  # the SDK retried it already
    with pytest.raises(CloudError) as failed:
        provider._call("list servers", failing(APIException(503, "Service Unavailable", None)))
    assert failed.value.retryable  # not one the SDK retries: the core does
