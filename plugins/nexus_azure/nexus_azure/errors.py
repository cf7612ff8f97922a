"""What goes wrong while talking to Azure, with the fix and the exit code.

Every failure the plugin reports is an :class:`AzureError`: a headline, context lines, a
hint, and the ``nexus`` exit code it deserves: 2 when the configuration must change (no
subscription, a rejected credential, a missing permission), 3 when Azure did not answer
or kept refusing (throttled past every retry, the breaker open).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Exit codes (the values of ``nexus_core.plugin.ExitCode``).
CONFIG = 2
CONNECTION = 3


class AzureError(Exception):
    """A call to Azure failed: ``headline``, ``context`` lines, ``hint``, ``exit_code``."""

    def __init__(
        self, headline: str, *, hint: str = "", context: Sequence[str] = (), exit_code: int = CONNECTION
    ) -> None:
        super().__init__(headline)
        self.headline = headline
        self.hint = hint
        self.context = tuple(context)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return "\n".join([self.headline, *self.context, *([self.hint] if self.hint else [])])

    @property
    def message(self) -> str:
        """Headline and context lines (no hint)."""
        return "\n".join([self.headline, *self.context])
