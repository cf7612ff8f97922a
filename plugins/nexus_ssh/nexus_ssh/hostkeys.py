"""Host key verification: ``strict`` (default), ``accept_new``, ``tofu``, ``off``.

- ``strict``: the key must already be in a known_hosts file; unknown or changed -> refuse.
- ``accept_new``: an unknown host's key is accepted and appended to the first known_hosts
  file (as OpenSSH's ``StrictHostKeyChecking accept-new``); a changed key is refused.
- ``tofu``: an unknown host's key is trusted for this run only (kept in memory, never
  written; for short-lived hosts); a known host must still match, and a key that changes
  during the run is refused.
- ``off``: no verification (a warning is logged once per run).

Whatever the policy (but ``off``), host keys that the host's source vouches for (the fact
``ssh_host_keys``: Tailscale reports each Tailscale SSH peer's keys from the tailnet's
coordination server, as ``tailscale ssh`` itself uses them) count as known: a match is
accepted with nothing written, a different key of the same type is refused as changed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nexus_ssh.settings import Endpoint

if TYPE_CHECKING:
    from paramiko.pkey import PKey


class HostKeyError(Exception):
    """The server's host key is unknown (strict) or changed: never retried."""

    def __init__(self, reason: str, changed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.changed = changed


def fingerprint(key: PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _key_family(name: str) -> str:
    if name.startswith("rsa-sha2-") or name == "ssh-rsa":
        return "ssh-rsa"
    return name


@dataclass(frozen=True)
class _Entry:
    path: str
    line: int
    key_type: str
    key_b64: str


@dataclass
class _Index:
    """One known_hosts file: lines by plain host name, hashed lines, and hashed answers."""

    by_name: dict[str, list[_Entry]] = field(default_factory=dict)
    hashed: list[tuple[str, _Entry]] = field(default_factory=list)
    hashed_hits: dict[str, list[_Entry]] = field(default_factory=dict)
    #: Why the file exists but could not be read ("" when it was read or does not exist).
    unreadable: str = ""


_VOUCHED = "(the host's source)"


def _vouched_entries(lines: tuple[str, ...]) -> list[_Entry]:
    """``TYPE BASE64 [comment]`` lines (a source's ``ssh_host_keys``) as known_hosts entries."""
    out: list[_Entry] = []
    for i, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith(("#", "@")):
            out.append(_Entry(_VOUCHED, i, fields[0], fields[1]))
    return out


def _fingerprint_b64(key_b64: str) -> str:
    """``SHA256:...`` of a base64 key blob (the fingerprint OpenSSH shows)."""
    try:
        blob = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4))
    except ValueError:
        return key_b64[:16] + "..."
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class HostKeyVerifier:
    """Checks server keys against known_hosts files; thread-safe, one per executor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, _Index]] = {}
        self._tofu: dict[str, tuple[str, str]] = {}

    # --- known_hosts reading ------------------------------------------------------------

    def _parsed(self, path: str) -> _Index:
        """Each usable line of a file, indexed by plain host name (cached while unchanged).

        The lock is taken only to parse: a ``stat`` under it made a thousand connecting
        threads queue behind each other's system call (each one a GIL hand-off).
        """
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            return _Index()
        except OSError as exc:
            return _Index(unreadable=exc.strerror or str(exc))
        cached = self._cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        with self._lock:  # parsed once, by the first thread to need it
            cached = self._cache.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
            index = self._parse(path)
            self._cache[path] = (mtime, index)
            return index

    @staticmethod
    def _parse(path: str) -> _Index:
        """Index the lines of ``path`` by host name. Keys are read (base64) only when compared:
        decoding every line's key as Paramiko's ``HostKeyEntry`` does took the first connecting
        thread long enough, on a busy client, for the rest of a fleet to queue behind it."""
        index = _Index()
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for i, line in enumerate(fh, 1):
                    text = line.strip()
                    if not text or text.startswith("#") or text.startswith("@"):
                        continue
                    fields = text.split()
                    if len(fields) < 3:
                        continue
                    row = _Entry(path, i, fields[1], fields[2])
                    for pattern in fields[0].split(","):
                        if pattern.startswith("|1|"):
                            index.hashed.append((pattern, row))
                        else:
                            index.by_name.setdefault(pattern, []).append(row)
        except FileNotFoundError:
            return _Index()
        except OSError as exc:  # a folder, no permission: not "no known hosts" (see verify)
            return _Index(unreadable=exc.strerror or str(exc))
        return index

    def known_entries(self, name: str, files: tuple[str, ...]) -> list[_Entry]:
        """Every known_hosts line (file, line number) that lists ``name``.

        Plain names are looked up in an index; hashed ones (``HashKnownHosts``) need one HMAC
        per hashed line, so their answer is remembered per name while the file is unchanged.
        """
        from paramiko.hostkeys import HostKeys

        out: list[_Entry] = []
        for path in files:
            index = self._parsed(path)
            found = {e.line: e for e in index.by_name.get(name, ())}
            if index.hashed:
                hashed = index.hashed_hits.get(name)
                if hashed is None:  # computed at most a few times per name; one answer kept
                    hashed = [
                        row
                        for pattern, row in index.hashed
                        if HostKeys.hash_host(name, pattern.split("|")[2]) == pattern
                    ]
                    index.hashed_hits[name] = hashed
                found.update((e.line, e) for e in hashed)
            out += [found[line] for line in sorted(found)]
        tofu = self._tofu.get(name)
        if tofu is not None:
            key_type, key_b64 = tofu
            out.append(_Entry("(trusted on first use in this run)", 0, key_type, key_b64))
        return out

    def preferred_algorithms(
        self,
        endpoint: Endpoint,
        files: tuple[str, ...],
        default: tuple[str, ...],
        vouched: tuple[str, ...] = (),
    ) -> list[str]:
        """Host key algorithms with the types we already know for this host first (as OpenSSH)."""
        known = {e.key_type for e in _vouched_entries(vouched)}
        known |= {e.key_type for e in self.known_entries(endpoint.known_hosts_name, files)}
        if not known:
            return list(default)
        first = [a for a in default if _key_family(a) in known]
        return first + [a for a in default if a not in first]

    # --- verification -------------------------------------------------------------------

    def verify(
        self,
        endpoint: Endpoint,
        key: PKey,
        policy: str,
        files: tuple[str, ...],
        vouched: tuple[str, ...] = (),
    ) -> str:
        """Accept the key or raise :class:`HostKeyError`; returns a short note of what happened.

        ``vouched``: key lines the host's source reports for it (checked before known_hosts).
        """
        if policy == "off":
            return "host key not verified (policy off)"
        name = endpoint.known_hosts_name
        key_type, key_b64 = key.get_name(), key.get_base64()
        reported = [e for e in _vouched_entries(vouched) if e.key_type == key_type]
        if any(e.key_b64 == key_b64 for e in reported):
            return "host key matches the one its host source reports"
        if reported:
            shown = ", ".join(sorted({_fingerprint_b64(e.key_b64) for e in reported}))
            raise HostKeyError(
                f"HOST KEY MISMATCH for {name}: the server offered {key_type} {fingerprint(key)}, "
                f"but the host's source (e.g. the tailnet) reports {shown} - possible man-in-the-middle "
                f"attack!\n"
                f"- If the machine was re-keyed a moment ago, discover again: nexus run --refresh\n"
                f"- Otherwise do not connect: check the address Nexus reached ({endpoint.hostname})",
                changed=True,
            )
        entries = self.known_entries(name, files)
        same_type = [e for e in entries if e.key_type == key_type]
        if any(e.key_b64 == key_b64 for e in same_type):
            return "host key matches known_hosts"
        if same_type:
            raise HostKeyError(self._changed_message(endpoint, key, same_type), changed=True)
        unreadable = [(path, self._parsed(path).unreadable) for path in files]
        unreadable = [(path, why) for path, why in unreadable if why]
        if unreadable:  # its lines could name this host with another key: never trust on first use
            path, why = unreadable[0]
            raise HostKeyError(
                f"Cannot verify the host key of {name}: the known_hosts file {path} cannot be read "
                f"({why})\n"
                f"- Make it a readable file, or point ssh_known_hosts_file at one\n"
                f"- The server offered {key_type} {fingerprint(key)}",
                changed=False,
            )
        if entries and policy == "strict":
            types = ", ".join(sorted({e.key_type for e in entries}))
            raise HostKeyError(
                f"Host key not known for {name}: the server offered {key_type} {fingerprint(key)}, "
                f"known_hosts has only {types} for it ({entries[0].path}:{entries[0].line})\n"
                f"- Check the fingerprint, then add it: nexus hosts scan --add",
                changed=False,
            )
        if policy == "strict":
            where = ", ".join(files) or "(no known_hosts file)"
            raise HostKeyError(
                f"Host key not known for {name} ({key_type} {fingerprint(key)}); strict host key "
                f"verification is on.\n"
                f"- Check the fingerprint, then add it: nexus hosts scan --add (or ssh-keyscan -p "
                f"{endpoint.port} {endpoint.hostname} >> {files[0] if files else '~/.ssh/known_hosts'})\n"
                f"- Or set ssh_host_key_verification='accept_new' to add new hosts automatically\n"
                f"- Files searched: {where}",
                changed=False,
            )
        if policy == "tofu":
            with self._lock:
                self._tofu.setdefault(name, (key_type, key_b64))
            return "host key trusted on first use (this run only)"
        if policy == "accept_new":
            self._append(
                files[0] if files else os.path.expanduser("~/.ssh/known_hosts"), name, key_type, key_b64
            )
            return "new host key added to known_hosts"
        raise HostKeyError(f"unknown host key policy {policy!r}", changed=False)

    def _append(self, path: str, name: str, key_type: str, key_b64: str) -> None:
        with self._lock:
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            needs_newline = False
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(("\n" if needs_newline else "") + f"{name} {key_type} {key_b64}\n")
            self._cache.pop(path, None)

    @staticmethod
    def _changed_message(endpoint: Endpoint, key: PKey, known: list[_Entry]) -> str:
        from paramiko.pkey import PKey

        e = known[0]
        try:
            old = fingerprint(PKey.from_type_string(e.key_type, base64.b64decode(e.key_b64)))
        except Exception:
            old = "SHA256:" + base64.b64encode(
                hashlib.sha256(base64.b64decode(e.key_b64)).digest()
            ).decode().rstrip("=")
        name = endpoint.known_hosts_name
        location = f"{e.path} line {e.line}" if e.line else e.path
        return (
            f"HOST KEY CHANGED for {name} - possible man-in-the-middle attack!\n"
            f"Expected: {e.key_type} {old} (from {location})\n"
            f"Got:      {key.get_name()} {fingerprint(key)}\n"
            f"- If the change is expected (host reinstalled), remove the old key: "
            f"ssh-keygen -R '{name}' -f {e.path}   (or delete line {e.line} of {e.path})\n"
            f"- Otherwise do not connect: verify the new fingerprint with the host's administrator"
        )
