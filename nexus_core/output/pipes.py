"""A closed output pipe never stops a run: what cannot be written is dropped quietly.

``nexus run deploy | head -1`` closes Nexus's stdout after the first line (and ``2>&1``
its stderr too). Python ignores SIGPIPE, so each later write raises ``BrokenPipeError``;
left alone, that error would surface in the renderer, in the summary or at interpreter
exit, and the run would stop or end with a wrong exit code. :func:`guard_std_streams`
wraps ``sys.stdout`` and ``sys.stderr`` so that the first failed write points the file
descriptor at ``/dev/null``: every task still runs to completion, the state store records
the truth, and the exit code is the run's.

A standard stream that cannot take more (``nexus pipelines > /dev/full``: a full disk, a
device error) is dropped the same way and remembered (:func:`lost_output`): the command
ends with one line on stderr saying so, and exit 1 unless tasks ran (then the exit code is
still the tasks'; see :data:`TASKS_RAN`).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import IO, Any

from nexus_core.secrets.redact import REDACTOR

#: Write errors that lose the output but are no bug: no space, a quota, a device error.
LOST = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)
#: Set when a run's tasks start: from then on the exit code is theirs, whatever a stream did.
TASKS_RAN = False


class PipeSafeStream:
    """A text stream that, once its reader is gone, writes into ``/dev/null`` instead."""

    def __init__(self, inner: IO[str]) -> None:
        self._inner = inner
        self.closed_reader = False
        #: Why output written here was lost (a full disk...), None while it was not.
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        """Write ``text``; a closed reader makes this (and every later write) a no-op."""
        if self.closed_reader:
            return len(text)
        size = len(text)
        if REDACTOR:  # the last net: no secret value reaches the terminal or a pipe
            text = REDACTOR.text(text)
        try:
            self._inner.write(text)
            return size
        except OSError as exc:
            if not self._dropped(exc):
                raise
            return len(text)

    def flush(self) -> None:
        """Flush; a closed reader is not an error."""
        if self.closed_reader:
            return
        try:
            self._inner.flush()
        except OSError as exc:
            if not self._dropped(exc):
                raise

    def _dropped(self, exc: OSError) -> bool:
        """Drop the stream for a closed reader or a lost write (remembered); False for other errors."""
        if exc.errno in LOST:
            self.lost = self.lost or exc
        elif not _is_closed_pipe(exc):
            return False
        self._drop()
        return True

    def _drop(self) -> None:
        """Point the descriptor at /dev/null so buffered bytes and later writes go nowhere, quietly."""
        self.closed_reader = True
        try:
            fd = self._inner.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
            self._inner.flush()  # what was buffered now goes to /dev/null
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        """False once the reader is gone, else what the stream says."""
        return not self.closed_reader and self._inner.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _is_closed_pipe(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno in (errno.EPIPE, errno.EINVAL)


def lost_output() -> str:
    """What lost output and why (``standard output (No space left on device)``), else ""."""
    for name, said in (("stdout", "standard output"), ("stderr", "standard error")):
        stream = getattr(sys, name, None)
        if isinstance(stream, PipeSafeStream) and stream.lost is not None:
            return f"{said} ({stream.lost.strerror or stream.lost})"
    return ""


def guard_std_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once) so that a closed pipe is dropped quietly.

    A standard descriptor that is closed (``nexus run >&-``) is first given ``/dev/null``:
    Python has no stream for it (``None``), and the next file Nexus opens (its state
    database) would otherwise take that number, where a child's output would land."""
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                got = os.open(os.devnull, os.O_RDWR)
            except OSError:
                continue
            if got != fd:  # a lower one was free after all: put it where it belongs
                os.dup2(got, fd)
                os.close(got)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is None:
            try:
                setattr(sys, name, open(fd, "w", encoding="utf-8", errors="replace", closefd=False))
            except OSError:
                continue
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeSafeStream):
            setattr(sys, name, PipeSafeStream(stream))
