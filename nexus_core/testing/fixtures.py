"""The pytest fixtures of the kit; registered by ``-p nexus_core.testing``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_core.testing.project import NexusProject


@pytest.fixture
def nexus_project(tmp_path: Path) -> Iterator[NexusProject]:
    """A :class:`NexusProject` in a fresh temporary folder, with isolated XDG folders."""
    xdg = tmp_path / ".xdg"
    env = {
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_DATA_HOME": str(xdg / "data"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
    }
    project = tmp_path / "project"
    project.mkdir()
    yield NexusProject(project, env)


#: Markers every suite loading this plugin knows, whichever folder it runs from (a plugin's
#: own markers are declared in its pyproject.toml).
MARKERS = ("slow: long soak tests, excluded from the default run (run with -m slow)",)


def pytest_configure(config: pytest.Config) -> None:
    """Register :data:`MARKERS` (``--strict-markers`` then accepts them in any plugin's tests)."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
