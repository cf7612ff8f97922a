"""The file types of the executor contract (``Executor.stat_files``, ``write_files``,
``send_files``): re-exported by ``nexus_core.api`` and ``nexus_core.plugin``.

Imported on first use (file operations, an executor that moves files), so that a run of
commands only does not build these classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileState:
    """What is at a path on a host, as :meth:`Executor.stat_files` finds it.

    ``kind``: ``file``, ``dir``, ``missing`` or ``other`` (a socket, a device...).
    ``parent``: the folder that holds the path: ``dir`` (the login user may write in it),
    ``readonly`` (it exists, the login user may not write in it), ``missing``, ``other``
    (not a folder). ``sha256`` is set for a file whose size was the expected one (checksums
    are only computed when they can say "unchanged"); ``mode`` holds the permission bits.
    ``owner``/``group`` are names, ``uid``/``gid`` the numeric ids when the look printed them
    (an ``owner=`` given as a number is compared with those).
    """

    path: str
    kind: str
    size: int = 0
    mode: int | None = None
    owner: str = ""
    group: str = ""
    sha256: str = ""
    parent: str = "dir"
    uid: str = ""
    gid: str = ""


@dataclass(frozen=True)
class FileWrite:
    """One file to write on a host: local bytes with their size and sha256, and how the
    destination must end up (mode, owner, group; as root with ``sudo``; checked first by
    ``validate``, a command where ``{path}`` stands for the temporary file)."""

    source: str
    dest: str
    size: int
    sha256: str
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    sudo: bool = False
    validate: str | None = None
    #: The modification time the destination gets (seconds since the epoch; ``upload(...,
    #: preserve=True)`` keeps the source's), or None for "when it was written".
    mtime: float | None = None
    #: Short name of the host the write is for, in its temporary files' names (set by
    #: :func:`nexus_core.transfer.write_files`): hosts sharing a file system (an NFS home,
    #: one machine as two users) never share a temporary file.
    tag: str = ""


@dataclass(frozen=True)
class SmallFile:
    """One small file for :meth:`Executor.send_files`: written whole (never resumed) to
    ``remote_path``, then given ``mode`` and ``mtime`` when they are set."""

    local_path: str
    remote_path: str
    mode: int | None = None
    mtime: float | None = None


@dataclass(frozen=True)
class TransferResult:
    """How one file moved: ``status`` ok, failed, unreachable, error or interrupted.

    ``changed``: a file was written (or its mode or owner set); ``sent``: bytes that went
    over the wire this time; ``resumed_from``: bytes of an earlier interrupted transfer
    that were kept; ``sha256``: the checksum verified at the destination;
    ``verified_mtime``: the whole second the file's modification time was set to before that
    checksum was verified (None when it was not, or was set after): a signature of the file
    still showing that time stands for the verified bytes (no second read).
    """

    status: str
    path: str
    changed: bool = False
    sent: int = 0
    resumed_from: int = 0
    sha256: str = ""
    reason: str = ""
    hint: str = ""
    tail: tuple[str, ...] = ()
    verified_mtime: int | None = None

    @property
    def ok(self) -> bool:
        """True when the file is in place (written, or found unchanged)."""
        return self.status == "ok"
