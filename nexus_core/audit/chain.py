"""The file sink's tamper evidence: a SHA-256 hash chain with Ed25519-signed checkpoints.

Each record line is the record plus ``seq`` (1, 2, 3... across rotated files), ``prev``
(the hash of the record before; 64 zeros for the first) and ``hash``: SHA-256 of the
canonical JSON of the line without ``hash`` (keys sorted, no spaces). Editing a record
changes its hash; removing, inserting or moving one breaks the sequence and the links.

Someone who can write the file could recompute every hash after an edit, so every
``checkpoint_every`` records, before a rotation and when a run closes the file, a checkpoint
line signs the chain's state with the sink's Ed25519 key (kept apart from the log, 0600)::

    {"checkpoint": {"seq": 120, "hash": "...", "time": "...", "final": true, "key": "...", "signature": "..."}}

The signature covers ``nexus-audit-checkpoint:SEQ:HASH:FINAL``. A closed file ends with a
``final`` checkpoint, so cutting records off its end is seen; the writer also leaves the last
state in a "head" file beside its key, so that cutting back to an earlier run's end is seen
too. :func:`verify` reads a log and its rotated files (``PATH.NNNNNNNNNNNN.gz``, numbered by
their first record) and reports the first record that is altered, deleted, inserted or out
of order, by file and line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
ROTATED = re.compile(r"\.(\d{12})\.gz$")


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: JSON with sorted keys and no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chained(record: Mapping[str, Any], seq: int, prev: str) -> tuple[str, str]:
    """``(line, hash)`` of ``record`` as record number ``seq`` after the record hashed ``prev``."""
    body = {**record, "seq": seq, "prev": prev}
    digest = hashlib.sha256(canonical(body)).hexdigest()
    line = json.dumps({**body, "hash": digest}, separators=(",", ":"), ensure_ascii=False)
    return line, digest


def signed_text(seq: int, digest: str, final: bool) -> bytes:
    """What a checkpoint's signature covers."""
    return f"nexus-audit-checkpoint:{seq}:{digest}:{'final' if final else 'periodic'}".encode()


def rotated_files(path: str) -> list[str]:
    """The rotated files of log ``path``, oldest first (``PATH.000000000001.gz``...)."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith(base + "."):
            m = ROTATED.search(name[len(base) :])
            if m and name == f"{base}.{m.group(1)}.gz":
                found.append((int(m.group(1)), os.path.join(folder, name)))
    return [p for _, p in sorted(found)]


def read_lines(path: str) -> tuple[list[str], bool]:
    """The lines of a log file (gzip when it ends in ``.gz``) and whether the text ends with a newline."""
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    text = data.decode("utf-8", errors="replace")
    return text.splitlines(), text.endswith("\n") or not text


def head_path(folder: str, log: str) -> str:
    """Where the writer of ``log`` keeps its last state (beside its key)."""
    ident = hashlib.sha256(os.path.abspath(log).encode()).hexdigest()[:16]
    return os.path.join(folder, "heads", f"{ident}.json")


@dataclass(frozen=True)
class Finding:
    """What :func:`verify` found: ``ok``, or the first problem with its file and line."""

    ok: bool
    message: str
    file: str = ""
    line: int = 0
    kind: str = ""
    records: int = 0
    checkpoints: int = 0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--format json``."""
        return {"ok": self.ok, "kind": self.kind or None, "file": self.file or None, "line": self.line or None,
                "message": self.message, "records": self.records, "checkpoints": self.checkpoints,
                "notes": list(self.notes)}  # fmt: skip


@dataclass
class _Line:
    file: str
    number: int
    text: str
    obj: Any
    last_of_file: bool
    partial: bool


class _Twice(ValueError):
    """A JSON object with a key written twice (Python keeps the last; other readers the first)."""


#: What a line with a key written twice reads as.
_TWICE = object()


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Twice("a key appears twice")
    return found


def _load(files: list[str]) -> tuple[list[_Line], Finding | None]:
    out: list[_Line] = []
    for path in files:
        try:
            lines, complete = read_lines(path)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # the file is there: its bytes are not a log's
            return out, Finding(False, f"{path} is damaged: {exc} (a rotated file that was replaced or cut)",
                                path, 0, "damaged")  # fmt: skip
        except OSError as exc:
            return out, Finding(False, f"cannot read {path}: {exc}", path, 0, "unreadable")
        for n, text in enumerate(lines, 1):
            try:
                obj: Any = json.loads(text, object_pairs_hook=_no_twice)
            except json.JSONDecodeError:
                obj = None
            except _Twice:
                obj = _TWICE  # a key written twice: what a reader sees is not what was hashed
            last = n == len(lines)
            out.append(_Line(path, n, text, obj, last, last and not complete))
    return out, None


def verify(path: str, public_key: Any = None, head: Mapping[str, Any] | None = None) -> Finding:
    """Check log ``path`` and its rotated files; the first problem found, or an ok finding.

    ``public_key``: an Ed25519 public key (``cryptography``) that must have signed every
    checkpoint (None: signatures are not checked, which the finding notes). ``head``: the
    writer's last state (``{"seq": N, "hash": H}``), when known.
    """
    files = rotated_files(path) + ([path] if os.path.exists(path) else [])
    if not files:
        return Finding(False, f"no audit log at {path}", path, 0, "missing")
    lines, unreadable = _load(files)
    if unreadable is not None:
        return unreadable
    notes: list[str] = []
    if public_key is None:
        notes.append("checkpoint signatures not checked: no public key (give --key PATH)")
    by_seq: dict[int, _Line] = {}
    for ln in lines:
        seq = _seq(ln.obj)
        if seq is not None:
            by_seq.setdefault(seq, ln)
    expected: int | None = None
    prev = GENESIS
    seen: set[int] = set()
    records = checkpoints = 0
    last_was_final = False
    unsigned = 0  # records since the last checkpoint: no signature vouches for them yet

    def bad(ln: _Line, kind: str, message: str) -> Finding:
        return Finding(False, message, ln.file, ln.number, kind, records, checkpoints, tuple(notes))

    for ln in lines:
        obj = ln.obj
        if obj is _TWICE:
            return bad(ln, "altered", "a key appears twice in the record: the line was altered")
        if obj is None or not isinstance(obj, dict):
            if ln.partial:
                return bad(ln, "truncated", "the last line is cut short: the file was truncated")
            if not ln.text.strip():
                return bad(ln, "inserted", "an empty line among the records (inserted)")
            return bad(ln, "altered", "not a JSON record: the line was altered (or inserted)")
        if "checkpoint" in obj:
            cp = obj["checkpoint"]
            problem = _check_checkpoint(cp, expected, prev, public_key)
            if problem:
                return bad(ln, "altered", problem)
            checkpoints += 1
            unsigned = 0
            last_was_final = bool(cp.get("final"))
            if ln.last_of_file and not last_was_final and ln.file != files[-1]:
                return bad(ln, "truncated", "a rotated file ends without its final checkpoint (truncated)")
            continue
        last_was_final = False
        seq = _seq(obj)
        if seq is None or not isinstance(obj.get("hash"), str) or not isinstance(obj.get("prev"), str):
            return bad(ln, "inserted", "a record without its chain fields (seq, prev, hash): inserted or altered")
        if expected is None:
            expected = seq
            prev = obj["prev"]
            if seq != 1:
                notes.append(f"the oldest file kept starts at record {seq} (older files removed by retention)")
        if seq != expected:
            if seq > expected:
                later = by_seq.get(expected)
                if (
                    later is not None
                    and (later.file, later.number) != (ln.file, ln.number)
                    and _after(later, ln, files)
                ):
                    at = f"{os.path.basename(later.file)}:{later.number}"
                    return bad(ln, "reordered", f"record {seq} is where record {expected} belongs "
                               f"(found later at {at}): records were reordered")  # fmt: skip
                missing = f"record {expected}" if seq == expected + 1 else f"records {expected}-{seq - 1}"
                return bad(ln, "deleted", f"{missing} missing before this line: deleted")
            if seq in seen:
                return bad(ln, "inserted", f"a second record {seq} (expected {expected}): inserted")
            return bad(ln, "reordered", f"record {seq} comes after record {expected - 1}: records were reordered")
        body = {k: v for k, v in obj.items() if k != "hash"}
        if obj["prev"] != prev:
            return bad(ln, "altered", f"record {seq} does not link to the record before it: "
                       "the chain was rewritten from here (or the record before was altered)")  # fmt: skip
        if hashlib.sha256(canonical(body)).hexdigest() != obj["hash"]:
            return bad(ln, "altered", f"record {seq} was altered (its content does not match its hash)")
        seen.add(seq)
        records += 1
        unsigned += 1
        prev = obj["hash"]
        expected = seq + 1
        if ln.last_of_file and ln.file != files[-1]:
            return bad(ln, "truncated", "a rotated file ends without its final checkpoint (truncated)")
    last = lines[-1] if lines else None
    if last is not None and not last_was_final:
        # Its last records are vouched for by their hashes only, which anyone can recompute: a
        # chain rewritten with its checkpoints removed reads the same as a killed writer's end.
        tail = f"; its last {unsigned} record(s) are covered by no signed checkpoint" if unsigned else ""
        return Finding(False, f"the log ends after line {last.number} without a final checkpoint: truncated "
                       f"(or a run is writing now, or its writer was killed{tail}, or the chain was rewritten "
                       "and its checkpoints removed)", last.file, last.number, "truncated",
                       records, checkpoints, tuple(notes))  # fmt: skip
    if head is not None:
        hseq = head.get("seq", 0)
        hseq = hseq if isinstance(hseq, int) else 0
        first = expected if expected is not None else 1
        if hseq >= first:
            where, number = (last.file, last.number) if last is not None else (files[-1], 1)
            return Finding(False, f"records {first}-{hseq} are missing at the end: truncated "
                           "(the writer's last record was {hseq})".replace("{hseq}", str(hseq)),
                           where, number, "truncated", records, checkpoints, tuple(notes))  # fmt: skip
        if expected is not None and hseq == expected - 1 and head.get("hash") not in (None, prev):
            assert last is not None
            return Finding(False, "the last record differs from the one the writer wrote: the chain was rewritten",
                           last.file, last.number, "altered", records, checkpoints, tuple(notes))  # fmt: skip
    return Finding(True, f"intact: {records} records, {checkpoints} checkpoints in {len(files)} file(s)", path,
                   0, "", records, checkpoints, tuple(notes))  # fmt: skip


def _after(a: _Line, b: _Line, files: list[str]) -> bool:
    return (files.index(a.file), a.number) > (files.index(b.file), b.number)


def _seq(obj: Any) -> int | None:
    if isinstance(obj, dict) and "checkpoint" not in obj:
        seq = obj.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None


def _check_checkpoint(cp: Any, expected: int | None, prev: str, public_key: Any) -> str:
    if not isinstance(cp, dict) or not isinstance(cp.get("seq"), int) or not isinstance(cp.get("hash"), str):
        return "a malformed checkpoint (altered)"
    last = (expected or 1) - 1
    if cp["seq"] != last or (last and cp["hash"] != prev):
        return (f"the checkpoint for record {cp['seq']} does not match the records before it "
                f"(last record {last}): records before it were altered, removed or added")  # fmt: skip
    if public_key is not None:
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(bytes.fromhex(str(cp.get("signature", ""))),
                              signed_text(cp["seq"], cp["hash"], bool(cp.get("final"))))  # fmt: skip
        except (InvalidSignature, ValueError):
            return f"the checkpoint for record {cp['seq']} has a bad signature (forged or altered)"
    return ""


def load_public_key(path: str) -> Any:
    """The Ed25519 public key in ``path`` (PEM public key, or the private key whose public half is used)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    with open(path, "rb") as fh:
        data = fh.read()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return public
