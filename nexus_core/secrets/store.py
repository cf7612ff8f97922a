"""The encrypted store file (``secrets.enc``): format, crypto, atomic writes.

One JSON document per store::

    {"version": 2, "kdf": "argon2id" | "key", "kdf_params": {...}, "salt": "...",
     "key_check": "...", "key_created_at": "...", "secrets": [{"name": ..., "created_at": ...,
     "updated_at": ..., "encrypted_dek": ..., "iv": ..., "ciphertext": ..., "auth_tag": ...}],
     "mac": "..."}

- The **master key** (32 bytes) comes from ``NEXUS_MASTER_KEY``, a keyfile, or a passphrase
  through Argon2id (``kdf: "argon2id"``, parameters and salt in ``kdf_params``; derived once
  per unlock). ``kdf: "key"``: the store was made with a key, not a passphrase.
- HKDF-SHA256 over the master key (salted with ``salt``) gives three keys: the **KEK** that
  wraps each secret's data key, the key of ``key_check`` (a known text encrypted with it,
  so that a wrong key is told from a damaged file), and the key of ``mac`` (HMAC-SHA256 over
  everything else: a secret added, removed or renamed by hand is detected).
- Each secret has its own random 32-byte **data key** (DEK); the value is encrypted with
  AES-256-GCM under the DEK (``iv``, ``ciphertext``, ``auth_tag``), the DEK with AES-256-GCM
  under the KEK (``encrypted_dek`` = nonce + ciphertext + tag). Both bind the secret's name
  as associated data. Setting a secret again makes a new DEK.
- Names and dates are in the clear: ``nexus secret list`` and ``nexus validate`` need no key.

Writes go to a temporary file in the same folder, are flushed to disk and renamed over the
old file: a kill leaves the old file or the new one, never half of one. A lock file
(``secrets.enc.lock``) serialises writers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nexus_core.api import SecretDenied, SecretInfo, SecretNotFound, SecretUnavailable

FORMAT_VERSION = 2
KEY_BYTES = 32
_CHECK_TEXT = b"nexus secrets key check v2"
#: Argon2id parameters for new passphrase-protected stores (RFC 9106's second choice: 64 MiB).
ARGON2_PARAMS = {"t_cost": 3, "m_cost": 65536, "parallelism": 4}
#: The most a store may ask of Argon2id (2 GiB, 64 passes, 64 lanes), and of passes x memory
#: (4 GiB: RFC 9106's first choice, 1 pass over 2 GiB, is 2): costs an edited file puts beyond
#: these would stall or exhaust the machine before the integrity check could run (64 passes
#: over 4 GiB ran for minutes, silently, for every user of a committed team store).
ARGON2_LIMITS = {"t_cost": 64, "m_cost": 2 * 1024 * 1024, "parallelism": 64}
ARGON2_MAX_WORK = 4 * 1024 * 1024


def now() -> str:
    """The current UTC time as ISO 8601 (``2026-12-01T17:00:00Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class MasterKey:
    """Key material for a store and where it came from (for messages: never the key itself)."""

    material: bytes
    source: str


def key_from_text(text: str, source: str) -> MasterKey:
    """A master key written as base64 (``NEXUS_MASTER_KEY``, a generated keyfile)."""
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SecretDenied(f"{source} is not base64 text; give the key as written by `nexus secret init`") from None
    if len(raw) < 16:
        raise SecretDenied(f"{source} holds {len(raw)} bytes; a master key has 32 (base64 of 32 random bytes)")
    return MasterKey(raw if len(raw) == KEY_BYTES else hashlib.sha256(raw).digest(), source)


def key_from_file(path: str) -> MasterKey:
    """The master key of a keyfile: its base64 key (as ``init --team`` writes), else SHA-256 of its bytes."""
    from nexus_core.userfiles import check_regular

    source = f"keyfile {path}"
    try:
        check_regular(path)
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError as exc:
        raise SecretUnavailable(f"cannot read the {source}: {exc.strerror or exc}") from None
    if not data.strip():
        raise SecretDenied(f"the {source} is empty")
    try:
        key = key_from_text(data.decode("ascii"), source)
    except (SecretDenied, UnicodeDecodeError):
        return MasterKey(hashlib.sha256(data).digest(), source)
    from nexus_core.secrets.redact import register

    register(data.decode("ascii").strip())  # a command printing the keyfile (cat .nexus/team.key) shows ***
    return key


def new_key_text() -> str:
    """A fresh random master key, as base64 text (a keyfile's content, ``NEXUS_MASTER_KEY``)."""
    return _b64(os.urandom(KEY_BYTES))


def derive_passphrase(passphrase: str, params: dict[str, Any]) -> bytes:
    """Argon2id over ``passphrase`` with the store's salt and cost parameters (slow on purpose)."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(
        salt=_unb64(params["salt"]),
        length=KEY_BYTES,
        iterations=int(params["t_cost"]),
        lanes=int(params["parallelism"]),
        memory_cost=int(params["m_cost"]),
    ).derive(passphrase.encode("utf-8"))


def _hkdf(master: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(master)


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in doc.items() if k != "mac"}, sort_keys=True, separators=(",", ":")).encode()


def purpose_key(master: bytes, purpose: str) -> bytes:
    """32 bytes for ``purpose`` (a plugin's cache...) from a master key: HKDF-SHA256, two steps.

    No salt, so the same master key gives the same key whatever store it opens (a rotated key
    gives another one); the store's own keys (KEK, check, MAC) are never handed out.
    """
    return _hkdf(_hkdf(master, b"", b"nexus-secrets/purposes"), b"", b"nexus-secrets/purpose:" + purpose.encode())


class Keys:
    """The keys HKDF derives from a master key for one store (derived once per unlock)."""

    def __init__(self, master: bytes, salt: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.kek = AESGCM(_hkdf(master, salt, b"nexus-secrets/kek"))
        self.check = AESGCM(_hkdf(master, salt, b"nexus-secrets/check"))
        self.mac_key = _hkdf(master, salt, b"nexus-secrets/mac")
        self._purposes = _hkdf(master, b"", b"nexus-secrets/purposes")

    def for_purpose(self, purpose: str) -> bytes:
        """:func:`purpose_key` of the master key (which is not kept)."""
        return _hkdf(self._purposes, b"", b"nexus-secrets/purpose:" + purpose.encode())

    def mac(self, doc: dict[str, Any]) -> str:
        """HMAC-SHA256 of everything in ``doc`` but its ``mac``."""
        return _b64(hmac.new(self.mac_key, _canonical(doc), hashlib.sha256).digest())


class Store:
    """One store file: names in the clear; values once :meth:`unlock` got the right key.

    ``path`` need not exist: :meth:`create` makes a new document, written by :meth:`save`.
    """

    def __init__(self, path: str, doc: dict[str, Any] | None = None) -> None:
        self.path = path
        self.doc: dict[str, Any] | None = doc
        self.keys: Keys | None = None
        self.key_source = ""

    # --- reading -------------------------------------------------------------------------

    @classmethod
    def read(cls, path: str) -> Store:
        """The store at ``path`` (an empty, not yet created one when the file does not exist)."""
        from nexus_core.userfiles import read_small

        try:
            raw = read_small(path)
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise SecretUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls(path, _parse(path, raw))

    @property
    def exists(self) -> bool:
        """True when the file exists (or was created in this process)."""
        return self.doc is not None

    @property
    def kdf(self) -> str:
        """``argon2id`` (a passphrase opens it) or ``key`` (a key or keyfile does)."""
        return str((self.doc or {}).get("kdf", ""))

    def _entries(self) -> list[dict[str, Any]]:
        return list((self.doc or {}).get("secrets", []))

    def names(self) -> list[str]:
        """Names of the secrets in this store, sorted (no key needed)."""
        return sorted(str(e["name"]) for e in self._entries())

    def __contains__(self, name: object) -> bool:
        return any(e["name"] == name for e in self._entries())

    def infos(self, backend: str) -> list[SecretInfo]:
        """Name and dates of every secret (no key needed)."""
        return [
            SecretInfo(str(e["name"]), backend, str(e.get("created_at", "")), str(e.get("updated_at", "")), self.path)
            for e in sorted(self._entries(), key=lambda e: str(e["name"]))
        ]

    def entry(self, name: str) -> dict[str, Any]:
        """The record of ``name`` (dates and ciphertext); SecretNotFound when absent."""
        for e in self._entries():
            if e["name"] == name:
                return e
        raise SecretNotFound(f"no secret {name!r} in {self.path}")

    # --- keys ----------------------------------------------------------------------------

    def create(self, key: MasterKey, passphrase_params: dict[str, Any] | None = None) -> None:
        """Start a new, empty store under ``key`` (``passphrase_params``: the Argon2id salt and costs)."""
        self.doc = {
            "version": FORMAT_VERSION,
            "kdf": "argon2id" if passphrase_params else "key",
            "kdf_params": dict(passphrase_params or {}),
            "salt": _b64(os.urandom(16)),
            "key_created_at": now(),
            "secrets": [],
        }
        self._use(key)
        nonce = os.urandom(12)
        assert self.keys is not None
        self.doc["key_check"] = _b64(nonce + self.keys.check.encrypt(nonce, _CHECK_TEXT, None))

    def unlock(self, key: MasterKey) -> None:
        """Check ``key`` against the store; SecretDenied (wrong key) or SecretUnavailable (tampered)."""
        from cryptography.exceptions import InvalidTag

        assert self.doc is not None
        keys = Keys(key.material, _unb64(self.doc["salt"]))
        check = _unb64(self.doc["key_check"])
        try:
            keys.check.decrypt(check[:12], check[12:], None)
        except InvalidTag:
            raise SecretDenied(
                f"the key from {key.source} does not open {self.path} (wrong key or passphrase)"
            ) from None
        if not hmac.compare_digest(keys.mac(self.doc), str(self.doc.get("mac", ""))):
            raise SecretUnavailable(
                f"{self.path} was changed outside Nexus (its integrity check failed); "
                f"restore it from a backup ({os.path.basename(self.path)}.bak after a key rotation)"
            )
        self.keys = keys
        self.key_source = key.source

    def _use(self, key: MasterKey) -> None:
        assert self.doc is not None
        self.keys = Keys(key.material, _unb64(self.doc["salt"]))
        self.key_source = key.source

    @property
    def unlocked(self) -> bool:
        """True once a key opened the store."""
        return self.keys is not None

    def purpose_key(self, purpose: str) -> bytes:
        """:func:`purpose_key` of the master key that opened the store (it must be unlocked)."""
        assert self.keys is not None, "unlock the store first"
        return self.keys.for_purpose(purpose)

    # --- values --------------------------------------------------------------------------

    def get(self, name: str) -> str:
        """The value of ``name`` (the store must be unlocked)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        assert self.keys is not None, "unlock the store first"
        e = self.entry(name)
        aad = name.encode("utf-8")
        try:
            wrapped = _unb64(e["encrypted_dek"])
            dek = self.keys.kek.decrypt(wrapped[:12], wrapped[12:], aad)
            plain = AESGCM(dek).decrypt(_unb64(e["iv"]), _unb64(e["ciphertext"]) + _unb64(e["auth_tag"]), aad)
            return plain.decode("utf-8")
        except (InvalidTag, KeyError, ValueError, binascii.Error):
            raise SecretUnavailable(
                f"secret {name!r} in {self.path} cannot be decrypted (the file was damaged or changed by hand); "
                f"set it again with `nexus secret set {name}`"
            ) from None

    def put(self, name: str, value: str) -> None:
        """Set ``name`` to ``value`` with a new data key (in memory; :meth:`save` writes)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        assert self.doc is not None and self.keys is not None, "unlock the store first"
        aad = name.encode("utf-8")
        dek = AESGCM.generate_key(bit_length=256)
        dek_nonce, iv = os.urandom(12), os.urandom(12)
        sealed = AESGCM(dek).encrypt(iv, value.encode("utf-8"), aad)
        record = {
            "name": name,
            "created_at": now(),
            "updated_at": now(),
            "encrypted_dek": _b64(dek_nonce + self.keys.kek.encrypt(dek_nonce, dek, aad)),
            "iv": _b64(iv),
            "ciphertext": _b64(sealed[:-16]),
            "auth_tag": _b64(sealed[-16:]),
        }
        entries = self._entries()
        for i, e in enumerate(entries):
            if e["name"] == name:
                record["created_at"] = e.get("created_at", record["created_at"])
                entries[i] = record
                break
        else:
            entries.append(record)
        self.doc["secrets"] = sorted(entries, key=lambda e: str(e["name"]))

    def remove(self, name: str) -> None:
        """Delete ``name`` (in memory; :meth:`save` writes); SecretNotFound when absent."""
        assert self.doc is not None
        self.entry(name)
        self.doc["secrets"] = [e for e in self._entries() if e["name"] != name]

    def rekey(self, key: MasterKey, passphrase_params: dict[str, Any] | None = None) -> int:
        """Re-encrypt every secret under ``key`` (new salt, new data keys); returns how many."""
        values = {name: self.get(name) for name in self.names()}
        dates = {e["name"]: e.get("created_at") for e in self._entries()}
        self.create(key, passphrase_params)
        for name, value in values.items():
            self.put(name, value)
        assert self.doc is not None
        for e in self.doc["secrets"]:
            e["created_at"] = dates.get(e["name"]) or e["created_at"]
        return len(values)

    # --- writing -------------------------------------------------------------------------

    def save(self) -> None:
        """Write the store atomically (temporary file, fsync, rename), mode 0600."""
        assert self.doc is not None and self.keys is not None
        self.doc["mac"] = self.keys.mac(self.doc)
        write_atomic(self.path, (json.dumps(self.doc, indent=1, sort_keys=False) + "\n").encode("utf-8"))


def _parse(path: str, raw: bytes) -> dict[str, Any]:
    """The document in ``raw``, checked for shape; SecretUnavailable naming ``path`` when damaged."""
    damaged = (
        f"{path} is damaged or truncated (not a complete Nexus secrets file); "
        f"restore it from a backup ({os.path.basename(path)}.bak after a key rotation) or move it away"
    )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SecretUnavailable(damaged) from None
    if not isinstance(doc, dict):
        raise SecretUnavailable(damaged)
    if doc.get("version") != FORMAT_VERSION:
        raise SecretUnavailable(
            f"{path} has format version {doc.get('version')!r}; this Nexus reads version {FORMAT_VERSION}"
        )
    try:
        entries = doc["secrets"]
        if doc["kdf"] not in ("argon2id", "key") or not isinstance(entries, list):
            raise ValueError
        _unb64(doc["salt"])
        if len(_unb64(doc["key_check"])) < 28 or not isinstance(doc.get("mac"), str):
            raise ValueError
        if doc["kdf"] == "argon2id":
            params = doc["kdf_params"]
            _unb64(params["salt"])
            for k, most in ARGON2_LIMITS.items():
                if not isinstance(params[k], int) or not 1 <= params[k] <= most:
                    raise ValueError
            if params["m_cost"] < 8 * params["parallelism"]:  # Argon2's own minimum
                raise ValueError
            if params["t_cost"] * params["m_cost"] > ARGON2_MAX_WORK:
                raise ValueError
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("name"), str):
                raise ValueError
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise SecretUnavailable(damaged) from None
    return doc


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never a mix."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold ``PATH.lock`` (an advisory lock) while a writer reads, changes and saves the store."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def passphrase_params() -> dict[str, Any]:
    """Argon2id parameters with a fresh salt, for a store protected by a new passphrase."""
    return {"salt": _b64(os.urandom(16)), **ARGON2_PARAMS}
