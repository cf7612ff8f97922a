"""Where the agent plugin keeps its files: certificates (config) and daemon state (pid, logs).

``NEXUS_AGENT_DIR`` overrides the certificate folder (default ``$XDG_CONFIG_HOME/nexus/agent``);
``NEXUS_AGENT_STATE`` the state folder (default ``$XDG_STATE_HOME/nexus/agent``).
"""

from __future__ import annotations

import os


def config_dir() -> str:
    """The folder holding the cluster's CA and this machine's certificates."""
    explicit = os.environ.get("NEXUS_AGENT_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "nexus", "agent")


def state_dir() -> str:
    """The folder holding each local agent's pid file, address file and log."""
    explicit = os.environ.get("NEXUS_AGENT_STATE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "nexus", "agent")


def agent_files(name: str) -> tuple[str, str, str]:
    """(pid file, info file, log file) of the local agent ``name``."""
    folder = state_dir()
    return (
        os.path.join(folder, f"{name}.pid"),
        os.path.join(folder, f"{name}.json"),
        os.path.join(folder, f"{name}.log"),
    )
