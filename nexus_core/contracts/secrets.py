"""The contract of secret backends (``nexus_secret_backends``): re-exported by ``nexus_core.api``.

Imported on first use, so that a run that does not use this kind of plugin does not build
its classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    pass


class SecretError(Exception):
    """A secret could not be had; the message says what and where, ``hint`` how to fix it.

    A message never contains a secret value (it is shown, logged and recorded as is).
    The run stops with exit code 2 (configuration) and this message, without a traceback.
    The core names the reference itself (``secret('vault:kv/app#key'): MESSAGE``, with the
    hint under it), so a message need not repeat it. Without a hint the core shows a
    generic one (or the fix may end the message). Raise one of the subclasses when it fits.
    """

    def __init__(self, message: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class SecretNotFound(SecretError):
    """The backend has no secret of that name (``nexus secret set NAME`` / the Vault path)."""


class SecretDenied(SecretError):
    """The backend refused: wrong key or passphrase, permission denied, expired credentials."""


class SecretUnavailable(SecretError):
    """The backend could not be reached or used (network, sealed Vault, locked store, damaged file)."""


@dataclass(frozen=True)
class SecretInfo:
    """What ``nexus secret list`` shows of one secret: never its value.

    ``created_at``/``updated_at`` are ISO 8601 UTC strings ('' when the backend does not know);
    ``location`` says where it lives (a store file, a Vault path).
    """

    name: str
    backend: str
    created_at: str = ""
    updated_at: str = ""
    location: str = ""


@dataclass(frozen=True)
class SecretContext:
    """What a secret backend gets when it is created (once per run, or per ``nexus secret`` command).

    ``config``: the ``config(...)`` values as the user set them (defaults not filled in; read
    ``config.get(key, default)``), the backend's own keys included (declared through
    ``nexus_config_options``). ``root``: the project folder (the nexusfile's). ``cache_dir``:
    a private folder (mode 0700, ``$XDG_CACHE_HOME/nexus/secrets/NAME``) the backend may keep
    files in between runs ('' when it could not be made); anything it writes there must be
    encrypted. ``interactive``: True when a prompt may be shown on the
    terminal. ``warn``: reports one line to the user (a stale cache used, a token about to
    expire), never a value. :meth:`cache_key` gives key material for what the backend
    encrypts in ``cache_dir``.
    """

    config: Mapping[str, Any]
    root: str = "."
    cache_dir: str = ""
    interactive: bool = False
    warn: Callable[[str], None] = field(default=lambda _message: None)
    #: Set by the core: ``purpose -> bytes | None`` behind :meth:`cache_key`.
    key_source: Callable[[str], bytes | None] = field(default=lambda _purpose: None, repr=False, compare=False)

    def cache_key(self, purpose: str) -> bytes | None:
        """32 bytes to encrypt the backend's cache with, derived from the user's secret store master key.

        ``purpose`` names what the key is for (``"nexus-vault cache"``): each purpose gets its
        own key (HKDF-SHA256), and neither the master key nor the store's own keys are handed
        out. The key is the same from run to run while the master key is (a rotated master key
        makes old copies unreadable: a cache must then treat them as missing). None when no
        master key can be had without a prompt (no store, no ``NEXUS_MASTER_KEY`` or keyfile,
        a passphrase store the run did not unlock): keep a key of your own then.
        """
        return self.key_source(purpose)


class SecretBackend(ABC):
    """Where ``secret(...)`` values come from: the local encrypted store, Vault, SOPS...

    The interface is kept small on purpose: ``resolve`` is all a read-only backend needs.

    - A nexusfile's ``secret("NAME")`` goes to the default backend (``config(secret_backend=...)``,
      ``"local"`` when unset) with the reference ``"NAME"``; ``secret("vault:kv/app#db_password")``
      goes to the backend registered as ``vault`` with the reference ``"kv/app#db_password"``
      (everything after the first colon; what it means is the backend's business).
    - One instance serves a whole run (created before the first ``resolve``, from one thread
      at a time), and ``close`` is called once at its end, also after a failure.
    - The core remembers every value ``resolve`` returns and replaces it with ``***`` in all
      output, logs and state: a backend never needs to redact, and must never put a value in
      an exception message.
    """

    #: The prefix references use (``vault`` for ``secret("vault:...")``); set from the registration.
    name: ClassVar[str]
    #: True when the backend keeps values between runs (an encrypted local cache): shown by
    #: ``nexus plugins`` and ``nexus secret list`` so that users know copies exist.
    caches: ClassVar[bool] = False
    #: True when :meth:`set` and :meth:`delete` work (``nexus secret set --backend NAME``).
    writable: ClassVar[bool] = False

    def __init__(self, context: SecretContext) -> None:
        self.context = context

    @abstractmethod
    def resolve(self, reference: str) -> str:
        """The value of ``reference``; raise :class:`SecretNotFound`, :class:`SecretDenied` or
        :class:`SecretUnavailable` (never another exception, never the value in a message)."""

    def exists(self, reference: str) -> bool | None:
        """Whether ``reference`` exists, told without fetching its value; None when the backend cannot tell.

        ``nexus validate``, ``--dry-run`` and ``nexus list`` call it for every ``secret(...)``
        (they decrypt nothing): False is reported as a missing secret at its ``file:line``.
        """
        return None

    def list_names(self) -> Sequence[SecretInfo]:
        """The secrets this backend knows (names and dates only); optional.

        The default says the backend cannot list: ``nexus secret list`` then shows it as such.
        """
        raise NotImplementedError(f"secret backend {self.name!r} cannot list its secrets")

    def set(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` (only when :attr:`writable`)."""
        raise NotImplementedError(f"secret backend {self.name!r} is read-only")

    def delete(self, name: str) -> None:
        """Remove ``name``; :class:`SecretNotFound` when absent (only when :attr:`writable`)."""
        raise NotImplementedError(f"secret backend {self.name!r} is read-only")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and forget keys; called once when the run ends."""
