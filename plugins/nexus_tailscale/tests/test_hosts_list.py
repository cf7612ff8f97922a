"""``nexus hosts list`` and ``nexus run -n`` on a tailnet: each device's own online state, and
whether the run targets it, through the real CLI and the fake ``tailscale`` on PATH."""

from __future__ import annotations

from pathlib import Path

from nexus_core.testing import NexusProject

NEXUSFILE = """
from nexus_core import discover, hosts, run, task

hosts("web", discover("tailscale", tags=["web"]{extra}))


@task(on="web")
def hello():
    run("true")
"""


def listed(project: NexusProject, extra: str = "") -> dict[str, dict[str, object]]:
    project.write(NEXUSFILE.format(extra=extra))
    out = project.run("hosts", "list", "--format", "json")
    assert out.code == 0, out
    return {h["name"]: h for h in out.json()["groups"][0]["hosts"]}


def test_offline_devices_are_listed_offline_and_not_targeted(nexus_project: NexusProject, fake_cli: Path):
    rows = listed(nexus_project)
    state = {name: (h["online"], h["targeted"]) for name, h in rows.items()}
    assert state == {
        "old-box": (False, False),
        "stale": (False, False),  # node key expired
        "test-web-3": (True, True),
        "web-1": (True, True),
        "web-2": (True, True),
    }
    text = nexus_project.run("hosts", "list").stdout
    assert "web (5 hosts, 2 offline)" in text
    old = next(line for line in text.splitlines() if "old-box" in line)
    assert old.endswith("offline (not targeted)")


def test_offline_devices_targeted_with_online_false_still_show_offline(
    nexus_project: NexusProject, fake_cli: Path
):
    """The bug this guards: a targeted offline device was listed as online."""
    rows = listed(nexus_project, ", online=False")
    assert (rows["old-box"]["online"], rows["old-box"]["targeted"]) == (False, True)
    assert rows["old-box"]["facts"]["online"] is False
    assert (rows["web-1"]["online"], rows["web-1"]["targeted"]) == (True, True)
    text = nexus_project.run("hosts", "list").stdout
    assert "web (5 hosts, 2 offline (2 targeted))" in text
    old = next(line for line in text.splitlines() if "old-box" in line)
    assert old.endswith("offline (targeted: its source was asked to)")
    plan = nexus_project.run("run", "hello", "-n")  # exit 3: the pre-flight cannot resolve the fake names
    assert any(
        "old-box" in line and "offline: targeted as asked" in line for line in plan.stdout.splitlines()
    )
    assert "2 offline hosts targeted as asked (old-box, stale)" in plan.stderr + plan.stdout


def test_an_online_device_without_the_address_asked_for_is_online_but_not_targeted(
    nexus_project: NexusProject, fake_cli: Path
):
    import json

    data = json.loads((fake_cli.parent / "tailscale.json").read_text())
    for peer in data["status"]["Peer"].values():
        peer["TailscaleIPs"] = peer["TailscaleIPs"][:1]  # no IPv6 anywhere
    (fake_cli.parent / "tailscale.json").write_text(json.dumps(data))
    rows = listed(nexus_project, ', address="ipv6"')
    assert (rows["web-1"]["online"], rows["web-1"]["targeted"]) == (True, False)
    text = nexus_project.run("hosts", "list").stdout
    web1 = next(line for line in text.splitlines() if line.strip().startswith("web-1"))
    assert "not targeted: no Tailscale IPv6 address" in web1


def test_a_device_nexus_cannot_connect_to_is_listed_with_why(nexus_project: NexusProject, fake_cli: Path):
    """A device whose MagicDNS name is no host name was left out of the list without a word
    (a run on it stops): it is listed, with the reason."""
    from nexus_tailscale.testing import SAMPLE, Peer, write_fake_cli

    write_fake_cli(fake_cli.parent, (*SAMPLE, Peer("héllo", "100.64.0.91", tags=("tag:web",))))
    rows = listed(nexus_project)
    assert "web-1" in rows and "problem" not in rows["web-1"]
    odd = next(h for h in rows.values() if "héllo" in h["host"])
    assert odd["problem"] and odd["targeted"], odd
    text = nexus_project.run("hosts", "list").stdout
    line = next(line for line in text.splitlines() if "héllo" in line)
    assert "unusable: " in line, text
    run = nexus_project.run("run", "hello", "--list-hosts")  # a run stops, saying how to leave it out
    assert run.code == 2 and "address=" in run.stderr and "where=" in run.stderr, run


def test_h_naming_an_offline_device_says_it_is_not_targeted(nexus_project: NexusProject, fake_cli: Path):
    """`-H old-box` (listed offline by `nexus hosts list`) said it matched no host or group."""
    nexus_project.write(NEXUSFILE.format(extra=""))
    out = nexus_project.run("run", "hello", "--list-hosts", "-H", "old-box")
    assert out.code == 2, out
    assert "'old-box' names discovered hosts this run does not target (old-box: offline" in out.stderr, out
    assert "nexus hosts list" in out.stderr
    typo = nexus_project.run("run", "hello", "--list-hosts", "-H", "wbe-1")
    assert typo.code == 2 and "'wbe-1' matches no host or group" in typo.stderr, typo
