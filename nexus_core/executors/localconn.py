"""The connection ``call(fn)`` gets for ``on="local"``: an invoke ``Context`` with Fabric's file methods.

A fabfile function written for a Fabric ``Connection`` (``c.run``, ``c.sudo``, ``c.put``,
``c.get``, ``c.cd``, ``c.local``) runs unchanged on this machine: commands run through
invoke (Fabric's own local runner) in the project's folder, ``put`` and ``get`` copy files
(relative paths on the "remote" side are relative to the project's folder, as a remote
path is relative to the login folder). Output goes to the run's output, never to Nexus's
stdout; commands read no stdin.

invoke is imported here only, when a run's first local ``call()`` starts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def local_connection(root: str, streams: Any, sudo_password: str | None = None) -> Iterator[Any]:
    """An invoke ``Context`` for this machine, working in ``root``, with ``put``/``get``/``host``/``user``."""
    import getpass

    from invoke.config import Config
    from invoke.context import Context

    from nexus_core.calls import honour_hide

    class LocalConnection(Context):
        """invoke's ``Context`` with what a fabfile expects of a Fabric ``Connection``."""

        host = "localhost"
        port = 0
        user = getpass.getuser()

        def _path(self, path: str) -> str:
            return path if os.path.isabs(path) else os.path.join(self.cwd or root, path)

        def put(self, local: Any, remote: str | None = None, preserve_mode: bool = True) -> Any:
            """Copy ``local`` (a path or a binary file object) to ``remote`` (a folder keeps the name)."""
            return self._copy(local, remote, preserve_mode, upload=True)

        def get(self, remote: str, local: Any = None, preserve_mode: bool = True) -> Any:
            """Copy ``remote`` to ``local`` (a path, a folder, or a binary file object)."""
            return self._copy(remote, local, preserve_mode, upload=False)

        def _copy(self, src: Any, dest: Any, preserve_mode: bool, upload: bool) -> Any:
            if hasattr(src, "read"):
                target = self._path(dest) if upload else dest
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                return _Result(target)
            src_path = os.path.abspath(os.path.expanduser(src)) if upload else self._path(src)
            if hasattr(dest, "write"):
                with open(src_path, "rb") as fh:
                    shutil.copyfileobj(fh, dest)
                return _Result(src_path)
            name = os.path.basename(src_path)
            if dest is None:
                target = self._path(name) if upload else os.path.join(os.getcwd(), name)
            else:
                target = self._path(dest) if upload else os.path.abspath(dest)
            if os.path.isdir(target):
                target = os.path.join(target, name)
            (shutil.copy2 if preserve_mode else shutil.copyfile)(src_path, target)
            return _Result(target)

        def sftp(self) -> Any:
            """There is no SFTP to this machine: say what to use instead."""
            raise NotImplementedError("call() on the local machine has no SFTP: use c.put/c.get or Python's files")

        def run(self, command: str, **kwargs: Any) -> Any:
            """invoke's ``run``, honouring ``hide=`` (see :func:`nexus_core.calls.honour_hide`)."""
            return super().run(command, **honour_hide(kwargs))

        def sudo(self, command: str, **kwargs: Any) -> Any:
            """invoke's ``sudo``, honouring ``hide=`` (see :func:`nexus_core.calls.honour_hide`)."""
            return super().sudo(command, **honour_hide(kwargs))

    overrides: dict[str, Any] = {
        "run": {"out_stream": streams.stdout, "err_stream": streams.stderr, "in_stream": False, "echo": False},
    }
    if streams.timeout and streams.timeout > 0:
        overrides["timeouts"] = {"command": streams.timeout}
    if sudo_password is not None:
        overrides["sudo"] = {"password": sudo_password}
    ctx = LocalConnection(config=Config(overrides=overrides))
    ctx.command_cwds.append(root)
    yield ctx


class _Result:
    """What ``put``/``get`` return (Fabric returns a ``Result`` with ``local``/``remote``)."""

    def __init__(self, path: str) -> None:
        self.local = self.remote = path
