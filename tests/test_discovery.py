"""Host discovery: the host-source hook family, ``discover(...)``, inventories and ``nexus hosts``.

Plugins here are fake *installed* distributions (``tests/plugin_fixtures.py``) run through
the real ``nexus`` CLI, as in ``test_plugins.py``.
"""

from __future__ import annotations

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
