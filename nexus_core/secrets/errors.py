"""The error of a reference to a secret backend nobody installed (imported when a secret is used)."""

from __future__ import annotations

from nexus_core.contracts.secrets import SecretUnavailable


class UnknownBackend(SecretUnavailable):
    """A reference names a backend no installed plugin registers; ``hint`` says what to install."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint
