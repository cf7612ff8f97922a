"""The public plugin API: the one module a plugin imports from the core.

Everything here is promised to plugin authors (versioned by ``API_VERSION``); every other
``nexus_core`` module is internal and may change. ``tests/test_public_api.py`` fails when a
plugin of this repository imports anything else (besides ``nexus_core`` itself, which a
nexusfile uses, and the ``nexus_core.testing`` pytest plugin)::

    from nexus_core.plugin import Executor, Registration, hookimpl

    NEXUS_API_VERSION = 1

    @hookimpl
    def nexus_executors() -> list[Registration]:
        return [Registration("agent", "nexus_agent.executor:AgentExecutor")]

The CLI kit (``load``, ``make_plan``, ``fail``, ``Exit``) and ``Plan`` are
imported on first use, so that importing this module stays cheap for entry modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

import nexus_core.markers as markers
import nexus_core.shell as shell
from nexus_core._version import API_VERSION
from nexus_core.api import (
    INTERRUPTED,
    Cancel,
    Capabilities,
    CheckResult,
    CommandResult,
    Executor,
    ExecutorContext,
    HostOutcome,
    OutputCallback,
    PreflightCheck,
    ProgressCallback,
    Strategy,
    StrategyContext,
    TransferError,
    TransferInterrupted,
    skipped,
    unsupported_call,
)
from nexus_core.events import Event, Log, Subscriber, event_type
from nexus_core.exitcodes import ExitCode
from nexus_core.hosts import HostParseError, parse_host
from nexus_core.kinds import KINDS, Kind, Registration
from nexus_core.lazy import lazy_getattr
from nexus_core.markers import Marker, cleanup_line
from nexus_core.model import Command, Host
from nexus_core.options import Option

# What secret("...") stands for where nothing is decrypted (dry runs, `nexus hosts list`): a
# plugin reading a setting that holds it has no value and must never send it anywhere.
from nexus_core.secrets.redact import MASK as SECRET_PLACEHOLDER

if TYPE_CHECKING:
    from nexus_core.audit.records import set_identity
    from nexus_core.calls import CallStreams, honour_hide
    from nexus_core.cli.application import (
        Exit,
        Number,
        config_option,
        fail,
        format_option,
        load,
        log_options,
        make_plan,
        open_store,
        setup_logs,
    )
    from nexus_core.contracts.audit import AuditSink, AuditSinkContext, AuditSinkError
    from nexus_core.contracts.clouds import (
        CloudCluster,
        CloudContext,
        CloudDemand,
        CloudError,
        CloudInstance,
        CloudProvider,
        CloudRequest,
    )
    from nexus_core.contracts.discovery import DiscoveredHost, DiscoveryError, HostSource, HostSourceContext
    from nexus_core.contracts.files import FileState, FileWrite, SmallFile, TransferResult
    from nexus_core.contracts.secrets import (
        SecretBackend,
        SecretContext,
        SecretDenied,
        SecretError,
        SecretInfo,
        SecretNotFound,
        SecretUnavailable,
    )
    from nexus_core.executors.lines import LineSplitter
    from nexus_core.loader import NexusfileNotFound, find_nexusfile
    from nexus_core.output.alike import alike_key
    from nexus_core.output.report import error_block
    from nexus_core.output.style import Style
    from nexus_core.pids import pid_alive
    from nexus_core.plan import Plan, to_host
    from nexus_core.plugins import PluginManager
    from nexus_core.policy.events import PolicyCheck
    from nexus_core.policy.gate import config_changed
    from nexus_core.policy.local import policy_decision
    from nexus_core.policy.model import PolicyError
    from nexus_core.service_errors import ServiceError

__all__ = [
    "API_VERSION",
    "INTERRUPTED",
    "KINDS",
    "PUBLIC_MODULES",
    "SECRET_PLACEHOLDER",
    "AuditSink",
    "AuditSinkContext",
    "AuditSinkError",
    "CallStreams",
    "Cancel",
    "Capabilities",
    "CheckResult",
    "CloudCluster",
    "CloudContext",
    "CloudDemand",
    "CloudError",
    "CloudInstance",
    "CloudProvider",
    "CloudRequest",
    "Command",
    "CommandResult",
    "DiscoveredHost",
    "DiscoveryError",
    "Event",
    "Executor",
    "ExecutorContext",
    "Exit",
    "ExitCode",
    "FileState",
    "FileWrite",
    "Host",
    "HostOutcome",
    "HostParseError",
    "HostSource",
    "HostSourceContext",
    "Kind",
    "LineSplitter",
    "Log",
    "Marker",
    "NexusfileNotFound",
    "Number",
    "Option",
    "OutputCallback",
    "Plan",
    "PluginManager",
    "PolicyCheck",
    "PolicyError",
    "PreflightCheck",
    "ProgressCallback",
    "Registration",
    "SecretBackend",
    "SecretContext",
    "SecretDenied",
    "SecretError",
    "SecretInfo",
    "SecretNotFound",
    "SecretUnavailable",
    "ServiceError",
    "SmallFile",
    "Strategy",
    "StrategyContext",
    "Style",
    "Subscriber",
    "TransferError",
    "TransferInterrupted",
    "TransferResult",
    "alike_key",
    "cleanup_line",
    "config_changed",
    "config_option",
    "error_block",
    "event_type",
    "fail",
    "find_nexusfile",
    "format_option",
    "honour_hide",
    "hookimpl",
    "hookspec",
    "load",
    "log_options",
    "make_plan",
    "markers",
    "open_store",
    "parse_host",
    "pid_alive",
    "policy_decision",
    "set_identity",
    "setup_logs",
    "shell",
    "skipped",
    "to_host",
    "unsupported_call",
]

#: The core modules a plugin may import from.
PUBLIC_MODULES = ("nexus_core", "nexus_core.plugin", "nexus_core.testing")

_F = TypeVar("_F", bound=Callable[..., Any])

_impl_marker = pluggy.HookimplMarker("nexus")
_spec_marker = pluggy.HookspecMarker("nexus")


def hookimpl(func: _F) -> _F:
    """Mark ``func`` as the implementation of the Nexus hook of the same name (its type is kept)."""
    return _impl_marker(func)


def hookspec(func: _F) -> _F:
    """Mark ``func`` as a hook specification (for hooks a plugin adds with ``nexus_addhooks``)."""
    return _spec_marker(func)


#: Names imported on first use, and where from.
_LAZY = {
    "AuditSink": "nexus_core.contracts.audit",
    "AuditSinkContext": "nexus_core.contracts.audit",
    "AuditSinkError": "nexus_core.contracts.audit",
    "CloudCluster": "nexus_core.contracts.clouds",
    "CloudContext": "nexus_core.contracts.clouds",
    "CloudDemand": "nexus_core.contracts.clouds",
    "CloudError": "nexus_core.contracts.clouds",
    "CloudInstance": "nexus_core.contracts.clouds",
    "CloudProvider": "nexus_core.contracts.clouds",
    "CloudRequest": "nexus_core.contracts.clouds",
    "DiscoveredHost": "nexus_core.contracts.discovery",
    "DiscoveryError": "nexus_core.contracts.discovery",
    "HostSource": "nexus_core.contracts.discovery",
    "HostSourceContext": "nexus_core.contracts.discovery",
    "FileState": "nexus_core.contracts.files",
    "FileWrite": "nexus_core.contracts.files",
    "SmallFile": "nexus_core.contracts.files",
    "TransferResult": "nexus_core.contracts.files",
    "SecretBackend": "nexus_core.contracts.secrets",
    "SecretContext": "nexus_core.contracts.secrets",
    "SecretDenied": "nexus_core.contracts.secrets",
    "SecretError": "nexus_core.contracts.secrets",
    "SecretInfo": "nexus_core.contracts.secrets",
    "SecretNotFound": "nexus_core.contracts.secrets",
    "SecretUnavailable": "nexus_core.contracts.secrets",
    "policy_decision": "nexus_core.policy.local",
    "PolicyCheck": "nexus_core.policy.events",
    "config_changed": "nexus_core.policy.gate",
    "set_identity": "nexus_core.audit.records",
    "PolicyError": "nexus_core.policy.model",
    "Exit": "nexus_core.cli.application",
    "Number": "nexus_core.cli.application",
    "fail": "nexus_core.cli.application",
    "load": "nexus_core.cli.application",
    "make_plan": "nexus_core.cli.application",
    "config_option": "nexus_core.cli.application",
    "format_option": "nexus_core.cli.application",
    "log_options": "nexus_core.cli.application",
    "setup_logs": "nexus_core.cli.application",
    "open_store": "nexus_core.cli.application",
    "NexusfileNotFound": "nexus_core.loader",
    "find_nexusfile": "nexus_core.loader",
    "error_block": "nexus_core.output.report",
    "alike_key": "nexus_core.output.alike",
    "Style": "nexus_core.output.style",
    "Plan": "nexus_core.plan",
    "to_host": "nexus_core.plan",
    "PluginManager": "nexus_core.plugins",
    "CallStreams": "nexus_core.calls",
    "honour_hide": "nexus_core.calls",
    "LineSplitter": "nexus_core.executors.lines",
    "ServiceError": "nexus_core.service_errors",
    "pid_alive": "nexus_core.pids",
}


# The CLI kit and the heavier types, imported when a plugin first asks for them.
__getattr__ = lazy_getattr("nexus_core.plugin", _LAZY, globals())
