"""The ssh executor passes the executor conformance suite on the real-sshd bed.

It runs in the session mode ``NEXUS_SSH_SESSION_MODE`` selects; ``dev.py test`` runs the SSH
tests once per mode (shell sessions, then exec channels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from nexus_core.api import Executor
from nexus_core.model import Host
from nexus_core.testing.conformance import ExecutorConformance, MakeExecutor
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

#: The conftest's factory: ``make_executor(options=None, **config) -> (executor, events)``.
MakeSshExecutor = Callable[..., tuple[Executor, list[Any]]]


class TestSshExecutorConformance(ExecutorConformance):
    """Every case of the suite against ``ssh`` (user ``nexus_key``: passwordless sudo)."""

    @pytest.fixture
    def make_executor(self, make_executor: MakeSshExecutor) -> MakeExecutor:
        # Same name on purpose: this wraps the conftest factory (bed user, key, known_hosts).
        def make() -> Executor:
            return make_executor()[0]

        return make

    @pytest.fixture
    def host(self, sshbed: SshBed) -> Host:
        return Host(sshbed.hosts[0].address, user=USER_KEY, port=sshbed.port)
