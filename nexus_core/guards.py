"""Idempotence guards of ``run()``: ``creates=PATH``, ``only_if=CMD``, ``unless=CMD``.

Each guard is a shell command run on the target host right before the guarded command,
through the host's executor like any command (same user, ``sudo``, ``cwd`` and ``env``):

- ``creates=PATH``: skip when ``test -e PATH`` succeeds (the command made it already);
- ``only_if=CMD``: skip unless ``CMD`` exits 0;
- ``unless=CMD``: skip when ``CMD`` exits 0.

The first guard that says "skip" wins; a guard that cannot run (host unreachable, timeout)
fails the command as its own failure would. A dry run checks ``creates`` on the local
machine (a file test changes nothing); it never runs ``only_if``/``unless`` commands, which
may do anything, nor anything on a remote host: it says "would check" instead.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace

from nexus_core.model import Command, Host

#: Seconds a guard may take at most (the guarded command's timeout when it is shorter).
GUARD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Guard:
    """One check before a command: the probe to run and how to read its exit code."""

    kind: str  # creates | only_if | unless
    probe: Command
    text: str

    def skip_reason(self, exit_code: int | None) -> str | None:
        """Why the guarded command is skipped given the probe's exit code, or None to run it."""
        ok = exit_code == 0
        if self.kind == "creates":
            return f"creates: {self.text} exists" if ok else None
        if self.kind == "unless":
            return f"unless: `{self.text}` succeeded" if ok else None
        return None if ok else f"only_if: `{self.text}` exited {exit_code}"


def guards(cmd: Command) -> list[Guard]:
    """The guards of ``cmd`` in evaluation order (creates, only_if, unless)."""
    out: list[Guard] = []
    timeout = min(cmd.timeout, GUARD_TIMEOUT) if cmd.timeout > 0 else GUARD_TIMEOUT
    base = replace(cmd, retries=0, continue_on_error=False, timeout=timeout, marker=None,
                   creates=None, only_if=None, unless=None)  # fmt: skip
    if cmd.creates:
        out.append(Guard("creates", replace(base, cmd=f"test -e {shlex.quote(cmd.creates)}"), cmd.creates))
    if cmd.only_if:
        out.append(Guard("only_if", replace(base, cmd=cmd.only_if), cmd.only_if))
    if cmd.unless:
        out.append(Guard("unless", replace(base, cmd=cmd.unless), cmd.unless))
    return out


def dry_run_note(cmd: Command, host: Host, root: str) -> str:
    """What a dry run can tell about ``cmd``'s guards without changing or reaching anything."""
    if not (cmd.creates or cmd.only_if or cmd.unless):
        return ""
    notes: list[str] = []
    if cmd.creates:
        if host.is_local and not (cmd.sudo or cmd.user):
            base = cmd.cwd or root
            path = os.path.join(base, os.path.expanduser(cmd.creates))
            notes.append(
                f"would skip: {cmd.creates} exists" if os.path.exists(path) else f"{cmd.creates} missing: would run"
            )
        else:
            where = "as another user" if host.is_local else "on the host"
            notes.append(f"would check creates={cmd.creates} {where} (not checked in a dry run)")
    if cmd.only_if:
        notes.append("would check only_if (commands do not run in a dry run)")
    if cmd.unless:
        notes.append("would check unless (commands do not run in a dry run)")
    return "; ".join(notes)
