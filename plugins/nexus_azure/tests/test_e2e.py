"""End to end through the real ``nexus`` CLI: discovery, Run Command, timeouts, resume,
throttling, pre-flight and authentication errors, against the fake Azure over HTTPS.

The ``nexus`` subprocesses authenticate with ``azure_auth="cli"`` (a fake ``az`` on PATH
hands out the fake's token) and trust the test certificate through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from azurebed import write_fake_az
from nexus_core.testing import NexusProject, Outcome

from nexus_azure.testing import FakeAzure


@pytest.fixture
def project(nexus_project: NexusProject, fake: FakeAzure, certificate, tmp_path: Path) -> NexusProject:  # type: ignore[no-untyped-def]
    write_fake_az(tmp_path / "azbin")
    nexus_project.env["PATH"] = f"{tmp_path / 'azbin'}:{os.environ.get('PATH', '')}"
    nexus_project.env["REQUESTS_CA_BUNDLE"] = certificate[0]
    return nexus_project


def nexusfile(fake: FakeAzure, body: str, **config: Any) -> str:
    cfg: dict[str, Any] = {
        "azure_subscription": "sub-1",
        "azure_arm_endpoint": fake.endpoint,
        "azure_auth": "cli",
        "azure_poll_interval": 0.05,
    } | config
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
    head = "from nexus_core import config, discover, hosts, run, task\n"
    return head + f"config({args})\n" + textwrap.dedent(body).lstrip("\n")


WEB = """
hosts("web", discover("azure", tags={"env": "prod"}, name=r"^web-"))

@task(on="web")
def hello():
    run("echo hello-from-azure")
"""


def ran_on(out: Outcome, task: str = "hello") -> list[str]:
    return sorted(e["host"] for e in out.of("host.start") if e.get("task") == task)


SSH_GROUP = """
hosts("web-ssh", discover("azure", name=r"^web-2$", connection="ssh", user="ops"))
"""


def test_run_on_discovered_vms_through_run_command(project: NexusProject, fake: FakeAzure):
    project.write(nexusfile(fake, WEB + SSH_GROUP))
    fake.throttle, fake.retry_after = 2, 1  # the first two requests are throttled: waited out
    out = project.run("run", "hello", "--format", "json")
    assert out.code == 0, out
    assert ran_on(out) == ["web-1", "web-2"]  # web-old is deallocated: listed, not targeted
    lines = [e["line"] for e in out.of("command.output")]
    assert lines.count("hello-from-azure") == 2
    assert fake.throttled == 2
    assert fake.count("PUT", "/runCommands/") >= 2  # and the status files' cleanup
    listed = project.run("hosts", "list", "--format", "json")
    assert listed.code == 0, listed
    rows = {h["name"]: h for h in listed.json()["groups"][0]["hosts"]}
    assert (rows["web-old"]["online"], rows["web-old"]["targeted"]) == (False, False)
    facts = rows["web-1"]["facts"]
    assert facts["azure_id"].endswith("/virtualMachines/web-1") and facts["public_ips"] == ["20.1.1.1"]
    assert facts["zones"] == ["1"] and facts["size"] == "Standard_B2s" and "env=prod" in rows["web-1"]["tags"]
    # connection="ssh": the private IP, for nexus-ssh
    (ssh,) = listed.json()["groups"][1]["hosts"]
    assert (ssh["name"], ssh["address"], ssh["user"]) == ("web-2", "10.0.0.5", "ops")
    assert ssh["transport"] in ("", "ssh")


def test_bastion_without_the_azure_cli_says_so(project: NexusProject, fake: FakeAzure):
    project.env["PATH"] = "/usr/bin:/bin"
    project.write(nexusfile(fake, WEB, azure_connection="bastion"))
    out = project.run("hosts", "list")
    assert out.code == 2, out
    assert "needs the Azure CLI (az)" in out.stderr + out.stdout


def test_a_timeout_stops_the_running_command(project: NexusProject, fake: FakeAzure):
    project.write(
        nexusfile(
            fake,
            """
        hosts("one", discover("azure", name="^web-1$"))

        @task(on="one")
        def slow():
            run("echo started; sleep 37; echo not-reached", timeout=2)
    """,
        )
    )
    out = project.run("run", "slow", "--format", "json")
    assert out.code == 4, out
    lines = [e["line"] for e in out.of("command.output")]
    assert "not-reached" not in lines  # ("started" may not have been polled yet on a loaded machine)
    for _ in range(100):  # bounded: the delete stopped the script
        if fake.running() == 0:
            break
        time.sleep(0.1)
    assert fake.running() == 0
    assert fake.count("DELETE", "/runCommands/") >= 1


def test_resume_after_a_kill_never_repeats_a_finished_command(
    project: NexusProject, fake: FakeAzure, tmp_path: Path
):
    first, second, started = tmp_path / "first.log", tmp_path / "second.log", tmp_path / "second.started"
    project.write(
        nexusfile(
            fake,
            f"""
        hosts("web", discover("azure", tags={{"env": "prod"}}, name=r"^web-"))

        @task(on="web")
        def one():
            run("echo x >> {first}")

        @task(on="web", deps=[one])
        def two():
            run("echo y >> {second}; touch {started}; sleep 3")
    """,
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "two"],
        cwd=project.root,
        env={**os.environ, **project.env, "NO_COLOR": "1", "CI": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # bounded: 60 s; both VMs' scripts of task two run
            if second.exists() and len(second.read_text().split()) == 2:
                break
            time.sleep(0.1)
        assert second.exists() and len(second.read_text().split()) == 2, "task two never started on both VMs"
        os.kill(proc.pid, signal.SIGKILL)  # the controller dies; the run commands go on in Azure
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = project.run("resume", "--format", "json")
    assert out.code == 0, out
    probes = [e["message"] for e in out.of("log") if e.get("source") == "resume"]
    # the core probes again every second while a command still runs: the last word per VM counts
    last = {p.split(":", 1)[0]: p for p in probes}
    assert len(last) == 2 and all("finished (exit code 0)" in p or "running" in p for p in last.values()), (
        probes
    )
    assert first.read_text().split() == ["x", "x"]  # task one was not run again
    # two's commands were running or finished: the status files said so, none started again
    assert second.read_text().split() == ["y", "y"]


def test_preflight_checks_auth_and_run_command_per_host(project: NexusProject, fake: FakeAzure):
    project.write(nexusfile(fake, WEB))
    out = project.run("preflight", "hello", "--format", "json")
    assert out.code == 0, out
    (report,) = out.of("preflight")
    azure = [c for c in report["checks"] if c["category"] == "Azure"]
    assert [(c["host"], c["status"]) for c in azure] == [(None, "ok"), ("web-1", "ok"), ("web-2", "ok")]
    assert azure[0]["message"] == "Azure authentication (cli)"
    assert all(c["message"] == "Run Command available (VM running)" for c in azure[1:])
    project.env["PATH"] = "/usr/bin:/bin"  # no az: the cli credential has no token to give
    project.write(
        nexusfile(fake, 'hosts("web", "azure://web-1")\n@task(on="web")\ndef hello():\n    run("true")\n')
    )
    out = project.run("preflight", "hello", "--format", "json")
    assert out.code == 2, out
    (report,) = out.of("preflight")
    (failed,) = [c for c in report["checks"] if c["category"] == "Azure"]
    assert failed["status"] == "fail" and "Azure authentication failed (cli)" in failed["message"]


def test_a_failed_credential_chain_lists_what_was_tried(project: NexusProject, fake: FakeAzure):
    project.env["PATH"] = "/usr/bin:/bin"  # no az, no pwsh, no azd
    project.env["AZURE_TOKEN_CREDENTIALS"] = "dev"
    project.write(nexusfile(fake, WEB, azure_auth="default"))
    out = project.run("run", "hello")
    assert out.code == 2, out
    text = out.stderr + out.stdout
    assert "Azure authentication failed" in text
    assert "tried AzureCliCredential" in text
    assert "get_token_info failed" not in text and "get_token failed" not in text, out  # the SDK's log line
    project.write(nexusfile(fake, WEB, azure_auth="cli"))
    out = project.run("run", "hello")
    text = out.stderr + out.stdout
    assert out.code == 2 and "Azure authentication failed (cli)" in text, out
    assert "get_token_info failed" not in text and "get_token failed" not in text, out


def test_an_unknown_filter_gets_a_did_you_mean(project: NexusProject, fake: FakeAzure):
    project.write(nexusfile(fake, WEB.replace("tags=", "tag=")))
    out = project.run("validate")
    assert out.code == 2, out
    assert "did you mean 'tags'" in out.stderr + out.stdout
