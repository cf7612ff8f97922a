"""Built-in strategies, registered through the strategy hook like any plugin's.

``parallel`` and ``serial`` for every task; ``rolling`` and ``canary`` for tasks on many
hosts. They decide only the order and grouping of hosts; the engine runs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nexus_core.api import ANOTHER_HOST_FAILED, INTERRUPTED, HostOutcome, Strategy, StrategyContext, skipped
from nexus_core.model import Host
from nexus_core.options import NUMBER, Option
from nexus_core.plugin import hookimpl


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


def batch_size(value: Any, total: int) -> int:
    """Hosts per batch from ``batch=2`` or ``batch="25%"`` (at least 1)."""
    if value is None:
        return 1
    if isinstance(value, str):
        percent = float(value.strip().rstrip("%"))
        return max(1, math.floor(total * percent / 100))
    return max(1, int(value))


class RollingStrategy(Strategy):
    """Batches of ``batch`` hosts (a number or a percentage) one after another.

    Stops after the first batch with a failure, unless the failures so far stay within
    ``max_fail_percentage`` of all hosts (or the run continues on error).
    """

    name = "rolling"
    task_options = (
        Option("batch", (int, str), None, 'rolling strategy: hosts per batch (2 or "25%")'),
        Option("max_fail_percentage", NUMBER, None, "rolling strategy: tolerated failures", minimum=0, maximum=100),
    )

    def check(self, options: Mapping[str, Any]) -> list[str]:
        """``batch`` must be a positive integer or a percentage between 1% and 100%."""
        value = options.get("batch")
        if value is None or isinstance(value, bool):  # a bool: the option's own check reports it
            return []
        if isinstance(value, int):
            return [] if value >= 1 else [f"batch must be at least 1, not {value}"]
        if isinstance(value, str):
            text = value.strip()
            try:
                percent = float(text[:-1]) if text.endswith("%") else None
            except ValueError:
                percent = None
            if percent is None and text.isdigit():  # "2" (e.g. from env()): a count written as text
                return [f'batch {value!r} is text: write batch={int(text)} for {int(text)} hosts at a time, '
                        f'or batch="{int(text)}%" for a percentage of the hosts']  # fmt: skip
            if percent is None or not 0 < percent <= 100:
                return [f'batch {value!r} must be a number of hosts or a percentage like "25%" (1-100%)']
            return []
        return []  # another type: the option's own check reports it, with the types it takes

    def batches(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> list[list[Host]]:
        """Consecutive slices of ``batch`` hosts."""
        size = batch_size(options.get("batch"), len(hosts))
        return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]

    def describe(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> str:
        """``rolling, 2 at a time``."""
        size = batch_size(options.get("batch"), len(hosts))
        tolerance = options.get("max_fail_percentage")
        extra = f", tolerating {tolerance:g}% failures" if tolerance else ""
        return f"rolling, {size} at a time{extra}"

    def execute(self, hosts: Sequence[Host], context: StrategyContext) -> list[HostOutcome]:
        """Run batch after batch; stop when failures exceed the tolerance."""
        tolerance = float(context.options.get("max_fail_percentage") or 0)
        plan = self.batches(hosts, context.options)
        outcomes: list[HostOutcome] = []
        failures = 0
        # The most failures within the tolerance: ``failures * 100 / len(hosts) <= tolerance``.
        allowed = math.floor(tolerance * len(hosts) / 100 + 1e-9)
        for i, batch in enumerate(plan):
            if context.stopping():
                outcomes += skipped(plan[i:], INTERRUPTED)
                break
            # When no failure is left to tolerate, the next one is over the threshold: the
            # batch's hosts not started yet (``forks`` below the batch size) must not start.
            stop = not context.continue_on_error and failures >= allowed
            most = None if context.continue_on_error else allowed - failures  # failures this batch may add
            before = failures

            def over(in_batch: int, before: int = before) -> str:  # hosts left out inside the batch
                return _over(before + in_batch, len(hosts), tolerance) if tolerance else ANOTHER_HOST_FAILED

            results = context.run_batch(batch, stop_on_failure=stop, max_failures=most, stop_reason=over)
            outcomes += results
            if context.stopping():  # hosts stopped by the interrupt did not fail the batch
                outcomes += skipped(plan[i + 1 :], INTERRUPTED)
                break
            failures += sum(1 for r in results if not r.ok and r.status != "skipped")
            if failures > allowed and not context.continue_on_error:
                why = f"batch {i + 1} failed"
                if tolerance:  # the batches before may have failed too: the threshold is the reason
                    why = _over(failures, len(hosts), tolerance)
                outcomes += skipped(plan[i + 1 :], f"not started: {why}")
                break
        return outcomes


def _over(failures: int, hosts: int, tolerance: float) -> str:
    """``3 of 10 hosts failed (30%), over max_fail_percentage=25``."""
    return f"{failures} of {hosts} hosts failed ({failures * 100 / hosts:.0f}%), over max_fail_percentage={tolerance:g}"


class CanaryStrategy(Strategy):
    """``canary_hosts`` hosts first; if they succeed, wait ``canary_wait`` seconds, then the rest."""

    name = "canary"
    task_options = (
        Option("canary_hosts", (int,), None, "canary strategy: hosts to try first", minimum=1),
        Option("canary_wait", NUMBER, None, "canary strategy: seconds to wait after the canaries", minimum=0),
    )

    def batches(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> list[list[Host]]:
        """The canaries, then everyone else."""
        n = min(int(options.get("canary_hosts") or 1), len(hosts))
        return [b for b in (list(hosts[:n]), list(hosts[n:])) if b]

    def describe(self, hosts: Sequence[Host], options: Mapping[str, Any]) -> str:
        """``canary, 1 host first, then the rest after 30s``."""
        n = min(int(options.get("canary_hosts") or 1), len(hosts))
        wait = float(options.get("canary_wait") or 0)
        after = f" after {wait:g}s" if wait else ""
        return f"canary, {n} host{'s' if n != 1 else ''} first, then the rest{after}"

    def execute(self, hosts: Sequence[Host], context: StrategyContext) -> list[HostOutcome]:
        """Canaries, a pause, then the rest; any canary failure stops the rollout."""
        plan = self.batches(hosts, context.options)
        if not plan:
            return []
        outcomes = context.run_batch(plan[0])
        rest = plan[1:]
        if not rest:
            return outcomes
        if context.stopping():
            return outcomes + skipped(rest, INTERRUPTED)
        if any(not o.ok for o in outcomes) and not context.continue_on_error:
            return outcomes + skipped(rest, "not started: a canary host failed")
        wait = float(context.options.get("canary_wait") or 0)
        if any(context.resumed(h) for h in rest[0]):
            wait = 0  # the interrupted run had waited and begun the rest: no second wait on resume
        if context.stopping() or (wait and not context.wait(wait)):
            return outcomes + skipped(rest, INTERRUPTED)
        return outcomes + context.run_batch(rest[0])


@hookimpl
def nexus_strategies() -> list[type[Strategy]]:
    """The built-in strategies."""
    return [ParallelStrategy, SerialStrategy, RollingStrategy, CanaryStrategy]
