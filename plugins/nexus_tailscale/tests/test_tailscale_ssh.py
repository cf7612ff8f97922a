"""Tailscale SSH: a host whose facts say ``ssh_auth="none"`` logs in with no key at all.

Against :mod:`tailnet_sshd` (OpenSSH accepting the "none" method, as tailscaled's SSH
server does for tailnet peers) through the real nexus-ssh executor. Without the fact the
same server refuses a client that has no key: nexus-ssh then uses keys, as for any host.

Host keys: ``tailscale status --json`` reports each Tailscale SSH peer's host keys
(``sshHostKeys``), which the source gives as the fact ``ssh_host_keys``; nexus-ssh treats
them as known, so the default strict verification passes with an empty known_hosts file
(no trust on first use, nothing written). The API does not report them: those hosts fall
back to known_hosts and the configured policy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.plugin import Cancel, Command, ExecutorContext, Host
from nexus_core.testing import NexusProject

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


def _executor(server: TailnetSshd, tmp_path: Path, known_hosts: str | None = None) -> SshExecutor:
    config = {"ssh_user": USER, "ssh_known_hosts_file": known_hosts or server.known_hosts}
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


def _run(
    server: TailnetSshd, tmp_path: Path, facts: dict[str, object], known_hosts: Path
) -> tuple[bool, str]:
    ex = _executor(server, tmp_path, str(known_hosts))
    try:
        host = Host(server.address, port=server.port, facts={"ssh_auth": "none", **facts})
        result = ex.run(host, Command("true"), lambda s, line: None, Cancel(), 20)
    finally:
        ex.close()
    return result.ok, result.reason


def test_host_keys_the_tailnet_reports_are_known_without_tofu(
    tailnet_sshd: TailnetSshd, tmp_path: Path, no_keys: None
):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ok, reason = _run(
        tailnet_sshd, tmp_path, {"ssh_host_keys": [tailnet_sshd.host_key_line + " root@ts"]}, empty
    )
    assert ok, reason  # strict verification (the default), yet nothing in known_hosts
    assert empty.read_text() == ""  # and nothing written


def test_a_host_key_other_than_the_reported_one_is_refused(
    tailnet_sshd: TailnetSshd, tmp_path: Path, no_keys: None
):
    from nexus_tailscale.testing import SAMPLE_SSH_HOST_KEY

    known = tmp_path / "known_hosts"
    known.write_text(f"[{tailnet_sshd.address}]:{tailnet_sshd.port} {tailnet_sshd.host_key_line}\n")
    ok, reason = _run(tailnet_sshd, tmp_path, {"ssh_host_keys": [SAMPLE_SSH_HOST_KEY]}, known)
    assert not ok
    assert "HOST KEY MISMATCH" in reason and "man-in-the-middle" in reason  # the tailnet's word wins


def test_without_reported_keys_known_hosts_and_the_policy_decide(
    tailnet_sshd: TailnetSshd, tmp_path: Path, no_keys: None
):
    """The API backend reports no host keys: strict verification needs the key in known_hosts."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ok, reason = _run(tailnet_sshd, tmp_path, {}, empty)
    assert not ok and "Host key not known" in reason and "strict host key verification" in reason
    ok, reason = _run(tailnet_sshd, tmp_path, {}, Path(tailnet_sshd.known_hosts))
    assert ok, reason


def test_nexus_run_reaches_a_tailscale_ssh_peer_with_no_key_and_no_known_hosts_entry(
    tailnet_sshd: TailnetSshd, tmp_path: Path, nexus_project: NexusProject
):
    """End to end: the fake ``tailscale`` reports the peer with its real host key."""

    from nexus_tailscale.testing import Peer, write_fake_cli

    folder = tmp_path / "bin"
    keys = (tailnet_sshd.host_key_line + " root@ts-box",)
    write_fake_cli(folder, [Peer("ts-box", tailnet_sshd.address, ssh=True, ssh_host_keys=keys)])
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    nexus_project.env.update(
        PATH=f"{folder}:{os.environ.get('PATH', '')}", HOME=str(tmp_path), NEXUS_SSH_CONFIG=""
    )
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    nexus_project.write(
        "from nexus_core import config, discover, hosts, run, task\n"
        f"config(ssh_user={USER!r}, ssh_port={tailnet_sshd.port}, ssh_known_hosts_file={str(empty)!r})\n"
        'hosts("ts", discover("tailscale", hostname="^ts-box$", address="ipv4"))\n\n'
        '@task(on="ts")\ndef hello():\n    run("id -un")\n'
    )
    before = tailnet_sshd.logins("none")
    out = nexus_project.run("run", "hello", "-v", timeout=90)
    assert out.code == 0, out
    assert USER in out.stdout and tailnet_sshd.logins("none") > before  # logged in by the tailnet, no key
    assert empty.read_text() == ""  # strict verification passed with nothing written
