"""What goes wrong while talking to Azure, with the fix and the exit code.

Every failure the plugin reports is an :class:`AzureError`: a headline, context lines, a
hint, and the ``nexus`` exit code it deserves: 2 when the configuration must change (no
subscription, a rejected credential, a missing permission), 3 when Azure did not answer
or kept refusing (throttled past every retry, the breaker open).
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.plugin import ServiceError

#: Exit codes (the values of ``nexus_core.plugin.ExitCode``).
CONFIG = 2
CONNECTION = 3


class AzureError(ServiceError):
    """A call to Azure failed: ``headline``, ``context`` lines, ``hint``, ``exit_code``."""

    def __init__(
        self, headline: str, *, hint: str = "", context: Sequence[str] = (), exit_code: int = CONNECTION
    ) -> None:
        super().__init__(headline, hint=hint, context=context, exit_code=exit_code)
