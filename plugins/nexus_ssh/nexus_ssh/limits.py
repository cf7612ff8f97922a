"""Open-file limits for runs over many hosts.

Each pooled SSH connection holds one socket (plus one per jump hop), and each running
command's channel a pipe pair while it is waited on. A run over H hosts can hold up to
``H x ssh_pool_size`` connections (idle ones are closed after ``ssh_idle_timeout``), so
1,000 hosts exceed the common default soft limit of 1,024 open files. Before such a run the
soft limit is raised (up to the hard limit, which needs no privilege); when even the hard
limit is too low, a warning says how to raise it.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

#: File descriptors Nexus itself needs besides connections (stdio, logs, state, imports).
BASE_FDS = 64
#: Soft limit aimed for when raising (at least what is needed, at most the hard limit).
COMFORTABLE = 8192


@dataclass(frozen=True)
class FdReport:
    """What :func:`ensure_fd_limit` found and did."""

    need: int
    soft_before: int
    soft: int
    hard: int | None  # None: unlimited

    @property
    def raised(self) -> bool:
        """True when the soft limit was raised."""
        return self.soft > self.soft_before

    @property
    def enough(self) -> bool:
        """True when the (possibly raised) soft limit covers the estimate."""
        return self.soft >= self.need

    def warning(self, hosts: int, pool_size: int) -> str:
        """The message for a limit that is too low ("" when it is enough)."""
        if self.enough:
            return ""
        hard = "unlimited" if self.hard is None else str(self.hard)
        return (
            f"this run may need about {self.need} open files ({hosts} SSH hosts x ssh_pool_size {pool_size} "
            f"connections) but the open files limit is {self.soft} (hard limit {hard}); connections "
            f"may fail with 'Too many open files'. Raise it before running: ulimit -n {self.need} "
            f"(permanently: nofile in /etc/security/limits.conf or LimitNOFILE= for a service), "
            f"or lower ssh_pool_size / forks"
        )


def fds_needed(hosts: int, pool_size: int, concurrency: int, hops: int = 0, tasks_at_once: int = 0) -> int:
    """Estimate of the descriptors a run needs: every host's full pool, plus running channels.

    A host never holds more connections than commands it runs at once: at most
    ``tasks_at_once`` (``parallel_limit``; 0 = unknown) nor more than ``ssh_pool_size``.
    """
    per_host = max(1, min(pool_size, tasks_at_once) if tasks_at_once > 0 else pool_size)
    running = min(max(1, concurrency), hosts * per_host)
    return BASE_FDS + hosts * per_host * (1 + max(0, hops)) + 2 * max(1, running)


def ensure_fd_limit(need: int) -> FdReport:
    """Raise ``RLIMIT_NOFILE``'s soft limit towards ``need`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = hard == resource.RLIM_INFINITY
    hard_value: int | None = None if unlimited else int(hard)
    soft_value = int(soft) if soft != resource.RLIM_INFINITY else 1 << 30
    if need <= soft_value:
        return FdReport(need, soft_value, soft_value, hard_value)
    ceiling = (1 << 20) if hard_value is None else hard_value
    target = min(ceiling, max(need, COMFORTABLE))
    if target > soft_value:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft_value
    return FdReport(need, soft_value, target, hard_value)
