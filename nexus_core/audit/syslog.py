"""The ``syslog`` audit sink: RFC 5424 messages over UDP, TCP or a unix socket.

Options: ``address`` (``udp://HOST:PORT``, ``tcp://HOST:PORT`` or ``unix:///dev/log``; the
default), ``facility`` (``local0``... ``auth``, ``authpriv``, ``user``), ``app_name``
(``nexus``) and ``timeout``. Each record is one message whose MSGID is the record's event
code and whose MSG is the record as JSON; TCP frames messages by octet counting (RFC 6587).
Failed records (``status`` failed, ``auth.failure``) are sent with severity warning, the
others with severity notice.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from nexus_core.api import AuditSink, AuditSinkError
from nexus_core.options import Option

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
WARNING, NOTICE = 4, 5


def message(rec: Mapping[str, Any], facility: int, app: str, hostname: str) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID - JSON``."""
    failed = rec.get("status") in ("failed", "error", "timeout", "unreachable") or rec.get("event") == "auth.failure"
    pri = facility * 8 + (WARNING if failed else NOTICE)
    msgid = "".join(c for c in str(rec.get("event", "-")) if 33 <= ord(c) <= 126)[:32] or "-"
    stamp = str(rec.get("timestamp") or "-")
    body = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    return f"<{pri}>1 {stamp} {hostname or '-'} {app[:48]} {os.getpid()} {msgid} - {body}".encode()


class SyslogSink(AuditSink):
    """RFC 5424 over UDP, TCP (octet counting) or a unix socket (datagram, else stream)."""

    name: ClassVar[str] = "syslog"
    options: ClassVar[tuple[Option, ...]] = (
        Option("address", (str,), "unix:///dev/log", "udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH"),
        Option("facility", (str,), "local0", "the syslog facility", choices=tuple(FACILITIES)),
        Option("app_name", (str,), "nexus", "the APP-NAME of every message"),
        Option("timeout", (int, float), 5.0, "seconds to connect or send", minimum=0.1),
    )

    def open(self) -> None:
        """Parse the address and connect (a UDP socket connects without a word from the server)."""
        address = str(self.context.options["address"])
        parts = urlsplit(address)
        self.scheme = parts.scheme
        if self.scheme not in ("udp", "tcp", "unix"):
            raise AuditSinkError(
                f"bad address {address!r}", "write udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log"
            )
        if self.scheme != "unix" and (not parts.hostname or not parts.port):
            raise AuditSinkError(f"address {address!r} needs a host and a port", "e.g. tcp://127.0.0.1:601")
        self.address = address
        self.target: Any = parts.path if self.scheme == "unix" else (parts.hostname, parts.port)
        self.facility = FACILITIES[str(self.context.options["facility"])]
        self.app = str(self.context.options["app_name"])
        self.hostname = socket.gethostname()
        self.sock: socket.socket | None = None
        self._connect()

    def _connect(self) -> None:
        timeout = float(self.context.options["timeout"])
        try:
            if self.scheme == "unix":
                try:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    sock.settimeout(timeout)
                    sock.connect(self.target)
                    self.stream = False
                except OSError as first:
                    sock.close()
                    if first.errno not in (91, 107, 95):  # EPROTOTYPE, ENOTCONN, EOPNOTSUPP: a stream socket
                        raise
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(timeout)
                    sock.connect(self.target)
                    self.stream = True
            else:
                family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
                kind = socket.SOCK_STREAM if self.scheme == "tcp" else socket.SOCK_DGRAM
                sock = socket.socket(family, kind)
                sock.settimeout(timeout)
                sock.connect(self.target)
                self.stream = self.scheme == "tcp"
        except OSError as exc:
            raise AuditSinkError(f"cannot connect to {self.address}: {exc.strerror or exc}",
                                 "check that the syslog server listens there") from None  # fmt: skip
        self.sock = sock

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Send one message per record (reconnecting once after a dropped TCP connection)."""
        for rec in records:
            data = message(rec, self.facility, self.app, self.hostname)
            if self.stream and self.scheme == "tcp":
                data = f"{len(data)} ".encode() + data
            elif self.stream:
                data += b"\n"
            for attempt in (1, 2):
                try:
                    if self.sock is None:
                        self._connect()
                    assert self.sock is not None
                    if self.stream:
                        self.sock.sendall(data)
                    else:
                        self.sock.send(data)
                    break
                except OSError as exc:
                    if self.sock is not None:
                        self.sock.close()
                    self.sock = None
                    if attempt == 2:
                        raise AuditSinkError(f"cannot send to {self.address}: {exc.strerror or exc}",
                                             "check the syslog server") from None  # fmt: skip

    def close(self) -> None:
        """Close the socket."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
