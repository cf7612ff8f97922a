"""Secrets over SSH: ``secret(..., to=...)`` on hosts, and the redaction grep over every output and file.

A unique value is stored, used every way a nexusfile can (command text, ``env=``, a file
written with ``to=`` with and without sudo, a host echoing it, a value split across two
reads, a failing command printing it, ``-v``, ``--format json``, ``--log-level debug``, a
kill and a resume), then every output stream, every file under the XDG state, data and cache
folders and the SQLite database are searched for it: it must appear nowhere. The sudo
password (``NEXUS_SUDO_PASSWORD``) gets the same treatment.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.runlogs import inflate
from nexus_core.testing import NexusProject
from nexus_core.testing.sshbed import PASSWORD, USER_KEY, USER_PW, SshBed
from tests.helpers import start_nexus, wait_for

pytestmark = [pytest.mark.ssh, pytest.mark.session_mode]  # session_mode: run again in exec mode (dev.py)

H1, H2 = "127.0.0.2", "127.0.0.3"
KEY = base64.b64encode(bytes(range(32))).decode()
VALUE = "Zq7-secret-9f3b2c41-unique"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the remote test users can write (the bed's hosts are this machine)."""
    path = Path(tempfile.mkdtemp(prefix="nexus-secrets-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    nexus_project.env.update(
        {
            "NEXUS_SSH_CONFIG": "",
            "SSH_AUTH_SOCK": "",
            "NEXUS_MASTER_KEY": KEY,
            "NEXUS_SUDO_PASSWORD": PASSWORD,
        }
    )
    out = nexus_project.run("secret", "set", "APP_TOKEN", input=VALUE)
    assert out.code == 0, out
    return nexus_project


def nexusfile(bed: SshBed, shared: Path, identity: str = "ed25519") -> str:
    return f'''
from nexus_core import config, hosts, hostname, run, secret, task

config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path(identity)!r},
       ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port},
       interrupt_grace=0.3, terminate_grace=0.3)
hosts("web", {H1!r}, {H2!r})
TOKEN = secret("APP_TOKEN")


@task
def local_use():
    run(f"echo local {{TOKEN}}")
    run('echo "env $APP_TOKEN"', env={{"APP_TOKEN": secret("APP_TOKEN")}})
    secret("APP_TOKEN", to="{shared}/local-token")
    run("cat {shared}/local-token; echo")


@task(on="web", deps=[local_use])
def remote_use():
    run(f"echo remote {{secret('APP_TOKEN')}}")
    run('echo "env $T"', env={{"T": TOKEN}})
    # the host prints the value in two writes, 0.3 s apart: two reads on this side
    run('printf "%s" "$T" | cut -c1-7 | tr -d "\\\\n"; sleep 0.3; printf "%s\\\\n" "$T" | cut -c8-',
        env={{"T": TOKEN}})
    secret("APP_TOKEN", to=f"{shared}/token-{{hostname()}}", remote_only=True)
    secret("APP_TOKEN", to=f"{shared}/root-token-{{hostname()}}", sudo=True, owner="root", mode=0o640)
    run(f"cat {shared}/token-{{hostname()}}; echo; echo the sudo password is {PASSWORD}")
    run(f"echo slow start {{TOKEN}}; sleep 2; echo slow end {{TOKEN}}")


@task(on="web", deps=[remote_use])
def failing():
    run(f"echo failing with {{TOKEN}} >&2; exit 3")
'''


def files_containing(roots: list[Path], needles: list[str]) -> list[str]:
    """Every file under ``roots`` (gzip files inflated, SQLite databases dumped) that holds a needle."""
    found = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if not path.is_file() or path.name == "nexusfile.py":  # it spells the sudo password out
                continue
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = inflate(data).encode()  # what `nexus logs` reads, a torn last member included
            if data.startswith(b"SQLite format 3"):
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    data += "\n".join(db.iterdump()).encode()
                finally:
                    db.close()
            if any(n.encode() in data for n in needles):
                found.append(str(path))
    return found


def test_a_secret_used_every_way_appears_in_no_output_and_no_file(project, sshbed, shared_dir):
    project.write(nexusfile(sshbed, shared_dir))
    outputs: list[str] = []

    def check(out, code):  # type: ignore[no-untyped-def]
        outputs.extend([out.stdout, out.stderr])
        assert out.code == code, out

    dry = project.run("run", "remote_use", "--dry-run")
    check(dry, 0)
    assert "echo remote ***" in dry.stdout

    check(project.run("run", "remote_use"), 0)
    verbose = project.run("run", "remote_use", "-v")
    check(verbose, 0)
    for host in (H1, H2):
        assert (shared_dir / f"token-{host}").read_text() == VALUE  # the file got the exact value
        root_file = shared_dir / f"root-token-{host}"
        assert root_file.stat().st_uid == 0 and stat.S_IMODE(root_file.stat().st_mode) == 0o640
        assert root_file.read_text() == VALUE
    assert (shared_dir / "local-token").read_text() == VALUE
    shown = verbose.stdout
    assert "> local ***" in shown and "> env ***" in shown and "> remote ***" in shown, shown
    assert shown.count("> ***") >= 2 + 2, shown  # cat of the file and the split value, on both hosts
    assert "the sudo password is ***" in shown

    js = project.run("run", "remote_use", "--format", "json")
    check(js, 0)
    assert any(e.get("line") == "***" for e in js.of("command.output"))
    check(project.run("run", "remote_use", "--log-level", "debug", "-v"), 0)
    check(project.run("run", "remote_use", "--log-format", "json", "--log-level", "debug", "-q"), 0)

    failed = project.run("run", "failing", "-v")
    check(failed, 1)
    assert "failing with ***" in failed.stdout + failed.stderr
    failed_json = project.run("run", "failing", "--format", "json", "--continue-on-error")
    check(failed_json, 1)

    # a kill in the middle of the slow command, then a resume
    proc = start_nexus(project, "run", "remote_use", "-v", "--no-resume")
    assert proc.stdout is not None
    got: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        got.append(line)
        if "slow start" in line:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    rest, err = proc.communicate(timeout=30)
    outputs.extend(["".join(got), rest, err])
    assert any("slow start ***" in line for line in got), got
    resumed = project.run("run", "remote_use", "--resume", "-v")
    check(resumed, 0)
    logs = project.run("logs")
    check(logs, 0)
    pipelines = project.run("pipelines", "--format", "json")
    check(pipelines, 0)

    for text in outputs:
        assert VALUE not in text and PASSWORD not in text
    xdg = [
        Path(project.env[v]) for v in ("XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
    ]
    assert files_containing([*xdg, project.root], [VALUE, PASSWORD]) == []


def test_sudo_that_wants_its_password_still_writes_exactly_the_value(project, sshbed, shared_dir):
    """The password line is read by sudo here (not skipped by the script): the file is still exact."""
    project.write(
        f'''
from nexus_core import config, run, secret, task

config(ssh_user={USER_PW!r}, ssh_identity={sshbed.key_path("ed25519_pw")!r},
       ssh_known_hosts_file={sshbed.known_hosts!r}, ssh_port={sshbed.port})


@task(on=["{H1}"])
def place():
    secret("APP_TOKEN", to="{shared_dir}/pw-token", sudo=True)
    run("id -u", sudo=True)
'''
    )
    out = project.run("run", "place", "-v", timeout=60)
    assert out.code == 0, out
    target = shared_dir / "pw-token"
    assert target.read_text() == VALUE and target.stat().st_uid == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert VALUE not in out.stdout + out.stderr and PASSWORD not in out.stdout + out.stderr


def test_without_the_key_a_run_says_the_store_is_locked_and_runs_nothing(project, sshbed, shared_dir):
    project.write(nexusfile(sshbed, shared_dir))
    out = project.run("run", "remote_use", env={"NEXUS_MASTER_KEY": ""})
    assert out.code == 2, out
    assert "is locked" in out.stderr and "nexusfile.py:7" in out.stderr, out
    assert not (shared_dir / "local-token").exists()
    assert wait_for(lambda: True)
    assert os.listdir(shared_dir) == []
