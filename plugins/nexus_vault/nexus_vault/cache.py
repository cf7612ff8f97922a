"""An encrypted local copy of the Vault secrets a run read, for when Vault cannot be reached.

Off by default (``vault_cache_ttl = 0``). With a TTL, each secret read from Vault is also
written to ``vault-cache.json`` in the private folder the core gives the backend
(``SecretContext.cache_dir``, mode 0700); when a later run cannot reach Vault (network down,
sealed, circuit open), a copy younger than the TTL stands in, with a warning. A copy is
never used instead of a Vault that answers: a rotated or revoked secret is seen at once.

- Encryption: AES-256-GCM (``cryptography``), a fresh 96-bit nonce per entry; the entry's
  id (a SHA-256 of address, namespace, mount, path and version) is the associated data, so
  an entry cannot be moved to stand for another secret. Entries hold the secret's whole
  KV data (all its keys), so every ``#KEY`` of a path is served from one read.
- The key: derived (HKDF-SHA256, ``info=b"nexus-vault cache"``) from the key material the
  backend passes: the key the core derives from the user's secret store master key
  (``SecretContext.cache_key("nexus-vault cache")``: the store already unlocked, or
  ``NEXUS_MASTER_KEY`` / a keyfile, never a prompt), else a random key kept in
  ``vault-cache.key`` (mode 0600) beside the cache. With the master key, a copy of the cache
  folder is useless without that key; with the local key, it protects copies that leave the
  machine without the key file (a backup of the cache folder, a pasted file), not against
  someone who can read the user's files; docs/plugins/vault.md says so. A copy written under
  one key and read under the other (the master key given in one run, not the next) is a
  missed copy, as an expired one.
- Writes are atomic (temporary file + ``os.replace``); expired entries are dropped on write.
  A damaged file or entry (wrong key, edited, truncated) is ignored and rewritten, never
  fatal: the cache is only ever a fallback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets as _random
import tempfile
import time
from collections.abc import Mapping
from typing import Any

#: What the cache's key is for, as asked of the core (``SecretContext.cache_key``).
CACHE_PURPOSE = "nexus-vault cache"
CACHE_FILE = "vault-cache.json"
KEY_FILE = "vault-cache.key"
_FORMAT = 1


def entry_id(addr: str, namespace: str | None, mount: str, path: str, version: int | None) -> str:
    """The id of one cached secret (no secret value goes into it)."""
    text = "\x00".join([addr, namespace or "", mount, path, str(version or "latest")])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def local_key(folder: str) -> bytes:
    """The random key kept in ``folder/vault-cache.key`` (created with mode 0600 when missing)."""
    path = os.path.join(folder, KEY_FILE)
    try:
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) == 32:
            return key
    except OSError:
        pass
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key = _random.token_bytes(32)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".key-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return key


def _fresh(item: Any, now: float, ttl: float) -> bool:
    stored = item.get("stored") if isinstance(item, dict) else None
    return isinstance(stored, (int, float)) and 0 <= now - stored < ttl


class SecretCache:
    """The encrypted cache file of one folder (see the module docstring)."""

    def __init__(self, folder: str, key_material: bytes, ttl: float) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        self.folder = folder
        self.path = os.path.join(folder, CACHE_FILE)
        self.ttl = ttl
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"nexus-vault cache").derive(
            key_material
        )
        self._aead = AESGCM(key)

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, entry: str) -> tuple[dict[str, Any], float] | None:
        """(the secret's KV data, its age in seconds) when a copy younger than the TTL exists."""
        item = self._load().get(entry)
        if not isinstance(item, dict):
            return None
        try:
            age = time.time() - float(item["stored"])
            if age < 0 or age >= self.ttl:
                return None
            plain = self._aead.decrypt(
                base64.b64decode(item["nonce"]), base64.b64decode(item["data"]), entry.encode("ascii")
            )
            data = json.loads(plain)
        except Exception:  # a damaged or foreign entry is only a missed copy
            return None
        return (data, age) if isinstance(data, dict) else None

    def put(self, entry: str, data: Mapping[str, Any]) -> None:
        """Store ``data`` (the secret's KV data) under ``entry``; expired entries are dropped."""
        now = time.time()
        entries = {k: v for k, v in self._load().items() if _fresh(v, now, self.ttl)}
        nonce = _random.token_bytes(12)
        sealed = self._aead.encrypt(nonce, json.dumps(dict(data)).encode("utf-8"), entry.encode("ascii"))
        entries[entry] = {
            "stored": now,
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "data": base64.b64encode(sealed).decode("ascii"),
        }
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".cache-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"format": _FORMAT, "entries": entries}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
