"""An OpenSSH server that authenticates like Tailscale SSH: by who you are on the network.

Tailscale SSH accepts the SSH "none" method from tailnet peers (tailscaled checks the peer's
identity and the policy; no key, no password). The closest real thing on loopback is
OpenSSH with ``PermitEmptyPasswords yes`` for a user whose password is empty: its "none"
method then succeeds, and nothing else is needed. A key-only client (nexus-ssh without the
``ssh_auth="none"`` fact and without keys) is refused, as on a host without Tailscale SSH.

The user ``nexus_tsnet`` (empty password, no sudo, only allowed by this server) is created
once and kept; the server listens on one loopback address with a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from nexus_core.testing.sshbed import ensure_openssh

SSHD = "/usr/sbin/sshd"
USER = "nexus_tsnet"
ADDRESS = "127.0.0.77"


def ensure_user() -> None:
    """Create ``nexus_tsnet`` with an empty password and an empty home (idempotent)."""
    home = Path("/var/lib/nexus-tsnet")
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        proc = subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/bin/sh",
                "--user-group",
                USER,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 and subprocess.run(["id", USER], capture_output=True).returncode != 0:
            raise RuntimeError(f"useradd {USER}: {proc.stderr}")
    subprocess.run(["passwd", "-d", USER], check=True, capture_output=True)
    home.mkdir(parents=True, exist_ok=True)
    shutil.chown(home, USER, USER)


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((ADDRESS, 0))
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


class TailnetSshd:
    """``with TailnetSshd() as srv:`` -> ``srv.address``, ``srv.port``, ``srv.known_hosts``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nexus-tsnet-"))
        self.address = ADDRESS
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts(self) -> str:
        """A known_hosts file listing this server's host key."""
        return str(self.dir / "known_hosts")

    @property
    def host_key_line(self) -> str:
        """The host public key as a known_hosts key field (``ssh-ed25519 AAAA...``)."""
        return " ".join((self.dir / "host_ed25519.pub").read_text().split()[:2])

    def __enter__(self) -> TailnetSshd:
        ensure_openssh()
        ensure_user()
        key = self.dir / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.port = _free_port()
        log = self.dir / "sshd.log"
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.address}",
                    f"HostKey {key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "UsePAM no",
                    "PasswordAuthentication yes",
                    "PermitEmptyPasswords yes",
                    "PubkeyAuthentication no",
                    "KbdInteractiveAuthentication no",
                    f"AllowUsers {USER}",
                    "StrictModes no",
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        os.chmod(self.dir, 0o755)
        (self.dir / "known_hosts").write_text(f"[{self.address}]:{self.port} {self.host_key_line}\n")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(config), "-E", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(500):
            if log.exists() and f"Server listening on {self.address} port {self.port}." in log.read_text():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {log.read_text() if log.exists() else ''}")
            time.sleep(0.02)
        raise RuntimeError("sshd did not start listening within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def logins(self, method: str = "none") -> int:
        """Successful logins with ``method`` so far (from sshd's log)."""
        text = (self.dir / "sshd.log").read_text()
        return text.count(f"Accepted {method} for {USER}")
