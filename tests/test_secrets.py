"""Secrets: the secret-backend hook family, the local store, ``nexus secret``, ``secret(...)``."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

from nexus_core.api import SecretBackend, SecretContext, SecretNotFound
from nexus_core.plugins import PluginManager
from nexus_core.secrets import split_reference


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


# --- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "default", "expected"),
    [
        ("DB_PASSWORD", "local", ("local", "DB_PASSWORD")),
        ("vault:kv/app#db_password", "local", ("vault", "kv/app#db_password")),
        ("kv/app#db_password", "vault", ("vault", "kv/app#db_password")),
        ("kv/app:odd", "vault", ("vault", "kv/app:odd")),
        ("local:DB", "vault", ("local", "DB")),
    ],
)
def test_a_reference_names_its_backend_or_goes_to_the_default(reference, default, expected):
    assert split_reference(reference, default) == expected


# --- the hook family -------------------------------------------------------------------------


@pytest.mark.hook("nexus_secret_backends")
def test_a_secret_backend_plugin_is_registered_by_name_and_listed(project, site, logs, monkeypatch):
    """nexus_secret_backends: the plugin's backend is found by its prefix and resolves references."""
    make_dist(site, features=("secret_backend",))
    out = project.run("plugins", "--format", "json")
    assert out.code == 0, out
    row = {p["distribution"]: p for p in out.json()["plugins"]}["nexus-fake"]
    assert "nexus_secret_backends" in row["hooks"] and not row["error"]

    monkeypatch.syspath_prepend(str(site))
    for key, value in plugin_env(site, logs).items():
        monkeypatch.setenv(key, value)
    registry = PluginManager().registry
    assert "fake" in registry.secret_backends
    cls = registry.secret_backends["fake"]
    assert issubclass(cls, SecretBackend) and not cls.writable and not cls.caches
    backend = cls(SecretContext(config={"fake_endpoint": "lab"}))
    assert backend.resolve("alpha") == "fake-secret-alpha"
    with pytest.raises(SecretNotFound, match="no secret 'missing'"):
        backend.resolve("missing")
    assert [i.name for i in backend.list_names()] == ["alpha", "beta"]
    with pytest.raises(NotImplementedError, match="read-only"):
        backend.set("x", "y")
