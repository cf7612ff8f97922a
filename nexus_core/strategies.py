"""Built-in strategies ``parallel`` and ``serial``, registered through the strategy hook."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

from nexus_core.api import Strategy
from nexus_core.model import Host

hookimpl = pluggy.HookimplMarker("nexus")


class ParallelStrategy(Strategy):
    """All hosts at once, bounded by ``forks`` (default ``parallel_limit``)."""

    name = "parallel"

    def batches(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> list[list[Host]]:
        """One batch holding every host."""
        return [list(hosts)] if hosts else []

    def describe(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> str:
        """``parallel``."""
        return "parallel"


class SerialStrategy(Strategy):
    """One host at a time, in the order given; stops at the first failing host."""

    name = "serial"

    def batches(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> list[list[Host]]:
        """One batch per host."""
        return [[h] for h in hosts]

    def describe(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> str:
        """``serial, one host at a time``."""
        return "serial, one host at a time"


@hookimpl
def nexus_strategies() -> list[type[Strategy]]:
    """The built-in strategies."""
    return [ParallelStrategy, SerialStrategy]
