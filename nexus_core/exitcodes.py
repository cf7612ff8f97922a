"""The exit codes of ``nexus``: one enum for the engine, the CLI and plugin commands."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``nexus`` exits with; plugin commands use the same codes.

    ``HANGUP``, ``INTERRUPTED`` and ``TERMINATED`` follow the shell's 128 + signal number
    (SIGHUP 1, SIGINT 2, SIGTERM 15); ``APPROVAL_PENDING`` and ``DENIED`` those of sysexits.h.
    """

    OK = 0
    FAILED = 1
    CONFIG = 2
    CONNECTION = 3
    TIMEOUT = 4
    #: An approval request is waiting for an approver (``nexus run --no-wait``); sysexits' EX_TEMPFAIL.
    APPROVAL_PENDING = 75
    #: The policy refused: a role without the permission, a closed change window, a missing
    #: dry run, a rejected or expired approval; sysexits' EX_NOPERM.
    DENIED = 77
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


#: The exit code of a run stopped by each signal the engine handles.
SIGNAL_EXIT_CODES: dict[str, ExitCode] = {
    "SIGINT": ExitCode.INTERRUPTED,
    "SIGTERM": ExitCode.TERMINATED,
    "SIGHUP": ExitCode.HANGUP,
}


def for_signal(signal_name: str) -> ExitCode:
    """The exit code of a run stopped by ``signal_name`` (SIGINT when unknown)."""
    return SIGNAL_EXIT_CODES.get(signal_name, ExitCode.INTERRUPTED)
