"""Fixtures for tests against the real-sshd test bed (``nexus_core/testing/sshbed.py``).

The bed (3 hosts on 127.0.0.2-4 and a bastion on 127.0.0.250) starts once per test
process and stops at exit. Tests using it are marked ``@pytest.mark.ssh``; the bed needs
root (it creates users and runs sshd) and is skipped otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from nexus_core.testing.sshbed import SshBed, shared_bed  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ssh: needs the real-sshd test bed (root, openssh-server)")


@pytest.fixture(scope="session")
def sshbed() -> Iterator[SshBed]:
    """The shared bed: ``bed.hosts`` (3), ``bed.bastion``, keys, users, known_hosts."""
    if os.geteuid() != 0:
        pytest.skip("the SSH test bed needs root (creates users, runs sshd)")
    yield shared_bed(3)
