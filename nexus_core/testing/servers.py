"""Helpers the cloud plugins' tests share: a local HTTP server in a thread, an agent CA.

Standard library only (no pytest), so benchmarks and scripts can use them too::

    with serve_in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"

    ca = agent_ca(tmp_path_factory.mktemp("agent-ca"))  # NEXUS_AGENT_DIR of a cluster CA
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

__all__ = ["agent_ca", "serve_in_thread"]

_S = TypeVar("_S", bound=socketserver.BaseServer)


@contextmanager
def serve_in_thread(server: _S) -> Iterator[_S]:
    """Run ``server.serve_forever()`` in a daemon thread while the block runs; shut it down after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def agent_ca(folder: Path, name: str = "hub") -> Path:
    """A cluster CA made by ``nexus agent init`` in ``folder`` (its ``NEXUS_AGENT_DIR``); returns ``folder``.

    Cloud instances started in tests get certificates issued by it. Needs nexus-agent installed.
    """
    out = subprocess.run(
        [sys.executable, "-m", "nexus_core", "agent", "init", "--name", name],
        env={**os.environ, "NEXUS_AGENT_DIR": str(folder)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"nexus agent init failed ({out.returncode}):\n{out.stderr}")
    return folder
