"""Fixtures for the nexus-ssh tests: the shared real-sshd bed and executor factories.

The bed (3 hosts on 127.0.0.2-4 and a bastion on 127.0.0.250, ``nexus_core.testing.sshbed``)
starts once per test process and stops at exit. Tests using it are marked
``@pytest.mark.ssh``; the bed needs root (it creates users and runs sshd) and is skipped
otherwise. The end-to-end tests through the CLI (``test_ssh_cli.py`` and the others
``test_ssh_*``) use it with the ``nexus_project`` fixture.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_PLUGIN = Path(__file__).resolve().parents[1]
_ROOT = _PLUGIN.parents[1]
# The root (for ``tests.helpers``), the plugin, and this folder (tests share module-level helpers).
for p in (str(_ROOT), str(_PLUGIN), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from nexus_core.api import ExecutorContext  # noqa: E402
from nexus_core.events import Event  # noqa: E402
from nexus_core.testing.sshbed import USER_KEY, SshBed, shared_bed  # noqa: E402

from nexus_ssh.executor import SshExecutor  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ssh: needs the real-sshd test bed (root, openssh-server)")


@pytest.fixture(scope="session")
def sshbed() -> SshBed:
    """3 hosts + a bastion, shared by the whole process (see nexus_core/testing/sshbed.py)."""
    if os.geteuid() != 0:
        pytest.skip("the SSH test bed needs root (creates users, runs sshd)")
    return shared_bed(3)


MakeExecutor = Callable[..., tuple[SshExecutor, list[Event]]]


@pytest.fixture
def make_executor(sshbed: SshBed, tmp_path: Path) -> Iterator[MakeExecutor]:
    """Build executors with bed defaults (user, key, known_hosts, no ~/.ssh/config); closed after."""
    made: list[SshExecutor] = []

    def make(options: dict[str, Any] | None = None, **config: Any) -> tuple[SshExecutor, list[Event]]:
        cfg: dict[str, Any] = {
            "ssh_user": USER_KEY,
            "ssh_identity": sshbed.key_path("ed25519"),
            "ssh_known_hosts_file": sshbed.known_hosts,
        }
        cfg.update(config)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        opts: dict[str, Any] = {
            "ssh_config_file": "",
            "ssh_retry_base": 0.01,
            "ssh_no_agent": True,
            "ssh_password_prompt": False,
        }
        opts.update(options or {})
        events: list[Event] = []
        ex = SshExecutor(
            ExecutorContext(config=cfg, root=str(tmp_path), emit=events.append, run_id="test", options=opts)
        )
        made.append(ex)
        return ex, events

    yield make
    for ex in made:
        ex.close()
