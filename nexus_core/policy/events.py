"""The audited events of the compliance controls (each carries an ``audit`` type).

Every permission check, approval decision and change-window override is one of these; the
audit sinks write any event with an ``audit`` class attribute, generically from its fields.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

from nexus_core.events import Event, event_type


@event_type
class PolicyCheck(Event):
    """One permission check: who may do what, the answer and the rule that gave it.

    ``action`` is list, status, logs, run, approve, admin, or one of the compliance checks
    change_window and dry_run.
    """

    name: ClassVar[str] = "policy.check"
    audit: ClassVar[str] = "policy.check"
    #: Whom the decision is about (the acting user, or ``nexus policy check --user``'s);
    #: the audit record's ``user`` is always the acting identity.
    subject: str
    action: str
    target: str
    allowed: bool
    rule: str
    reason: str = ""


@event_type
class ApprovalRequested(Event):
    """A run waits for approval: the request id, the requester, the tasks and the plan hash."""

    name: ClassVar[str] = "approval.requested"
    audit: ClassVar[str] = "approval.requested"
    request_id: str
    user: str
    tasks: tuple[str, ...]
    plan_hash: str


@event_type
class _ApprovalDecision(Event):
    """The fields of an approver's answer to a request (granted or rejected; not an event itself)."""

    request_id: str
    user: str
    requester: str
    plan_hash: str
    comment: str = ""


@event_type
class ApprovalGranted(_ApprovalDecision):
    """An approver approved a request (``comment`` as given)."""

    name: ClassVar[str] = "approval.granted"
    audit: ClassVar[str] = "approval.granted"


@event_type
class ApprovalRejected(_ApprovalDecision):
    """An approver rejected a request (``comment`` as given)."""

    name: ClassVar[str] = "approval.rejected"
    audit: ClassVar[str] = "approval.rejected"


@event_type
class ApprovalUsed(Event):
    """A run starts on an approved request: who approved it, and when the run began."""

    name: ClassVar[str] = "approval.used"
    audit: ClassVar[str] = "approval.used"
    request_id: str
    user: str
    approver: str
    plan_hash: str
    comment: str = ""


@event_type
class ChangeWindowOverride(Event):
    """A task ran outside its change window with ``--override-window`` and this reason."""

    name: ClassVar[str] = "change_window.override"
    audit: ClassVar[str] = "change_window.override"
    user: str
    task: str
    window: str
    reason: str


@event_type
class DryRunRecorded(Event):
    """A dry run of this plan hash by this user was recorded (for ``require_dry_run``)."""

    name: ClassVar[str] = "dry_run.recorded"
    audit: ClassVar[str] = "dry_run.recorded"
    user: str
    tasks: tuple[str, ...]
    plan_hash: str


@event_type
class ConfigChanged(Event):
    """Nexus changed configuration on the user's behalf (``nexus secret set``, ``delete``...).

    ``diff`` names what changed, never a secret's value: ``{"secrets": {"set": [NAME]}}``.
    """

    name: ClassVar[str] = "config.changed"
    audit: ClassVar[str] = "config.changed"
    user: str
    #: What changed it (the command: ``secret set``) and the file it changed.
    change_type: str
    target: str
    diff: dict[str, Any] = field(default_factory=dict)
