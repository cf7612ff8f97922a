"""Where Nexus keeps files, following XDG: state, data, config, cache."""

from __future__ import annotations

import os


def _xdg(var: str, default: str) -> str:
    value = os.environ.get(var)
    return value if value and os.path.isabs(value) else os.path.join(os.path.expanduser("~"), default)


def state_dir() -> str:
    """``$XDG_STATE_HOME/nexus`` (default ``~/.local/state/nexus``)."""
    return os.path.join(_xdg("XDG_STATE_HOME", ".local/state"), "nexus")


def data_dir() -> str:
    """``$XDG_DATA_HOME/nexus`` (default ``~/.local/share/nexus``)."""
    return os.path.join(_xdg("XDG_DATA_HOME", ".local/share"), "nexus")


def config_dir() -> str:
    """``$XDG_CONFIG_HOME/nexus`` (default ``~/.config/nexus``)."""
    return os.path.join(_xdg("XDG_CONFIG_HOME", ".config"), "nexus")


def state_db() -> str:
    """The run-state database (``NEXUS_STATE_DB`` overrides, e.g. for tests)."""
    return os.environ.get("NEXUS_STATE_DB") or os.path.join(state_dir(), "state.db")
