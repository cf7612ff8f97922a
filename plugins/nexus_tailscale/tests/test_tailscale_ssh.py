"""Tailscale SSH: a host whose facts say ``ssh_auth="none"`` logs in with no key at all.

Against :mod:`tailnet_sshd` (OpenSSH accepting the "none" method, as tailscaled's SSH
server does for tailnet peers) through the real nexus-ssh executor. Without the fact the
same server refuses a client that has no key: nexus-ssh then uses keys, as for any host.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.plugin import Cancel, Command, ExecutorContext, Host

pytest.importorskip("nexus_ssh")
from nexus_ssh.executor import SshExecutor
from tailnet_sshd import USER, TailnetSshd

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def tailnet_sshd() -> Iterator[TailnetSshd]:
    if os.geteuid() != 0:
        pytest.skip("needs root (creates a user, runs sshd)")
    with TailnetSshd() as server:
        yield server


@pytest.fixture
def no_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ~/.ssh/id_* and no agent: only the tailnet can authenticate."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def _executor(server: TailnetSshd, tmp_path: Path) -> SshExecutor:
    config = {"ssh_user": USER, "ssh_known_hosts_file": server.known_hosts}
    options = {"ssh_config_file": "", "ssh_password_prompt": False, "ssh_retry_base": 0.01}
    return SshExecutor(
        ExecutorContext(config=config, root=str(tmp_path), emit=lambda e: None, run_id="t", options=options)
    )


def test_tailscale_ssh_host_needs_no_key(tailnet_sshd: TailnetSshd, tmp_path: Path, no_keys: None):
    host = Host(
        tailnet_sshd.address, port=tailnet_sshd.port, facts={"ssh_auth": "none", "tailscale_ssh": True}
    )
    ex = _executor(tailnet_sshd, tmp_path)
    try:
        lines: list[tuple[str, str]] = []
        result = ex.run(host, Command("id -un"), lambda s, line: lines.append((s, line)), Cancel(), 20)
    finally:
        ex.close()
    assert result.ok, result.reason
    assert ("stdout", USER) in lines
    assert tailnet_sshd.logins("none") >= 1


def test_without_the_fact_keys_are_required(tailnet_sshd: TailnetSshd, tmp_path: Path, no_keys: None):
    host = Host(tailnet_sshd.address, port=tailnet_sshd.port)
    ex = _executor(tailnet_sshd, tmp_path)
    try:
        result = ex.run(host, Command("id -un"), lambda s, line: None, Cancel(), 20)
    finally:
        ex.close()
    assert not result.ok and result.status == "unreachable"
    assert "no key found" in result.reason or "auth" in result.reason.lower()
