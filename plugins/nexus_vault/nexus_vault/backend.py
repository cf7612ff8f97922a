"""The ``vault`` secret backend: ``secret("vault:kv/app#db_password")`` read from Vault's KV v2.

One instance serves a run (the core creates it at the first ``vault:`` reference and closes
it at the end). It reads each secret path once per run (every ``#KEY`` of a path, and every
host that evaluates the same ``secret(...)``, share that read), through one logged-in
session (:mod:`nexus_vault.session`), and keeps an encrypted copy when
``vault_cache_ttl`` is set (:mod:`nexus_vault.cache`). The syntax of references is in
:mod:`nexus_vault.reference`; docs/plugins/vault.md is the user's guide.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from nexus_core.plugin import (
    SecretBackend,
    SecretContext,
    SecretError,
    SecretInfo,
    SecretNotFound,
    SecretUnavailable,
)

from nexus_vault import reference as refs
from nexus_vault import settings as vault_settings
from nexus_vault.cache import CACHE_PURPOSE, SecretCache, entry_id, local_key
from nexus_vault.errors import for_core, headline, not_found
from nexus_vault.reference import Reference
from nexus_vault.session import VaultSession

#: Secrets ``nexus secret list --backend vault`` walks at most (LIST calls are one per folder).
MAX_LISTED = 1000
#: Folder depth the listing descends at most.
MAX_DEPTH = 16


def _list(client: Any, path: str, mount: str) -> Any:
    """The keys under ``path``; an empty folder (an empty mount) is no keys: Vault answers its
    LIST with 404 and no error text (a mount that does not exist says "no handler for route")."""
    from hvac.exceptions import InvalidPath

    try:
        return client.secrets.kv.v2.list_secrets(path=path, mount_point=mount)
    except InvalidPath as exc:
        if getattr(exc, "errors", None):
            raise
        return {}


def _metadata(client: Any, path: str, mount: str) -> Any:
    return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)


def _delete_latest(client: Any, path: str, mount: str) -> Any:
    return client.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point=mount)


def _text(value: Any) -> str:
    """A KV value as the string ``secret()`` returns: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


_F = TypeVar("_F", bound=Callable[..., Any])


def _for_core(method: _F) -> _F:
    """Errors leave the backend in the core's shape (:func:`nexus_vault.errors.for_core`)."""

    @functools.wraps(method)
    def explained(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except SecretError as err:
            raise for_core(err) from None

    return cast(_F, explained)


class VaultBackend(SecretBackend):
    """Secrets from HashiCorp Vault (KV version 2), with one login per run."""

    #: With ``vault_cache_ttl`` set, encrypted copies are kept between runs.
    caches = True
    #: ``set("kv/app#key", value)`` writes a new version of the secret (check-and-set).
    writable = True

    def __init__(self, context: SecretContext) -> None:
        super().__init__(context)
        self._settings: vault_settings.VaultSettings | None = None
        self._session: VaultSession | None = None
        self._cache: SecretCache | None = None
        self._read: dict[tuple[str, str, int | None], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._warned_cache = False

    # --- set-up -------------------------------------------------------------------------

    def _setup(self, subject: str) -> VaultSession:
        if self._session is not None:
            return self._session
        try:
            settings = vault_settings.load(self.context.config)
        except SecretError as err:
            raise type(err)(f"{subject}: {err}") from None
        self._settings = settings
        self._session = VaultSession(settings, self.context.warn)
        if settings.cache_ttl > 0 and self.context.cache_dir:
            self._cache = SecretCache(self.context.cache_dir, self._cache_key(), settings.cache_ttl)
        return self._session

    def _cache_key(self) -> bytes:
        """Key material for the cache: from the user's store master key when the core can give
        it without a prompt (``SecretContext.cache_key``), else a local random key."""
        offered = self.context.cache_key(CACHE_PURPOSE)
        if isinstance(offered, bytes) and len(offered) >= 16:
            return offered
        return local_key(self.context.cache_dir)

    @property
    def session(self) -> VaultSession | None:
        """The run's Vault session once a secret was asked for (for tests and benchmarks)."""
        return self._session

    # --- reading --------------------------------------------------------------------------

    @_for_core
    def resolve(self, reference: str) -> str:
        """The value of ``reference`` (``kv/app#db_password``, ``kv/app#db_password@3``, ``kv/app``)."""
        session = self._setup(f"vault:{reference}")
        assert self._settings is not None
        ref = refs.parse(reference, self._settings.mount)
        data = self._data(session, ref)
        return self._pick(ref, data)

    def _data(self, session: VaultSession, ref: Reference) -> dict[str, Any]:
        memo = (ref.mount, ref.path, ref.version)
        with self._lock:
            if memo in self._read:
                return self._read[memo]
            assert self._settings is not None
            s = self._settings
            entry = entry_id(s.addr, s.namespace, ref.mount, ref.path, ref.version)
            try:
                data = session.read(ref)
            except SecretUnavailable as err:
                copy = self._cache.get(entry) if self._cache is not None else None
                if copy is None:
                    raise
                data, age = copy
                if not self._warned_cache:
                    self._warned_cache = True
                    problem = headline(err)
                    self.context.warn(
                        f"vault: {problem}; using encrypted local copies "
                        f"(at most {s.cache_ttl:g} s old; this one {age:.0f} s)"
                    )
            else:
                if self._cache is not None:
                    self._cache.put(entry, data)
            self._read[memo] = data
            return data

    @staticmethod
    def _pick(ref: Reference, data: dict[str, Any]) -> str:
        keys = sorted(data)
        example = f"vault:{ref.mount}/{ref.path}#{keys[0] if keys else 'KEY'}"
        if ref.key is not None:
            if ref.key in data:
                return _text(data[ref.key])
            listed = ", ".join(keys) if keys else "none"
            raise SecretNotFound(
                f"{ref.shown}: the secret {ref.mount}/{ref.path} has no key {ref.key!r} "
                f"(its keys: {listed}); name one of its keys after '#', e.g. {example}"
            )
        if len(keys) == 1:
            return _text(data[keys[0]])
        listed = ", ".join(keys) if keys else "none"
        raise SecretNotFound(
            f"{ref.shown}: the secret {ref.mount}/{ref.path} holds {len(keys)} keys ({listed}): say which; "
            f"write vault:{ref.text.split('@')[0]}#KEY, e.g. {example}"
        )

    # --- listing and writing ----------------------------------------------------------------

    @_for_core
    def list_names(self) -> Sequence[SecretInfo]:
        """The secrets under ``vault_mount`` (or the ``secret`` mount), with their dates.

        Walks ``LIST {mount}/metadata/...`` folder by folder (at most :data:`MAX_LISTED`
        secrets and :data:`MAX_DEPTH` levels) and reads each secret's metadata for its dates.
        """
        session = self._setup("vault")
        assert self._settings is not None
        mount = (self._settings.mount or "secret").strip("/")
        shown_prefix = "" if self._settings.mount else f"{mount}/"
        where = self._settings.where
        found: list[SecretInfo] = []
        folders = [("", 0)]
        while folders and len(found) < MAX_LISTED:
            folder, depth = folders.pop(0)
            try:
                reply = session.call(partial(_list, path=folder, mount=mount))
            except SecretNotFound:
                continue
            for key in sorted((reply.get("data") or {}).get("keys") or []):
                if key.endswith("/"):
                    if depth + 1 < MAX_DEPTH:
                        folders.append((folder + key, depth + 1))
                    continue
                path = folder + key
                meta = session.call(partial(_metadata, path=path, mount=mount))
                info = meta.get("data") or {}
                found.append(
                    SecretInfo(
                        name=shown_prefix + path,
                        backend=self.name,
                        created_at=str(info.get("created_time") or ""),
                        updated_at=str(info.get("updated_time") or ""),
                        location=f"{where} {mount}/data/{path} (v{info.get('current_version', '?')})",
                    )
                )
                if len(found) >= MAX_LISTED:
                    break
        return found

    def _current(self, session: VaultSession, ref: Reference) -> tuple[dict[str, Any], int]:
        """The latest KV data of ``ref``'s path and its version (``({}, 0)`` when there is none)."""

        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=ref.path, mount_point=ref.mount, raise_on_deleted_version=False
            )

        try:
            reply = session.call(read, ref)
        except SecretNotFound:
            return {}, 0
        body = reply.get("data") or {}
        return dict(body.get("data") or {}), int((body.get("metadata") or {}).get("version") or 0)

    @_for_core
    def set(self, name: str, value: str) -> None:
        """Write ``value`` as key ``#KEY`` of the secret ``name`` (a new version; the other keys kept).

        The write is a check-and-set on the version read, so a concurrent writer is not overwritten.
        """
        session = self._setup(f"vault:{name}")
        assert self._settings is not None
        ref = refs.parse(name, self._settings.mount)
        if ref.key is None or ref.version is not None:
            raise refs.BadReference(
                f"{ref.shown}: say which key to write, without a version; write MOUNT/PATH#KEY"
            )
        data, version = self._current(session, ref)
        data[ref.key] = value
        session.call(
            lambda c: c.secrets.kv.v2.create_or_update_secret(
                path=ref.path, secret=data, cas=version, mount_point=ref.mount
            ),
            ref,
        )
        self._read.pop((ref.mount, ref.path, None), None)

    @_for_core
    def delete(self, name: str) -> None:
        """Remove key ``#KEY`` (a new version without it), or without a key the latest version.

        A version deleted this way can be restored with ``vault kv undelete``.
        """
        session = self._setup(f"vault:{name}")
        assert self._settings is not None
        ref = refs.parse(name, self._settings.mount)
        data, version = self._current(session, ref)
        if not version:
            raise not_found(self._settings, ref)
        if ref.key is None:
            session.call(partial(_delete_latest, path=ref.path, mount=ref.mount), ref)
        else:
            if ref.key not in data:
                raise SecretNotFound(f"{ref.shown}: the secret {ref.mount}/{ref.path} has no key {ref.key!r}")
            del data[ref.key]
            session.call(
                lambda c: c.secrets.kv.v2.create_or_update_secret(
                    path=ref.path, secret=data, cas=version, mount_point=ref.mount
                ),
                ref,
            )
        self._read.pop((ref.mount, ref.path, None), None)

    def close(self) -> None:
        """Stop the token renewal and close the HTTP session; forget every value read."""
        self._read.clear()
        if self._session is not None:
            self._session.close()
