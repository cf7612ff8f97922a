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
    return True
