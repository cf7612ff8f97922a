"""Reading a small file a user names (an inventory, a ``-H @file``, a secrets store, a keyfile).

``open()`` and ``read()`` trust the path: ``/dev/zero`` or ``/dev/urandom`` never ends, a FIFO
blocks the open until someone writes to it, and a huge file fills the memory. Each of these
hung ``nexus validate`` with no word (an inventory path, ``-H @/dev/zero``,
``NEXUS_SECRETS_FILE=/dev/urandom``). :func:`read_small` refuses them with an ``OSError``
whose ``strerror`` says why, so every caller's existing "cannot read FILE: WHY" applies.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["MAX_BYTES", "check_regular", "read_small", "special_kind"]

#: The largest file :func:`read_small` reads by default (an inventory of 100,000 hosts with
#: their variables is a few MB).
MAX_BYTES = 64 << 20


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))  # fmt: skip


def special_kind(mode: int) -> str:
    """What a file that is not a regular one is (``a FIFO``, ``a character device``...), from its mode."""
    return next((name for test, name in _SPECIAL if test(mode)), "not a regular file")


def check_regular(path: str) -> None:
    """``OSError`` unless ``path`` is a regular file (looked at without opening it, so a FIFO never blocks)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, f"it is {special_kind(mode)}, not a regular file", path)


def read_small(path: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``; ``OSError`` for anything else (:func:`check_regular`)
    or a file over ``max_bytes``."""
    check_regular(path)
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"it is larger than {max_bytes >> 20} MB", path)
    return data
