"""Audit sinks in real runs, through the real CLI: records, redaction, HMACs, failure policy,
a slow sink, and where sinks are declared (a system file a user cannot override)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

from nexus_core.audit.records import hmac_value
from nexus_core.testing import NexusProject

PROJECT = """
from nexus_core import config, hosts, run, secret, task

hosts("fakes", "fake://alpha", "fake://beta")


@task(on="fakes")
def build():
    run(f"echo token={secret('fake:alpha')}")


@task(deps=[build])
def deploy():
    run("echo deploying s3cr3t-sudo-pass")
"""


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    return Logs(tmp_path / "imports.log", tmp_path / "runs.log")


@pytest.fixture
def project(nexus_project: NexusProject, tmp_path: Path, logs: Logs) -> NexusProject:
    """A project whose subprocesses see a fake plugin with an audit sink, a secret backend, an executor."""
    site = tmp_path / "site"
    make_dist(site, features=("imports", "executor", "secret_backend", "options", "audit_sink"))
    nexus_project.env.update(plugin_env(site, logs))
    nexus_project.env["NEXUS_SYSTEM_CONFIG"] = str(tmp_path / "system.toml")
    nexus_project.write(PROJECT)
    return nexus_project


def user_config(project: NexusProject, text: str) -> Path:
    path = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def audited(logs: Logs, sink: str = "rec") -> list[dict]:
    return [r["record"] for r in logs.records("audit") if r["sink"] == sink]


@pytest.mark.hook("nexus_audit_sinks")
def test_a_run_is_audited_to_a_plugin_sink_in_the_documented_shape(project, logs, tmp_path):
    user_config(project, '[audit.sinks.rec]\ntype = "fake"\n')
    out = project.run("run", "deploy", "--format", "json", env={"NEXUS_SUDO_PASSWORD": "s3cr3t-sudo-pass"})
    assert out.code == 0, out
    run_id = next(e["run_id"] for e in out.events if e["event"] == "pipeline.start")
    records = audited(logs)
    codes = [r["event"] for r in records]
    assert codes[0] == "run.started" and codes[-1] == "run.completed", codes
    assert codes.index("task.started") < codes.index("command.executed") < codes.index("task.completed")
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert {r["user"] for r in records} == {me} and {r["correlation_id"] for r in records} == {run_id}
    done = next(r for r in records if r["event"] == "task.completed" and r["task"] == "build")
    assert done["hosts"] == ["alpha", "beta"] and done["status"] == "success" and isinstance(done["duration_ms"], int)
    assert done["timestamp"].endswith("Z")
    commands = [r for r in records if r["event"] == "command.executed"]
    assert {c["host"] for c in commands} == {"alpha", "beta", "local"}, commands
    assert all(c["exit_code"] == 0 for c in commands)
    # The command text is redacted exactly like output: neither the secret nor the sudo password.
    text = json.dumps(records)
    assert "fake-secret-alpha" not in text and "s3cr3t-sudo-pass" not in text
    assert {c["command"] for c in commands} == {"echo token=***", "echo deploying ***"}
    # The secret is recorded by name, its value only as an HMAC with the sink's salt...
    (accessed,) = [r for r in records if r["event"] == "secret.accessed"]
    assert accessed["secret_name"] == "alpha" and accessed["backend"] == "fake"
    hashed = project.run("audit", "hash", "fake-secret-alpha")
    assert hashed.code == 0, hashed
    assert accessed["value_hmac"] == hashed.stdout.strip() and accessed["value_hmac"].startswith("hmac-sha256:")
    salt = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "audit" / "rec.salt"
    assert salt.stat().st_mode & 0o777 == 0o600
    # ...and an event class that declares ``audit = "code"`` is audited field by field.
    decisions = [r for r in records if r["event"] == "fake.decision"]
    assert len(decisions) == 2 and all(d["allowed"] is True for d in decisions)
    key = salt.read_bytes().strip()  # the same salt `nexus audit hash` used above
    assert {d["subject"] for d in decisions} == {hmac_value(key, h) for h in ("alpha", "beta")}
    assert [r["kind"] for r in logs.records() if r["kind"].startswith("audit-")] == ["audit-close"]


def test_a_required_sink_that_cannot_write_stops_the_run_before_anything_runs(project, logs, tmp_path):
    user_config(project, '[audit.sinks.rec]\ntype = "fake"\nrequired = true\nfail_open = true\n')
    out = project.run("run", "deploy")
    assert out.code == 2, out
    assert "audit sink 'rec' (fake, required) cannot write: the fake sink is closed on purpose" in out.stderr
    assert "the run does not start" in out.stderr and "open the fake sink" in out.stderr, out
    assert not logs.records("run"), "nothing ran"
    # The same sink, not required: one warning and the run goes on.
    user_config(project, '[audit.sinks.rec]\ntype = "fake"\nfail_open = true\n')
    out = project.run("run", "deploy")
    assert out.code == 0, out
    assert out.stderr.count("audit sink 'rec' (fake, optional) cannot write") == 1, out


def test_a_required_sink_failing_mid_run_stops_new_work_and_the_run_exits_2(project, logs, tmp_path):
    broken = tmp_path / "broken"
    user_config(project, f'[audit.sinks.rec]\ntype = "fake"\nrequired = true\nfail_after = 1\nbroken = "{broken}"\n')
    project.write(
        f"""
        from nexus_core import run, task

        @task
        def first():
            run("for i in $(seq 200); do [ -e {broken} ] && break; sleep 0.05; done; sleep 1")

        @task(deps=[first])
        def second():
            run("echo second-ran")
        """
    )
    out = project.run("run", "second")
    assert out.code == 2, out
    assert "audit sink 'rec' (fake, required) cannot write: the fake sink broke on purpose" in out.stderr, out
    assert "no new work starts" in out.stderr and "audit trail of run" in out.stderr, out
    assert "second-ran" not in out.stdout, out


def test_a_slow_sink_never_stalls_the_run(project, logs, tmp_path):
    """The sink's first write waits for a file that only the run's last command creates: if
    delivery blocked the run, that command would never start and the sink would give up."""
    gate = tmp_path / "gate"
    user_config(project, f'[audit.sinks.rec]\ntype = "fake"\ngate = "{gate}"\n\n[audit.sinks.other]\ntype = "fake"\n')
    project.write(
        f"""
        from nexus_core import run, task

        @task
        def steps():
            run("echo one")
            run("echo two")
            run("touch {gate}")
        """
    )
    out = project.run("run", "steps")
    assert out.code == 0, out
    (gate_record,) = logs.records("audit-gate")
    assert gate_record["opened"] is True, "the run went on while the sink was stuck on its first record"
    slow, fast = audited(logs, "rec"), audited(logs, "other")
    assert [r["event"] for r in slow] == [r["event"] for r in fast]  # every record, in order, flushed at the end
    assert [r.get("command") for r in slow if r["event"] == "command.executed"] == [
        "echo one", "echo two", f"touch {gate}"]  # fmt: skip
    kinds = [r["kind"] for r in logs.records() if r["kind"] in ("audit-gate", "run")]
    assert kinds == ["audit-gate"] or kinds[0] == "audit-gate"


def test_sinks_of_the_system_file_cannot_be_redefined_or_dropped_by_a_user(project, logs, tmp_path):
    system = Path(project.env["NEXUS_SYSTEM_CONFIG"])
    system.write_text('[audit.sinks.central]\ntype = "fake"\nrequired = true\n', encoding="utf-8")
    user = user_config(project, '[audit.sinks.central]\ntype = "fake"\nrequired = false\nfail_open = true\n')
    out = project.run("run", "deploy")
    assert out.code == 2, out
    assert "audit sink 'central' is declared by the system file" in out.stderr and str(user) in out.stderr, out
    user.write_text('[audit.sinks.mine]\ntype = "fake"\n', encoding="utf-8")
    listing = project.run("audit", "sinks", "--format", "json")
    assert listing.code == 0, listing
    rows = {r["name"]: r for r in listing.json()["sinks"]}
    assert rows["central"]["system"] is True and rows["central"]["required"] is True and rows["mine"]["system"] is False
    out = project.run("run", "deploy")
    assert out.code == 0, out
    assert audited(logs, "central") and audited(logs, "mine")
    assert project.run("audit", "hash", "x").code == 2  # two sinks: which salt?
    assert project.run("audit", "hash", "x", "--sink", "central").stdout.startswith("hmac-sha256:")


def test_a_misdeclared_sink_is_a_clear_error_with_file_and_line(project, logs):
    user = user_config(project, '# audit\n[audit.sinks.rec]\ntype = "fake"\nfail_aftr = 2\n')
    out = project.run("run", "deploy")
    assert out.code == 2, out
    assert "unknown key 'fail_aftr'" in out.stderr and "did you mean 'fail_after'?" in out.stderr, out
    assert f"{user}:2" in out.stderr and "Traceback" not in out.stderr
    user_config(project, '[audit.sinks.rec]\ntype = "nosuch"\n')
    out = project.run("run", "deploy")
    assert out.code == 2 and "no sink type 'nosuch'" in out.stderr and "known types: " in out.stderr, out
    # The [audit] table does not upset the flat settings of the same file.
    user_config(project, 'parallel_limit = 3\n[audit.sinks.rec]\ntype = "fake"\n')
    shown = project.run("config", "show", "--format", "json")
    assert shown.code == 0, shown
    assert {s["key"]: s["value"] for s in shown.json()["settings"]}["parallel_limit"] == 3


def test_no_sink_no_audit_import(nexus_project):
    nexus_project.write("from nexus_core import run, task\n\n@task\ndef t():\n    run('true')\n")
    out = nexus_project.run("run", "t", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.code == 0, out
    assert "nexus_core.audit" not in out.stderr


def test_a_required_sink_that_opens_but_cannot_write_runs_nothing(project, tmp_path):
    # A file on a full disk (/dev/full) opens fine and fails at its first write: that write
    # comes with the run's start, before any task (the engine was not yet told to stop: a
    # chain of tasks ran whole, "unaudited", and the run exited 2 at the end).
    log = tmp_path / "audit.log"
    log.symlink_to("/dev/full")
    user_config(project, f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{log}"\n')
    ran = tmp_path / "ran"
    project.write(
        f"""
        from nexus_core import run, task

        @task
        def a():
            run("echo a >> {ran}")

        @task(deps=[a])
        def b():
            run("echo b >> {ran}")
        """
    )
    out = project.run("run", "b")
    assert out.code == 2, out
    assert "audit sink 'trail' (file, required) cannot write" in out.stderr, out.stderr
    assert not ran.exists(), ran.read_text()


def test_a_required_sink_that_failed_before_the_engine_existed_stops_it_as_it_is_connected():
    # The first records (written before the run's engine is made) may fail first: the stop was
    # sent to nobody, and the whole run went on.
    from nexus_core.audit.config import SinkConfig
    from nexus_core.audit.delivery import RunAudit, SinkProblem

    said: list[str] = []
    audit = RunAudit([], None, "r1", said.append)
    audit._failed(SinkProblem(SinkConfig("trail", "file", required=True), "cannot write: disk full"))
    stopped: list[str] = []
    audit.connect(stopped.append)
    assert stopped == ["audit sink 'trail' (file, required) cannot write: disk full"], stopped
    assert said and "no new work starts" in said[0]
