"""The error a plugin raises when an outside service (a cloud API, a tailnet) fails.

:class:`ServiceError` carries what a user needs: a one-line ``headline``, ``context`` lines,
a ``hint`` that says how to fix it, and the ``nexus`` exit code it deserves (2 when the
configuration must change, 3 when the service did not answer). Plugins subclass it under
their own names (``AzureError``, ``TailscaleError``); it is exported lazily by
:mod:`nexus_core.plugin`, and this module imports nothing, so it costs nothing to load.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ServiceError"]


class ServiceError(Exception):
    """A call to a service failed: ``headline``, ``context`` lines, ``hint``, ``exit_code`` (3 by default)."""

    def __init__(self, headline: str, *, hint: str = "", context: Sequence[str] = (), exit_code: int = 3) -> None:
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
