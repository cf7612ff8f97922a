"""Target selectors and sharding: ``all_agents()``, ``any_of()``, ``tagged()``, ``prefer()``,
``shard_id()``, ``shard_count()``, ``shard_items()``, ``shard_start()``, ``shard_end()``.

A selector is a :class:`~nexus_core.model.SourceSpec` of the ``agent`` host source
(``discover("agent", select=..., count=..., tag=...)``): it goes wherever hosts go
(``on=tagged("beefy")``, ``hosts("build", any_of(2))``), the planner asks the source once per
distinct selector, and the source (the ``nexus-agent`` plugin) answers with the agents it
allows, least loaded first, or with an error that names the selector and the agents that
exist. With ``nexus-core`` alone, a selector is a validation error naming ``nexus-agent``.

Sharding: ``@task(on=..., parallel="sharded", shards=N)`` plans the task as ``N`` shards
(default: one per target host). Each shard is a host of the plan (``shard-0`` ...), so each is
run, checkpointed and resumed on its own; its body sees ``shard_id()`` (0-based) and
``shard_count()``. On agents a shard runs on whichever allowed agent is free (more shards
than agents queue); elsewhere shard ``i`` runs on target host ``i % hosts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from nexus_core.model import SourceSpec

__all__ = [
    "all_agents",
    "any_of",
    "prefer",
    "shard_count",
    "shard_end",
    "shard_id",
    "shard_items",
    "shard_start",
    "tagged",
]

#: The host source selectors ask.
SOURCE = "agent"
#: Fact names a shard host carries.
SHARD_ID, SHARD_COUNT, SHARD_POOL = "shard_id", "shard_count", "nexus_pool"

T = TypeVar("T")


class Selector(SourceSpec):
    """A :class:`SourceSpec` of the agent source that messages show as the nexusfile wrote it."""

    def describe(self) -> str:
        """``tagged('gpu')``, ``any_of(2, tag='linux')``, ``all_agents()``, ``prefer('fast')``."""
        f = self.filters
        tag = f.get("tag")
        select = f.get("select")
        if select == "any_of":
            return f"any_of({f.get('count')!r}" + (f", tag={tag!r})" if tag else ")")
        if select in ("tagged", "prefer"):
            return f"{select}({tag!r})"
        return "all_agents(" + (f"tag={tag!r})" if tag else ")")


def _spec(**filters: Any) -> SourceSpec:
    from nexus_core.dsl import _caller, current_project

    return Selector(SOURCE, {k: v for k, v in filters.items() if v is not None}, _caller(current_project()))


def all_agents(tag: str | None = None) -> SourceSpec:
    """Every agent of the cluster (with ``tag`` only those carrying it): ``on=all_agents()``."""
    return _spec(select="all", tag=tag)


def any_of(n: int, tag: str | None = None) -> SourceSpec:
    """The ``n`` least loaded agents (with ``tag`` among those carrying it): ``on=any_of(3, tag="linux")``."""
    return _spec(select="any_of", count=n, tag=tag)


def tagged(tag: str) -> SourceSpec:
    """Every agent carrying ``tag``: ``on=tagged("beefy")``."""
    return _spec(select="tagged", tag=tag)


def prefer(tag: str) -> SourceSpec:
    """The least loaded agent carrying ``tag``, else the least loaded agent: ``on=prefer("fast")``."""
    return _spec(select="prefer", tag=tag)


# --- sharding --------------------------------------------------------------------------------


def _shard() -> tuple[int, int]:
    from nexus_core.dsl import _body_host

    host = _body_host("shard_id")
    if host is None:
        return 0, 1
    return int(host.facts.get(SHARD_ID, 0)), int(host.facts.get(SHARD_COUNT, 1))


def shard_id() -> int:
    """This shard's number, from 0 (0 in a task that is not sharded)."""
    return _shard()[0]


def shard_count() -> int:
    """How many shards the task has (1 in a task that is not sharded)."""
    return _shard()[1]


def shard_items(seq: Sequence[T]) -> list[T]:
    """This shard's part of ``seq``: a contiguous slice, the shards together cover each item once."""
    start, end = _bounds(len(seq))
    return list(seq[start:end])


def _bounds(total: int) -> tuple[int, int]:
    i, n = _shard()
    return total * i // n, total * (i + 1) // n


def shard_start(total: float = 1.0) -> float:
    """Where this shard's part of ``[0, total)`` starts (an int for an int ``total``)."""
    i, n = _shard()
    if isinstance(total, int):
        return _bounds(total)[0]
    return total * i / n


def shard_end(total: float = 1.0) -> float:
    """Where this shard's part of ``[0, total)`` ends (exclusive; an int for an int ``total``)."""
    i, n = _shard()
    if isinstance(total, int):
        return _bounds(total)[1]
    return total * (i + 1) / n
