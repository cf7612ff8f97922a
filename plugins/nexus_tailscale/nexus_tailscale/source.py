"""``discover("tailscale", **filters)``: the tailnet's devices as Nexus hosts.

One :class:`TailscaleSource` per run. Every ``discover("tailscale", ...)`` group of the
nexusfile shares one answer from the tailnet (:class:`~nexus_tailscale.discovery.Answers`);
the filters (:mod:`nexus_tailscale.select`) then pick each group's devices. A device the
filters keep but that cannot be targeted (offline, node key expired) is returned with
``online=False``: ``nexus hosts list`` shows it, ``nexus run`` leaves it out, and a one-line
note says so. A device running Tailscale SSH gets the fact ``ssh_auth="none"``: nexus-ssh
then lets the tailnet authenticate the login (no key needed) and falls back to keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nexus_core.plugin import DiscoveredHost, DiscoveryError, HostSource, HostSourceContext

from nexus_tailscale.discovery import Answers, Backend, resolve_backend
from nexus_tailscale.errors import CONFIG, TailscaleError
from nexus_tailscale.select import FilterError, Filters, Selected, select


class TailscaleSource(HostSource):
    """The devices of a tailnet, from the local ``tailscale`` CLI or the HTTP API v2."""

    def __init__(self, context: HostSourceContext) -> None:
        super().__init__(context)
        self._answers = Answers()
        self._backend: Backend | None = None

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """Filter values that cannot work (a bad regular expression...), without asking the tailnet."""
        try:
            Filters.parse(filters)
        except FilterError as exc:
            return [str(exc)]
        return []

    def backend(self) -> Backend:
        """The backend the config and the environment choose (resolved once)."""
        if self._backend is None:
            try:
                self._backend = resolve_backend(self.context.config)
            except TailscaleError as exc:
                raise _discovery_error(exc) from exc
        return self._backend

    def cache_scope(self) -> str:
        """The backend, the API's URL, the tailnet and a digest of the credential (or the CLI's
        path): a cached discovery of another tailnet, or made with another key, is not reused."""
        b = self.backend()
        if b.kind != "api":
            return f"cli {b.cli_path}"
        import hashlib

        c = b.credentials
        who = hashlib.sha256("\0".join((c.api_key, c.client_id, c.client_secret)).encode()).hexdigest()[:16]
        return f"api {b.settings.api_url} {b.settings.tailnet} {who}"

    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """The devices ``filters`` select; raises :class:`DiscoveryError` with the fix."""
        try:
            wanted = Filters.parse(filters)
        except FilterError as exc:
            raise DiscoveryError(
                str(exc), "see docs/plugins/tailscale.md for the filters", exit_code=CONFIG
            ) from exc
        backend = self.backend()
        try:
            tailnet = self._answers.fetch(backend, self.context.warn)
        except TailscaleError as exc:
            raise _discovery_error(exc) from exc
        chosen = select(tailnet, wanted)
        self._notes(chosen)
        return [_host(s, backend) for s in chosen]

    def _notes(self, chosen: Sequence[Selected]) -> None:
        """What the core's own note on offline hosts does not say: expired keys, address fallbacks."""
        expired = [s.device.name for s in chosen if not s.target and s.device.expired]
        if expired:
            names = ", ".join(expired)
            self.context.warn(f"tailscale: node key expired on {names}: log them in again (tailscale up)")
        for s in chosen:
            if not s.address:  # e.g. address="ipv6" on a device without one
                self.context.warn(f"tailscale: {s.device.name}: {s.note}: not targeted")
        for note in sorted({s.note for s in chosen if s.target and s.note}):
            self.context.warn(f"tailscale: {note}")


def _host(s: Selected, backend: Backend) -> DiscoveredHost:
    d = s.device
    facts: dict[str, Any] = d.facts()
    facts["tailscale_online"] = d.online
    facts["tailscale_backend"] = backend.kind
    if s.note:
        facts["note"] = s.note
    if d.tailscale_ssh:
        facts["ssh_auth"] = "none"  # read by nexus-ssh: the tailnet authenticates the login
    return DiscoveredHost(
        address=s.address or d.name,
        tags=d.tags,
        os=d.os,
        online=d.online,  # the device's own state, shown by nexus hosts list
        targeted=s.target,  # what the filters decided (online=False targets offline devices too)
        addresses=d.addresses,
        facts=facts,
        name=d.name,
    )


def _discovery_error(exc: TailscaleError) -> DiscoveryError:
    message = "\n".join([exc.headline, *exc.context])
    return DiscoveryError(message, exc.hint, exit_code=exc.exit_code)
