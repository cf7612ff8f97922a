"""The ``config(ssh_...)`` keys, contributed to the core through ``nexus_config_options``.

Cheap to import (the plugin manager asks for them at every start): no Paramiko here.
``ssh_user`` and ``ssh_identity`` are also what ``-u/--user`` and ``-i/--identity`` set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from nexus_core.plugin import Option

MODES = ("exec", "shell")
#: The default of ``ssh_session_mode``: one shell session per pooled connection (status files
#: live in one folder per host, so hosts sharing a home never remove each other's).
DEFAULT_MODE = "shell"

_NUM = (int, float)
#: ``ssh_host_key_verification`` values, strictest first.
POLICIES = ("strict", "accept_new", "tofu", "off")


def _identity_here(value: Any) -> str | None:
    """``-i PATH``: the key file must exist on this machine (first line: problem; second: hint)."""
    path = os.path.expanduser(str(value))
    shown = path if path == str(value) else f"{value} ({path})"
    if os.path.isfile(path):
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            return f"key file {shown} cannot be read: {exc.strerror or exc}\ncheck its permissions"
        if b"PRIVATE KEY-----" in head or b"PuTTY-User-Key-File" in head:
            return None
        first = head.split(b"\n", 1)[0]
        if first.startswith((b"ssh-", b"ecdsa-", b"sk-")):
            return (
                f"key file {shown} is a public key\n"
                "pass the private key: the same path without .pub, e.g. -i ~/.ssh/id_ed25519"
            )
        return (
            f"key file {shown} is not a private key (no '-----BEGIN ... PRIVATE KEY-----' line)\n"
            "pass the path of a private key, e.g. -i ~/.ssh/id_ed25519"
        )
    what = "is not a file" if os.path.exists(path) else "does not exist"
    return (
        f"key file {shown} {what}\n"
        "pass the path of an existing private key, e.g. -i ~/.ssh/id_ed25519 "
        "(or leave -i out to use ssh_identity, ssh-agent or ~/.ssh/id_*)"
    )


#: Default of ``ssh_connect_attempts``: a connection is tried this many times on transient
#: failures (refused, reset, timed out, unreachable) before its host fails.
DEFAULT_CONNECT_ATTEMPTS = 3
#: The most tries ``ssh_connect_attempts`` takes: more is a typo. 100 tries of an unanswering
#: host already take up to half an hour (``ssh_connect_timeout`` each, up to 8 s between).
MAX_CONNECT_ATTEMPTS = 100


def _positive(name: str, example: str) -> Callable[[Any], str | None]:
    """A check refusing 0 and negative numbers of seconds (0 would not mean "no limit")."""

    def check(value: Any) -> str | None:
        if value > 0:
            return None
        return f"{name} must be more than 0 seconds, not {value!r} ({example})"

    return check


def _jumps(value: Any) -> str | None:
    """Each hop of ``ssh_jump`` must be ``[user@]host[:port]`` (a list, or commas, for several):
    a bad one passed ``nexus validate`` and failed every host of the run."""
    from nexus_ssh.hops import SettingsError, jump_list, parse_hop

    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        return f"ssh_jump must be a host string or a list of host strings, not {value!r}"
    hops = jump_list(value)
    if not hops and not (isinstance(value, str) and value.strip().lower() == "none"):
        return "ssh_jump is empty: give [user@]host[:port], or leave the key out"
    for hop in hops:
        try:
            parse_hop(hop)
        except SettingsError as exc:
            return str(exc)
    return None


def _rate(value: Any) -> str | None:
    from nexus_ssh.pacing import rate_problem

    return rate_problem(value)


def config_options() -> list[Option]:
    """Every ``ssh_*`` key: names, types, defaults, choices and messages."""
    return [
        Option("ssh_user", (str,), None, "default SSH user", cli_override="user"),
        Option(
            "ssh_identity",
            (str,),
            None,
            "SSH private key file",
            cli_override="identity",
            cli_check=_identity_here,
        ),
        Option(
            "ssh_port",
            (int,),
            22,
            "default SSH port",
            minimum=1,
            check=lambda v: None if v <= 65535 else "ssh_port must be <= 65535",
        ),
        Option("ssh_known_hosts_file", (str,), None, "known_hosts file"),
        Option("ssh_host_key_verification", (str,), "strict", "host key policy", choices=POLICIES),
        Option("ssh_jump", (str, list), None, "jump host(s)", check=_jumps),
        Option("ssh_pool_size", (int,), 4, "connections per host", minimum=1),
        Option(
            "ssh_connect_timeout",
            _NUM,
            10,
            "seconds one connection try may take (more than 0)",
            check=_positive("ssh_connect_timeout", "e.g. ssh_connect_timeout=10"),
        ),
        Option(
            "ssh_connect_attempts",
            (int,),
            DEFAULT_CONNECT_ATTEMPTS,
            "times a connection is tried on transient failures before its host fails (1: no retry)",
            minimum=1,
            maximum=MAX_CONNECT_ATTEMPTS,
        ),
        Option(
            "ssh_idle_timeout",
            _NUM,
            60,
            "seconds an unused pooled connection stays open (more than 0)",
            check=_positive("ssh_idle_timeout", "e.g. ssh_idle_timeout=60"),
        ),
        Option(
            "ssh_config_file",
            (str,),
            None,
            "OpenSSH client config to read (default ~/.ssh/config; '' reads none)",
        ),
        Option(
            "ssh_connect_rate",
            (str, int),
            "200/second",
            "new SSH connections per period: a rate such as '200/second' or '1000/minute', "
            "an integer N for N a second, or 0 / '0' for no limit",
            check=_rate,
        ),
        Option(
            "ssh_jump_concurrency",
            (int,),
            8,
            "connections opened at once through one jump host (0 for no cap)",
            minimum=0,
        ),
        Option(
            "ssh_connect_concurrency",
            (int,),
            128,
            "connections opened at once by one run, whatever their route (0 for no cap)",
            minimum=0,
        ),
        Option(
            "ssh_session_mode",
            (str,),
            DEFAULT_MODE,
            "'shell': one long-lived shell per connection runs the commands in turn (fast); "
            "'exec': a new exec channel (sshd session, login shell) per command",
            choices=MODES,
            # NEXUS_SSH_SESSION_MODE is read by nexus-ssh itself, as the default for runs
            # whose nexusfile leaves the key out (docs/ssh.md).
            from_env=False,
        ),
    ]
