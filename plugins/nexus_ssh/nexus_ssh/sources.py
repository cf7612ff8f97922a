"""The ``ssh_config`` host source: ``discover("ssh_config", pattern="web-*")``.

The ``Host`` entries of the OpenSSH client config (the one nexus-ssh reads: option
``ssh_config_file``, else ``NEXUS_SSH_CONFIG``, else ``~/.ssh/config``; ``Include`` lines
followed) whose names match a glob. Patterns (``Host *.example.com``, ``Host !bastion``) are
not hosts and are skipped. Each host is discovered under its alias, so that connecting to
it applies its ``HostName``, ``User``, ``Port``, ``ProxyJump``... exactly as ``ssh ALIAS``
would; those values are also given as facts (``hostname``, ``ssh_user``, ``ssh_port``).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from nexus_core.plugin import DiscoveredHost, DiscoveryError, HostSource

_HOST_LINE = re.compile(r"^\s*host(?:\s*=\s*|\s+)(.+?)\s*$", re.IGNORECASE)


def host_aliases(text: str) -> list[str]:
    """The concrete ``Host`` names of an ssh config's text, in file order (patterns left out)."""
    out: dict[str, None] = {}
    for line in text.splitlines():
        m = _HOST_LINE.match(line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            words = m.group(1).split()
        for word in words:
            if word and not any(c in word for c in "*?!"):
                out.setdefault(word, None)
    return list(out)


class SshConfigSource(HostSource):
    """Hosts named in the OpenSSH client config (filters ``pattern`` and ``file``)."""

    def _path(self, filters: Mapping[str, Any]) -> str:
        from nexus_ssh.settings import default_config_path

        given = filters.get("file")
        path = default_config_path({"ssh_config_file": given} if given else {}, self.context.config)
        if not path:
            raise DiscoveryError(
                "there is no ssh config to read (no ~/.ssh/config, and ssh_config_file is not set)",
                'create ~/.ssh/config with Host entries, or give discover("ssh_config", file="PATH")',
                exit_code=2,
            )
        return path

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """A ``file`` that was given must exist."""
        import os

        given = filters.get("file")
        if given and not os.path.exists(os.path.expanduser(given)):
            return [f"the ssh config {given} does not exist"]
        return []

    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """Every concrete ``Host`` alias matching ``pattern`` (all of them without one)."""
        from nexus_ssh.settings import SettingsError, _expand_includes, load_ssh_config

        path = self._path(filters)
        try:
            text = _expand_includes(path)
            config = load_ssh_config(path)
        except SettingsError as exc:
            raise DiscoveryError(str(exc), "fix the ssh config (ssh -G ALIAS shows how ssh reads it)",
                                 exit_code=2) from None  # fmt: skip
        pattern = filters.get("pattern") or "*"
        found: list[DiscoveredHost] = []
        for alias in host_aliases(text):
            if not fnmatch.fnmatchcase(alias, pattern):
                continue
            entry = config.lookup(alias)
            facts: dict[str, Any] = {"hostname": str(entry.get("hostname", alias))}
            if entry.get("user"):
                facts["ssh_user"] = str(entry["user"])
            if entry.get("port"):
                facts["ssh_port"] = int(entry["port"]) if str(entry["port"]).isdigit() else str(entry["port"])
            found.append(
                DiscoveredHost(address=alias, name=alias, facts=facts, addresses=(facts["hostname"],))
            )
        return found
