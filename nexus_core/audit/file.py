"""The ``file`` audit sink: JSON lines in a hash chain, rotated, compressed, kept for a while.

Options (``[audit.sinks.NAME]`` with ``type = "file"``): ``path`` (the log), ``max_bytes``
and ``max_age_days`` (rotate when the file reaches either), ``retention_days`` and
``retention_files`` (delete rotated files older than that, or beyond that many; 0 keeps
them all), ``checkpoint_every`` (records between signed checkpoints) and ``key`` (the
Ed25519 signing key; default ``~/.config/nexus/audit/signing.key``, created 0600).
Rotated files are gzipped as ``PATH.NNNNNNNNNNNN.gz``, numbered by their first record.
See :mod:`nexus_core.audit.chain` for the chain and ``nexus audit verify``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import gzip
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.api import AuditSink, AuditSinkError
from nexus_core.audit import chain
from nexus_core.audit.config import write_private
from nexus_core.options import Option


def default_key(config_dir: str) -> str:
    """The signing key's default path: ``~/.config/nexus/audit/signing.key``."""
    return os.path.join(config_dir, "audit", "signing.key")


def load_or_create_key(path: str) -> Any:
    """The Ed25519 private key in ``path``, created (0600, with ``.pub`` beside it) when missing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        with open(path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        write_private(path, pem)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with open(path.removesuffix(".key") + ".pub", "wb") as fh:
            fh.write(pub)
        return key
    except (OSError, ValueError) as exc:
        raise AuditSinkError(
            f"cannot read the signing key {path}: {exc}", "check the key file's owner and mode"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditSinkError(f"the signing key {path} is not an Ed25519 key", "remove it to have a new one made")
    return key


class FileSink(AuditSink):
    """JSON lines with a SHA-256 hash chain and Ed25519-signed checkpoints; rotated, gzipped, retained."""

    name: ClassVar[str] = "file"
    options: ClassVar[tuple[Option, ...]] = (
        Option("path", (str,), None, "the log file (its folder is created)", allow_none=False),
        Option("max_bytes", (int,), 10 * 1024 * 1024, "rotate when the file reaches this size", minimum=256),
        Option(
            "max_age_days", (int, float), 0, "rotate when the file's first record is this old (0: never)", minimum=0
        ),
        Option("retention_days", (int, float), 0, "delete rotated files older than this (0: keep)", minimum=0),
        Option("retention_files", (int,), 0, "keep at most this many rotated files (0: all)", minimum=0),
        Option("checkpoint_every", (int,), 100, "records between signed checkpoints", minimum=1),
        Option("key", (str,), None, "the Ed25519 signing key (default ~/.config/nexus/audit/signing.key)"),
    )

    def open(self) -> None:
        """Open the log for appending and take up the chain where it ended."""
        opts = self.context.options
        if not opts.get("path"):
            raise AuditSinkError("no path", 'add path = "/var/log/nexus/audit.log"')
        self.path = os.path.abspath(os.path.expanduser(str(opts["path"])))
        self.key_path = os.path.expanduser(str(opts.get("key") or default_key(self.context.config_dir)))
        self.key = load_or_create_key(self.key_path)
        from cryptography.hazmat.primitives import serialization

        self.key_hex = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw).hex()  # fmt: skip
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            # Several runs (of several users) may share one log: each batch is written under
            # an exclusive lock, after taking up the chain where the others left it.
            self.lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
            with self._locked(sync=False):
                self.seq, self.prev, self.first_seq, self.first_time = self._tail()
                self._check_head()
                self.fh = open(self.path, "a", encoding="utf-8")
                self.end = os.fstat(self.fh.fileno()).st_size
        except OSError as exc:
            folder = os.path.dirname(self.path)
            blocked = next((p for p in _parents(folder) if os.path.lexists(p) and not os.path.isdir(p)), None)
            if blocked is not None:  # makedirs says only "File exists"
                hint = f"point the sink's path to a folder, or move {blocked} away"
                raise AuditSinkError(f"cannot open {self.path}: {blocked} is a file, not a folder", hint) from None
            raise AuditSinkError(f"cannot open {self.path}: {exc.strerror or exc}",
                                 "check that the folder exists and this user may write there") from None  # fmt: skip
        self.since_checkpoint = 0
        self.written = 0

    @contextlib.contextmanager
    def _locked(self, sync: bool = True) -> Iterator[None]:
        """Hold the log's lock; with ``sync``, first take up records other writers appended."""
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            if sync:
                self._sync()
            yield
            if sync:
                self.fh.flush()
                self.end = os.fstat(self.fh.fileno()).st_size
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def _sync(self) -> None:
        try:
            st: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            st = None
        mine = os.fstat(self.fh.fileno())
        if st is None or st.st_ino != mine.st_ino or st.st_size != self.end:  # another writer was here
            self.fh.close()
            self.seq, self.prev, self.first_seq, self.first_time = self._tail()
            self.fh = open(self.path, "a", encoding="utf-8")
            self.end = os.fstat(self.fh.fileno()).st_size

    def _tail(self) -> tuple[int, str, int, float]:
        """``(last seq, last hash, first seq of the current file, its first record's time)``."""
        first_seq, first_time = 0, 0.0
        source = self.path if os.path.exists(self.path) and os.path.getsize(self.path) else None
        if source is None:
            rotated = chain.rotated_files(self.path)
            if not rotated:
                return 0, chain.GENESIS, 0, 0.0
            source = rotated[-1]
        lines, complete = chain.read_lines(source)
        lines = [line for line in lines if line.strip()]
        if not lines or not complete:
            raise AuditSinkError(f"{source} does not end with a complete record",
                                 "run nexus audit verify; move the file away to start a new chain")  # fmt: skip
        try:
            last = json.loads(lines[-1])
            obj = last.get("checkpoint", last)
            seq, digest = int(obj["seq"]), str(obj["hash"])
            if source == self.path:
                first = json.loads(lines[0])
                first_seq = int(first.get("seq", 0))
                first_time = _epoch(str(first.get("timestamp", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            hint = "run nexus audit verify; move the file away to start a new chain"
            raise AuditSinkError(f"the end of {source} is not a chained record", hint) from None
        return seq, digest, first_seq, first_time

    def _check_head(self) -> None:
        """Refuse to go on from a log that lost records its writers wrote (cut short, emptied, replaced).

        Appending would take up the chain from the cut and overwrite the head file, so that
        ``nexus audit verify`` could no longer see the records removed.
        """
        head_file = chain.head_path(os.path.dirname(self.key_path), self.path)
        try:
            with open(head_file, encoding="utf-8") as fh:
                head = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise AuditSinkError(f"cannot read the chain's head {head_file}: {exc}",
                                 f"run nexus audit verify {self.path}") from None  # fmt: skip
        seq, digest = (head.get("seq"), head.get("hash")) if isinstance(head, dict) else (None, None)
        if not isinstance(seq, int) or seq > self.seq or (seq == self.seq and seq and digest != self.prev):
            ends = f"ends at record {self.seq}" if self.seq else "has no records"
            raise AuditSinkError(
                f"{self.path} {ends}, but its writer last wrote record {seq} "
                "(records were removed, or the log was emptied or replaced)",
                f"run nexus audit verify {self.path}; to start a new chain on purpose, "
                f"move the log and {head_file} away",
            )

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append ``records`` to the chain (rotating first when the file is due)."""
        try:
            with self._locked():
                self._append(records)
        except OSError as exc:
            raise AuditSinkError(
                f"cannot write {self.path}: {exc.strerror or exc}", "free space or fix permissions"
            ) from None

    def _append(self, records: Sequence[Mapping[str, Any]]) -> None:
        for rec in records:
            if self._due():
                self._rotate()
            self.seq += 1
            line, self.prev = chain.chained(rec, self.seq, self.prev)
            self.fh.write(line + "\n")
            self.written += 1
            if not self.first_seq:
                self.first_seq, self.first_time = self.seq, time.time()
            self.since_checkpoint += 1
            if self.since_checkpoint >= int(self.context.options["checkpoint_every"]):
                self._checkpoint(final=False)

    def _checkpoint(self, final: bool) -> None:
        signature = self.key.sign(chain.signed_text(self.seq, self.prev, final)).hex()
        cp = {"seq": self.seq, "hash": self.prev, "time": _now(), "final": final, "key": self.key_hex,
              "signature": signature}  # fmt: skip
        self.fh.write(json.dumps({"checkpoint": cp}, sort_keys=True, separators=(",", ":")) + "\n")
        self.since_checkpoint = 0

    def _due(self) -> bool:
        if not self.first_seq:
            return False
        if self.fh.tell() >= int(self.context.options["max_bytes"]):
            return True
        age = float(self.context.options["max_age_days"] or 0)
        return bool(age) and time.time() - self.first_time >= age * 86400

    def _rotate(self) -> None:
        self._checkpoint(final=True)
        self.fh.close()
        target = f"{self.path}.{self.first_seq:012d}.gz"
        with open(self.path, "rb") as src, gzip.open(target + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(target + ".tmp", target)
        os.remove(self.path)
        self._retain()
        self.fh = open(self.path, "a", encoding="utf-8")
        self.first_seq, self.first_time = 0, 0.0

    def _retain(self) -> None:
        rotated = chain.rotated_files(self.path)
        keep = int(self.context.options["retention_files"] or 0)
        doomed = rotated[: len(rotated) - keep] if keep and len(rotated) > keep else []
        days = float(self.context.options["retention_days"] or 0)
        if days:
            cutoff = time.time() - days * 86400
            doomed += [p for p in rotated if p not in doomed and os.path.getmtime(p) < cutoff]
        for path in doomed:
            try:
                os.remove(path)
            except OSError as exc:
                self.context.warn(f"audit sink {self.context.name!r}: cannot remove {path}: {exc.strerror or exc}")

    def close(self) -> None:
        """Sign the end of the run's records and leave the chain's head beside the key."""
        try:
            with self._locked():
                if self.written:
                    self._checkpoint(final=True)
                head = chain.head_path(os.path.dirname(self.key_path), self.path)
                os.makedirs(os.path.dirname(head), mode=0o700, exist_ok=True)
                with open(f"{head}.{os.getpid()}.tmp", "w", encoding="utf-8") as fh:
                    json.dump({"path": self.path, "seq": self.seq, "hash": self.prev}, fh)
                os.replace(f"{head}.{os.getpid()}.tmp", head)
            self.fh.close()
            os.close(self.lock_fd)
        except OSError as exc:
            raise AuditSinkError(
                f"cannot finish {self.path}: {exc.strerror or exc}", "free space or fix permissions"
            ) from None


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _parents(folder: str) -> list[str]:
    """``folder`` and the folders above it, nearest first."""
    out: list[str] = []
    while folder and folder not in out:
        out.append(folder)
        folder = os.path.dirname(folder)
    return out
