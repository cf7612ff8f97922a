"""Host discovery: the host-source hook family, ``discover(...)``, inventories and ``nexus hosts``.

Plugins here are fake *installed* distributions (``tests/plugin_fixtures.py``) run through
the real ``nexus`` CLI, as in ``test_plugins.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

from nexus_core.api import DiscoveredHost, DiscoveryError, HostSource, HostSourceContext
from nexus_core.kinds import kind
from nexus_core.options import Option
from nexus_core.registry import Registry, register


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    return Logs(tmp_path / "imports.log", tmp_path / "runs.log")


@pytest.fixture
def project(nexus_project, site, logs):
    """A nexus project whose subprocesses see the fake distributions in ``site``."""
    site.mkdir()
    nexus_project.env.update(plugin_env(site, logs))
    return nexus_project


# --- the interface ----------------------------------------------------------------------------


class Pets(HostSource):
    """A host source as a plugin writes one."""

    filters = (Option("kind", (str,), None, "which pets"),)

    def discover(self, filters):
        if filters.get("kind") == "none":
            raise DiscoveryError("no pets today", "adopt one")
        return [DiscoveredHost("cat.lan", tags=("indoor",), facts={"legs": 4}), DiscoveredHost("dog.lan", online=False)]


def test_a_host_source_class_registers_by_name_and_discovers():
    registry = Registry()
    Pets.name = "pets"
    assert register(registry, kind("host source"), "nexus-pets", Pets) == ""
    assert "pets" in registry.host_sources
    assert registry.host_sources.entry("pets").detail("filters")[0].name == "kind"
    source = registry.host_sources["pets"](HostSourceContext(config={}, root="."))
    found = source.discover({})
    assert [h.address for h in found] == ["cat.lan", "dog.lan"]
    assert [h.online for h in found] == [True, False]
    with pytest.raises(DiscoveryError) as err:
        source.discover({"kind": "none"})
    assert err.value.hint == "adopt one" and err.value.exit_code == 3


def test_a_discovered_host_round_trips_through_plain_data():
    host = DiscoveredHost(
        "web-1.tail.ts.net", user="deploy", port=2222, tags=("tag:web",), os="linux",
        addresses=("100.64.0.1",), facts={"tailscale": {"id": "n1"}}, vars={"role": "primary"}, name="web-1",
    )  # fmt: skip
    assert DiscoveredHost.from_dict(host.to_dict()).to_dict() == host.to_dict()


def test_a_discovered_host_nexus_cannot_use_is_named_with_what_is_wrong():
    from nexus_core.discovery import host_spec
    from nexus_core.model import SourceSpec

    with pytest.raises(DiscoveryError) as err:
        host_spec(DiscoveredHost("100.64.0.9", tags=("tag:bad tag",)), SourceSpec("tailscale", {}))
    assert str(err.value).startswith("discover('tailscale') found host '100.64.0.9', which Nexus cannot use: tag ")
    assert err.value.exit_code == 2


def test_the_plans_discovery_record_is_built_when_first_read(monkeypatch: pytest.MonkeyPatch):
    from nexus_core.discovery import Found, Records
    from nexus_core.model import SourceSpec

    built: list[str] = []
    to_dict = DiscoveredHost.to_dict
    monkeypatch.setattr(DiscoveredHost, "to_dict", lambda h: built.append(h.address) or to_dict(h))
    found = Found(SourceSpec("pets", {"kind": "cat"}), [DiscoveredHost("cat.lan", tags=("indoor",))], 12.0)
    records = Records([found])
    assert len(records) == 1 and records and built == []  # --list-hosts reads no more than this
    assert records == (found.to_dict(),) and built == ["cat.lan", "cat.lan"]
    assert [r["hosts"][0]["address"] for r in records] == ["cat.lan"] and records[0]["call"] == found.spec.describe()
    assert built == ["cat.lan", "cat.lan"] and not Records([])


def test_a_registration_with_a_filter_detail_needs_no_import():
    from nexus_core.kinds import Registration

    registry = Registry()
    reg = Registration("nowhere", "nexus_not_installed_anywhere:Source", {"filters": (Option("x", (str,)),)})
    assert register(registry, kind("host source"), "nexus-nowhere", reg) == ""
    assert [o.name for o in registry.host_sources.entry("nowhere").detail("filters")] == ["x"]
    assert "cannot be loaded" in registry.host_sources.problem("nowhere")


@pytest.mark.hook("nexus_host_sources")
def test_a_plugin_host_source_is_registered_from_its_entry_point(project, site):
    """nexus_host_sources: an installed plugin's source is known by name (``nexus plugins``)."""
    make_dist(site, features=("host_source",))
    out = project.run("plugins", "--format", "json", env={"NEXUS_LOAD_PLUGINS": "nexus-fake"})
    assert out.code == 0, out
    row = next(p for p in out.json()["plugins"] if p["distribution"] == "nexus-fake")
    assert row["hooks"] == ["nexus_host_sources"]
    assert out.json()["errors"] == []


# --- discover(...) through the real CLI -------------------------------------------------------

FEATURES = ("executor", "options", "host_source")

SOURCE_PROJECT = """
from nexus_core import config, current_host, discover, host_tags, hosts, run, task

config(fake_endpoint="lab")
hosts("nodes", discover("fakes", prefix="n"))
hosts("blue", discover("fakes", prefix="n"), where=lambda h: "blue" in h.tags)
hosts("mixed", discover("fakes", prefix="m"), "fake://extra")


@task(on="nodes")
def deploy():
    h = current_host()
    run(f"echo {h.facts['name']} {h.facts.get('rack', '-')} {h.facts['os']} {','.join(host_tags())}")


@task(on="blue")
def paint():
    run("echo blue")


@task(on="mixed")
def both():
    run("echo both")
"""


def setup_source(project, site, source: str = SOURCE_PROJECT) -> None:
    make_dist(site, features=FEATURES)
    project.write(source)
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake"


@pytest.mark.hook("nexus_host_sources")
def test_discovered_hosts_are_targets_with_attributes_and_offline_ones_are_not(project, site, logs):
    """nexus_host_sources: a plugin's source gives a group its hosts, attributes included."""
    setup_source(project, site)
    out = project.run("run", "deploy", "--format", "json")
    assert out.code == 0, out
    ran = {r["host"]: r["cmd"] for r in logs.records("run")}
    assert ran == {"n-1": "echo n-one r1 linux blue", "n-2": "echo n-2 - linux green"}  # n-3 is offline
    assert "1 offline host not targeted (n-3)" in out.stderr
    assert [r["filters"] for r in logs.records("discover")] == [{"prefix": "n"}]  # one discovery per run
    assert logs.records("discover")[0]["endpoint"] == "lab"  # the source sees config(...)


def test_where_groups_discovered_hosts_by_attribute(project, site, logs):
    setup_source(project, site)
    out = project.run("run", "paint")
    assert out.code == 0, out
    assert [r["host"] for r in logs.records("run")] == ["n-1"]


def test_discovered_and_literal_hosts_mix_in_one_group(project, site, logs):
    setup_source(project, site)
    out = project.run("run", "both")
    assert out.code == 0, out
    assert sorted(r["host"] for r in logs.records("run")) == ["extra", "m-1", "m-2"]


def test_only_the_sources_of_the_tasks_being_run_are_asked(project, site, logs):
    setup_source(project, site)
    assert project.run("run", "deploy").code == 0
    assert {r["filters"]["prefix"] for r in logs.records("discover")} == {"n"}


def test_unknown_source_says_what_to_install(project, site):
    # hetzner: nexus-hetzner is a cloud provider and registers no host source, so the hint
    # must not send the user to it (every host-source package known to the core is installed
    # in this repository; tests/test_secrets.py checks the "pip install PACKAGE" form with sops)
    setup_source(project, site, SOURCE_PROJECT.replace('discover("fakes", prefix="n"))', 'discover("hetzner"))'))
    out = project.run("run", "deploy")
    assert out.code == 2, out
    assert "no 'hetzner' host source is installed" in out.stderr
    assert "install a plugin providing the 'hetzner' host source" in out.stderr
    assert "nexus-hetzner" not in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_filter_gets_a_did_you_mean(project, site, logs):
    setup_source(project, site, SOURCE_PROJECT.replace('prefix="n"))\nhosts("blue"', 'prefx="n"))\nhosts("blue"'))
    out = project.run("validate", "--format", "json")
    assert out.code == 2, out
    problem = next(p for p in out.json()["problems"] if p["code"] == "unknown-option")
    assert "has no filter 'prefx'" in problem["message"] and problem["hint"] == "did you mean 'prefix'?"
    assert problem["line"] == 4
    assert logs.records("discover") == []  # validation never discovers


def test_a_filter_of_the_wrong_type_says_what_it_takes(project, site):
    setup_source(project, site, SOURCE_PROJECT.replace('prefix="n"))\nhosts("blue"', 'prefix=3))\nhosts("blue"'))
    out = project.run("run", "deploy")
    assert out.code == 2, out
    assert "prefix must be a string, not int (3)" in out.stderr


def test_a_source_that_cannot_answer_stops_the_run_with_its_fix(project, site, logs):
    setup_source(project, site, SOURCE_PROJECT.replace('prefix="n"))\nhosts("blue"', 'prefix="broken"))\nhosts("blue"'))
    out = project.run("run", "deploy")
    assert out.code == 3, out
    assert "Host discovery failed: discover('fakes', prefix='broken')" in out.stderr
    assert "the fake inventory is broken" in out.stderr and "fix the fake inventory" in out.stderr
    assert logs.records("run") == []
    listed = project.run("hosts", "list", "nodes", "--format", "json")
    assert listed.code == 3, listed
    assert "the fake inventory is broken" in listed.stdout + listed.stderr and "Traceback" not in listed.stderr


def test_validate_checks_sources_without_discovering(project, site, logs):
    setup_source(project, site)
    out = project.run("validate")
    assert out.code == 0, out
    assert logs.records("discover") == []


def test_discovery_is_cached_for_the_ttl_and_refresh_bypasses_it(project, site, logs):
    setup_source(project, site, SOURCE_PROJECT.replace('config(fake_endpoint="lab")', "config(discovery_ttl=600)"))
    assert project.run("run", "deploy").code == 0
    assert project.run("run", "deploy").code == 0
    assert len(logs.records("discover")) == 1  # the second run used the cache
    assert len([r for r in logs.records("run")]) == 4
    assert project.run("run", "deploy", "--refresh").code == 0
    assert len(logs.records("discover")) == 2


def test_a_cache_entry_from_the_future_is_not_reused(project, site, logs):
    """A clock that went back (a Raspberry Pi before its NTP sync) made a cached answer look
    fresh for the ttl plus the clock's error: a day behind, a day of stale hosts."""
    import sqlite3

    setup_source(project, site, SOURCE_PROJECT.replace('config(fake_endpoint="lab")', "config(discovery_ttl=600)"))
    assert project.run("run", "deploy").code == 0
    db = sqlite3.connect(Path(project.env["XDG_STATE_HOME"]) / "nexus" / "state.db")
    with db:
        assert db.execute("UPDATE discovery_cache SET at = at + 86400").rowcount == 1
    db.close()
    assert project.run("run", "deploy").code == 0
    assert len(logs.records("discover")) == 2


def test_without_a_ttl_every_run_discovers(project, site, logs):
    setup_source(project, site)
    for _ in range(2):
        assert project.run("run", "deploy").code == 0
    assert len(logs.records("discover")) == 2


def test_dry_run_shows_where_each_discovered_host_came_from(project, site, logs):
    setup_source(project, site)
    out = project.run("run", "deploy", "-n")
    assert out.code == 0, out
    assert "HOST DISCOVERY" in out.stdout
    assert "discover('fakes', prefix='n')  (line 4, discovered now: 3 hosts)" in out.stdout
    assert re.search(r"n-1 +\(n-one; fake://n-1; tags: blue; os: linux\)", out.stdout), out.stdout
    assert re.search(r"n-3 .*offline: not targeted", out.stdout)
    js = project.run("run", "deploy", "-n", "--format", "json").json()
    found = js["plan"]["discovery"]
    assert [d["call"] for d in found] == ["discover('fakes', prefix='n')"]
    assert [(h["address"], h["online"]) for h in found[0]["hosts"]] == [("n-1", True), ("n-2", True), ("n-3", False)]
    assert logs.records("run") == []


def test_limit_selects_discovered_hosts_by_tag_and_by_their_own_name(project, site, logs):
    setup_source(project, site)
    assert project.run("run", "deploy", "-H", "tag:green").code == 0
    assert [r["host"] for r in logs.records("run")] == ["n-2"]
    assert project.run("run", "deploy", "-H", "n-one").code == 0  # the source's name for n-1
    assert [r["host"] for r in logs.records("run")][1:] == ["n-1"]
    out = project.run("run", "deploy", "-H", "tag:purple")
    assert out.code == 2 and "'tag:purple' matches no host or group" in out.stderr


def test_hosts_list_shows_groups_sources_tags_and_offline_hosts(project, site):
    setup_source(project, site)
    out = project.run("hosts", "list")
    assert out.code == 0, out
    assert "nodes (3 hosts, 1 offline)" in out.stdout
    assert re.search(r"n-one +fake://n-1  discover\('fakes', prefix='n'\)  tags: blue  os: linux", out.stdout)
    assert re.search(r"n-3 .*offline \(not targeted\)", out.stdout)
    assert "blue (2 hosts, 1 offline)" in out.stdout  # where= keeps n-1 and the offline n-3
    js = project.run("hosts", "list", "mixed", "--format", "json").json()
    assert [g["group"] for g in js["groups"]] == ["mixed"]
    rows = js["groups"][0]["hosts"]
    assert [(h["name"], h["source"], h["online"]) for h in rows] == [
        ("m-one", "discover('fakes', prefix='m')", True),
        ("m-2", "discover('fakes', prefix='m')", True),
        ("m-3", "discover('fakes', prefix='m')", False),
        ("extra", "nexusfile", True),
    ]
    bad = project.run("hosts", "list", "nodez")
    assert bad.code == 2 and "Did you mean 'nodes'?" in bad.stderr


def test_hosts_help_lists_list_and_the_plugin_subcommands():
    out = subprocess.run([sys.executable, "-m", "nexus_core", "hosts", "--help"], capture_output=True, text=True,
                         check=False, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "list" in out.stdout
    if "nexus-ssh" in subprocess.run([sys.executable, "-m", "nexus_core", "version"], capture_output=True,
                                     text=True, check=False).stdout:  # fmt: skip
        assert "scan" in out.stdout and "verify" in out.stdout


# --- inventory files ----------------------------------------------------------------------------


def uses_inventory(path: str) -> str:
    """A nexusfile that declares the groups of the inventory at ``path`` and has one local task."""
    return f'from nexus_core import inventory, run, task\ninventory("{path}")\n\n@task\ndef t():\n    run("true")\n'


TOML_INVENTORY = """
user = "deploy"
transport = "fake"
vars = { app = "shop" }

[groups.web]
hosts = ["web-[1:2]"]
tags = ["frontend"]
vars = { tier = "front" }

[groups.db]
hosts = ["db-1"]
port = 2222

[groups.prod]
children = ["web", "db"]
vars = { tier = "any", env = "prod" }

[hosts.web-1]
address = "10.0.0.11"
tags = ["canary"]
vars = { role = "primary" }
"""

INVENTORY_PROJECT = """
from nexus_core import current_host, host_var, inventory, run, task

inventory("{path}")


@task(on="prod")
def deploy():
    h = current_host()
    run(f"echo {{h.facts['name']}} {{h.user}} {{h.port}} {{host_var('tier')}} {{host_var('env')}} "
        f"{{host_var('app')}} {{host_var('role', '-')}} {{','.join(h.tags)}}")
"""


def test_inventory_declares_its_groups_with_inherited_settings_and_vars(project, site, logs):
    make_dist(site, features=FEATURES)
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake"
    project.write(TOML_INVENTORY, "inventory.toml")
    project.write(INVENTORY_PROJECT.format(path="inventory.toml"))
    out = project.run("run", "deploy")
    assert out.code == 0, out
    ran = {r["host"]: r["cmd"] for r in logs.records("run")}
    assert ran == {
        "10.0.0.11": "echo web-1 deploy None front prod shop primary frontend,canary",
        "web-2": "echo web-2 deploy None front prod shop - frontend",
        "db-1": "echo db-1 deploy 2222 any prod shop - ",
    }
    assert project.run("run", "deploy", "-H", "web-1", "-q").code == 0  # its inventory name selects it
    assert [r["host"] for r in logs.records("run")][3:] == ["10.0.0.11"]


def test_discover_file_yields_one_group_or_every_host(project, site, logs):
    make_dist(site, features=FEATURES)
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake"
    project.write(TOML_INVENTORY, "inventory.toml")
    project.write("""
        from nexus_core import discover, hosts, run, task

        hosts("dbs", discover("file", path="inventory.toml", group="db"))
        hosts("everyone", discover("file", path="inventory.toml"))

        @task(on="dbs")
        def one():
            run("echo db")

        @task(on="everyone")
        def every():
            run("echo all")
    """)
    assert project.run("run", "one").code == 0
    assert [r["host"] for r in logs.records("run")] == ["db-1"]
    assert project.run("run", "every").code == 0
    assert sorted(r["host"] for r in logs.records("run")[1:]) == ["10.0.0.11", "db-1", "web-2"]
    project.write(project.nexusfile.read_text().replace('group="db"', 'group="dbb"'))
    out = project.run("run", "one")
    assert out.code == 2 and "has no group 'dbb'" in out.stderr and "did you mean 'db'?" in out.stderr


ANSIBLE_INI = """
# an Ansible inventory
lonely ansible_host=192.0.2.9

[web]
web-[01:02].example.com ansible_user=deploy
web-03.example.com ansible_port=2222 ansible_user=root

[db]
db-1 ansible_host=192.0.2.20

[prod:children]
web
db

[prod:vars]
ansible_connection=fake
tier=prod
"""

ANSIBLE_YAML = """
all:
  vars:
    ansible_connection: fake
  hosts:
    lonely:
      ansible_host: 192.0.2.9
  children:
    web:
      hosts:
        web-[01:02].example.com:
          ansible_user: deploy
        web-03.example.com:
          ansible_port: 2222
          ansible_user: root
    db:
      hosts:
        db-1:
          ansible_host: 192.0.2.20
    prod:
      children:
        web:
        db:
      vars:
        tier: prod
"""


@pytest.mark.parametrize(("name", "text"), [("hosts.ini", ANSIBLE_INI), ("hosts.yml", ANSIBLE_YAML)])
def test_an_ansible_inventory_works_on_day_one(project, site, logs, name, text):
    make_dist(site, features=FEATURES)
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake"
    project.write(text, name)
    project.write(f"""
        from nexus_core import current_host, host_var, inventory, run, task

        inventory("{name}")

        @task(on="prod")
        def deploy():
            h = current_host()
            run(f"echo {{h.user}}@{{h.name}}:{{h.port}} {{host_var('tier')}}")
    """)
    out = project.run("run", "deploy")
    assert out.code == 0, out
    assert sorted(r["cmd"] for r in logs.records("run")) == [
        "echo None@192.0.2.20:None prod",
        "echo deploy@web-01.example.com:None prod",
        "echo deploy@web-02.example.com:None prod",
        "echo root@web-03.example.com:2222 prod",
    ]
    listed = project.run("hosts", "list", "--format", "json").json()
    groups = {g["group"]: [h["name"] for h in g["hosts"]] for g in listed["groups"]}
    assert groups["web"] == ["web-01.example.com", "web-02.example.com", "web-03.example.com"]
    assert sorted(groups["all"]) == sorted(["lonely", *groups["web"], "db-1"])


def test_every_mistake_of_an_inventory_is_reported_at_once_with_its_line(project):
    project.write(
        """
        [web]
        web-1
        web-1
        [web:oops]
        x
        [db]
        db-1 ansible_port=notaport
        db-2 novalue
    """,
        "hosts.ini",
    )
    project.write(uses_inventory("hosts.ini"))
    out = project.run("validate", "--format", "json")
    assert out.code == 2, out
    found = [(p["line"], p["message"]) for p in out.json()["problems"] if p["code"] == "bad-inventory"]
    assert [line for line, _ in found] == [3, 4, 7, 8]
    assert "host 'web-1' is listed twice in group 'web'" in found[0][1]
    assert "unknown section [web:oops]" in found[1][1]
    assert "port must be a number from 1 to 65535" in found[2][1]
    assert "expected NAME=VALUE, got 'novalue'" in found[3][1]
    assert all(p["file"].endswith("hosts.ini") for p in out.json()["problems"] if p["code"] == "bad-inventory")
    text = project.run("run", "t")
    assert text.code == 2 and "hosts.ini:3" in text.stderr and "Traceback" not in text.stderr


def test_toml_inventory_syntax_errors_and_unknown_keys(project):
    project.write('[groups.web]\nhosts = ["a"]\nport = 22\nusr = "x"\n[hosts.a]\nadress = "1.2.3.4"\n', "inv.toml")
    project.write(uses_inventory("inv.toml"))
    out = project.run("validate", "--format", "json")
    assert out.code == 2, out
    found = {(p["line"], p["message"], p["hint"]) for p in out.json()["problems"] if p["code"] == "bad-inventory"}
    assert (4, "group 'web': unknown key 'usr'", "did you mean 'user'?") in found
    assert (6, "host 'a': unknown key 'adress'", "did you mean 'address'?") in found
    project.write('[groups.web\nhosts = ["a"]\n', "inv.toml")
    broken = project.run("validate", "--format", "json")
    assert broken.code == 2
    [problem] = [p for p in broken.json()["problems"] if p["code"] == "bad-inventory"]
    assert problem["line"] == 1 and "TOML syntax error" in problem["message"]


def test_a_missing_inventory_file_is_a_validation_error(project):
    project.write(uses_inventory("nope.toml"))
    out = project.run("run", "t")
    assert out.code == 2, out
    assert "cannot read the inventory file" in out.stderr and "nope.toml" in out.stderr


@pytest.mark.parametrize("how", [("resume",), ("run", "deploy", "--resume")])
def test_resume_targets_the_hosts_the_interrupted_run_discovered(project, site, logs, how):
    make_dist(site, features=FEATURES)
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake"
    project.write('[groups.web]\nhosts = ["a", "b"]\ntransport = "fake"\n', "inventory.toml")
    project.write("""
        from nexus_core import inventory, run, task

        inventory("inventory.toml")

        @task
        def stop():
            run("test -f stopped || { touch stopped; kill -9 $PPID; sleep 5; }")

        @task(on="web", deps=[stop])
        def deploy():
            run("echo deploying")
    """)
    first = project.run("run", "deploy")
    assert first.code != 0 and logs.records("run") == []
    project.write('[groups.web]\nhosts = ["a", "b", "c"]\ntransport = "fake"\n', "inventory.toml")
    resumed = project.run(*how)
    assert resumed.code == 0, resumed
    assert sorted(r["host"] for r in logs.records("run")) == ["a", "b"]  # not c: the run's own hosts
    fresh = project.run("run", "deploy", "--no-resume")
    assert fresh.code == 0, fresh
    assert sorted(r["host"] for r in logs.records("run")[2:]) == ["a", "b", "c"]


def test_exec_targets_a_discovered_group_and_a_tag(project, site, logs):
    setup_source(project, site)
    out = project.run("exec", "nodes", "--", "echo", "hi")
    assert out.code == 0, out
    assert sorted(r["host"] for r in logs.records("run")) == ["n-1", "n-2"]
    tagged = project.run("exec", "tag:green", "--", "echo", "hi")
    assert tagged.code == 0, tagged
    assert sorted(r["host"] for r in logs.records("run")[2:]) == ["m-2", "n-2"]  # every group's green host


def test_on_can_be_a_source_and_nexus_list_shows_it(project):
    project.write("me ansible_connection=local tier=front\n", "hosts.ini")
    project.write("""
        from nexus_core import discover, host_var, run, task

        @task(on=discover("file", path="hosts.ini"))
        def one():
            run(f"echo tier {host_var('tier')}")
    """)
    listed = project.run("list")
    assert listed.code == 0, listed
    assert "one  discover('file', path='hosts.ini')" in listed.stdout
    out = project.run("run", "one", "-v")
    assert out.code == 0, out
    assert "tier front" in out.stdout


# Group-level attributes: the same fleet written in the three formats. The file (or Ansible's
# ``all``) gives every host user "base"; the parent group ``prod`` gives user, port, a tag and
# variables; its child ``web`` overrides some of them; host ``web-1`` overrides some again.
# Precedence is host > group > parent group > file; tags add up from the outside in.
PRECEDENCE = {
    "inventory.toml": """
        user = "base"
        vars = { tier = "file", app = "shop" }

        [groups.prod]
        children = ["web", "db"]
        user = "prod-user"
        port = 2200
        tags = ["prod"]
        vars = { tier = "prod", env = "production" }

        [groups.web]
        hosts = ["web-1", "web-2"]
        user = "web-user"
        tags = ["frontend"]
        vars = { tier = "web" }

        [groups.db]
        hosts = ["db-1"]

        [hosts.web-1]
        port = 2201
        tags = ["canary"]
        vars = { tier = "own" }
    """,
    "hosts.ini": """
        [all:vars]
        ansible_user=base
        tier=file
        app=shop

        [web]
        web-1 ansible_port=2201 tags=canary tier=own
        web-2

        [db]
        db-1

        [prod:children]
        web
        db

        [prod:vars]
        ansible_user=prod-user
        ansible_port=2200
        tags=prod
        tier=prod
        env=production

        [web:vars]
        ansible_user=web-user
        tags=frontend
        tier=web
    """,
    "hosts.yml": """
        all:
          vars:
            ansible_user: base
            tier: file
            app: shop
          children:
            prod:
              vars:
                ansible_user: prod-user
                ansible_port: 2200
                tags: [prod]
                tier: prod
                env: production
              children:
                web:
                  vars:
                    ansible_user: web-user
                    tags: [frontend]
                    tier: web
                  hosts:
                    web-1:
                      ansible_port: 2201
                      tags: [canary]
                      tier: own
                    web-2:
                db:
                  hosts:
                    db-1:
    """,
}


@pytest.mark.parametrize("name", list(PRECEDENCE))
def test_group_attributes_apply_to_their_hosts_host_over_group_over_parent(project, name):
    """user, port, tags and vars of a group (TOML tables, ``[group:vars]``, YAML ``vars:``) reach its hosts."""
    import textwrap

    project.write(textwrap.dedent(PRECEDENCE[name]).lstrip("\n"), name)
    project.write(uses_inventory(name))
    out = project.run("hosts", "list", "prod", "--format", "json")
    assert out.code == 0, out
    rows = {h["name"]: h for h in out.json()["groups"][0]["hosts"]}
    got = {n: (h["user"], h["port"], sorted(h["tags"]), h["vars"]) for n, h in rows.items()}
    common = {"app": "shop", "env": "production"}
    assert got == {
        # the host's port and tier over web's; web's user over prod's; prod's port where web has none
        "web-1": ("web-user", 2201, ["canary", "frontend", "prod"], {**common, "tier": "own"}),
        "web-2": ("web-user", 2200, ["frontend", "prod"], {**common, "tier": "web"}),
        # db says nothing itself: everything from its parent prod, over the file's
        "db-1": ("prod-user", 2200, ["prod"], {**common, "tier": "prod"}),
    }


# --- what the issue lists, each through the real CLI ---------------------------------------------

# A plugin whose two sources meet: each leaves a mark and waits (bounded) for the other's, so
# discovery succeeds only when the two are asked at the same time, whatever the machine's speed.
MEET_PLUGIN = """
import os
import time

from nexus_core.plugin import DiscoveredHost, DiscoveryError, HostSource, Option, Registration, hookimpl

NEXUS_API_VERSION = 1


class MeetSource(HostSource):
    def discover(self, filters):
        side = filters["side"]
        other = "b" if side == "a" else "a"
        open(os.path.join(self.context.root, "meet-" + side), "w").close()
        for _ in range(400):  # at most 20 s
            if os.path.exists(os.path.join(self.context.root, "meet-" + other)):
                return [DiscoveredHost(side + "-1", transport="fake")]
            time.sleep(0.05)
        raise DiscoveryError("source " + side + " never met source " + other + ": they were asked one after another")


@hookimpl
def nexus_host_sources():
    return [Registration("meet", "nexus_meet:MeetSource", {"filters": (Option("side", (str,), None, "a or b"),)})]
"""


def test_sources_are_asked_at_the_same_time(project, site):
    make_dist(site, features=FEATURES)
    info = site / "nexus_meet-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nexus-meet\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[nexus]\nmeet = nexus_meet\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    (site / "nexus_meet.py").write_text(MEET_PLUGIN, encoding="utf-8")
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake,nexus-meet"
    project.write("""
        from nexus_core import discover, hosts, run, task

        hosts("both", discover("meet", side="a"), discover("meet", side="b"))

        @task(on="both")
        def hello():
            run("echo hi")
    """)
    out = project.run("hosts", "list", "--format", "json")
    assert out.code == 0, out
    assert [h["name"] for h in out.json()["groups"][0]["hosts"]] == ["a-1", "b-1"]


def test_a_group_of_groups_includes_discovered_hosts(project, site, logs):
    """Discovered groups mix with other groups (``groups=[...]``) like any group."""
    setup_source(project, site, SOURCE_PROJECT + '\nhosts("fleet", "fake://solo", groups=["nodes", "mixed"])\n'
                 '\n@task(on="fleet")\ndef everywhere():\n    run("echo all")\n')  # fmt: skip
    out = project.run("run", "everywhere")
    assert out.code == 0, out
    assert sorted(r["host"] for r in logs.records("run")) == ["extra", "m-1", "m-2", "n-1", "n-2", "solo"]
    listed = project.run("hosts", "list", "fleet", "--format", "json").json()["groups"][0]
    sources = {h["name"]: h["source"] for h in listed["hosts"]}
    assert sources["n-one"] == "discover('fakes', prefix='n') (via group nodes)" and sources["solo"] == "nexusfile"


def test_templates_read_the_attributes_of_discovered_hosts(project, tmp_path):
    out_file = tmp_path / "motd"
    project.write("[web]\nme ansible_connection=local tier=front tags=blue,eu\n", "hosts.ini")
    project.write(
        "{{ host.facts.name }} from {{ host.facts.source }}: tags {{ host.tags | join(',') }}, "
        "tier {{ host.vars.tier }}, groups {{ host.facts.groups | join(',') }}\n",
        "motd.j2",
    )
    project.write(f"""
        from nexus_core import inventory, task, template

        inventory("hosts.ini")

        @task(on="web")
        def motd():
            template("motd.j2", {str(out_file)!r})
    """)
    out = project.run("run", "motd")
    assert out.code == 0, out
    assert out_file.read_text() == "me from file: tags blue,eu, tier front, groups all,web\n"


def test_every_mistake_of_a_yaml_or_toml_inventory_is_reported_at_once(project):
    project.write(
        """
        all:
          children:
            web:
              hosts:
                web-1:
                web-1:
                web-2:
                  ansible_port: 99999
              hostz:
                web-3:
        """,
        "hosts.yml",
    )
    project.write(uses_inventory("hosts.yml"))
    out = project.run("validate", "--format", "json")
    assert out.code == 2, out
    found = [(p["line"], p["message"]) for p in out.json()["problems"] if p["code"] == "bad-inventory"]
    assert found == [
        (6, "host 'web-1' is listed twice in group 'web'"),
        (7, "host 'web-2': port must be a number from 1 to 65535, not 99999"),
        (9, "group 'web': unknown key 'hostz'"),
    ]
    ran = project.run("run", "t")
    assert ran.code == 2 and "hosts.yml:6" in ran.stderr and "hosts.yml:9" in ran.stderr, ran
    assert "did you mean 'hosts'?" in ran.stderr and "Traceback" not in ran.stderr
    project.write('[groups.web]\nhosts = ["a", "b", "a"]\nprot = 22\n', "inv.toml")
    project.write(uses_inventory("inv.toml"))
    toml = project.run("run", "t", "--format", "json")
    assert toml.code == 2, toml
    problems = sorted((p["line"], p["message"]) for p in json.loads(toml.stdout.splitlines()[-1])["problems"])
    assert problems == [(2, "host 'a' is listed twice in group 'web'"), (3, "group 'web': unknown key 'prot'")]


def test_an_unknown_source_names_its_package_before_it_is_installed():
    """discover("tailscale") with no nexus-tailscale: "pip install nexus-tailscale" (nexus_core/kinds.py)."""
    from nexus_core.discovery import check
    from nexus_core.model import HostGroup, Location, Project, SourceSpec

    def problems(source: str) -> list:
        where = Location("nexusfile.py", 3)
        group = HostGroup("web", (SourceSpec(source, {"tags": ["tag:web"]}, where),), (), where)
        return check(Project(path="nexusfile.py", root=".", groups={"web": group}), Registry())

    [problem] = problems("tailscale")
    assert problem.message == "discover('tailscale', tags=['tag:web']): no 'tailscale' host source is installed"
    assert problem.hint == "pip install nexus-tailscale (then check `nexus plugins`)"
    assert problem.location.line == 3


def test_the_worked_example_of_the_host_source_reference_works(project, site):
    """docs/plugins/host-sources.md: its nexus-cmdb plugin, as printed, against a local CMDB."""
    import http.server
    import threading
    import urllib.parse

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins" / "host-sources.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# nexus_cmdb/(\w+)\.py.*?)```", doc, re.S)
    assert [name for _, name in blocks] == ["plugin", "source"]
    package = site / "nexus_cmdb"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for code, name in blocks:
        (package / f"{name}.py").write_text(code, encoding="utf-8")
    info = site / "nexus_cmdb-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nexus-cmdb\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[nexus]\ncmdb = nexus_cmdb.plugin\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    rows = [
        {"fqdn": "web-1.example.com", "role": "web", "rack": "r1", "up": True},
        {"fqdn": "web-2.example.com", "role": "web", "rack": "r2", "up": True},
        {"fqdn": "web-3.example.com", "role": "web", "rack": "r1", "up": False},
        {"fqdn": "db-1.example.com", "role": "db", "rack": "r1", "up": True},
    ]

    class Cmdb(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            role = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("role", [None])[0]
            body = json.dumps([r for r in rows if role in (None, r["role"])]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cmdb)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        project.write(f"""
            from nexus_core import config, current_host, discover, hosts, run, task

            config(cmdb_url="http://127.0.0.1:{server.server_address[1]}")
            hosts("web", discover("cmdb", role="web"))
            hosts("rack1", discover("cmdb", role="web", rack="r1"))

            @task(on="web")
            def deploy():
                run(f"./deploy --rack {{current_host().facts['rack']}}")
        """)
        out = project.run("hosts", "list", "--format", "json")
        assert out.code == 0, out
        groups = {g["group"]: {h["name"]: (h["online"], h["facts"]["rack"]) for h in g["hosts"]}
                  for g in out.json()["groups"]}  # fmt: skip
        assert groups == {
            "web": {"web-1": (True, "r1"), "web-2": (True, "r2"), "web-3": (False, "r1")},
            "rack1": {"web-1": (True, "r1"), "web-3": (False, "r1")},
        }
    finally:
        server.shutdown()
        server.server_close()
    project.write(project.nexusfile.read_text().replace('role="web")', 'rol="web")', 1))
    typo = project.run("validate", "--format", "json")
    assert typo.code == 2 and "did you mean 'role'?" in typo.stdout, typo


def test_a_config_value_of_the_wrong_type_stops_the_run_before_any_source_is_asked(nexus_project):
    """`config(cluster=123)` made the agent source connect to tls://123:7400 (exit 3) before
    validation said cluster takes a string; config values are checked first now (exit 2)."""
    nexus_project.write(
        "from nexus_core import config, discover, hosts, run, task\n"
        'config(parallel_limit="many")\n'
        'hosts("web", discover("file", path="no-such-inventory.toml"))\n\n'
        '@task(on="web")\ndef t():\n    run("true")\n'
    )
    for args in (("run", "t"), ("run", "t", "-n"), ("run", "t", "--list-hosts")):
        out = nexus_project.run(*args)
        assert out.code == 2, (args, out)
        assert "config(): parallel_limit must be" in out.stderr, (args, out)
        assert "no-such-inventory" not in out.stderr, (args, out)


def test_discover_without_a_source_name_is_said_once(nexus_project) -> None:
    """discover(5) said "needs the name of a host source", then "no '5' host source is installed"."""
    nexus_project.write("from nexus_core import discover, hosts, run, task\nhosts('g', discover(5))\n\n"
                        "@task(on='g')\ndef t():\n    run('true')\n")  # fmt: skip
    out = nexus_project.run("validate")
    assert out.code == 2 and "discover() needs the name of a host source, got 5" in out.stderr, out
    assert "host source is installed" not in out.stderr and "Validation failed\n" in out.stderr, out
