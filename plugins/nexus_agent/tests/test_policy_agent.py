"""An agent with a policy refuses work whose signed client identity the policy does not allow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentbed import Cluster
from nexus_core.testing import NexusProject

from nexus_agent import certs
from nexus_agent.runner import identity_payload, policy_refusal, run_command

POLICY = """\
[roles.runner]
can = [{ action = "run", on = ["a1"] }]

[[assign]]
user = "coord"
role = "runner"
"""


@pytest.fixture
def cluster_certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "certs"
    certs.init(str(folder), name="coord")
    certs.issue("intruder", str(folder))
    monkeypatch.setenv("NEXUS_AGENT_DIR", str(folder))
    for var in ("NEXUS_AGENT_CERT", "NEXUS_AGENT_KEY", "NEXUS_AGENT_CA"):
        monkeypatch.delenv(var, raising=False)
    return folder


def spec(folder: Path, name: str, cmd: str = "true", signed: str | None = None) -> dict[str, object]:
    files = certs.CertFiles(str(folder / "ca.pem"), str(folder / f"{name}.pem"), str(folder / f"{name}-key.pem"))
    return {
        "id": "c1",
        "topic": "t",
        "cmd": cmd,
        "identity": certs.sign_identity(files, identity_payload("c1", signed or cmd)),
    }


def use_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str = POLICY) -> None:
    path = tmp_path / "policy.toml"  # written by root (the test user), mode 0644: trusted
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    monkeypatch.setenv("NEXUS_POLICY", str(path))


def test_without_a_policy_every_cluster_member_may_run(cluster_certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_POLICY", raising=False)
    assert policy_refusal({"id": "c1", "cmd": "true"}, "a1") == ""


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="a trusted policy file must be owned by root")
def test_the_agent_checks_the_signed_certificate_identity(
    cluster_certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_policy(tmp_path, monkeypatch)
    assert policy_refusal(spec(cluster_certs, "coord"), "a1") == ""
    denied = policy_refusal(spec(cluster_certs, "intruder"), "a1")
    assert "refused by the policy of agent a1" in denied and "intruder: run: denied by default deny" in denied
    assert "default deny" in policy_refusal(spec(cluster_certs, "coord"), "a2")  # rule's on= names a1 only
    forged = policy_refusal(spec(cluster_certs, "coord", cmd="rm -rf /tmp/x", signed="true"), "a1")
    assert "does not verify" in forged
    assert "carries no signed client identity" in policy_refusal({"id": "c1", "cmd": "true"}, "a1")
    other = tmp_path / "other"
    certs.init(str(other), name="coord")  # the same name from another CA
    stranger = spec(other, "coord")
    assert "does not verify" in policy_refusal(stranger, "a1")  # signed by another CA
    result = run_command({**spec(cluster_certs, "intruder", cmd="echo hi"), "timeout": 5})
    assert result["status"] == "error" and "refused by the policy" in result["reason"]


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="a trusted policy file must be owned by root")
def test_a_broken_agent_policy_refuses_everything(
    cluster_certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_policy(tmp_path, monkeypatch, "[roles.x\n")
    assert "not valid TOML" in policy_refusal(spec(cluster_certs, "coord"), "a1")


AUDITED = """
    from nexus_core import all_agents, run, task

    @task(on=all_agents(tag="linux"))
    def deploy():
        run("echo deployed")
"""


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="a trusted policy file must be owned by root")
def test_a_run_on_agents_audits_the_certificate_identity_and_each_agent_refusal(
    project: NexusProject, agent_cluster: Cluster, tmp_path: Path
) -> None:
    """Through the real CLI with a file sink: the records name the client certificate (``coord``),
    and the refusal of a2's policy is a ``policy.check`` record of the client's run."""
    log = tmp_path / "audit.log"
    config = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[audit.sinks.trail]\ntype = "file"\npath = "{log}"\n', encoding="utf-8")
    folder = agent_cluster.root / "certs"  # the client signs as coord (else: the first certificate there)
    project.env.update(NEXUS_AGENT_CERT=str(folder / "coord.pem"), NEXUS_AGENT_KEY=str(folder / "coord-key.pem"))
    policy = agent_cluster.root / "agent-policy.toml"  # the agents a1 and a2 read it per command
    policy.write_text(POLICY, encoding="utf-8")
    policy.chmod(0o644)
    try:
        project.write(AUDITED)
        out = project.run("run", "deploy")
    finally:
        policy.unlink()
    assert out.code != 0, out
    assert "refused by the policy of agent a2" in out.stdout + out.stderr, out
    records = [r for r in map(json.loads, log.read_text(encoding="utf-8").splitlines()) if "event" in r]
    by_event = {r["event"]: r for r in records}
    commands = {r["host"]: r for r in records if r["event"] == "command.executed"}
    assert commands["a1"]["exit_code"] == 0 and commands["a1"]["user"] == "coord", commands
    assert commands["a1"]["user_via"] == "certificate" and commands["a1"]["os_user"], commands
    assert "refused by the policy of agent a2" in commands["a2"]["reason"], commands
    check = by_event["policy.check"]
    assert (check["subject"], check["action"], check["target"], check["allowed"]) == ("coord", "run", "a2", False)
    assert "default deny" in check["reason"] and check["user"] == "coord", check
    assert project.run("audit", "verify", str(log)).code == 0
