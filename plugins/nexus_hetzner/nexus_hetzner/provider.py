"""The ``hetzner`` cloud provider: Hetzner Cloud servers that join the agent cluster.

- **Labels**: the core's tags become server labels. Hetzner label keys allow no ``:``, so
  ``nexus:run`` is the label ``nexus/run``; values allow only letters, digits, ``-``, ``_``
  and ``.`` (63 at most), so any other value is stored escaped as ``x_..._x`` (``_3A`` for
  ``:``) and read back unescaped. Listing is a label selector (``nexus/managed=true,...``).
- **Prices**: the server type's hourly gross price in each location, from the API (never a
  table in the code), converted with ``usd_per_eur``; the worst case over ``location`` and
  ``fallback_locations`` is what the cost limits use.
- **Locations**: ``location`` first; when the API answers ``resource_unavailable`` (sold
  out), each of ``fallback_locations`` in turn; a location where the type is not offered
  is skipped with a warning.
- **User data**: the core's bootstrap (self-destruct, nexus-agent install, certificate,
  join) as cloud-init user data, then the user's own ``user_data``.
- **Self-destruct**: Hetzner bills a server that is off, and has no delete-on-shutdown. By
  default a server only powers off at ``max_runtime`` (and the first start of a command says,
  once, that such servers keep billing until ``nexus cloud reap`` deletes them). The opt-in
  ``self_destruct="delete"`` gives each server a token and a script that deletes the server
  itself (:mod:`nexus_hetzner.selfdestruct`); the token is checked against the first server
  made, and a token that cannot see it stops the scale-up before more servers start.
- **Credentials**: ``HCLOUD_TOKEN`` (the SDK's and the hcloud CLI's variable), the API at
  ``HCLOUD_ENDPOINT`` when set. A missing or rejected token is an exit-2 error saying so.

Rate limits, 5xx answers and timeouts are ``retryable`` (the core retries, rate-limits and
breaks). The hcloud SDK itself retries ``rate_limit_exceeded``/``conflict``/502/504 a few
times with backoff before the error reaches here; it has no public switch for that.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.plugin import SECRET_PLACEHOLDER, CloudError, CloudInstance, CloudProvider, CloudRequest, Option

from nexus_hetzner import selfdestruct
from nexus_hetzner.plugin import SETTINGS

TOKEN_VARIABLE = "HCLOUD_TOKEN"
ENDPOINT_VARIABLE = "HCLOUD_ENDPOINT"
#: API error codes worth another try.
TRANSIENT = frozenset({"rate_limit_exceeded", "server_error", "timeout", "conflict", "locked", "maintenance",
                       "unavailable", "bad_gateway", "service_error"})  # fmt: skip
#: API error codes of a token the API does not accept.
REJECTED = frozenset({"unauthorized", "token_readonly", "forbidden"})
#: What the hcloud SDK itself retries (5 times, with backoff up to 60 s) before the error reaches
#: here: retrying those again in the core multiplied a dead API's silence (over 400 s).
SDK_RETRIED = frozenset({"rate_limit_exceeded", "conflict", "bad_gateway", "timeout", 502, 504})
#: Seconds to connect to the API and to wait for an answer, per attempt of the SDK's.
API_TIMEOUT = (5, 12)
#: Server states -> the core's. A server that is off is still billed until it is deleted.
STATES = {
    "initializing": "pending",
    "starting": "pending",
    "migrating": "pending",
    "rebuilding": "pending",
    "unknown": "pending",
    "running": "running",
    "stopping": "running",
    "off": "running",
    "deleting": "stopping",
}
_PLAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_KEY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


# --- tags <-> labels --------------------------------------------------------------------------


def label_key(tag: str) -> str:
    """``nexus:run`` -> ``nexus/run``; any other key must already be a valid label key."""
    key = "nexus/" + tag[len("nexus:") :] if tag.startswith("nexus:") else tag
    _prefix, _, name = key.rpartition("/")
    if not _KEY_NAME.fullmatch(name) or len(key) > 253:
        raise CloudError(
            f"the tag {tag!r} cannot be a Hetzner label key (letters, digits, '-', '_', '.'; at most 63, "
            "optionally after a 'prefix/')",
            'rename it in cloud("hetzner", tags={...})',
            exit_code=2,
        )
    return key


def tag_key(label: str) -> str:
    """The inverse of :func:`label_key`."""
    return "nexus:" + label[len("nexus/") :] if label.startswith("nexus/") else label


def label_value(value: str) -> str:
    """A tag value as a label value: unchanged when valid, else escaped ``x_..._x`` (a hash
    ``h-...`` past 63 characters, which a selector still matches but cannot be read back)."""
    if value == "" or (_PLAIN.fullmatch(value) and "_" not in value):
        return value
    escaped = "".join(c if c in _SAFE else "".join(f"_{b:02X}" for b in c.encode()) for c in value)
    out = f"x_{escaped}_x"
    if len(out) <= 63:
        return out
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def tag_value(label: str) -> str:
    """The inverse of :func:`label_value` (a hashed value stays as it is)."""
    if not (label.startswith("x_") and label.endswith("_x") and len(label) >= 4):
        return label
    body = label[2:-2]
    raw = bytearray()
    i = 0
    while i < len(body):
        if body[i] == "_" and i + 2 < len(body) and re.fullmatch(r"[0-9A-F]{2}", body[i + 1 : i + 3]):
            raw.append(int(body[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(body[i].encode())
            i += 1
    return raw.decode(errors="replace")


def to_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as Hetzner labels."""
    return {label_key(k): label_value(str(v)) for k, v in tags.items()}


def selector(tags: Mapping[str, str]) -> str:
    """A label selector matching servers with every tag."""
    return ",".join(f"{k}={v}" for k, v in to_labels(tags).items())


# --- the provider -----------------------------------------------------------------------------


class HetznerProvider(CloudProvider):
    """Hetzner Cloud servers for ``cloud("hetzner", ...)``."""

    name: ClassVar[str] = "hetzner"
    settings: ClassVar[tuple[Option, ...]] = SETTINGS

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._client: Any = None
        self._types: dict[str, Any] = {}
        self._warned = False
        self._checked_tokens: set[str] = set()

    def client(self) -> Any:
        """The hcloud client (made once), or CloudError saying where the token was looked for."""
        if self._client is not None:
            return self._client
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if not token:
            raise CloudError(
                f"no Hetzner Cloud API token: looked in {TOKEN_VARIABLE} in the environment and found nothing",
                f"create a read/write token in the Hetzner Console (project > Security > API tokens) and "
                f"export {TOKEN_VARIABLE}=...",
                exit_code=2,
            )
        from hcloud import Client

        self._client = Client(token=token, api_endpoint=self.endpoint(), application_name="nexus-hetzner",
                              timeout=API_TIMEOUT)  # fmt: skip
        return self._client

    @staticmethod
    def endpoint() -> str:
        """The API's base URL: ``HCLOUD_ENDPOINT``, else Hetzner's."""
        return os.environ.get(ENDPOINT_VARIABLE) or "https://api.hetzner.cloud/v1"

    # --- the self-destruct ----------------------------------------------------------------------

    @staticmethod
    def self_destruct_token(settings: Mapping[str, Any]) -> str | None:
        """The token servers delete themselves with (None: ``self_destruct`` is not ``delete``);
        CloudError (exit 2) when the opt-in is set and no token is found."""
        if settings.get("self_destruct") != "delete":
            return None
        given = settings.get("self_destruct_token")
        value = str(given).strip() if given else ""
        hidden = value == SECRET_PLACEHOLDER  # secret(...) in a command that decrypts no secrets
        if value and not hidden:
            return value
        found = os.environ.get(selfdestruct.TOKEN_VARIABLE, "").strip()
        if found:
            return found
        why = (
            "self_destruct_token is a secret(...), which only `nexus run` decrypts, and "
            if hidden
            else "looked in self_destruct_token and "
        )
        raise CloudError(
            f'self_destruct="delete" needs the API token servers delete themselves with: {why}'
            f"{selfdestruct.TOKEN_VARIABLE} is not set",
            f"export {selfdestruct.TOKEN_VARIABLE}=... (a read/write token of the servers' project: it can change "
            'anything in that project, so give burst servers a project of their own), or use self_destruct="poweroff"',
            exit_code=2,
        )

    def _warn_poweroff(self, settings: Mapping[str, Any]) -> None:
        if self._warned or settings.get("self_destruct") == "delete":
            return
        self._warned = True
        self.context.warn(
            f"nexus: hetzner: WARNING: at max_runtime ({float(settings.get('max_runtime') or 3600):g} s) these servers "
            "only power off, and Hetzner bills a server that is off until it is deleted: if this nexus stops before "
            'deleting them, run `nexus cloud reap` (or terminate); self_destruct="delete" makes them delete '
            "themselves (see the nexus-hetzner docs)"
        )

    def _check_token(self, token: str, server: CloudInstance) -> None:
        """The self-destruct token must see the server just made (same project, accepted):
        else the server is deleted again and CloudError says why (once per token and command)."""
        if token in self._checked_tokens:
            return
        from hcloud import APIException, Client

        probe = Client(token=token, api_endpoint=self.endpoint(), application_name="nexus-hetzner",
                       timeout=API_TIMEOUT)  # fmt: skip
        problem = ""
        try:
            probe.servers.get_by_id(int(server.id))
        except APIException as exc:
            if exc.code in REJECTED or exc.code == 401:
                problem = f"the API rejects it ({exc.code}: {exc.message})"
            elif exc.code == "not_found":
                problem = "it cannot see the server just started (a token of another project?)"
            elif exc.code in TRANSIENT or exc.code == 429:
                return  # not checked now: the next server's start checks it again
            else:
                problem = f"{exc.code}: {exc.message}"
        except OSError:
            return
        if not problem:
            self._checked_tokens.add(token)
            return
        with contextlib.suppress(CloudError):
            self.terminate([server.id])
        raise CloudError(
            f"the self-destruct token from self_destruct_token/{selfdestruct.TOKEN_VARIABLE} is not usable: {problem}; "
            f"server {server.id} was deleted again",
            "use a read/write API token of the project the servers start in (HCLOUD_TOKEN's project)",
            exit_code=2,
        )

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        from hcloud import APIException

        try:
            return function(*args, **kwargs)
        except APIException as exc:
            code = exc.code
            if code in REJECTED or code == 401:
                raise CloudError(
                    f"Hetzner Cloud rejected the token from {TOKEN_VARIABLE} ({code}: {exc.message})",
                    f"check {TOKEN_VARIABLE}: a read/write token of the project the servers belong to "
                    "(looked only in the environment)",
                    exit_code=2,
                ) from None
            if code == "resource_unavailable":
                raise CloudError(f"Hetzner Cloud could not {what}: {code}: {exc.message}", capacity=True) from None
            if isinstance(code, int) and 200 <= code < 300:  # an answer that is not the API's JSON
                size = len((exc.details or {}).get("content") or b"") if isinstance(exc.details, dict) else 0
                raise CloudError(
                    f"Hetzner Cloud's answer to {what} could not be read (HTTP {code}, {size} bytes that are not "
                    "the API's JSON)",
                    f"check {ENDPOINT_VARIABLE} (a proxy in between?) and try again",
                    retryable=True,
                ) from None
            if code == "rate_limit_exceeded" or code == 429:
                raise CloudError(
                    f"Hetzner Cloud could not {what}: {code}: {exc.message}",
                    "Hetzner allows 3,600 API requests an hour per project (the hcloud SDK waited and tried again "
                    "5 times): wait a few minutes, and lower config(cloud_api_rate=...) if other tools share the "
                    "project's token",
                ) from None
            retryable = code not in SDK_RETRIED and (
                code in TRANSIENT or (isinstance(code, int) and code >= 500) or code == 429
            )
            raise CloudError(f"Hetzner Cloud could not {what}: {code}: {exc.message}", retryable=retryable) from None
        except OSError as exc:  # requests' connection errors and timeouts are OSErrors
            import requests

            if isinstance(exc, requests.exceptions.Timeout):  # the SDK tried 6 times already
                raise CloudError(
                    f"Hetzner Cloud did not answer ({what}): {exc}",
                    f"check Hetzner's status page and the network path to {self.endpoint()}, then try again",
                ) from None
            raise CloudError(f"Hetzner Cloud could not be reached to {what}: {exc}", retryable=True) from None

    # --- read only ----------------------------------------------------------------------------

    def _locations(self, settings: Mapping[str, Any]) -> list[str]:
        first = str(settings.get("location") or "fsn1")
        rest = [str(x) for x in settings.get("fallback_locations") or () if str(x) != first]
        return [first, *dict.fromkeys(rest)]

    def server_type(self, settings: Mapping[str, Any]) -> Any:
        """The server type of these settings as the API describes it (with its prices)."""
        kind = str(settings.get("server_type") or "cx22")
        if kind not in self._types:
            found = self._call("look up the server type", self.client().server_types.get_by_name, kind)
            if found is None:
                names = sorted(t.name for t in self._call("list server types", self.client().server_types.get_all))
                raise CloudError(
                    f"Hetzner Cloud has no server type {kind!r}",
                    "pick one of: " + ", ".join(names[:30]),
                    exit_code=2,
                )
            self._types[kind] = found
        return self._types[kind]

    def prices(self, settings: Mapping[str, Any]) -> dict[str, float]:
        """US dollars per hour of one server, by location, where the type is offered."""
        rate = float(settings.get("usd_per_eur") or 1.2)
        out: dict[str, float] = {}
        for entry in self.server_type(settings).prices or ():
            location = str(entry.get("location") or "")
            gross = (entry.get("price_hourly") or {}).get("gross")
            if location and gross is not None:
                out[location] = float(gross) * rate
        return out

    def hourly_price(self, settings: Mapping[str, Any]) -> float | None:
        """The worst case over ``location`` and ``fallback_locations`` (gross, in dollars)."""
        prices = self.prices(settings)
        self._check_locations(settings, prices)  # a misspelt location is said as such, not as "no price"
        found = [prices[loc] for loc in self._locations(settings) if loc in prices]
        return max(found) if found else None

    def describe(self, settings: Mapping[str, Any]) -> str:
        """``cx22 in fsn1 (then nbg1, hel1)``."""
        first, *rest = self._locations(settings)
        then = f" (then {', '.join(rest)})" if rest else ""
        return f"{settings.get('server_type') or 'cx22'} in {first}{then}"

    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        """Servers with every tag (a label selector), not being deleted."""
        servers = self._call("list servers", self.client().servers.get_all, label_selector=selector(tags))
        hashed = {label_value(v): v for v in tags.values()}
        rate = float(self.context.settings.get("usd_per_eur") or 1.2)
        return [_instance(s, hashed, rate) for s in servers]

    # --- changes ------------------------------------------------------------------------------

    def provision(self, request: CloudRequest) -> CloudInstance:
        """One server in ``location``, or the first fallback location with capacity."""
        settings = request.settings
        token = self.self_destruct_token(settings)  # before anything starts
        self._warn_poweroff(settings)
        offered = self.prices(settings)
        self._check_locations(settings, offered)
        tried: list[str] = []
        locations = self._locations(settings)
        for index, location in enumerate(locations):
            then = "trying the next location" if index < len(locations) - 1 else "no location left to try"
            if offered and location not in offered:
                self.context.warn(f"nexus: hetzner: {settings.get('server_type') or 'cx22'} is not offered in "
                                  f"{location}; skipping it")  # fmt: skip
                tried.append(f"{location}: type not offered")
                continue
            try:
                made = self._create(request, location, offered.get(location), token)
            except CloudError as exc:
                if not exc.capacity:
                    raise
                tried.append(f"{location}: {exc.message}")
                self.context.warn(f"nexus: hetzner: no capacity in {location} ({exc.message}); {then}")
                continue
            if token:
                self._check_token(token, made)
            return made
        raise CloudError(
            "no Hetzner server could start: " + "; ".join(tried),
            'add locations to cloud("hetzner", fallback_locations=[...]) or pick another server_type',
            capacity=True,
            exit_code=1,
        )

    def _check_locations(self, settings: Mapping[str, Any], offered: Mapping[str, float]) -> None:
        """CloudError (exit 2) when ``location`` or ``fallback_locations`` names a location the
        API does not know (asked only when one is not among those the type is offered in)."""
        asked = [loc for loc in self._locations(settings) if loc not in offered]
        if not asked:
            return
        known = sorted(str(loc.name) for loc in self._call("list locations", self.client().locations.get_all))
        unknown = [loc for loc in asked if loc not in known]
        if unknown:
            raise CloudError(
                f"Hetzner Cloud has no location {', '.join(map(repr, unknown))}",
                'fix location= or fallback_locations= in cloud("hetzner", ...): locations are ' + ", ".join(known),
                exit_code=2,
            )

    def _create(self, request: CloudRequest, location: str, price: float | None, token: str | None) -> CloudInstance:
        from hcloud.images import Image
        from hcloud.locations import Location
        from hcloud.server_types import ServerType
        from hcloud.ssh_keys import SSHKey

        settings = request.settings
        user_data = request.bootstrap
        if token:
            block = selfdestruct.user_data_block(name=request.name, endpoint=self.endpoint(), token=token,
                                                 max_runtime=request.max_runtime)  # fmt: skip
            user_data = selfdestruct.with_self_destruct(user_data, block)
        if settings.get("user_data"):
            user_data += "\n# the user's own user_data\n" + str(settings["user_data"]) + "\n"
        image = str(settings.get("image") or "ubuntu-24.04")
        answer = self._call(
            f"start a server in {location}",
            self.client().servers.create,
            name=request.name,
            server_type=ServerType(name=str(settings.get("server_type") or "cx22")),
            image=Image(id=int(image)) if image.isdigit() else Image(name=image),
            location=Location(name=location),
            labels=to_labels(request.tags),
            user_data=user_data or None,
            ssh_keys=[SSHKey(name=k) for k in settings.get("ssh_keys") or ()] or None,
        )
        rate = float(settings.get("usd_per_eur") or 1.2)
        made = _instance(answer.server, {label_value(v): v for v in request.tags.values()}, rate)
        if made.hourly_price is None and price is not None:
            made = CloudInstance(**{**made.to_dict(), "hourly_price": price})
        return made

    def terminate(self, ids: Sequence[str]) -> None:
        """Delete the servers (ids the API does not know are skipped)."""
        from hcloud.servers import Server

        for one in ids:
            if not str(one).isdigit():
                continue
            try:
                self._call("delete a server", _delete, self.client(), Server(id=int(one)))
            except CloudError as exc:
                if "not_found" not in exc.message:
                    raise

    def close(self) -> None:
        """Forget the client."""
        self._client = None


def _delete(client: Any, server: Any) -> None:
    client.servers.delete(server)


def _prices(kind: Any) -> Iterator[tuple[str, float]]:
    for entry in getattr(kind, "prices", None) or ():
        gross = (entry.get("price_hourly") or {}).get("gross")
        if entry.get("location") and gross is not None:
            yield str(entry["location"]), float(gross)


def _instance(server: Any, hashed: Mapping[str, str], rate: float) -> CloudInstance:
    labels = dict(getattr(server, "labels", None) or {})
    tags = {tag_key(k): hashed.get(v, tag_value(v)) for k, v in labels.items()}
    location = ""
    if getattr(server, "location", None) is not None:
        location = str(server.location.name or "")
    elif getattr(server, "datacenter", None) is not None and server.datacenter.location is not None:
        location = str(server.datacenter.location.name or "")
    kind = getattr(server, "server_type", None)
    price = dict(_prices(kind)).get(location)
    created = getattr(server, "created", None)
    address = ""
    net = getattr(server, "public_net", None)
    if net is not None and getattr(net, "ipv4", None) is not None:
        address = str(net.ipv4.ip or "")
    if not address and getattr(server, "private_net", None):
        address = str(server.private_net[0].ip or "")
    return CloudInstance(
        id=str(server.id),
        name=str(server.name or server.id),
        state=STATES.get(str(server.status or "unknown"), "pending"),
        instance_type=str(getattr(kind, "name", "") or ""),
        launched=float(created.timestamp()) if created is not None and hasattr(created, "timestamp") else time.time(),
        hourly_price=price * rate if price is not None else None,
        tags=tags,
        address=address,
        market="on_demand",
        zone=location,
    )
