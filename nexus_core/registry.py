"""What the loaded plugins (built-ins included) provide, looked up by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nexus_core.options import CONFIG_OPTIONS, TASK_OPTIONS, Option

if TYPE_CHECKING:
    from nexus_core.api import Executor, PreflightCheck, Strategy

#: Which distribution provides a transport, for "pip install ..." hints.
TRANSPORT_PACKAGES = {"ssh": "nexus-ssh", "agent": "nexus-agent", "azure": "nexus-azure"}


@dataclass
class Registry:
    """Executors, strategies, checks and options by name, with the distribution of each."""

    executors: dict[str, type[Executor]] = field(default_factory=dict)
    strategies: dict[str, type[Strategy]] = field(default_factory=dict)
    checks: dict[str, type[PreflightCheck]] = field(default_factory=dict)
    config_options: dict[str, Option] = field(default_factory=lambda: dict(CONFIG_OPTIONS))
    task_options: dict[str, Option] = field(default_factory=lambda: dict(TASK_OPTIONS))
    owners: dict[str, str] = field(default_factory=dict)

    def strategy(self, name: str) -> Strategy:
        """A fresh instance of the named strategy."""
        return self.strategies[name]()


def builtin_registry() -> Registry:
    """A registry with only the core's built-ins (no entry points): for tests and tools."""
    from nexus_core.plugins import PluginManager

    return PluginManager(load_entry_points=False).registry
