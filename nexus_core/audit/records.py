"""Events turned into audit records: one JSON shape for every sink.

Every record has ``timestamp`` (ISO 8601, UTC), ``event`` (the record's code, such as
``task.completed``), ``user`` (the acting identity), ``source_ip`` (when known: the address
the user's remote login session to this machine comes from), and ``correlation_id`` (the run id,
shared by every record of one run); then the event's own fields: ``task``, ``hosts``,
``host``, ``command``, ``exit_code``, ``duration_ms``, ``status``...

The core's events map to records by :data:`BUILTIN`; any other event class is audited when
it declares a code::

    @event_type
    class PolicyCheck(Event):
        name: ClassVar[str] = "policy.check"
        audit: ClassVar[str] = "policy.check"       # audited: its fields become the record's
        audit_hmac: ClassVar[tuple[str, ...]] = ()  # fields recorded as HMACs, not as values
        task: str
        allowed: bool

Values are redacted exactly like output (a secret's value is ``***``); the values of the
``audit_hmac`` fields are replaced, per sink, by ``hmac-sha256:HEX`` of the value with that
sink's salt (``nexus audit hash VALUE`` computes the same).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from typing import Any

from nexus_core.events import Event
from nexus_core.secrets.redact import REDACTOR

#: Fields of :class:`Event` that every record carries in its own shape (not copied as-is).
_BASE_FIELDS = ("run_id", "ts")

#: Statuses as records say them (``ok`` is ``success``, as audit consumers expect).
_STATUS = {"ok": "success"}


class Hashed:
    """A value to record as its HMAC with each sink's salt (never as the value)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Hashed(***)"


def hmac_value(salt: bytes, value: str) -> str:
    """``hmac-sha256:HEX`` of ``value`` with ``salt``: what records and ``nexus audit hash`` show."""
    return "hmac-sha256:" + hmac.new(salt, value.encode("utf-8"), hashlib.sha256).hexdigest()


def with_hmacs(record: Mapping[str, Any], salt: bytes) -> dict[str, Any]:
    """``record`` with every :class:`Hashed` value replaced by its HMAC with ``salt``."""
    return {k: hmac_value(salt, v.value) if isinstance(v, Hashed) else v for k, v in record.items()}


def timestamp(ts: float) -> str:
    """``2026-12-02T10:30:00.123Z`` for seconds since the epoch."""
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def os_user() -> str:
    """The acting OS user: the effective uid's name (not ``$USER``, which anyone can set)."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid:{os.geteuid()}" if hasattr(os, "geteuid") else "unknown"


def source_ip(env: Mapping[str, str] | None = None) -> str:
    """The address the user's remote login session to this machine comes from; "" when local."""
    env = os.environ if env is None else env
    words = (env.get("SSH_CONNECTION") or "").split()  # set by the machine's login daemon
    return words[0] if words else ""


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: ``user`` (the OS user, or an agent certificate's identity) and where from."""

    user: str
    source_ip: str = ""
    #: ``os`` or ``certificate``: how the identity was established.
    via: str = "os"

    @classmethod
    def current(cls) -> Actor:
        """The acting identity of this process: the identity an agent set, else the OS user."""
        return _IDENTITY or cls(os_user(), source_ip())


_IDENTITY: Actor | None = None


def set_identity(user: str, via: str = "certificate", source: str = "") -> None:
    """Record ``user`` as the acting identity of what this process runs (an agent does so with the
    identity of the client certificate it accepted); records say ``user`` and ``user_via``."""
    global _IDENTITY
    _IDENTITY = Actor(user, source, via)


def clear_identity() -> None:
    """Forget the identity :func:`set_identity` recorded (the OS user acts again)."""
    global _IDENTITY
    _IDENTITY = None


def _ms(seconds: Any) -> int:
    try:
        return round(float(seconds) * 1000)
    except (TypeError, ValueError):
        return 0


def _status(value: Any) -> Any:
    return _STATUS.get(value, value) if isinstance(value, str) else value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


Fields = Callable[[Any], dict[str, Any]]

#: The core's events that are audited: event name -> (code, fields). Plugins' events declare
#: their code themselves (``audit = "auth.success"``).
BUILTIN: dict[str, tuple[str, Fields]] = {
    "pipeline.start": ("run.started", lambda e: {
        "tasks": list(e.tasks), "hosts": list(e.hosts), "requested": list(e.requested), "nexusfile": e.nexusfile}),
    "pipeline.stop": ("run.completed", lambda e: {
        "duration_ms": _ms(e.duration), "status": _status(e.status), "exit_code": e.exit_code,
        "tasks_completed": list(e.tasks_completed), "tasks_failed": list(e.tasks_failed),
        "tasks_skipped": list(e.tasks_skipped)}),
    "pipeline.interrupt": ("run.interrupted", lambda e: {"signal": e.signal, "level": e.level}),
    "pipeline.exception": ("run.error", lambda e: {"kind": e.kind, "reason": e.reason}),
    "task.start": ("task.started", lambda e: {
        "task": e.task, "hosts": list(e.hosts), "strategy": e.strategy, "attempt": e.attempt}),
    "task.stop": ("task.completed", lambda e: {
        "task": e.task, "hosts": list(e.hosts), "duration_ms": _ms(e.duration), "status": _status(e.status),
        "commands_executed": e.commands_executed, **({"reason": e.reason} if e.reason else {})}),
    "command.stop": ("command.executed", lambda e: {
        "task": e.task, "host": e.host, "command": e.command, "exit_code": e.exit_code,
        "duration_ms": _ms(e.duration), "status": _status(e.status), "attempt": e.attempt,
        **({"reason": e.reason} if e.reason else {})}),
    "transfer.stop": ("file.transferred", lambda e: {
        "task": e.task, "host": e.host, "op": e.op, "dest": e.dest, "status": _status(e.status),
        "changed": e.changed, "sha256": e.sha256, "duration_ms": _ms(e.duration)}),
    # Prices and costs are in US dollars (what every provider's price list gives).
    "cloud.provisioned": ("cloud.instance.provisioned", lambda e: {
        "provider": e.provider, "instance_id": e.instance, "agent": e.agent, "region": e.region,
        "size": e.instance_type, "market": e.market, "cost_per_hour": e.hourly_price, "currency": "USD"}),
    "cloud.terminated": ("cloud.instance.terminated", lambda e: {
        "provider": e.provider, "instance_id": e.instance, "reason": e.reason, "cost": e.cost, "currency": "USD"}),
}  # fmt: skip


def record(code: str, ts: float, run_id: str, actor: Actor, fields: Mapping[str, Any]) -> dict[str, Any]:
    """One record in the audit shape: timestamp, event, user, source_ip (when known), fields, correlation_id."""
    out: dict[str, Any] = {"timestamp": timestamp(ts), "event": code, "user": actor.user}
    if actor.via != "os":
        out["user_via"] = actor.via
        out["os_user"] = os_user()  # who started the process that acts with that identity
    if actor.source_ip:
        out["source_ip"] = actor.source_ip
    for key, value in fields.items():
        if key not in ("timestamp", "event", "user", "correlation_id"):
            out[key] = value
    out["correlation_id"] = run_id
    return out


def of_event(event: Event, actor: Actor) -> dict[str, Any] | None:
    """The record of ``event`` (already redacted by the bus), or None when it is not audited."""
    builtin = BUILTIN.get(event.name)
    cls = type(event)
    code = getattr(cls, "audit", None)
    if isinstance(code, str) and code:
        hashed = set(getattr(cls, "audit_hmac", ()) or ())
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(event):
            if f.name in _BASE_FIELDS:
                continue
            value = getattr(event, f.name)
            if f.name in hashed and isinstance(value, str):
                fields[f.name] = Hashed(value)
            elif f.name == "duration" and isinstance(value, (int, float)):
                fields["duration_ms"] = _ms(value)
            else:
                fields[f.name] = _plain(value)
        fields = {k: (v if isinstance(v, Hashed) else REDACTOR.data(v)) for k, v in fields.items()}
    elif builtin is not None:
        code, make = builtin
        try:
            fields = make(event)
        except AttributeError:  # an event of the same name with other fields (a plugin's)
            return None
        if REDACTOR:
            fields = REDACTOR.data(fields)
    else:
        return None
    return record(code, event.ts, event.run_id, actor, fields)


def secret_records(run_id: str, actor: Actor, seen: set[tuple[str, str]], ts: float) -> list[dict[str, Any]]:
    """``secret.accessed`` records for the references the run resolved since the last call (names
    only, with the value as an HMAC so that a leaked value can be matched later); adds them to ``seen``."""
    from nexus_core.secrets.resolve import active

    current = active()
    if current is None:
        return []
    values: Mapping[tuple[str, str], str] = getattr(current, "_values", {})
    out = []
    try:
        used = set(current.used)
    except RuntimeError:  # resolved by another thread this very moment: the next call gets it
        return []
    for backend, reference in sorted(used - seen):
        seen.add((backend, reference))
        fields: dict[str, Any] = {"secret_name": reference, "backend": backend}
        value = values.get((backend, reference))
        if isinstance(value, str):
            fields["value_hmac"] = Hashed(value)
        out.append(record("secret.accessed", ts, run_id, actor, fields))
    return out
