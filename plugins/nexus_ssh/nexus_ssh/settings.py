"""Where and how to connect: Nexus config merged with ``~/.ssh/config``.

Precedence, most specific first: the host string (``user@host:port``), Nexus's
``config(ssh_...)`` keys (explicitly set ones, i.e. present and not None), the OpenSSH
client config (``Host`` blocks, ``Include`` expanded here since Paramiko does not), then
built-in defaults.
"""

from __future__ import annotations

import glob
import io
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexus_ssh.hops import SettingsError as SettingsError  # re-exported: raised by the resolver
from nexus_ssh.hops import jump_list as _jump_list
from nexus_ssh.hops import parse_hop as parse_hop
from nexus_ssh.options import POLICIES

if TYPE_CHECKING:
    from paramiko.config import SSHConfig

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_POOL_SIZE = 4
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")
_MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to reach (a target or a jump hop), fully resolved."""

    label: str  # what the user wrote (alias or host), for messages
    hostname: str  # address to connect to (after HostName)
    port: int
    user: str

    @property
    def known_hosts_name(self) -> str:
        """The name a known_hosts file lists this server under."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


@dataclass(frozen=True)
class ConnectSpec:
    """Everything needed to open one connection to a target (through its hops)."""

    target: Endpoint
    hops: tuple[Endpoint, ...] = ()
    proxy_command: str | None = None
    identities: tuple[str, ...] = ()  # explicit key files, in order
    identities_only: bool = False
    policy: str = "strict"
    known_hosts_files: tuple[str, ...] = ()  # first one is where new keys are written
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    keepalive: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Offer SSH's "none" method first: the host's SSH server authenticates by network identity
    #: (a discovered host with the fact ``ssh_auth="none"``, e.g. Tailscale SSH); keys follow.
    auth_none: bool = False
    #: Host keys of the target (``TYPE BASE64 [comment]``) that its host source vouches for
    #: (the fact ``ssh_host_keys``, e.g. Tailscale's ``sshHostKeys``): they count as known_hosts
    #: lines, so such a host needs no trust on first use and no ``nexus hosts scan``.
    host_keys: tuple[str, ...] = ()

    @property
    def pool_key(self) -> tuple[object, ...]:
        """Connections with equal keys are interchangeable."""
        return (self.target, self.hops, self.proxy_command)


# --- OpenSSH client config ---------------------------------------------------------------


def default_config_path(options: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """The ssh config to read: option/config ``ssh_config_file``, ``NEXUS_SSH_CONFIG``, ``~/.ssh/config``.

    An empty string (or ``none``) disables reading any ssh config.
    """
    for value in (
        options.get("ssh_config_file"),
        config.get("ssh_config_file"),
        os.environ.get("NEXUS_SSH_CONFIG"),
    ):
        if value is not None:
            return None if str(value).strip().lower() in ("", "none") else os.path.expanduser(str(value))
    path = os.path.expanduser("~/.ssh/config")
    return path if os.path.exists(path) else None


def _expand_includes(path: str, depth: int = 0) -> str:
    """The file's text with ``Include`` lines replaced by the included files (as OpenSSH does)."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise SettingsError(f"ssh config Include nesting deeper than {_MAX_INCLUDE_DEPTH} at {path}")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise SettingsError(f"cannot read ssh config {path}: {exc.strerror}") from exc
    out: list[str] = []
    for line in lines:
        m = re.match(r"^\s*include\s*(?:=\s*)?(.+?)\s*$", line, re.IGNORECASE)
        if not m:
            out.append(line)
            continue
        for pattern in shlex.split(m.group(1)):
            pattern = os.path.expanduser(pattern)
            if not os.path.isabs(pattern):
                # Relative Includes are relative to ~/.ssh for user configs (ssh_config(5)).
                pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
            for inc in sorted(glob.glob(pattern)):
                if os.path.isfile(inc):
                    out.append(f"# --- included from {inc}")
                    out.append(_expand_includes(inc, depth + 1))
    return "\n".join(out) + "\n"


# Paramiko expands ProxyCommand's tokens itself, but from the ssh config's values only: ``%p``
# would be 22 when the port comes from Nexus (``ssh_port``, ``host:port``), ``%r`` the local
# user, and ``%n`` / ``%%`` are not supported. So ``%`` is hidden from Paramiko while parsing and
# the tokens are expanded by :func:`expand_proxy_command` with the values actually used.
_PCT = "\x00nexus-pct\x00"
_PROXY_LINE = re.compile(r"^(\s*proxycommand(?:\s*=\s*|\s+))(.*)$", re.IGNORECASE)


def _protect_proxy_commands(text: str) -> str:
    out = []
    for line in text.splitlines():
        m = _PROXY_LINE.match(line)
        if m and m.group(2).strip().lower() != "none":
            line = m.group(1) + m.group(2).replace("%", _PCT)
        out.append(line)
    return "\n".join(out) + "\n"


def expand_proxy_command(raw: str, target: Endpoint) -> str:
    """``ProxyCommand`` with its tokens expanded for ``target`` (ssh_config(5) TOKENS).

    ``%h`` host name (after HostName), ``%p`` port, ``%r`` remote user, ``%n`` the name as
    written, ``%%`` a literal ``%``. Other tokens are refused, as OpenSSH does.
    """
    values = {"h": target.hostname, "p": str(target.port), "r": target.user, "n": target.label, "%": "%"}

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise SettingsError(f"ProxyCommand for {target.label}: unknown token %{key} in {raw!r}")
        return values[key]

    return re.sub(r"%(.?)", sub, raw.replace(_PCT, "%"), flags=re.DOTALL)


def load_ssh_config(path: str | None) -> SSHConfig:
    """Parse an OpenSSH client config (Includes expanded); an empty config when ``path`` is None."""
    text = _expand_includes(path) if path else ""
    import_paramiko(match_exec=bool(_MATCH_EXEC.search(text)))
    from paramiko.config import SSHConfig

    cfg = SSHConfig()
    if text:
        cfg.parse(io.StringIO(_protect_proxy_commands(text)))
    return cfg


_MATCH_EXEC = re.compile(r"^\s*match\b.*\bexec\b", re.IGNORECASE | re.MULTILINE)


def import_paramiko(match_exec: bool = False) -> None:
    """Import Paramiko, without invoke unless ``match_exec``, and without ``importlib.metadata``.

    Paramiko imports invoke (when installed, as it is with Fabric) only to run the commands
    of ``Match exec`` blocks in an ssh config, and that import is a third of Paramiko's own
    (30 of 95 ms here, on the way to every SSH connection). So it is left out unless the
    config has such a block. A later ``import invoke`` by anyone still works.

    Paramiko also imports ``importlib.metadata`` (with ``email``, ``zipfile``, ``csv``...)
    for one call, ``metadata.version("paramiko")``: 11-20 ms of every SSH run's start-up,
    before the first connection. When nothing has imported it yet, a stand-in answering
    that one question from Paramiko's ``dist-info`` folder name is in its place for the
    import only (docs/decisions.md, "Files: the re-run's look"); without that folder, the
    real module is imported as before.
    """
    if "paramiko" in sys.modules:
        return
    block = not match_exec and "invoke" not in sys.modules
    if block:
        sys.modules["invoke"] = None  # type: ignore[assignment]  # makes `import invoke` fail
    stand_in = _metadata_stand_in()
    if stand_in is not None:
        sys.modules["importlib.metadata"] = stand_in
    try:
        import paramiko.transport  # noqa: F401
    finally:
        if block and sys.modules.get("invoke", 0) is None:
            del sys.modules["invoke"]
        if stand_in is not None and sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]


def _paramiko_version() -> str | None:
    """Paramiko's version from the name of its ``dist-info`` folder, or None when not found."""
    import importlib.util

    spec = importlib.util.find_spec("paramiko")
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    try:
        names = os.listdir(site)
    except OSError:
        return None
    found = [n[len("paramiko-") : -len(".dist-info")] for n in names
             if n.startswith("paramiko-") and n.endswith(".dist-info")]  # fmt: skip
    return found[0] if len(found) == 1 else None


def _metadata_stand_in() -> Any:
    """A module answering ``version("paramiko")`` (see :func:`import_paramiko`), or None."""
    if "importlib.metadata" in sys.modules:
        return None
    version = _paramiko_version()
    if version is None:
        return None
    import types

    def answer(name: str) -> str:
        if name.lower() != "paramiko":
            raise LookupError(f"{name}: only Paramiko's version is known while it is imported")
        return version

    module = types.ModuleType("importlib.metadata")
    module.version = answer  # type: ignore[attr-defined]
    return module


# --- resolution --------------------------------------------------------------------------


def _set(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    return None if value is None else value


def _policy_from_ssh(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    return {"yes": "strict", "ask": "strict", "accept-new": "accept_new", "no": "off", "off": "off"}.get(v)


class Resolver:
    """Turns a Nexus host (name, user, port) into a :class:`ConnectSpec`."""

    def __init__(self, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        self.config = config
        self.options = options
        self.ssh_config_path = default_config_path(options, config)
        self.ssh_config = load_ssh_config(self.ssh_config_path)
        # No ``Host`` entries: every lookup would answer only the name (and Paramiko reads the
        # passwd database for ``%u`` on each one, whether or not anything uses it).
        self._ssh_config_empty = not self.ssh_config.get_hostnames()
        self._default_keys: tuple[str, ...] | None = None
        policy = _set(config, "ssh_host_key_verification")
        if policy is not None and policy not in POLICIES:
            raise SettingsError(
                f"ssh_host_key_verification must be one of {', '.join(POLICIES)}, not {policy!r}"
            )

    def _lookup(self, name: str) -> dict[str, Any]:
        if self._ssh_config_empty:
            return {"hostname": name}
        return dict(self.ssh_config.lookup(name))

    def endpoint(self, name: str, user: str | None, port: int | None) -> tuple[Endpoint, dict[str, Any]]:
        """Resolve one server: explicit values, then Nexus config, then ssh config, then defaults."""
        sc = self._lookup(name)
        hostname = sc.get("hostname") or name
        user = user or _set(self.config, "ssh_user") or sc.get("user") or _local_user()
        if port is None:
            cfg_port = _set(self.config, "ssh_port")
            port = int(cfg_port) if cfg_port is not None else int(sc.get("port", 22))
        return Endpoint(label=name, hostname=hostname, port=int(port), user=str(user)), sc

    def resolve(self, name: str, user: str | None = None, port: int | None = None) -> ConnectSpec:
        """The full connection recipe for a target host."""
        target, sc = self.endpoint(name, user, port)
        jump_value = _set(self.config, "ssh_jump")
        jumps = _jump_list(jump_value) if jump_value is not None else _jump_list(sc.get("proxyjump"))
        hops: list[Endpoint] = []
        for hop_text in jumps:
            h_user, h_name, h_port = parse_hop(hop_text)
            hop, _ = self.endpoint(h_name, h_user, h_port)
            hops.append(hop)
        proxy_command = None if hops else sc.get("proxycommand")
        if proxy_command is not None and proxy_command.strip().lower() in ("", "none"):
            proxy_command = None
        if proxy_command is not None:
            proxy_command = expand_proxy_command(str(proxy_command), target)

        identities: list[str] = []
        explicit = self.options.get("identity") or _set(self.config, "ssh_identity")
        if explicit:
            identities.append(os.path.expanduser(str(explicit)))
        identities += [os.path.expanduser(p) for p in sc.get("identityfile", [])]
        identities_only = str(sc.get("identitiesonly", "no")).lower() == "yes"

        policy = (
            _set(self.config, "ssh_host_key_verification")
            or _policy_from_ssh(sc.get("stricthostkeychecking"))
            or "strict"
        )

        kh_files: list[str] = []
        explicit_kh = _set(self.config, "ssh_known_hosts_file")
        if explicit_kh:
            kh_files.append(os.path.expanduser(str(explicit_kh)))
        elif sc.get("userknownhostsfile"):
            kh_files += [os.path.expanduser(p) for p in shlex.split(str(sc["userknownhostsfile"]))]
        else:
            kh_files += [os.path.expanduser("~/.ssh/known_hosts"), "/etc/ssh/ssh_known_hosts"]

        timeout_value = _set(self.config, "ssh_connect_timeout")
        if timeout_value is None:
            timeout_value = sc.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT)
        keepalive = int(sc.get("serveraliveinterval", 0) or 0)
        return ConnectSpec(
            target=target,
            hops=tuple(hops),
            proxy_command=proxy_command,
            identities=tuple(dict.fromkeys(identities)),
            identities_only=identities_only,
            policy=str(policy),
            known_hosts_files=tuple(kh_files),
            connect_timeout=float(timeout_value),
            keepalive=keepalive,
        )

    def default_keys(self) -> Sequence[str]:
        """``~/.ssh/id_ed25519``, ``id_ecdsa``, ``id_rsa`` (in that order) that exist.

        Looked for once per resolver (one run), not once per host: three ``stat`` calls a host
        add up on a large fleet."""
        if self._default_keys is None:
            base = os.path.expanduser("~/.ssh")
            names = (os.path.join(base, n) for n in DEFAULT_KEY_NAMES)
            self._default_keys = tuple(p for p in names if os.path.exists(p))
        return self._default_keys


def _local_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return "root"
