"""-H/--hosts narrows like Ansible's --limit, on the real-sshd bed: each task keeps only its own
matching hosts, a task left with none is skipped with a note, and pre-flight's --force advice
is a command that does exactly that (with the options that were given)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, USER_NOSUDO, SshBed
from test_ssh_cli import H1, H2, H3, REFUSED, header

pytestmark = pytest.mark.ssh

PIPELINE = f"""
hosts("web", "{H1}", "{H2}")
hosts("db", "{H3}")

@task
def build():
    run("echo build")

@task(on="db", deps=[build])
def migrate():
    run("echo migrate on " + hostname())

@task(on="web", deps=[migrate])
def deploy():
    run("echo deploy on " + hostname())
"""


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


def run(project: NexusProject, *args: str, **kw: Any) -> Outcome:
    return project.run(*args, timeout=60, **kw)


def hosts_of(out: Outcome, task: str) -> list[str]:
    return sorted(e["host"] for e in out.of("host.stop") if e["task"] == task)


def test_h_keeps_each_tasks_own_matching_hosts(project: NexusProject, sshbed: SshBed) -> None:
    project.write(header(sshbed) + PIPELINE)
    out = run(project, "run", "deploy", "-H", f"{H2},db", "--format", "json")
    assert out.code == 0, out
    assert hosts_of(out, "migrate") == [H3] and hosts_of(out, "deploy") == [H2]
    assert out.task_status("build") == "ok"  # local tasks are not narrowed


def test_a_task_left_without_hosts_is_skipped_with_a_note(project: NexusProject, sshbed: SshBed) -> None:
    project.write(header(sshbed) + PIPELINE)
    out = run(project, "run", "deploy", "-H", "web,!" + H1)
    assert out.code == 0, out
    assert f"migrate skipped: no host of the task matches -H web,!{H1}" in out.stdout
    assert f"deploy on {H2}" in out.stdout and f"deploy on {H1}" not in out.stdout
    js = run(project, "run", "deploy", "-H", "web", "--format", "json")
    assert js.code == 0, js
    assert js.task_status("migrate") == "skipped" and js.task_status("deploy") == "ok"
    assert hosts_of(js, "deploy") == [H1, H2]


def test_list_hosts_never_connects(project: NexusProject, sshbed: SshBed) -> None:
    project.write(header(sshbed) + PIPELINE.replace(f'"{H3}"', f'"{H3}", "{REFUSED}"'))
    before = sshbed.total_connections()
    out = run(project, "run", "deploy", "--list-hosts", "-H", "&db")
    assert out.code == 0, out
    assert f"migrate (2 hosts):\n  {H3}\n  {REFUSED}" in out.stdout
    assert "deploy: skipped (no host of the task matches -H &db)" in out.stdout
    assert sshbed.total_connections() == before


def test_preflight_force_advice_runs_only_the_available_hosts(project: NexusProject, sshbed: SshBed) -> None:
    project.write(
        header(sshbed, ssh_user=None)
        + f"""
hosts("web", "{H1}", "{H2}", "{REFUSED}")
hosts("db", "{USER_NOSUDO}@{H3}")

@task(on="db")
def migrate():
    run("echo migrate on " + hostname())

@task(on="web", deps=[migrate])
def deploy():
    run("echo deploy on " + hostname())
""",
        name="pipeline.py",
    )
    forced = run(project, "preflight", "deploy", "--force", "--skip-sudo-check", "--timeout", "2",
                 "-c", "pipeline.py", "-u", USER_KEY)  # fmt: skip
    assert forced.code == 0, forced
    advice = next(
        line for line in forced.stdout.splitlines() if line.startswith("Continue with the available hosts")
    )
    command = advice.split(": ", 1)[1]
    assert command == f"nexus run deploy -H {USER_NOSUDO}@{H3},{H1},{H2} -c pipeline.py -u {USER_KEY}", advice
    again = run(project, *shlex.split(command)[1:], "--format", "json")
    assert again.code == 0, again
    assert hosts_of(again, "migrate") == [H3]  # the migration stays on the database host
    assert hosts_of(again, "deploy") == [H1, H2]


def test_guards_run_on_the_target_host(project: NexusProject, sshbed: SshBed) -> None:
    project.write(
        header(sshbed)
        + f"""
hosts("web", "{H1}", "{H2}")

@task(on="web")
def setup():
    run("touch /tmp/nexus-guard-$(id -un)-" + hostname(), creates="/tmp/nexus-guard-{USER_KEY}-" + hostname())
    run("echo only on {H2}", only_if="test " + hostname() + " = {H2}")
"""
    )
    import subprocess

    subprocess.run(
        ["rm", "-f", f"/tmp/nexus-guard-{USER_KEY}-{H1}", f"/tmp/nexus-guard-{USER_KEY}-{H2}"], check=False
    )
    first = run(project, "run", "setup", "--format", "json")
    assert first.code == 0, first
    assert [e["host"] for e in first.of("command.output")] == [H2]
    skipped = [(e["host"], e["reason"]) for e in first.of("command.stop") if e["status"] == "skipped"]
    assert skipped == [(H1, f"only_if: `test {H1} = {H2}` exited 1")]
    second = run(project, "run", "setup", "--format", "json")
    reasons = sorted((e["host"], e["reason"]) for e in second.of("command.stop") if e["status"] == "skipped")
    assert (H1, f"creates: /tmp/nexus-guard-{USER_KEY}-{H1} exists") in reasons
    assert (H2, f"creates: /tmp/nexus-guard-{USER_KEY}-{H2} exists") in reasons
    dry = run(project, "run", "setup", "-n")
    assert "would check creates=" in dry.stdout and "on the host" in dry.stdout
