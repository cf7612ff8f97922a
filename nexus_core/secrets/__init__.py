"""Secrets: the built-in encrypted store, references to other backends, and redaction.

A reference is what ``secret(...)`` receives. ``"NAME"`` goes to the default backend
(``config(secret_backend=...)``, ``"local"`` when unset); ``"BACKEND:REST"`` goes to the
backend registered as ``BACKEND`` (hook ``nexus_secret_backends``) with ``"REST"``, which
only that backend interprets (``"vault:kv/app#db_password"``).
"""

from __future__ import annotations

import re

#: The built-in backend: the encrypted store files (personal and project).
LOCAL = "local"

#: ``BACKEND:REST``: a backend prefix is a lower-case word, so that ``kv/app:x`` is not one.
_PREFIXED = re.compile(r"^([a-z][a-z0-9_-]*):(.*)$", re.DOTALL)

#: Names the local store accepts (what ``nexus secret set NAME`` takes).
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def split_reference(reference: str, default: str = LOCAL) -> tuple[str, str]:
    """``(backend, rest)`` of a reference: ``"vault:kv/app#pw"`` -> ``("vault", "kv/app#pw")``.

    A reference without a backend prefix goes to ``default`` whole.
    """
    found = _PREFIXED.match(reference)
    if found is None:
        return default, reference
    return found[1], found[2]
