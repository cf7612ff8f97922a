"""``vault:`` references: ``[MOUNT/]PATH[#KEY][@VERSION]``.

- ``secret("vault:kv/app#db_password")``: mount ``kv``, secret ``app``, key ``db_password``,
  latest version (the Vault CLI's ``vault kv get -field=db_password kv/app``).
- ``secret("vault:kv/app#db_password@3")``: version 3 of that secret.
- ``secret("vault:kv/app")``: the secret's only key (an error naming the keys when it has several).
- With ``config(vault_mount="kv")`` the whole path is inside that mount: ``secret("vault:app#db_password")``
  (mounts with a slash in their name, ``team/kv``, need ``vault_mount``).

Nexus adds the KV v2 ``data/`` segment itself: ``kv/app`` is read from ``/v1/kv/data/app``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nexus_core.plugin import SecretError

_VERSION = re.compile(r"@([0-9]+)$")


class BadReference(SecretError):
    """A ``vault:`` reference that cannot be parsed (the message shows the syntax)."""


@dataclass(frozen=True)
class Reference:
    """A parsed ``vault:`` reference: where to read, which key, which version."""

    text: str
    mount: str
    path: str
    key: str | None = None
    version: int | None = None

    @property
    def shown(self) -> str:
        """The reference as the user wrote it, with its prefix: ``vault:kv/app#db_password``."""
        return f"vault:{self.text}"

    @property
    def api_path(self) -> str:
        """The KV v2 read path: ``kv/data/app``."""
        return f"{self.mount}/data/{self.path}"


SYNTAX = "vault:MOUNT/PATH#KEY, vault:MOUNT/PATH#KEY@VERSION or, with config(vault_mount=...), vault:PATH#KEY"


def parse(text: str, mount: str | None = None) -> Reference:
    """Parse ``text`` (what follows ``vault:``); ``mount`` is ``config(vault_mount=...)``.

    Raises :class:`BadReference` with the syntax when ``text`` does not fit.
    """
    rest = text.strip()
    version: int | None = None
    found = _VERSION.search(rest)
    if found:
        version = int(found.group(1))
        rest = rest[: found.start()]
        if version < 1:
            raise BadReference(f"vault:{text}: versions start at 1, not {version}; write {SYNTAX}")
    path, sep, key = rest.partition("#")
    path = path.strip("/")
    if sep and not key:
        raise BadReference(f"vault:{text}: nothing after '#'; name the key: {SYNTAX}")
    if not path or "//" in path:
        raise BadReference(f"vault:{text}: no secret path; write {SYNTAX}")
    if any(part in (".", "..") for part in path.split("/")):  # the request would go elsewhere
        raise BadReference(f"vault:{text}: '.' and '..' are not path segments Vault reads; write {SYNTAX}")
    if mount:
        return Reference(text, mount.strip("/"), path, key or None, version)
    first, slash, inner = path.partition("/")
    if not slash or not inner:
        raise BadReference(
            f"vault:{text}: the path names no mount; "
            f"write the mount first (vault:secret/{path}{'#' + key if key else ''}) "
            "or set config(vault_mount=...)"
        )
    return Reference(text, first, inner, key or None, version)
