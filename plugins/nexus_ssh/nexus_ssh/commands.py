"""``nexus hosts scan [--add]`` and ``nexus hosts verify``: host keys of the project's SSH hosts.

Hosts come from the arguments, or else from the nexusfile (every SSH host of every task and
host group). Both commands resolve each host as a run would (``config(ssh_...)``,
``~/.ssh/config``, jump hosts) and complete only the SSH key exchange with it: they never
log in to a target (a jump host is logged in to, as a run would).

- ``scan`` fetches each host's keys (ed25519, ECDSA, RSA, like ``ssh-keyscan``), shows their
  SHA256 fingerprints and whether known_hosts knows them; ``--add`` appends the new ones to
  the known_hosts file Nexus writes to (``ssh_known_hosts_file``, else the ssh config's
  ``UserKnownHostsFile``, else ``~/.ssh/known_hosts``). A changed key is never replaced.
- ``verify`` checks the key each host presents against known_hosts, strictly, whatever
  ``ssh_host_key_verification`` says.

Exit codes: 0 fine; 3 a host could not be reached, a key changed, or (verify) a key is
not known; 2 bad arguments or nexusfile.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import click
from nexus_core.plugin import ExitCode

if TYPE_CHECKING:
    from nexus_core.plugin import Host
    from paramiko.pkey import PKey

    from nexus_ssh.connect import Connector
    from nexus_ssh.settings import ConnectSpec, Resolver

#: Host key algorithms a scan asks for, one handshake each (as ssh-keyscan's default types).
SCAN_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")


@dataclass
class KeyRow:
    """One host key a host presented, and what known_hosts says about it."""

    key_type: str
    fingerprint: str
    base64: str
    status: str  # known, new, changed, added
    known_as: str = ""  # file:line of the matching (or conflicting) entry
    known_fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.key_type,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "known_as": self.known_as or None,
            "known_fingerprint": self.known_fingerprint or None,
        }


@dataclass
class HostRow:
    """A scanned or verified host."""

    label: str
    known_hosts_name: str
    file: str
    keys: list[KeyRow] = field(default_factory=list)
    error: str = ""
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.label,
            "known_hosts_name": self.known_hosts_name,
            "known_hosts_file": self.file,
            "keys": [k.to_dict() for k in self.keys],
            "error": self.error or None,
            "hint": self.hint or None,
        }


def _fail(code: int, headline: str, context: Sequence[str] = (), suggestions: Sequence[str] = ()) -> None:
    from nexus_core.plugin import fail

    fail(code, headline, context, suggestions)


def _root(config_path: str | None) -> str | None:
    """The project folder (its audit sinks apply), or None without a nexusfile."""
    from nexus_core.plugin import NexusfileNotFound, find_nexusfile

    try:
        return os.path.dirname(os.path.abspath(find_nexusfile(config_path)))
    except NexusfileNotFound:
        return None


def _targets(
    hosts: Sequence[str], config_path: str | None, command: str = "scan"
) -> tuple[list[Host], Mapping[str, Any]]:
    """The hosts to look at and the project's config (empty without a nexusfile)."""
    from nexus_core.plugin import HostParseError, NexusfileNotFound, find_nexusfile, parse_host

    config: Mapping[str, Any] = {}
    plan_hosts: list[Host] = []
    try:
        find_nexusfile(config_path)
        found = True
    except NexusfileNotFound:
        found = False
        if not hosts:
            _fail(
                ExitCode.CONFIG,
                "No hosts to look at",
                ["No host was given and no nexusfile was found"],
                [
                    f"Name hosts: nexus hosts {command} web-1 deploy@web-2:2222",
                    "Or run it in a project folder",
                ],
            )
    if found:
        from nexus_core.plugin import load, make_plan, to_host

        project = load(config_path)
        plan = make_plan(project, [], "text")
        config = plan.config
        plan_hosts = [h for h in plan.hosts if h.transport == "ssh"]
        for group in project.groups.values():
            for member in group.members:
                with contextlib.suppress(HostParseError):
                    h = to_host(member)  # a host string, "local" or host(...)
                    if h.transport == "ssh":
                        plan_hosts.append(h)
    if hosts:
        chosen: list[Host] = []
        for text in hosts:
            try:
                chosen.append(parse_host(text))
            except HostParseError as exc:
                _fail(ExitCode.CONFIG, f"bad host {text!r}", [str(exc)])
        plan_hosts = chosen
    unique: dict[tuple[str, str | None, int | None], Host] = {}
    for h in plan_hosts:
        unique.setdefault((h.name, h.user, h.port), h)
    if not unique:
        _fail(
            ExitCode.CONFIG,
            "No SSH hosts in this project",
            suggestions=[f"Name hosts: nexus hosts {command} HOST..."],
        )
    return list(unique.values()), config


def _setup(config: Mapping[str, Any], timeout: float | None) -> tuple[Resolver, Connector]:
    from nexus_ssh.connect import Connector
    from nexus_ssh.settings import Resolver, SettingsError

    try:
        resolver = Resolver(config, {})
    except SettingsError as exc:
        _fail(ExitCode.CONFIG, str(exc))
    return resolver, Connector(resolver, {"ssh_connect_attempts": 1})


def _server_key(connector: Connector, spec: ConnectSpec, key_types: Sequence[str]) -> PKey:
    """Complete the key exchange only (no login on the target) and return the server's key."""
    from paramiko.transport import Transport

    from nexus_ssh.connect import close_probe

    stream, hops = connector.open_to_target(spec)
    t = Transport(stream)
    try:
        t.banner_timeout = t.handshake_timeout = spec.connect_timeout
        opts = t.get_security_options()
        opts.key_types = list(key_types)
        t.start_client(timeout=spec.connect_timeout)
        return t.get_remote_server_key()
    finally:
        close_probe(t, hops)


def _for_each(hosts: Sequence[Host], parallel: int, fn: Callable[[Host], HostRow]) -> list[HostRow]:
    with ThreadPoolExecutor(
        max_workers=max(1, min(parallel, len(hosts))), thread_name_prefix="nexus-hosts"
    ) as pool:
        return list(pool.map(fn, hosts))


def _spec(resolver: Resolver, host: Host, timeout: float | None) -> ConnectSpec:
    spec = resolver.resolve(host.name, host.user, host.port)
    return replace(spec, connect_timeout=timeout) if timeout else spec


def _error_row(host: Host, spec: ConnectSpec | None, exc: BaseException) -> HostRow:
    from nexus_ssh.errors import classify

    if spec is None:
        return HostRow(host.label, host.name, "", error=str(exc))
    err = classify(exc, spec.target)
    head, _, rest = err.reason.partition("\n")
    return HostRow(host.label, spec.target.known_hosts_name, _kh_file(spec), error=head, hint=rest)


def _distinct(resolver: Resolver, hosts: Sequence[Host]) -> list[Host]:
    """One host per server (``deploy@web`` and ``web`` share host keys)."""
    from nexus_ssh.settings import SettingsError

    seen: dict[object, Host] = {}
    for h in hosts:
        try:
            spec = resolver.resolve(h.name, h.user, h.port)
            key: object = (spec.target.known_hosts_name, spec.hops, spec.proxy_command)
        except SettingsError:
            key = (h.name, h.user, h.port)
        seen.setdefault(key, h)
    return list(seen.values())


def _kh_file(spec: ConnectSpec) -> str:
    return spec.known_hosts_files[0] if spec.known_hosts_files else os.path.expanduser("~/.ssh/known_hosts")


def _compare(connector: Connector, spec: ConnectSpec, key: PKey) -> KeyRow:
    from nexus_ssh.hostkeys import fingerprint

    entries = connector.verifier.known_entries(spec.target.known_hosts_name, spec.known_hosts_files)
    key_type, b64 = key.get_name(), key.get_base64()
    fp = fingerprint(key)
    for e in entries:
        if e.key_type == key_type and e.key_b64 == b64:
            return KeyRow(key_type, fp, b64, "known", f"{e.path}:{e.line}")
    for e in entries:
        if e.key_type == key_type:
            return KeyRow(
                key_type, fp, b64, "changed", f"{e.path}:{e.line}", _fingerprint_b64(e.key_type, e.key_b64)
            )
    return KeyRow(key_type, fp, b64, "new")


def _fingerprint_b64(key_type: str, b64: str) -> str:
    import base64
    import hashlib

    from paramiko.pkey import PKey

    from nexus_ssh.hostkeys import fingerprint

    try:
        return fingerprint(PKey.from_type_string(key_type, base64.b64decode(b64)))
    except Exception:
        return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(b64)).digest()).decode().rstrip(
            "="
        )


def _changed_block(row: HostRow, k: KeyRow) -> str:
    from nexus_core.plugin import Style, error_block

    path, _, line = k.known_as.rpartition(":")
    return error_block(
        Style.detect(sys.stderr),
        f"HOST KEY CHANGED for {row.known_hosts_name} - possible man-in-the-middle attack!",
        [
            f"Host: {row.label}",
            f"Expected: {k.key_type} {k.known_fingerprint} (from {path} line {line})",
            f"Got:      {k.key_type} {k.fingerprint}",
        ],
        [
            f"If the host was reinstalled, remove the old key: "
            f"ssh-keygen -R '{row.known_hosts_name}' -f {path} "
            f"(or delete line {line} of {path}), then: nexus hosts scan --add",
            "Otherwise do not connect: verify the new fingerprint with the host's administrator",
        ],
    )


def _emit_rows(rows: Sequence[HostRow], fmt: str, extra: Mapping[str, Any]) -> None:
    if fmt == "json":
        click.echo(json.dumps({**extra, "hosts": [r.to_dict() for r in rows]}))


# --- the commands ----------------------------------------------------------------------------


def hosts_group() -> click.Group:
    """The ``nexus hosts`` group (built on each call: cheap, nothing imported until invoked)."""
    from nexus_core.plugin import Number, log_options, setup_logs

    @click.group("hosts")
    def hosts() -> None:
        """SSH host keys of the project's hosts: scan (and add) them, verify them."""

    common: list[Callable[[Callable[..., None]], Callable[..., None]]] = [
        click.argument("names", nargs=-1, metavar="[HOST]..."),
        click.option(
            "-c",
            "--config",
            "config_path",
            metavar="PATH",
            envvar="NEXUS_CONFIG",
            help="Path to nexusfile.py.",
        ),
        click.option(
            "--timeout",
            type=Number(0, min_open=True),
            default=5.0,
            show_default=True,
            help="Seconds per host.",
        ),
        click.option(
            "--parallel", type=click.IntRange(min=1), default=10, show_default=True, help="Hosts at once."
        ),
        click.option(
            "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
        ),
        log_options,
    ]

    def with_common(f: Callable[..., None]) -> Callable[..., None]:
        for deco in reversed(common):
            f = deco(f)
        return f

    @hosts.command("scan")
    @with_common
    @click.option("--add", is_flag=True, help="Append new keys to the known_hosts file (never replaces one).")
    def scan(
        names: tuple[str, ...],
        config_path: str | None,
        timeout: float,
        parallel: int,
        fmt: str,
        add: bool,
        log_level: str | None = None,
        log_format: str = "text",
    ) -> None:
        """Fetch each host's keys and show their fingerprints; --add records the new ones.

        HOSTs default to every SSH host of the nexusfile. Check the fingerprints against
        what the host's administrator (or the cloud console) shows before adding them.
        """
        setup_logs(log_level, log_format)
        targets, config = _targets(names, config_path)
        resolver, connector = _setup(config, timeout)

        def one(host: Host) -> HostRow:
            spec: ConnectSpec | None = None
            try:
                spec = _spec(resolver, host, timeout)
                row = HostRow(host.label, spec.target.known_hosts_name, _kh_file(spec))
                last: BaseException | None = None
                for key_type in SCAN_TYPES:
                    try:
                        key = _server_key(connector, spec, [key_type])
                    except Exception as exc:  # this type not offered, or the host is down
                        last = exc
                        if not _no_such_type(exc):
                            break
                        continue
                    row.keys.append(_compare(connector, spec, key))
                if not row.keys and last is not None:
                    return _error_row(host, spec, last)
                return row
            except Exception as exc:
                return _error_row(host, spec, exc)

        rows = _for_each(_distinct(resolver, targets), parallel, one)
        added: dict[str, int] = {}
        recorded: dict[str, list[str]] = {}
        if add:
            from nexus_core.plugin import config_changed

            for row in rows:
                for k in row.keys:
                    if k.status == "new":
                        connector.verifier._append(row.file, row.known_hosts_name, k.key_type, k.base64)
                        k.status = "added"
                        added[row.file] = added.get(row.file, 0) + 1
                        recorded.setdefault(row.file, []).append(
                            f"{row.known_hosts_name} {k.key_type} {k.fingerprint}"
                        )
            for file, keys in recorded.items():  # audited (public keys: nothing secret in the diff)
                config_changed(
                    "hosts scan --add", file, {"known_hosts": {"added": keys}}, root=_root(config_path)
                )
        changed = [(r, k) for r in rows for k in r.keys if k.status == "changed"]
        failed = [r for r in rows if r.error]
        _emit_rows(rows, fmt, {"event": "hosts.scan", "added": added})
        if fmt != "json":
            for row in rows:
                if row.error:
                    click.echo(f"{_mark('error')} {row.label}  {row.error}")
                    continue
                for k in row.keys:
                    where = f" ({k.known_as})" if k.known_as else ""
                    click.echo(
                        f"{_mark(k.status)} {row.label}  {k.key_type}  {k.fingerprint}  {k.status}{where}"
                    )
            new = sum(1 for r in rows for k in r.keys if k.status == "new")
            for path, n in added.items():
                click.echo(f"Added {n} key{'s' if n != 1 else ''} to {path}")
            if new:
                click.echo(
                    f"{new} new key{'s' if new != 1 else ''}: check the fingerprints, then record them with "
                    "nexus hosts scan --add"
                )
            for row, k in changed:
                click.echo("\n" + _changed_block(row, k), err=True)
        if changed or failed:
            _exit(ExitCode.CONNECTION)

    @hosts.command("verify")
    @with_common
    def verify(
        names: tuple[str, ...],
        config_path: str | None,
        timeout: float,
        parallel: int,
        fmt: str,
        log_level: str | None = None,
        log_format: str = "text",
    ) -> None:
        """Check the key each host presents against known_hosts (strictly, whatever the policy).

        Exit 0 when every host matches; 3 when a host is unreachable, unknown, or its key changed.
        """
        setup_logs(log_level, log_format)
        targets, config = _targets(names, config_path, "verify")
        resolver, connector = _setup(config, timeout)

        def one(host: Host) -> HostRow:
            spec: ConnectSpec | None = None
            try:
                spec = _spec(resolver, host, timeout)
                row = HostRow(host.label, spec.target.known_hosts_name, _kh_file(spec))
                preferred = connector.verifier.preferred_algorithms(
                    spec.target, spec.known_hosts_files, _default_key_types()
                )
                key = _server_key(connector, spec, preferred)
                row.keys.append(_compare(connector, spec, key))
                return row
            except Exception as exc:
                return _error_row(host, spec, exc)

        rows = _for_each(_distinct(resolver, targets), parallel, one)
        bad = [r for r in rows if r.error or any(k.status != "known" for k in r.keys)]
        _emit_rows(rows, fmt, {"event": "hosts.verify", "passed": not bad})
        if fmt != "json":
            for row in rows:
                if row.error:
                    click.echo(f"{_mark('error')} {row.label}  {row.error}")
                    continue
                for k in row.keys:
                    if k.status == "known":
                        click.echo(
                            f"{_mark('known')} {row.label}  {k.key_type}  {k.fingerprint}  "
                            f"matches {k.known_as}"
                        )
                    elif k.status == "new":
                        click.echo(
                            f"{_mark('changed')} {row.label}  {k.key_type}  {k.fingerprint}  "
                            f"not in {row.file}"
                        )
                    else:
                        click.echo(
                            f"{_mark('changed')} {row.label}  {k.key_type}  {k.fingerprint}  "
                            f"CHANGED (expected {k.known_fingerprint})"
                        )
            for row in rows:
                for k in row.keys:
                    if k.status == "changed":
                        click.echo("\n" + _changed_block(row, k), err=True)
            unknown = sum(1 for r in rows for k in r.keys if k.status == "new")
            if unknown:
                click.echo(
                    f"\n{unknown} host key{'s' if unknown != 1 else ''} not known: "
                    "check the fingerprints, then "
                    "nexus hosts scan --add"
                )
            if not bad:
                click.echo(f"All {len(rows)} host key{'s' if len(rows) != 1 else ''} match known_hosts")
        if bad:
            _exit(ExitCode.CONNECTION)

    return hosts


def _exit(code: int) -> None:
    from nexus_core.plugin import Exit

    raise Exit(code)


def _marks() -> dict[str, str]:
    from nexus_core.plugin import Style

    s = Style.detect()
    return {
        "known": s.mark("ok"),
        "added": "+",
        "new": "?",
        "changed": s.mark("failed"),
        "error": s.mark("failed"),
    }


def _mark(status: str) -> str:
    return _marks().get(status, " ")


def _no_such_type(exc: BaseException) -> bool:
    """True when the handshake failed only because the server has no key of the asked type."""
    from paramiko.ssh_exception import IncompatiblePeer, SSHException

    if isinstance(exc, IncompatiblePeer):
        return True
    return isinstance(exc, SSHException) and "incompatible" in str(exc).lower()


def _default_key_types() -> tuple[str, ...]:
    from paramiko.transport import Transport

    return tuple(Transport._preferred_keys)
