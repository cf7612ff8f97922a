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
