"""Handlers, artifacts, wait_for and call() against the real sshd bed, through the real CLI."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytestmark = pytest.mark.ssh


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    """A project that never reads ~/.ssh/config and never prompts."""
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the remote test user can write (the bed's hosts are this machine)."""
    path = Path(tempfile.mkdtemp(prefix="nexus-handlers-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def header(bed: SshBed) -> str:
    hosts = ", ".join(repr(h.address) for h in bed.hosts)
    return f"""
from nexus_core import artifact, call, config, handler, hostname, hosts, run, task, wait_for

config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path("ed25519")!r},
       ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port})
hosts("web", {hosts})
"""


def log(folder: Path, host: str) -> list[str]:
    path = folder / f"log-{host}"
    return path.read_text().split() if path.exists() else []


def test_a_handler_notified_three_times_runs_once_per_host(
    project: NexusProject, sshbed: SshBed, shared_dir: Path
):
    project.write(
        header(sshbed)
        + f"""
@handler
def restart():
    run(f"echo restart >> {shared_dir}/log-{{hostname()}}")

@task(on="web")
def deploy():
    for step in ("one", "two", "three"):
        run(f"echo {{step}} >> {shared_dir}/log-{{hostname()}}", notify=restart)
"""
    )
    out = project.run("run", "deploy", "--format", "json", timeout=120)
    assert out.code == 0, out
    for host in sshbed.hosts:
        assert log(shared_dir, host.address) == ["one", "two", "three", "restart"]
    assert sorted(e["host"] for e in out.of("handler.stop")) == sorted(h.address for h in sshbed.hosts)


def test_a_handler_notified_before_a_failure_runs_on_every_host_after_nexus_resume(
    project: NexusProject, sshbed: SshBed, shared_dir: Path
):
    project.write(
        header(sshbed)
        + f"""
@handler
def restart():
    run(f"echo restart >> {shared_dir}/log-{{hostname()}}")

@task(on="web")
def deploy():
    run(f"echo changed >> {shared_dir}/log-{{hostname()}}", notify=restart)
    run(f"test -f {shared_dir}/fixed")
"""
    )
    out = project.run("run", "deploy", timeout=120)
    assert out.code == 1, out
    assert all(log(shared_dir, h.address) == ["changed"] for h in sshbed.hosts)
    (shared_dir / "fixed").write_text("")
    out = project.run("resume", timeout=120)
    assert out.code == 0, out
    for host in sshbed.hosts:
        assert log(shared_dir, host.address) == ["changed", "restart"]


def test_handlers_left_pending_survive_a_run_on_some_hosts_and_never_run_twice(
    project: NexusProject, sshbed: SshBed, shared_dir: Path
):
    """A failed run leaves `restart` pending on every host; a run with -H of one host runs it
    there and holds the others' for the next run; resuming the first run later runs none twice."""
    (project.root / "app.conf").write_text("v2\n")
    project.write(
        header(sshbed)
        + f"""
from nexus_core import upload

@handler
def restart():
    run(f"echo restart >> {shared_dir}/log-{{hostname()}}")

@task(on="web")
def deploy():
    upload("app.conf", f"{shared_dir}/app-{{hostname()}}.conf", notify=restart)
    run(f"test -f {shared_dir}/fixed")
"""
    )
    hosts = [h.address for h in sshbed.hosts[:3]]
    failed = project.run("run", "deploy", "--format", "json", timeout=120)
    assert failed.code == 1, failed
    failed_id = failed.of("pipeline.start")[0]["run_id"]
    (shared_dir / "fixed").write_text("")
    some = project.run("run", "deploy", "-H", hosts[0], "--no-resume", timeout=120)
    assert some.code == 0, some
    assert [log(shared_dir, h) for h in hosts] == [["restart"], [], []]
    held = f"handlers still pending from run {failed_id} on hosts this run left out: restart on"
    assert held in some.stderr, some
    rest = project.run("run", "deploy", "--no-resume", timeout=120)
    assert rest.code == 0, rest
    assert [log(shared_dir, h) for h in hosts] == [["restart"]] * 3
    again = project.run("resume", failed_id, timeout=120)  # its handlers were taken over: none runs
    assert again.code == 0, again
    assert [log(shared_dir, h) for h in hosts] == [["restart"]] * 3


def test_artifacts_of_a_local_build_reach_three_remote_hosts(project: NexusProject, sshbed: SshBed):
    folder = f"nexus-art-{uuid.uuid4().hex[:8]}"
    project.write(
        header(sshbed)
        + f"""
# The bed's hosts are one machine with one home folder: one host at a time, or three
# deliveries would race on the same temporary file (distinct hosts never share one).
config(forks=1)

@task
def build():
    run("mkdir -p {folder}/lib && head -c 300000 /dev/urandom > {folder}/app.bin", creates="{folder}/app.bin")
    run("echo v1 > {folder}/lib/VERSION")
    artifact("{folder}")

@task(on="web", deps=[build])
def deploy():
    run("sha256sum {folder}/app.bin && cat {folder}/lib/VERSION")
"""
    )
    try:
        out = project.run("run", "deploy", "-v", timeout=180)
        assert out.code == 0, out
        import hashlib

        digest = hashlib.sha256((project.root / folder / "app.bin").read_bytes()).hexdigest()
        for host in sshbed.hosts:
            assert f"[deploy {host.address}] > {digest}" in out.stdout, out.stdout
            assert f"[deploy {host.address}] > v1" in out.stdout
        again = project.run("run", "deploy", "--format", "json", timeout=180)
        assert again.code == 0, again
        # The bed's hosts share one home folder: only the unchanged check can be asserted on a re-run.
        delivered = [
            e["message"] for e in again.of("log") if e.get("source") == "artifacts" and " on " in e["message"]
        ]
        assert len(delivered) == 3 and all(
            "0 artifact file(s) delivered, 2 already there" in m for m in delivered
        )
    finally:
        shutil.rmtree(f"/var/lib/nexus-sshbed/home/{USER_KEY}/{folder}", ignore_errors=True)


def test_call_runs_a_fabfile_task_over_the_pooled_connection(
    project: NexusProject, sshbed: SshBed, shared_dir: Path
):
    (project.root / "fabfile.py").write_text(
        "def deploy(c, target):\n"
        "    c.run('echo hello from $(hostname -I 2>/dev/null | cut -c1-0)remote')\n"
        "    c.put('payload.txt', f'{target}/payload-{c.host}.txt')\n"
        "    return c.run('whoami', hide=True).stdout.strip()\n"
    )
    (project.root / "payload.txt").write_text("payload\n")
    project.write(
        header(sshbed)
        + f"""
from fabfile import deploy as fab_deploy

@task(on="web")
def deploy():
    run("true")
    call(fab_deploy, {str(shared_dir)!r})
"""
    )
    out = project.run("run", "deploy", "-v", "--format", "json", timeout=120)
    assert out.code == 0, out
    for host in sshbed.hosts:
        assert (shared_dir / f"payload-{host.address}.txt").read_text() == "payload\n"
    returned = [e["line"] for e in out.of("command.output") if "returned" in e["line"]]
    assert len(returned) == 3 and all(USER_KEY in line for line in returned), returned
    connects: dict[str, int] = {}
    for e in out.of("ssh.connect"):
        connects[e["host"]] = connects.get(e["host"], 0) + 1
    assert connects and all(n == 1 for n in connects.values()), connects  # no second connection per host
    # hide=True is honoured (invoke ignores it for a stream given explicitly, as ours are)
    lines = [e["line"] for e in out.of("command.output")]
    assert not any(line == USER_KEY for line in lines), lines


def test_call_failure_over_ssh_is_reported_like_a_command(project: NexusProject, sshbed: SshBed):
    (project.root / "fabfile.py").write_text("def broken(c):\n    c.run('echo about to fail; exit 5')\n")
    project.write(
        header(sshbed)
        + """
from fabfile import broken

@task(on="web")
def deploy():
    call(broken)
"""
    )
    out = project.run("run", "deploy", timeout=120)
    assert out.code == 1, out
    text = out.stdout + out.stderr
    assert "broken(): command `echo about to fail; exit 5` exited with 5" in text
    assert "about to fail" in text


def test_wait_for_over_ssh(project: NexusProject, sshbed: SshBed, shared_dir: Path):
    project.write(
        header(sshbed)
        + f"""
@task(on="web")
def deploy():
    run(f"(sleep 1; touch {shared_dir}/ready-{{hostname()}}) > /dev/null 2>&1 &")
    wait_for(f"test -f {shared_dir}/ready-{{hostname()}}", timeout=30, interval=0.2)

@task(on="web", deps=[deploy])
def never():
    wait_for("false", timeout=1, interval=0.3)
"""
    )
    out: Any = project.run("run", "never", timeout=120)
    assert out.code == 4, out
    assert re.search(r"still failing after 1\.\ds \(\d+ attempts", out.stdout + out.stderr), out
    assert all((shared_dir / f"ready-{h.address}").exists() for h in sshbed.hosts)


def test_a_host_no_one_answers_is_a_connection_failure_for_files_and_call_too(
    project: NexusProject, sshbed: SshBed
) -> None:
    """Exit 3 and "Connection to HOST failed", as for ``run()``: the file operations' first
    look at the host and ``call()``'s connection failed on a closed port, and were reported
    as a failed command (exit 1), ``call()`` blaming the user's function for it."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on (bound, then freed)
        probe.bind(("127.0.0.9", 0))
        port = probe.getsockname()[1]
    (project.root / "site.conf.j2").write_text("x={{ 1 }}\n")
    project.write(
        f"""
from nexus_core import call, config, download, task, template, upload

config(ssh_connect_attempts=1, ssh_port={port})


def deploy(c):
    c.run("true")


@task(on=["127.0.0.9"])
def up():
    upload("site.conf.j2", "/tmp/nowhere/site.conf")


@task(on=["127.0.0.9"])
def down():
    download("/etc/hostname", "got/hostname")


@task(on=["127.0.0.9"])
def tpl():
    template("site.conf.j2", "/tmp/nowhere/site.conf")


@task(on=["127.0.0.9"])
def fab():
    call(deploy)
"""
    )
    for name in ("up", "down", "tpl", "fab"):
        out = project.run("run", name, timeout=60)
        assert out.code == 3, (name, out)
        assert "Connection to 127.0.0.9 failed" in out.stdout + out.stderr, (name, out)
        assert "raised" not in out.stdout + out.stderr, (name, out)


def test_a_failure_inside_call_shows_the_users_frames_only(project: NexusProject, sshbed: SshBed) -> None:
    (project.root / "fabfile.py").write_text("def broken(c):\n    c.run('exit 5')\n")
    body = "\nfrom fabfile import broken\n\n@task(on=['127.0.0.2'])\ndef d():\n    call(broken)\n"
    project.write(header(sshbed) + body)
    out = project.run("run", "d", timeout=120)
    assert out.code == 1, out
    text = out.stdout + out.stderr
    assert "fabfile.py:2 in broken" in text, text
    assert "fabric_bridge" not in text and "contextlib" not in text, text
