"""Where Nexus keeps files, following XDG: state, data, config, cache."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The XDG base directories Nexus uses, and their defaults under the home folder.
XDG_DEFAULTS = {
    "XDG_STATE_HOME": ".local/state",
    "XDG_DATA_HOME": ".local/share",
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
}


def xdg_home(var: str, environ: Mapping[str, str] | None = None) -> str:
    """The base directory ``var`` (e.g. ``XDG_CACHE_HOME``); unset or relative means the default.

    The one place that reads the XDG variables: a relative value is ignored, as the XDG
    Base Directory specification asks.
    """
    value = (os.environ if environ is None else environ).get(var)
    return value if value and os.path.isabs(value) else os.path.join(os.path.expanduser("~"), XDG_DEFAULTS[var])


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/nexus`` (default ``~/.local/state/nexus``)."""
    return os.path.join(xdg_home("XDG_STATE_HOME", environ), "nexus")


def data_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_DATA_HOME/nexus`` (default ``~/.local/share/nexus``)."""
    return os.path.join(xdg_home("XDG_DATA_HOME", environ), "nexus")


def config_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CONFIG_HOME/nexus`` (default ``~/.config/nexus``)."""
    return os.path.join(xdg_home("XDG_CONFIG_HOME", environ), "nexus")


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/nexus`` (default ``~/.cache/nexus``)."""
    return os.path.join(xdg_home("XDG_CACHE_HOME", environ), "nexus")


def state_db() -> str:
    """The run-state database (``NEXUS_STATE_DB`` overrides, e.g. for tests)."""
    return os.environ.get("NEXUS_STATE_DB") or os.path.join(state_dir(), "state.db")
