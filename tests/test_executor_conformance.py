"""The local executor passes the executor conformance suite (``nexus_core.testing.conformance``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_core.api import ExecutorContext
from nexus_core.executors.local import LocalExecutor
from nexus_core.model import LOCAL, Host
from nexus_core.testing.conformance import ExecutorConformance, MakeExecutor


def _passwordless_sudo() -> bool:
    if os.geteuid() == 0:
        return shutil.which("sudo") is not None
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0


class TestLocalExecutorConformance(ExecutorConformance):
    """Every case of the suite against ``local``."""

    @pytest.fixture
    def make_executor(self, tmp_path: Path) -> Iterator[MakeExecutor]:
        made: list[LocalExecutor] = []

        def make() -> LocalExecutor:
            ctx = ExecutorContext(config={}, root=str(tmp_path), emit=lambda _e: None, run_id="conformance")
            made.append(LocalExecutor(ctx))
            return made[-1]

        yield make
        for ex in made:
            ex.close()

    @pytest.fixture
    def host(self) -> Host:
        return LOCAL

    @pytest.fixture
    def sudo_works(self) -> bool:
        return _passwordless_sudo()
