"""A real OpenSSH test bed on loopback: many "hosts", test users, keys, a bastion.

Part of the testing kit for plugin authors (:mod:`nexus_core.testing`): the SSH tests of
nexus-ssh and the benchmark scripts in ``bench/`` use it, and so can any plugin that needs
real SSH hosts. It imports only the standard library (no pytest), so scripts can use it too.

Typical use (as root)::

    from nexus_core.testing.sshbed import SshBed

    with SshBed(n_hosts=3, port=0) as bed:        # port=0: pick a free port
        h = bed.hosts[0]                          # BedHost(address="127.0.0.2", port=...)
        key = bed.key_path("ed25519")             # client private key (also rsa, ecdsa, ed25519_pass)
        bed.known_hosts                           # known_hosts file listing every bed host
        bed.connection_count(h.address)           # TCP connections sshd accepted on that host
        bed.processes_matching("nexus_key", "sleep 37")

Layout facts: one sshd binds at most 16 listen addresses, so hosts are
spread over ``ceil(n/16)`` sshd processes; hosts live on 127.0.0.2 ... 127.0.0.(n+1) and
the bastion on 127.0.0.250; nothing ever binds outside 127.0.0.0/8. Beds of more than 240
hosts (up to :data:`MAX_HOSTS`, 2,400) go on in 127.0.1.2 ... 127.0.1.241, 127.0.2.2 ...:
Linux routes all of 127.0.0.0/8 to ``lo``, so no network namespace is needed (1,000 hosts:
63 sshd processes). ``max_startups`` sets sshd's ``MaxStartups`` (default ``10000``, so the
bed never drops a handshake; pass OpenSSH's default ``"10:30:100"`` to test pacing). ``authorized_keys``
files live in the bed directory (under /tmp), hence ``StrictModes no``. Test users have
``/bin/sh`` and an empty home so no rc file costs CPU on each command.

Users: ``nexus_key`` (every bed key, passwordless sudo), ``nexus_nosudo`` (every bed key, no
sudo), ``nexus_pw`` (its password :data:`PASSWORD`, or its own key ``key_path("ed25519_pw")``
that no other user accepts; sudo for everything, but only after that password, asked on every
command: ``timestamp_timeout=0``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "BASTION_ADDRESS",
    "DEFAULT_PORT",
    "KEY_KINDS",
    "KEY_PASSPHRASE",
    "MAX_HOSTS",
    "OWN_KEYS",
    "PASSWORD",
    "USER_KEY",
    "USER_NOSUDO",
    "USER_PW",
    "BedError",
    "BedHost",
    "BedUser",
    "SshBed",
    "ensure_openssh",
    "ensure_users",
    "host_address",
    "shared_bed",
]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
SUDO = "/usr/bin/sudo"

DEFAULT_PORT = 2222
#: Listen addresses per sshd process ("Too many listen sockets" above 16).
ADDRESSES_PER_SSHD = 16
#: sshd processes with host keys of their own; later ones reuse these (see SshBed.start).
KEYED_GROUPS = 15
#: Hosts per 127.0.X.0/24 block: 127.0.X.2 ... 127.0.X.241 (.250 of block 0 is the bastion).
HOSTS_PER_BLOCK = 240
#: Hosts are 127.0.0.2 ... 127.0.0.241, then 127.0.1.2 ... (see :func:`host_address`).
MAX_HOSTS = 10 * HOSTS_PER_BLOCK
BASTION_ADDRESS = "127.0.0.250"

USER_KEY = "nexus_key"  # key auth, passwordless sudo
USER_NOSUDO = "nexus_nosudo"  # key auth, no sudo
USER_PW = "nexus_pw"  # password auth (and its own key); sudo that requires its password
PASSWORD = "nexus-bed-password"
KEY_PASSPHRASE = "nexus-bed-passphrase"

#: Client key kinds: name -> ssh-keygen arguments.
KEY_KINDS: dict[str, tuple[str, ...]] = {
    "ed25519": ("-t", "ed25519"),
    "rsa": ("-t", "rsa", "-b", "2048"),
    "ecdsa": ("-t", "ecdsa", "-b", "256"),
    "ed25519_pass": ("-t", "ed25519"),  # protected by KEY_PASSPHRASE
}
#: Client keys that one user only accepts (not in KEY_KINDS): name -> (user, ssh-keygen arguments).
OWN_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ed25519_pw": (USER_PW, ("-t", "ed25519")),
}

HOME_ROOT = Path("/var/lib/nexus-sshbed/home")
SUDOERS_FILE = Path("/etc/sudoers.d/nexus-sshbed")
_RC_FILES = (
    ".bashrc",
    ".profile",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".kshrc",
    ".zshrc",
    ".zshenv",
    ".cshrc",
    ".ssh/rc",
    ".hushlogin",
)


class BedError(RuntimeError):
    """The test bed could not be set up or started; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class BedHost:
    """One bed host: a loopback address and the port its sshd listens on."""

    address: str
    port: int

    @property
    def hostport(self) -> str:
        """``[address]:port`` as in known_hosts (or ``address`` for port 22)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclasses.dataclass(frozen=True)
class BedUser:
    """A test user. ``password`` is set for the password user only.

    ``sudo``: passwordless sudo; ``sudo_password``: sudo that asks for ``password``;
    ``key_auth``: accepts every key of :data:`KEY_KINDS` (:data:`OWN_KEYS` apply regardless).
    """

    name: str
    sudo: bool
    key_auth: bool
    password: str | None = None
    sudo_password: bool = False


USERS: dict[str, BedUser] = {
    "key": BedUser(USER_KEY, sudo=True, key_auth=True),
    "nosudo": BedUser(USER_NOSUDO, sudo=False, key_auth=True),
    "pw": BedUser(USER_PW, sudo=False, key_auth=False, password=PASSWORD, sudo_password=True),
}


# --- system preparation ------------------------------------------------------------------


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise BedError(f"the SSH test bed must run as root to {what} (euid is {os.geteuid()})")


def _run(
    args: list[str], *, timeout: float = 60, input_text: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, input=input_text, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BedError(f"{' '.join(args)} did not finish within {timeout:g}s") from exc
    except FileNotFoundError as exc:
        raise BedError(f"{args[0]} not found: {exc}") from exc


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BedError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def ensure_openssh(timeout: float = 600) -> None:
    """Install Debian's ``openssh-server`` (and ``sudo``) with apt-get when missing.

    Needs root. Raises :class:`BedError` with apt's last lines when installation fails.
    """
    missing = []
    if not (os.path.exists(SSHD) and os.path.exists(SSH_KEYGEN)):
        missing.append("openssh-server")
    if not os.path.exists(SUDO):
        missing.append("sudo")
    if not missing:
        return
    _require_root(f"install {', '.join(missing)}")
    if shutil.which("apt-get") is None:
        raise BedError(f"{', '.join(missing)} missing and apt-get is not available; install them by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    _check(_run(["apt-get", *lock, "update", "-q"], timeout=timeout, env=env), "apt-get update")
    _check(
        _run(["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *missing], timeout=timeout, env=env),
        f"apt-get install {' '.join(missing)}",
    )
    if not os.path.exists(SSHD):
        raise BedError(f"apt-get installed openssh-server but {SSHD} is still missing")


def _user_exists(name: str) -> bool:
    return _run(["getent", "passwd", name]).returncode == 0


def ensure_users() -> dict[str, BedUser]:
    """Create (or repair) the three test users; safe to call again. Returns :data:`USERS`."""
    _require_root("create test users")
    HOME_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(HOME_ROOT.parent, 0o755)
    os.chmod(HOME_ROOT, 0o755)
    for user in USERS.values():
        home = HOME_ROOT / user.name
        if not _user_exists(user.name):
            proc = _run(
                [
                    "useradd",
                    "--no-create-home",
                    "--home-dir",
                    str(home),
                    "--shell",
                    "/bin/sh",
                    "--user-group",
                    user.name,
                ]
            )
            if proc.returncode != 0 and not _user_exists(user.name):  # a concurrent creation is fine
                _check(proc, f"useradd {user.name}")
        else:
            _check(_run(["usermod", "--home", str(home), "--shell", "/bin/sh", user.name]), f"usermod {user.name}")
        home.mkdir(exist_ok=True)
        for rc in _RC_FILES:
            p = home / rc
            if p.is_file() or p.is_symlink():
                p.unlink()
        shutil.chown(home, user.name, user.name)
        os.chmod(home, 0o755)
        # With UsePAM no, sshd refuses accounts whose password starts with "!" (locked),
        # even for key auth: give key users "*" (no password, not locked).
        if user.password is not None:
            _check(_run(["chpasswd"], input_text=f"{user.name}:{user.password}\n"), f"chpasswd {user.name}")
        else:
            _check(_run(["usermod", "-p", "*", user.name]), f"usermod -p {user.name}")
    sudoers = "".join(f"{u.name} ALL=(ALL:ALL) NOPASSWD: ALL\n" for u in USERS.values() if u.sudo)
    for u in USERS.values():
        if u.sudo_password:  # the password on every command: no cached credentials between tests
            sudoers += f"Defaults:{u.name} timestamp_timeout=0\n{u.name} ALL=(ALL:ALL) ALL\n"
    SUDOERS_FILE.parent.mkdir(mode=0o750, exist_ok=True)
    if not SUDOERS_FILE.exists() or SUDOERS_FILE.read_text() != sudoers:
        tmp = SUDOERS_FILE.with_name(".nexus-sshbed.tmp")
        tmp.write_text(sudoers)
        os.chmod(tmp, 0o440)
        if shutil.which("visudo"):
            _check(_run(["visudo", "-cf", str(tmp)]), "visudo check of the bed's sudoers file")
        os.replace(tmp, SUDOERS_FILE)
    main_sudoers = Path("/etc/sudoers")
    if main_sudoers.exists() and "includedir /etc/sudoers.d" not in main_sudoers.read_text():
        raise BedError("/etc/sudoers does not include /etc/sudoers.d; add '@includedir /etc/sudoers.d'")
    return dict(USERS)


# --- the bed -------------------------------------------------------------------------------


@dataclasses.dataclass
class _Sshd:
    name: str
    addresses: list[str]
    port: int
    config: Path
    log: Path
    pidfile: Path
    host_keys: list[Path]
    forwarding: str
    proc: subprocess.Popen[bytes] | None = None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-n:]) or "(log is empty)"


class SshBed:
    """N loopback SSH hosts plus a bastion, each served by real OpenSSH ``sshd``.

    ``port``: the port every host listens on (default 2222, never 22 so the system sshd is
    untouched); ``0`` picks a port that is free on every bed address. ``base_dir``: where
    keys, configs and logs go (a new temp dir when None; removed by :meth:`stop` only when
    the bed created it). ``bastion``: also start a jump host on :data:`BASTION_ADDRESS`.
    """

    def __init__(
        self,
        n_hosts: int = 3,
        *,
        port: int = DEFAULT_PORT,
        base_dir: str | os.PathLike[str] | None = None,
        bastion: bool = True,
        log_level: str = "VERBOSE",
        start_timeout: float = 20.0,
        install: bool = True,
        max_startups: str = "10000",
    ) -> None:
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise BedError(f"n_hosts must be within 1..{MAX_HOSTS}, not {n_hosts}")
        if log_level.upper() not in ("INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3"):
            raise BedError(
                f"log_level must be INFO, VERBOSE or DEBUG* (readiness and counting read the log), not {log_level!r}"
            )
        if port == 22:
            raise BedError("port 22 is the system sshd's; pick another (default 2222) or 0 for any free port")
        if not re.fullmatch(r"\d+(:\d+:\d+)?", max_startups):
            raise BedError(
                f"max_startups must look like '10' or '10:30:100' (sshd's MaxStartups), not {max_startups!r}"
            )
        self.n_hosts = n_hosts
        self.max_startups = max_startups
        self.port = port
        self.with_bastion = bastion
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.install = install
        self._own_dir = base_dir is None
        self._base_arg = Path(base_dir) if base_dir is not None else None
        self.base_dir = Path()
        self.hosts: list[BedHost] = []
        self.bastion: BedHost | None = None
        self.users: dict[str, BedUser] = dict(USERS)
        self._sshds: list[_Sshd] = []
        self._by_address: dict[str, _Sshd] = {}
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> SshBed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SshBed:
        """Install what is missing, create users, keys and configs, start every sshd and wait."""
        if self._started:
            return self
        _require_root("start sshd as other users' login server")
        if self.install:
            ensure_openssh()
        ensure_users()
        if self._base_arg is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="nexus-sshbed-"))
        else:
            self.base_dir = self._base_arg
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._reap_stale()
        # sshd reads authorized_keys as the target user: the directory must be traversable.
        os.chmod(self.base_dir, 0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        addresses = [host_address(i) for i in range(self.n_hosts)]
        all_addresses = addresses + ([BASTION_ADDRESS] if self.with_bastion else [])
        if self.port == 0:
            self.port = _free_port(all_addresses)
        else:
            busy = [a for a in all_addresses if _accepts(a, self.port, 0.2)]
            if busy:
                raise BedError(
                    f"port {self.port} is already in use on {', '.join(busy[:5])}"
                    f"{' ...' if len(busy) > 5 else ''}: another bed is running? "
                    "Stop it, pick another port, or use port=0 for any free port"
                )
        self.hosts = [BedHost(a, self.port) for a in addresses]
        self.bastion = BedHost(BASTION_ADDRESS, self.port) if self.with_bastion else None
        try:
            self._make_client_keys()
            self._make_authorized_keys()
            groups = [addresses[i : i + ADDRESSES_PER_SSHD] for i in range(0, len(addresses), ADDRESSES_PER_SSHD)]
            for i, group in enumerate(groups):
                # Beyond 240 hosts, groups share the host keys of the first 15 (an RSA key
                # takes ~0.5 s to make; 1,000 hosts would spend half a minute on keys alone).
                keys_of = f"hosts{i % KEYED_GROUPS}" if i >= KEYED_GROUPS else None
                self._sshds.append(self._make_sshd(f"hosts{i}", group, forwarding="local", keys_of=keys_of))
            if self.bastion is not None:
                self._sshds.append(self._make_sshd("bastion", [BASTION_ADDRESS], forwarding="local"))
            self._write_known_hosts()
            for sshd in self._sshds:
                self._launch(sshd)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop every sshd this bed started and their session processes; wait for them."""
        pids: list[int] = []
        for sshd in self._sshds:
            if sshd.proc is not None and sshd.proc.poll() is None:
                pids.append(sshd.proc.pid)
        tree = _descendants(pids)
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        for sshd in self._sshds:
            if sshd.proc is None:
                continue
            try:
                sshd.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sshd.proc.kill()
                sshd.proc.wait(timeout=5)
        _wait_gone(tree, timeout=5)
        self._sshds.clear()
        self._by_address.clear()
        self._started = False
        if self._own_dir and self.base_dir != Path() and self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- files -----------------------------------------------------------------------------

    @property
    def keys_dir(self) -> Path:
        """Folder of the client keys."""
        return self.base_dir / "client-keys"

    def key_path(self, kind: str = "ed25519") -> str:
        """Path of a client private key: ``ed25519``, ``rsa``, ``ecdsa``, ``ed25519_pass``, or
        one of :data:`OWN_KEYS` (``ed25519_pw``: accepted by ``nexus_pw`` only)."""
        if kind not in KEY_KINDS and kind not in OWN_KEYS:
            raise KeyError(f"unknown key kind {kind!r}; one of {', '.join([*KEY_KINDS, *OWN_KEYS])}")
        return str(self.keys_dir / f"id_{kind}")

    @property
    def known_hosts(self) -> str:
        """A known_hosts file with the ed25519 and rsa host keys of every bed host and the bastion."""
        return str(self.base_dir / "known_hosts")

    def host_public_keys(self, address: str) -> list[str]:
        """The host's public keys as ``type base64`` strings."""
        sshd = self._sshd_for(address)
        return [" ".join(Path(f"{k}.pub").read_text().split()[:2]) for k in sshd.host_keys]

    def host(self, index: int) -> BedHost:
        """The index-th host (0-based)."""
        return self.hosts[index]

    def write_ssh_config(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        user: str = USER_KEY,
        key: str = "ed25519",
        alias_prefix: str = "bed",
    ) -> str:
        """Write an OpenSSH client config with ``Host bed1 … bedN`` (and ``bastion``) entries."""
        lines = []
        entries = [(f"{alias_prefix}{i + 1}", h) for i, h in enumerate(self.hosts)]
        if self.bastion:
            entries.append(("bastion", self.bastion))
        for alias, h in entries:
            lines += [
                f"Host {alias}",
                f"    HostName {h.address}",
                f"    Port {h.port}",
                f"    User {user}",
                f"    IdentityFile {self.key_path(key)}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {self.known_hosts}",
                "    StrictHostKeyChecking yes",
                "",
            ]
        target = Path(path) if path is not None else self.base_dir / "ssh_config"
        target.write_text("\n".join(lines))
        return str(target)

    # --- observation -------------------------------------------------------------------

    def log_path(self, address: str) -> str:
        """The log file of the sshd that serves ``address``."""
        return str(self._sshd_for(address).log)

    def connection_count(self, address: str) -> int:
        """TCP connections the bed's sshd accepted on ``address`` since the bed started."""
        sshd = self._sshd_for(address)
        needle = f" on {address} port {sshd.port}"
        return sum(1 for line in sshd.log_text().splitlines() if "Connection from " in line and needle in line)

    def auth_count(self, address: str, method: str = "") -> int:
        """Successful logins on ``address`` ("Accepted <method> for ..."; method e.g. publickey).

        sshd's "Accepted" line names only the client's port; it is matched to the preceding
        "Connection from ... port P on ADDR" line of the same sshd log.
        """
        sshd = self._sshd_for(address)
        conn = re.compile(r"Connection from \S+ port (\d+) on (\S+) port (\d+)")
        acc = re.compile(r"Accepted (\S+) for \S+ from \S+ port (\d+)")
        where: dict[str, str] = {}
        count = 0
        for line in sshd.log_text().splitlines():
            m = conn.search(line)
            if m:
                where[m.group(1)] = m.group(2)
                continue
            m = acc.search(line)
            if m and where.get(m.group(2)) == address and (not method or m.group(1) == method):
                count += 1
        return count

    def total_connections(self) -> int:
        """Connections accepted over every bed host (not the bastion)."""
        return sum(self.connection_count(h.address) for h in self.hosts)

    def processes_matching(self, user: str, pattern: str) -> list[int]:
        """PIDs of processes of ``user`` whose full command line matches ``pattern`` (pgrep -f)."""
        proc = _run(["pgrep", "-u", user, "-f", pattern], timeout=10)
        if proc.returncode not in (0, 1):
            raise BedError(f"pgrep failed: {proc.stderr.strip()}")
        # Zombies are gone in every way that matters (and this sandbox's pid 1 never reaps them).
        return [pid for pid in (int(p) for p in proc.stdout.split()) if _alive(pid)]

    def wait_no_process(self, user: str, pattern: str, timeout: float = 5.0) -> list[int]:
        """Wait (bounded) until no such process is left; return what remains (empty when gone)."""
        deadline = time.monotonic() + timeout
        left = self.processes_matching(user, pattern)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.processes_matching(user, pattern)
        return left

    def kill_user_processes(self, user: str) -> None:
        """SIGKILL every process of a test user (cleanup between tests)."""
        if user not in {u.name for u in USERS.values()}:
            raise BedError(f"refusing to kill processes of {user!r}: not a bed user")
        _run(["pkill", "-KILL", "-u", user], timeout=10)

    def sshd_pids(self) -> list[int]:
        """PIDs of the listening sshd processes this bed started."""
        return [s.proc.pid for s in self._sshds if s.proc is not None and s.proc.poll() is None]

    # --- internals -----------------------------------------------------------------------

    def _sshd_for(self, address: str) -> _Sshd:
        try:
            return self._by_address[address]
        except KeyError:
            raise BedError(f"{address} is not a host of this bed") from None

    def _keygen(self, path: Path, args: Iterable[str], passphrase: str = "", comment: str = "") -> None:
        if path.exists():
            return
        _check(
            _run([SSH_KEYGEN, "-q", *args, "-N", passphrase, "-C", comment or path.name, "-f", str(path)]),
            f"ssh-keygen {path.name}",
        )

    def _make_client_keys(self) -> None:
        self.keys_dir.mkdir(mode=0o700, exist_ok=True)
        for kind, args in KEY_KINDS.items():
            self._keygen(
                Path(self.key_path(kind)),
                args,
                passphrase=KEY_PASSPHRASE if kind.endswith("_pass") else "",
                comment=f"nexus-bed-{kind}",
            )
        for kind, (_, args) in OWN_KEYS.items():
            self._keygen(Path(self.key_path(kind)), args, comment=f"nexus-bed-{kind}")

    def _make_authorized_keys(self) -> None:
        ak_dir = self.base_dir / "authorized_keys"
        ak_dir.mkdir(exist_ok=True)
        os.chmod(ak_dir, 0o755)
        pubs = "".join(Path(self.key_path(k) + ".pub").read_text() for k in KEY_KINDS)
        for user in USERS.values():
            path = ak_dir / user.name
            own = "".join(
                Path(self.key_path(kind) + ".pub").read_text()
                for kind, (name, _) in OWN_KEYS.items()
                if name == user.name
            )
            path.write_text((pubs if user.key_auth else "") + own)
            os.chmod(path, 0o644)

    def _make_sshd(self, name: str, addresses: list[str], forwarding: str, keys_of: str | None = None) -> _Sshd:
        d = self.base_dir / name
        d.mkdir(exist_ok=True)
        kd = self.base_dir / keys_of if keys_of else d
        keys = [kd / "ssh_host_ed25519_key", kd / "ssh_host_rsa_key"]
        self._keygen(keys[0], ("-t", "ed25519"), comment=f"{name}-host")
        self._keygen(keys[1], ("-t", "rsa", "-b", "2048"), comment=f"{name}-host")
        sshd = _Sshd(name, addresses, self.port, d / "sshd_config", d / "sshd.log", d / "sshd.pid", keys, forwarding)
        lines = [f"# nexus ssh test bed: {name}", f"Port {self.port}", "AddressFamily inet"]
        lines += [f"ListenAddress {a}" for a in addresses]
        lines += [f"HostKey {k}" for k in keys]
        lines += [
            f"PidFile {sshd.pidfile}",
            f"AuthorizedKeysFile {self.base_dir / 'authorized_keys'}/%u",
            "StrictModes no",  # the bed lives under world-writable /tmp
            # No PAM: no pam_motd/lastlog/systemd session per login; sshd checks the shadow
            # password itself, which password auth needs (works with UsePAM no).
            "UsePAM no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            f"AllowUsers {' '.join(u.name for u in USERS.values())}",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "Banner none",
            f"MaxStartups {self.max_startups}",
            "MaxSessions 1000",
            "MaxAuthTries 20",
            "LoginGraceTime 30",
            "ClientAliveInterval 0",
            f"AllowTcpForwarding {forwarding}",
            "GatewayPorts no",
            "X11Forwarding no",
            "PermitTunnel no",
            "AllowAgentForwarding yes",
            "PermitUserEnvironment no",
            "AcceptEnv LANG LC_* NEXUS_*",
            "Subsystem sftp internal-sftp",
            f"LogLevel {self.log_level}",
            "SyslogFacility AUTH",
            "",
        ]
        sshd.config.write_text("\n".join(lines))
        _check(_run([SSHD, "-t", "-f", str(sshd.config)]), f"sshd -t (config check of {sshd.config})")
        for a in addresses:
            self._by_address[a] = sshd
        return sshd

    def _write_known_hosts(self) -> None:
        lines = []
        for h in [*self.hosts, *([self.bastion] if self.bastion else [])]:
            for pub in self.host_public_keys(h.address):
                lines.append(f"{h.hostport} {pub}\n")
        Path(self.known_hosts).write_text("".join(lines))

    def _launch(self, sshd: _Sshd) -> None:
        sshd.log.write_text("")
        # -D: stay in the foreground (we own the process), -e not used: -E logs to a file.
        sshd.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(sshd.config), "-E", str(sshd.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        # Readiness comes from sshd's own "Server listening on ADDR port P." lines, not from
        # probing connections: a probe would show up in connection_count().
        deadline = time.monotonic() + self.start_timeout
        for _ in range(100_000):
            pending = []
            for sshd in self._sshds:
                if sshd.proc is not None and sshd.proc.poll() is not None:
                    raise BedError(
                        f"sshd {sshd.name} ({sshd.config}) exited with {sshd.proc.returncode} before "
                        f"it listened on every address; log tail:\n{sshd.log_tail()}"
                    )
                text = sshd.log_text()
                pending += [
                    (sshd, a) for a in sshd.addresses if f"Server listening on {a} port {sshd.port}." not in text
                ]
            if not pending:
                return
            if time.monotonic() > deadline:
                sshd, address = pending[0]
                raise BedError(
                    f"{len(pending)} bed address(es) not listening after {self.start_timeout:g}s, "
                    f"e.g. {address}:{sshd.port} (sshd {sshd.name}); log tail:\n{sshd.log_tail()}"
                )
            time.sleep(0.02)
        raise BedError("sshd readiness loop exceeded its iteration bound")

    def _reap_stale(self) -> None:
        """Kill sshd processes a previous bed left running from this same base_dir."""
        for pidfile in self.base_dir.glob("*/sshd.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
            if str(pidfile.parent / "sshd_config") in cmdline:
                tree = _descendants([pid])
                for p in [pid, *tree]:
                    _signal(p, signal.SIGKILL)
                _wait_gone([pid, *tree], timeout=5)


# --- one bed per process ------------------------------------------------------------------

_SHARED: dict[tuple[int, bool], SshBed] = {}


def shared_bed(n_hosts: int = 3, *, bastion: bool = True) -> SshBed:
    """A bed started once per process and stopped at interpreter exit (for test sessions).

    Every conftest of a test process shares it (one bed per size). The port comes
    from ``NEXUS_SSHBED_PORT`` when set, else any free port.
    """
    key = (n_hosts, bastion)
    bed = _SHARED.get(key)
    if bed is None:
        import atexit

        port = int(os.environ.get("NEXUS_SSHBED_PORT", "0") or 0)
        bed = SshBed(n_hosts, port=port, bastion=bastion)
        bed.start()
        atexit.register(bed.stop)
        _SHARED[key] = bed
    return bed


# --- helpers ---------------------------------------------------------------------------------


def host_address(index: int) -> str:
    """The loopback address of the ``index``-th bed host (0-based): 127.0.0.2 ... 127.0.0.241,
    then 127.0.1.2 ... 127.0.1.241, and so on (every 127.0.0.0/8 address is on ``lo``)."""
    if not 0 <= index < MAX_HOSTS:
        raise BedError(f"host index must be within 0..{MAX_HOSTS - 1}, not {index}")
    block, offset = divmod(index, HOSTS_PER_BLOCK)
    return str(ipaddress.IPv4Address("127.0.0.2") + block * 256 + offset)


def _accepts(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port(addresses: list[str], tries: int = 50) -> int:
    for _ in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((addresses[0], 0))
            port = int(s.getsockname()[1])
        if port < 1024:
            continue
        ok = True
        for a in addresses:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((a, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise BedError(f"no port free on all {len(addresses)} bed addresses after {tries} tries")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _descendants(pids: list[int]) -> list[int]:
    kids = _children_map()
    out: list[int] = []
    stack = list(pids)
    seen = set(pids)
    while stack:
        for child in kids.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                out.append(child)
                stack.append(child)
    return out


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2 :].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]
