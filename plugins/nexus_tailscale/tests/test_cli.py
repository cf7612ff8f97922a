"""The issue's list through the real ``nexus`` CLI, without SSH: backends, credentials, filters,
failures with their exit codes, the cache, ``-H tag:...`` on Tailscale's tags.

The fake ``tailscale`` on PATH and the local API server (:mod:`nexus_tailscale.testing`)
stand in for the tailnet; commands that connect to nothing (``nexus hosts list``,
``nexus run --list-hosts``) or that stop at discovery show what was found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome

from nexus_tailscale.testing import SAMPLE, FakeApi, write_fake_cli

KEY = "tskey-api-test"


def nexusfile(groups: str, **config: Any) -> str:
    """A nexusfile with ``config(**config)``, the ``groups`` lines and a task ``hello`` on group ``web``."""
    head = "from nexus_core import config, discover, hosts, run, task\n"
    if config:
        head += "config(" + ", ".join(f"{k}={v!r}" for k, v in config.items()) + ")\n"
    return head + groups.strip() + '\n\n\n@task(on="web")\ndef hello():\n    run("true")\n'


def rows(out: Outcome, group: str = "web") -> dict[str, dict[str, Any]]:
    """``nexus hosts list --format json``: the hosts of ``group`` by name."""
    assert out.code == 0, out
    [found] = [g for g in out.json()["groups"] if g["group"] == group]
    return {h["name"]: h for h in found["hosts"]}


def calls(cli: Path) -> list[str]:
    """The commands the fake ``tailscale`` was asked."""
    path = cli.parent / "tailscale.json.calls"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def project(nexus_project: NexusProject, fake_cli: Path) -> NexusProject:
    """A project with the fake ``tailscale`` (the SAMPLE tailnet) first on PATH, no credentials."""
    for names in ("TS_API_KEY", "TS_OAUTH_ID", "TS_OAUTH_SECRET", "TAILSCALE_API_KEY", "TS_API_URL"):
        nexus_project.env.pop(names, None)
    return nexus_project


@pytest.fixture
def server() -> Iterator[FakeApi]:
    """The SAMPLE tailnet behind the local API server: key ``tskey-api-test``, OAuth client ``cid``."""
    with FakeApi(SAMPLE, api_keys={KEY}, oauth={"cid": "tskey-client-secret"}) as api:
        yield api


# --- backends and credentials -----------------------------------------------------------------


def test_an_oauth_client_from_the_environment_lists_the_tailnet(project: NexusProject, server: FakeApi):
    """TS_OAUTH_ID / TS_OAUTH_SECRET: a short-lived token fetched once, then the devices."""
    project.write(
        nexusfile('hosts("web", discover("tailscale", tags=["web"]))', tailscale_api_url=server.url)
    )
    env = {"TS_OAUTH_ID": "cid", "TS_OAUTH_SECRET": "tskey-client-secret"}
    found = rows(project.run("hosts", "list", "--format", "json", env=env))
    assert set(found) == {"web-1", "web-2", "test-web-3", "old-box", "stale"}
    assert {h["facts"]["tailscale_backend"] for h in found.values()} == {"api"}
    assert server.count("/oauth/token") == 1 and server.count("/devices") == 1
    _, path, auth = server.requests[-1]
    assert path.endswith("/devices?fields=all") and auth.startswith("Bearer tskey-api-oauth-")
    refused = project.run("run", "hello", env={**env, "TS_OAUTH_SECRET": "wrong"})
    assert refused.code == 2, refused
    assert "the OAuth client was refused by the token endpoint" in refused.stderr
    assert "TS_OAUTH_ID / TS_OAUTH_SECRET" in refused.stderr and "wrong" not in refused.stderr


def test_auto_takes_the_api_with_credentials_and_the_backend_can_be_forced(
    project: NexusProject, server: FakeApi, fake_cli: Path
):
    groups = 'hosts("web", discover("tailscale", tags=["web"]))'
    env = {"TS_API_KEY": KEY}
    project.write(nexusfile(groups, tailscale_api_url=server.url))
    auto = rows(project.run("hosts", "list", "--format", "json", env=env))
    assert auto["web-1"]["facts"]["tailscale_backend"] == "api" and calls(fake_cli) == []
    project.write(nexusfile(groups, tailscale_api_url=server.url, tailscale_backend="cli"))
    forced = rows(project.run("hosts", "list", "--format", "json", env=env))
    assert forced["web-1"]["facts"]["tailscale_backend"] == "cli" and calls(fake_cli) == ["status --json"]
    assert server.count("/devices") == 1  # only the auto run asked the API


def test_tailscale_cli_names_the_executable(project: NexusProject, tmp_path: Path):
    """config(tailscale_cli=PATH): a tailscale that is not on PATH."""
    elsewhere = write_fake_cli(tmp_path / "opt" / "tailscale-bin")
    project.write(nexusfile('hosts("web", discover("tailscale", tags=["db"]))', tailscale_cli=str(elsewhere)))
    found = rows(project.run("hosts", "list", "--format", "json", env={"PATH": "/usr/bin:/bin"}))
    assert list(found) == ["db-1"] and calls(elsewhere) == ["status --json"]


# --- filters and addresses ----------------------------------------------------------------------


FILTERED = {  # group: (filters, the devices they select)
    "web": ('tags=["tag:web", "prod"]', ["web-1", "web-2"]),
    "notest": ('tags=["web"], exclude_hostname=r"^test-"', ["old-box", "stale", "web-1", "web-2"]),
    "named": ('hostname=r"^web-\\d$"', ["web-1", "web-2"]),
    "left": (
        'tags=["web"], exclude=["web-1", "100.64.0.12", "test-web-3.tail1234.ts.net"]',
        ["old-box", "stale"],
    ),
    "desktops": ('os=["windows", "MACOS"]', ["laptop", "win"]),
}


def test_filters_select_the_devices(project: NexusProject, fake_cli: Path):
    """tags (all of them, 'tag:' optional), exclude_hostname and hostname (regexes), exclude
    (names, addresses, MagicDNS names), os (any case); one question for every group."""
    project.write(
        nexusfile("\n".join(f'hosts("{g}", discover("tailscale", {f}))' for g, (f, _) in FILTERED.items()))
    )
    out = project.run("hosts", "list", "--format", "json")
    assert {g: sorted(rows(out, g)) for g in FILTERED} == {g: names for g, (_, names) in FILTERED.items()}
    assert calls(fake_cli) == ["status --json"]


def test_address_chooses_what_nexus_connects_to(project: NexusProject, fake_cli: Path):
    """address="dns" (the default: the MagicDNS name), "ipv4", "ipv6"."""
    project.write(
        nexusfile(
            'hosts("web", discover("tailscale", hostname="^db-1$"))\n'
            'hosts("v4", discover("tailscale", hostname="^db-1$", address="ipv4"))\n'
            'hosts("v6", discover("tailscale", hostname="^db-1$", address="ipv6"))'
        )
    )
    out = project.run("hosts", "list", "--format", "json")
    assert rows(out, "web")["db-1"]["address"] == "db-1.tail1234.ts.net"
    assert rows(out, "v4")["db-1"]["address"] == "100.64.0.21"
    v6 = rows(out, "v6")["db-1"]
    assert ":" in v6["address"] and v6["address"] == v6["facts"]["tailscale_ipv6"]
    assert calls(fake_cli) == ["status --json"]  # three groups, one question


def test_dash_h_selects_by_tailscale_tag_and_by_device_name(project: NexusProject):
    project.write(nexusfile('hosts("web", discover("tailscale"))'))
    tagged = project.run("run", "hello", "--list-hosts", "-H", "tag:prod", "--format", "json")
    assert tagged.code == 0, tagged
    [task] = tagged.json()["tasks"]
    assert sorted(task["hosts"]) == ["db-1.tail1234.ts.net", "web-1.tail1234.ts.net", "web-2.tail1234.ts.net"]
    spelled = project.run("run", "hello", "--list-hosts", "-H", "tag:tag:prod", "--format", "json")
    assert sorted(spelled.json()["tasks"][0]["hosts"]) == sorted(task["hosts"])  # Tailscale's own spelling
    named = project.run("run", "hello", "--list-hosts", "-H", "laptop", "--format", "json")
    assert named.json()["tasks"][0]["hosts"] == ["laptop.tail1234.ts.net"]


# --- the cache ------------------------------------------------------------------------------------


def test_discovery_ttl_caches_the_answer_and_refresh_asks_again(project: NexusProject, fake_cli: Path):
    project.write(nexusfile('hosts("web", discover("tailscale", tags=["web"]))', discovery_ttl=600))
    assert project.run("hosts", "list").code == 0
    listed = project.run("run", "hello", "--list-hosts")
    assert listed.code == 0 and "web-1.tail1234.ts.net" in listed.stdout, listed
    assert calls(fake_cli) == ["status --json"]  # the run used what the listing cached
    assert project.run("hosts", "list", "--refresh").code == 0
    assert project.run("run", "hello", "--list-hosts", "--refresh").code == 0
    assert len(calls(fake_cli)) == 3
    cached = project.run("hosts", "list", "--format", "json").json()["discovery"]
    assert [d["origin"] for d in cached] == ["cache"] and len(calls(fake_cli)) == 3


def test_the_cache_is_per_tailnet_and_key(project: NexusProject, server: FakeApi):
    """Another API, tailnet or key from the environment is another cache entry: a cached answer of
    one tailnet never sends a run to the machines of another."""
    from nexus_tailscale.testing import Peer

    project.write(nexusfile('hosts("web", discover("tailscale", tags=["web"]))', discovery_ttl=600))
    home = {"TS_API_KEY": KEY, "TS_API_URL": server.url}
    assert "web-1" in rows(project.run("hosts", "list", "--format", "json", env=home))
    with FakeApi((Peer("work-db-1", "100.64.9.1", tags=("tag:web",)),), api_keys={"tskey-api-work"}) as work:
        other = {"TS_API_KEY": "tskey-api-work", "TS_API_URL": work.url}
        assert set(rows(project.run("hosts", "list", "--format", "json", env=other))) == {"work-db-1"}
        assert work.count("/devices") == 1
        listed = project.run("run", "hello", "--list-hosts", env=home)  # each from its own entry
        assert listed.code == 0 and "web-1" in listed.stdout and "work-db-1" not in listed.stdout, listed
        again = project.run("run", "hello", "--list-hosts", env=other)
        assert again.code == 0 and "work-db-1" in again.stdout and "web-1" not in again.stdout, again
        assert work.count("/devices") == 1 and server.count("/devices") == 1
    refused = project.run("hosts", "list", env={**home, "TS_API_KEY": "tskey-api-wrong"})
    assert refused.code == 2 and "refused" in refused.stderr, refused  # asked, not answered from the cache
    asked = server.count("/devices")
    tailnet = project.run("hosts", "list", env={**home, "TS_TAILNET": "other.example"})
    assert server.count("/devices") > asked, tailnet  # another tailnet: asked, not the cache's answer


def test_a_key_from_a_secret_is_never_sent_as_its_placeholder(project: NexusProject, server: FakeApi):
    """Commands that plan without running decrypt no secret: the key from secret(...) stands for
    ***, which is not sent to the API; the message says why and what to do."""
    project.env["NEXUS_MASTER_KEY"] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert project.run("secret", "set", "TS_KEY", input=KEY).code == 0
    project.write(
        nexusfile('hosts("web", discover("tailscale", tags=["web"]))', tailscale_api_url=server.url)
        .replace("config(", 'config(tailscale_api_key=secret("TS_KEY"), ')
        .replace("import config,", "import config, secret,")
    )
    out = project.run("hosts", "list")
    assert out.code == 2 and "comes from secret(...)" in out.stderr and "TS_API_KEY" in out.stderr, out
    assert server.count("/devices") == 0 and "expired" not in out.stderr
    assert project.run("hosts", "list", env={"TS_API_KEY": KEY}).code == 0  # the environment's key then
    assert project.run("run", "hello", "--list-hosts").code == 2
    assert server.requests and all("***" not in auth for _, _, auth in server.requests)


# --- failures: the message, the fix, the exit code -------------------------------------------------


def _fail(project: NexusProject, env: dict[str, str] | None = None) -> Outcome:
    out = project.run("run", "hello", env=env)
    assert "Traceback" not in out.stderr, out
    return out


@pytest.mark.parametrize(
    ("state", "code", "words"),
    [
        ("NeedsLogin", 2, ["not logged in to a tailnet", "tailscale up", "login.tailscale.com/a/"]),
        ("NeedsMachineAuth", 2, ["waits for a tailnet admin to approve it", "admin console"]),
        ("Stopped", 3, ["Tailscale is stopped on this machine", "tailscale up"]),
    ],
)
def test_not_on_a_tailnet(project: NexusProject, fake_cli: Path, state: str, code: int, words: list[str]):
    write_fake_cli(fake_cli.parent, state=state)
    project.write(nexusfile('hosts("web", discover("tailscale"))'))
    out = _fail(project)
    assert out.code == code, out
    for word in words:
        assert word in out.stderr, (word, out)


def test_no_tailscale_and_no_credentials(project: NexusProject, tmp_path: Path):
    project.write(nexusfile('hosts("web", discover("tailscale"))'))
    out = _fail(project, env={"PATH": str(tmp_path / "empty")})
    assert out.code == 2, out
    assert "the tailscale CLI is not installed" in out.stderr and "TS_API_KEY" in out.stderr


@pytest.mark.parametrize(
    ("status", "extra", "code", "words"),
    [
        (401, {}, 2, ["401 Unauthorized", "90 days", "TS_OAUTH_ID"]),
        (403, {}, 2, ["403 Forbidden", "devices:core:read"]),
        (429, {"retry_after": "120"}, 3, ["429 Too Many Requests; retry after 120 s", "run again later"]),
        (503, {"times": 2}, 3, ["the Tailscale API failed (HTTP 503)", "status.tailscale.com"]),
    ],
)
def test_api_failures(project: NexusProject, server: FakeApi, status: int, extra: dict[str, Any], code: int,
                      words: list[str]):  # fmt: skip
    server.fail_next(status, **extra)
    project.write(nexusfile('hosts("web", discover("tailscale"))', tailscale_api_url=server.url,
                            tailscale_api_attempts=2))  # fmt: skip
    out = _fail(project, env={"TS_API_KEY": KEY})
    assert out.code == code, out
    for word in words:
        assert word in out.stderr, (word, out)
    assert KEY not in out.stderr + out.stdout
    # the API's own words, on lines of their own, stay inside the error's indented block
    # (before it, a "Note:" line per retry)
    assert all(line.startswith(("Error:", "  ", "Note: ")) for line in out.stderr.splitlines() if line), out


def test_an_unknown_tailnet(project: NexusProject, server: FakeApi):
    project.write(nexusfile('hosts("web", discover("tailscale"))', tailscale_api_url=server.url,
                            tailscale_tailnet="nope.example"))  # fmt: skip
    out = _fail(project, env={"TS_API_KEY": KEY})
    assert out.code == 2 and "tailnet 'nope.example' not found (404)" in out.stderr, out


def test_an_api_that_does_not_answer_fails_once_for_every_group(project: NexusProject, server: FakeApi):
    """Two groups, one dead API: its attempts are made once, both groups fail with its message."""
    server.fail_next(503, times=20)
    project.write(
        nexusfile(
            'hosts("web", discover("tailscale", tags=["web"]))\n'
            'hosts("db", discover("tailscale", tags=["db"]))\n'
            '@task(on="db")\ndef db():\n    run("true")',
            tailscale_api_url=server.url,
        )
    )
    out = project.run("run", "hello", "db", env={"TS_API_KEY": KEY})
    assert out.code == 3, out
    assert server.count("/devices") == 3  # tailscale_api_attempts (3), not 3 per group
    assert "the Tailscale API failed (HTTP 503)" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("the Tailscale API failed (HTTP 503)") == 1, out  # not once per group
    # the retries are said before the failure too (they were said only when a retry succeeded)
    assert out.stderr.count("Note: tailscale: the API failed (HTTP 503): asking again") == 2, out
    assert out.stderr.index("(attempt 3 of 3)") < out.stderr.index("Host discovery failed"), out
    server.stop()
    dead = project.run("run", "hello", env={"TS_API_KEY": KEY})
    assert dead.code == 3, dead
    assert "does not answer" in dead.stderr and "tailscale_backend='cli'" in dead.stderr


def test_a_rate_limit_waited_out_is_a_note_and_the_run_goes_on(project: NexusProject, server: FakeApi):
    server.fail_next(429, retry_after="1")
    project.write(nexusfile('hosts("web", discover("tailscale", tags=["db"]))', tailscale_api_url=server.url))
    out = project.run("run", "hello", "--list-hosts", env={"TS_API_KEY": KEY})
    assert out.code == 0, out
    assert "db-1.tail1234.ts.net" in out.stdout
    assert (
        "tailscale: the API rate-limited this run (429, Retry-After 1 s): asking again in 1.0 s" in out.stderr
    )
    assert server.count("/devices") == 2


def test_json_errors_are_one_document(project: NexusProject, fake_cli: Path):
    """--format json: the failure is still reported with its fix, and no traceback."""
    write_fake_cli(fake_cli.parent, mode="daemon-down")
    project.write(nexusfile('hosts("web", discover("tailscale"))'))
    out = project.run("hosts", "list", "--format", "json")
    assert out.code == 3, out
    text = out.stdout + out.stderr
    assert "tailscaled is not running" in text and "Traceback" not in text
    if out.stdout.strip():
        json.loads(out.stdout.strip().splitlines()[-1])


def test_filter_mistakes_are_reported_together_without_asking_the_tailnet(
    project: NexusProject, fake_cli: Path
):
    project.write(
        nexusfile(
            'hosts("web", discover("tailscale", tag=["web"], adress="ipv4"))\n'
            'hosts("db", discover("tailscale", hostname="("))\n'
            'hosts("ci", discover("tailscale", address="ipv5"))\n'
            'hosts("ops", discover("tailscale", online="yes"))'
        )
    )
    for command in (("validate", "--format", "json"), ("run", "hello", "--format", "json")):
        out = project.run(*command)
        assert out.code == 2, out
        problems = json.loads(out.stdout.strip().splitlines()[-1])["problems"]
        hints = {p["hint"] for p in problems}
        assert {"did you mean 'tags'?", "did you mean 'address'?"} <= hints, problems
        text = " ".join(p["message"] for p in problems)
        assert (
            "hostname='(' is not a valid regular expression" in text and "online" in text and "ipv5" in text
        )
    assert calls(fake_cli) == []  # validation never asks the tailnet
