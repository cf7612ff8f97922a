"""Whether a process is still there, asked the one way (``kill(pid, 0)``) the core and plugins share."""

from __future__ import annotations

import contextlib
import os

__all__ = ["pid_alive"]


def pid_alive(pid: int | None, *, reap: bool = False) -> bool:
    """True when process ``pid`` exists on this machine (or exists but is not ours to signal).

    ``reap``: a zombie child of this process counts as gone (and is reaped), for callers
    that started the process themselves.
    """
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if reap:
        with contextlib.suppress(ChildProcessError, OSError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """True when ``pid`` is a zombie: dead, waiting for its parent to collect it (Linux's
    ``/proc``; elsewhere False). A ``nexus`` killed with ``kill -9`` whose parent (a
    script, a CI runner) has not waited for it yet is one: it holds no lock, runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read(512)
    except OSError:
        return False
    state = data.rpartition(b")")[2].split(None, 1)  # the name in parentheses may hold anything
    return bool(state) and state[0] == b"Z"
