"""What this process's agent executor is waiting for and using, read by the autoscaler.

Shared by :mod:`nexus_agent.executor` (which fills it) and :mod:`nexus_agent.burst` (whose
``AgentCloudCluster.demand`` reads it), so neither imports the other.
"""

from __future__ import annotations

#: Commands waiting for a free agent of a tag (cloud bursting): key -> (tag, since).
WAITING: dict[str, tuple[str, float]] = {}
#: Commands this process has handed to each agent and not seen finish (name -> count), and
#: when it last saw one finish there: an agent with a command on its way is not idle.
BUSY: dict[str, int] = {}
LAST_USED: dict[str, float] = {}
