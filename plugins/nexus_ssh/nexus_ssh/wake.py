"""Waiting for data on Paramiko channels without the OS pipe ``Channel.fileno()`` creates.

``select.select([chan])`` makes Paramiko open a pipe per channel, which the transport thread
writes to when data arrives. Closing such a channel from our thread while the host still sends
races with that write: the transport thread can write to (or read from) a descriptor number
that was just closed, get ``EBADF`` and die, taking the whole connection down with it ("the SSH
connection was lost while the command ran" on a healthy host). A :class:`Waker` is handed to
the channel's buffers instead (they accept any object with ``set``/``clear``): no descriptor,
nothing to race with, and one fewer pair of file descriptors per channel, which counts at a
thousand hosts. The decision and the reproduction are in ``docs/decisions.md``.
"""

from __future__ import annotations

import _thread
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paramiko.channel import Channel


class Waker:
    """An event set by Paramiko when any watched channel has data, is closed or ends.

    A bare lock rather than a ``threading.Event``: the lock is held while the waker is clear,
    ``set`` releases it, ``wait`` acquires it (with a timeout) and so clears it again — each a
    single C call, where an ``Event`` goes through a ``Condition`` (a dozen Python calls per
    set and per wait, on every read of every command).
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # clear

    def set(self) -> None:
        """Called by the transport thread: data arrived or a buffer was closed."""
        try:  # noqa: SIM105 - not contextlib.suppress: called for every packet, kept to C calls
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def clear(self) -> None:
        """Called by Paramiko when one buffer is drained: ignored, as the waker is shared by
        several buffers (the waiting side clears it in :meth:`wait`)."""

    def wait(self, timeout: float) -> bool:
        """Block until something happened or ``timeout`` s passed; True when woken.

        The caller checks its channels after each wait, so an event cleared here is never
        lost: what arrived before the clear is seen by that check, what arrives after it sets
        the event again.
        """
        return self._lock.acquire(timeout=max(0.0, timeout))

    def watch(self, *chans: Channel) -> Waker:
        """Be woken by the stdout and stderr buffers of ``chans``; returns self."""
        for chan in chans:
            chan.in_buffer.set_event(self)
            chan.in_stderr_buffer.set_event(self)
        return self


def waker(*chans: Channel) -> Waker:
    """A new :class:`Waker` watching ``chans``."""
    return Waker().watch(*chans)
