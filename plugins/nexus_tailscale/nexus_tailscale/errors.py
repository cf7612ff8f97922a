"""What goes wrong while asking a tailnet for its devices, with the fix and the exit code.

Every failure is a :class:`TailscaleError`: a one-line headline, optional context lines and
a hint that says how to fix it, and the ``nexus`` exit code it deserves: 2 when the
configuration must change (not logged in, a rejected API key, a missing ``tailscale``), 3
when something did not answer (the daemon is down, the API timed out or keeps refusing).
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.plugin import ServiceError

#: Exit codes (the values of ``nexus_core.plugin.ExitCode``).
CONFIG = 2
CONNECTION = 3


class TailscaleError(ServiceError):
    """Discovery from the tailnet failed: ``headline``, ``context`` lines, ``hint``, ``exit_code``."""

    def __init__(
        self, headline: str, *, hint: str = "", context: Sequence[str] = (), exit_code: int = CONNECTION
    ) -> None:
        super().__init__(headline, hint=hint, context=context, exit_code=exit_code)


class ApiError(TailscaleError):
    """An HTTP API call failed; ``status`` is the HTTP status (0 when nothing answered)."""

    def __init__(
        self,
        headline: str,
        *,
        status: int = 0,
        retry_after: float | None = None,
        hint: str = "",
        context: Sequence[str] = (),
        exit_code: int = CONNECTION,
    ) -> None:
        super().__init__(headline, hint=hint, context=context, exit_code=exit_code)
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """True when trying again may help: no answer, 429, or a server error (5xx)."""
        return self.status == 0 or self.status == 429 or self.status >= 500
