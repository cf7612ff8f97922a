"""Shared test helpers (bounded polling, process lookup); tests import them as `helpers`."""

from __future__ import annotations

import os
import subprocess
import time


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (bounded loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pgrep(pattern: str) -> list[int]:
    """PIDs of processes whose full command line matches ``pattern`` (excluding zombies' parents)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]
