"""RBAC, approvals, change windows and dry-run enforcement through the real CLI, as real OS users.

The module creates three users and a group (``useradd``/``groupadd``, removed at the end) and
runs ``nexus`` as each of them with ``setpriv``. The interpreter lives under ``/root`` (mode
0700) on the test machines, so the other users' processes get one capability,
CAP_DAC_READ_SEARCH (read and traverse any path; writing stays governed by the ordinary
permissions); their user and group ids, which are what the policy looks at, are theirs.

The policy is a root-owned file named by ``NEXUS_POLICY`` (honoured only for such a file);
it sets ``[testing] clock_override = true`` so that ``NEXUS_TEST_NOW`` injects the clock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import wait_for
from plugin_fixtures import Logs, make_dist, plugin_env

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root, useradd and setpriv to create and become test users",
)

#: Wednesday 2026-12-02 16:00 UTC = 11:00 in New York; Thursday 15:00 UTC = 10:00 in New York.
CLOSED = "2026-12-02T16:00:00+00:00"
OPEN = "2026-12-03T15:30:00+00:00"

NEXUSFILE = """\
from nexus_core import change_window, hosts, require_dry_run, run, task, upload

hosts("staging", "local")
change_window("prod", days=["tue", "thu"], hours="10-16", timezone="America/New_York")
require_dry_run(tasks=["checked"], ttl=600)


@task
def build():
    run("echo built > {out}/build")


@task(on="staging")
def deploy():
    run("echo deployed > {out}/deploy")


@task(approval="required")
def migrate():
    run("echo {marker} > {out}/migrate")


@task(change_window="prod")
def release():
    run("echo released > {out}/release")


@task
def checked():
    run("echo checked > {out}/checked")


@task(approval="required")
def ship():
    upload("payload.sh", "{out}/payload.sh")
    run("sh {out}/payload.sh > {out}/shipped")
"""

POLICY = """\
[roles.viewer]
can = ["list", "status", "logs"]

[roles.deployer]
inherit = ["viewer"]
can = [
  {{ action = "run", tasks = ["build", "migrate", "release", "checked", "ship"] }},
  {{ action = "run", tasks = ["deploy"], on = ["staging"] }},
  "approve",
]

[roles.approver]
inherit = ["viewer"]
can = ["approve", {{ action = "run", tasks = ["checked"] }}]

[[assign]]
user = "{alice}"
role = "deployer"

[[assign]]
group = "{group}"
role = "approver"

[approvals]
ttl = 3600
database = "{shared}/approvals.db"

[testing]
clock_override = true
"""


@dataclass
class Bed:
    """The users, the project and the root-owned policy of this module."""

    base: Path
    project: Path
    out: Path
    shared: Path
    policy: Path
    users: dict[str, str]
    group: str
    logs: Logs
    site: Path

    def write_policy(self, text: str | None = None, mode: int = 0o644) -> None:
        text = text if text is not None else POLICY.format(alice=self.users["alice"], group=self.group,
                                                           shared=self.shared)  # fmt: skip
        self.policy.write_text(text, encoding="utf-8")
        self.policy.chmod(mode)

    def write_nexusfile(self, marker: str = "one") -> None:
        (self.project / "nexusfile.py").write_text(NEXUSFILE.format(out=self.out, marker=marker), encoding="utf-8")

    def command(self, who: str, *args: str, now: str | None = None, **env: str) -> tuple[list[str], dict[str, str]]:
        user = self.users[who] if who != "root" else "root"
        home = self.base / "home" / user
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "NEXUS_POLICY": str(self.policy),
            "NO_COLOR": "1",
            "NEXUS_STATE_DB": str(home / "state.db"),
            **plugin_env(self.site, self.logs),
            **({"NEXUS_TEST_NOW": now} if now else {}),
            **env,
        }
        argv = [sys.executable, "-m", "nexus_core", *args]
        if who != "root":
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                    "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--", *argv]  # fmt: skip
        return argv, environ

    def nexus(self, who: str, *args: str, now: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        argv, environ = self.command(who, *args, now=now, **env)
        return subprocess.run(argv, cwd=self.project, env=environ, capture_output=True, text=True, timeout=60)

    def start(self, who: str, *args: str, now: str | None = None) -> subprocess.Popen[str]:
        argv, environ = self.command(who, *args, now=now)
        return subprocess.Popen(argv, cwd=self.project, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip

    def approvals(self) -> list[dict[str, object]]:
        if not (self.shared / "approvals.db").exists():  # connecting would create it, owned by root
            return []
        db = sqlite3.connect(self.shared / "approvals.db")
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM approvals ORDER BY created")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def audited(self) -> list[str]:
        return [r["event"] for r in self.logs.records("event")]


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    base = Path(tempfile.mkdtemp(prefix="nexus-policy-"))
    base.chmod(0o755)
    suffix = str(os.getpid())[-6:]
    users = {"alice": f"nxa{suffix}", "bob": f"nxb{suffix}", "carol": f"nxc{suffix}"}
    group = f"nxg{suffix}"
    made: list[str] = []
    try:
        subprocess.run(["groupadd", group], check=True, capture_output=True)
        for role, name in users.items():
            home = base / "home" / name
            extra = ["-G", group] if role == "bob" else []
            subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-U", *extra, name], check=True,
                           capture_output=True)  # fmt: skip
            made.append(name)
            home.mkdir(parents=True)
            shutil.chown(home, name, name)
        (base / "home" / "root").mkdir()
        project, out, shared, site = base / "project", base / "out", base / "shared", base / "site"
        for folder in (project, out, shared):
            folder.mkdir()
        out.chmod(0o777)
        shared.chmod(0o777)
        make_dist(site, "nexus-auditspy", features=("api", "imports", "subscriber"))
        logs = Logs(shared / "imports.log", shared / "events.log")
        for f in (logs.imports, logs.runs):
            f.touch()
            f.chmod(0o666)
        b = Bed(base, project, out, shared, base / "policy.toml", users, group, logs, site)
        b.write_nexusfile()
        b.write_policy()
        yield b
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", group], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh(bed: Bed) -> None:
    bed.write_policy()
    bed.write_nexusfile()
    for f in bed.out.iterdir():
        f.unlink()
    bed.logs.runs.write_text("", encoding="utf-8")
    if (bed.shared / "approvals.db").exists():  # each test starts with no requests and no dry runs
        db = sqlite3.connect(bed.shared / "approvals.db")
        with db:
            db.execute("DELETE FROM approvals")
            db.execute("DELETE FROM dry_runs")
        db.close()


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


# --- RBAC ----------------------------------------------------------------------------------


def test_policy_check_explains_each_decision(bed: Bed) -> None:
    alice, bob = bed.users["alice"], bed.users["bob"]
    ok = bed.nexus("alice", "policy", "check", "deploy")
    assert ok.returncode == 0, ok.stderr
    assert f"ALLOWED: {alice} may run deploy on staging" in ok.stdout
    assert "roles.deployer.can[1]" in ok.stdout and f"user {alice}" in ok.stdout
    denied = bed.nexus("alice", "policy", "check", "--on", "production", "deploy")
    assert denied.returncode == 77 and "DENIED" in denied.stdout and "default deny" in denied.stdout
    inherited = bed.nexus("root", "policy", "check", "--user", alice, "--action", "logs", "--format", "json")
    data = json.loads(inherited.stdout)
    assert (
        data["allowed"]
        and data["rule"].startswith("roles.viewer.can[2] (logs)")
        and data["roles"] == ["deployer", "viewer"]
    )
    by_group = bed.nexus("root", "policy", "check", "--user", bob, "--action", "approve")
    assert by_group.returncode == 0 and f"group {bed.group}" in by_group.stdout, by_group.stdout
    assert bed.audited().count("policy.check") >= 4
    # a name the machine does not know, and a task the nexusfile does not have, are said, not passed over
    ghost = bed.nexus("root", "policy", "check", "--user", "ghost-user-x", "--action", "logs")
    assert "'ghost-user-x' is not a user of this machine" in ghost.stderr, ghost.stderr
    typo = bed.nexus("alice", "policy", "check", "deplyo")
    assert "the nexusfile has no task 'deplyo' (did you mean 'deploy'?)" in typo.stderr, typo.stderr
    assert "not a user of this machine" not in ok.stderr + typo.stderr and "no task" not in ok.stderr


def test_denials_name_the_rule_exit_77_and_run_nothing(bed: Bed) -> None:
    carol = bed.users["carol"]
    run = bed.nexus("carol", "run", "build")
    assert run.returncode == 77, run.stderr
    assert f"Permission denied: {carol} may not run build" in run.stderr
    assert "default deny (no role assigned)" in run.stderr and str(bed.policy) in run.stderr
    assert not (bed.out / "build").exists()
    for args, action in ((("list",), "list"), (("logs",), "logs"), (("pipelines",), "status")):
        proc = bed.nexus("carol", *args)
        assert proc.returncode == 77 and f"{action}: denied" in proc.stderr, (args, proc.stderr)
    bob = bed.nexus("bob", "run", "build")  # approver: may approve and list, not run build
    assert bob.returncode == 77 and "no rule of these roles allows it" in bob.stderr
    alice = bed.nexus("alice", "run", "build")
    assert alice.returncode == 0, alice.stderr
    assert (bed.out / "build").read_text().strip() == "built"
    assert "policy.check" in bed.audited() and "pipeline.start" in bed.audited()


def test_only_a_root_owned_unwritable_policy_may_replace_the_system_one(bed: Bed) -> None:
    own = bed.base / "home" / bed.users["carol"] / "mine.toml"
    own.write_text('[roles.all]\ncan = ["*"]\n', encoding="utf-8")
    shutil.chown(own, bed.users["carol"])
    proc = bed.nexus("carol", "policy", "check", "build", NEXUS_POLICY=str(own))
    assert f"NEXUS_POLICY={own} ignored: it is not owned by root" in proc.stderr
    bed.write_policy(mode=0o664)
    proc = bed.nexus("alice", "policy", "check", "build")
    assert "ignored: its group or others can write it" in proc.stderr


def test_a_bad_policy_exits_2_with_file_line_and_fix(bed: Bed) -> None:
    cases = [
        ('[roles.viewer]\ncan = ["list"\n', ":2", "not valid TOML"),
        ('[roles.viewer]\ncan = ["lsit"]\n', ":2", "did you mean 'list'"),
        ('[roles.a]\ncan = ["list"]\n\n[[assign]]\nuser = "x"\nrole = "nope"\n', ":4", "unknown role 'nope'"),
        ('[change_windows.prod]\ndays = ["funday"]\n', ":1", "unknown day 'funday'"),
        ('[change_windows.prod]\ntimezone = "Mars/Olympus"\n', ":1", "unknown timezone 'Mars/Olympus'"),
    ]
    for text, line, what in cases:
        bed.write_policy(text)
        proc = bed.nexus("alice", "run", "build")
        assert proc.returncode == 2, (text, proc.stderr)
        assert f"{bed.policy}{line}" in proc.stderr and what in proc.stderr, (text, proc.stderr)
        no_traceback(proc)


# --- approvals -----------------------------------------------------------------------------


def request_id(stderr: str) -> str:
    found = re.search(r"Approval request (\w+) recorded", stderr)
    assert found, stderr
    return found.group(1)


def test_approval_by_another_user_lets_the_run_continue(bed: Bed) -> None:
    first = bed.nexus("alice", "run", "migrate", "--no-wait")
    assert first.returncode == 75, first.stderr
    rid = request_id(first.stderr)
    assert not (bed.out / "migrate").exists()
    self_approval = bed.nexus("alice", "approve", rid)  # alice holds approve, but it is her own request
    assert self_approval.returncode == 77 and "separation of duties" in self_approval.stderr
    carol = bed.nexus("carol", "approve", rid)
    assert carol.returncode == 77 and "default deny" in carol.stderr
    shown = bed.nexus("bob", "policy", "approvals", rid)
    assert (
        shown.returncode == 0 and "DRY RUN MODE" in shown.stdout and f"Requester: {bed.users['alice']}" in shown.stdout
    )
    ok = bed.nexus("bob", "approve", rid, "--comment", "maintenance window")
    assert ok.returncode == 0, ok.stderr
    run = bed.nexus("alice", "run", "migrate")
    assert run.returncode == 0, run.stderr
    assert f"Approved by {bed.users['bob']} (maintenance window)" in run.stderr
    assert (bed.out / "migrate").read_text().strip() == "one"
    row = next(r for r in bed.approvals() if r["id"] == rid)
    assert row["status"] == "used" and row["decided_by"] == bed.users["bob"] and row["run_id"]
    events = bed.audited()
    assert {"approval.requested", "approval.granted", "approval.used"} <= set(events)
    again = bed.nexus("alice", "run", "migrate", "--no-wait")  # an approval is used once
    assert again.returncode == 75 and request_id(again.stderr) != rid


def test_a_user_without_a_role_reads_no_request_and_runs_no_preflight(bed: Bed) -> None:
    first = bed.nexus("alice", "run", "migrate", "--no-wait")
    rid = request_id(first.stderr)
    for args in (("policy", "approvals", "--all"), ("policy", "approvals", rid), ("preflight", "build")):
        out = bed.nexus("carol", *args)
        assert out.returncode == 77, (args, out.stdout, out.stderr)
        assert bed.users["alice"] not in out.stdout, out.stdout
    mine = bed.nexus("alice", "policy", "approvals", rid)  # alice may approve (others' requests)
    assert mine.returncode == 0 and rid in mine.stdout, mine.stderr


def test_an_approval_is_bound_to_the_plan_and_expires(bed: Bed) -> None:
    first = bed.nexus("alice", "run", "migrate", "--no-wait", now=CLOSED)
    rid = request_id(first.stderr)
    assert bed.nexus("bob", "approve", rid, now=CLOSED).returncode == 0
    bed.write_nexusfile(marker="two")  # the plan changed after the approval
    changed = bed.nexus("alice", "run", "migrate", "--no-wait", now=CLOSED)
    assert changed.returncode == 75 and request_id(changed.stderr) != rid
    assert not (bed.out / "migrate").exists()
    late = bed.nexus("alice", "run", "migrate", "--no-wait", now=CLOSED)
    stale = re.search(r"Approval request (\w+) for this plan is still pending", late.stderr)
    assert stale, late.stderr
    expired = bed.nexus("bob", "approve", stale.group(1), now="2026-12-02T18:00:00+00:00")
    assert expired.returncode == 2 and "is expired, not pending" in expired.stderr


def test_an_approval_covers_the_contents_of_the_files_a_task_uploads(bed: Bed) -> None:
    """The plan hash named the upload's path, not its bytes: a payload changed after the
    approval ran under it."""
    payload = bed.project / "payload.sh"
    payload.write_text("echo SAFE\n", encoding="utf-8")
    first = bed.nexus("alice", "run", "ship", "--no-wait")
    assert first.returncode == 75, first.stderr
    rid = request_id(first.stderr)
    assert bed.nexus("bob", "approve", rid).returncode == 0
    payload.write_text("echo EVIL\n", encoding="utf-8")
    changed = bed.nexus("alice", "run", "ship", "--no-wait")
    assert changed.returncode == 75 and request_id(changed.stderr) != rid, changed.stderr
    assert not (bed.out / "shipped").exists()
    payload.write_text("echo SAFE\n", encoding="utf-8")  # the approved bytes again: the approval holds
    run = bed.nexus("alice", "run", "ship")
    assert run.returncode == 0, run.stderr
    assert (bed.out / "shipped").read_text().strip() == "SAFE"


def test_waiting_run_reacts_to_a_rejection_and_to_ctrl_c(bed: Bed) -> None:
    waiting = bed.start("alice", "run", "migrate")
    try:
        if not wait_for(lambda: any(r["status"] == "pending" for r in bed.approvals()), timeout=90):
            waiting.kill()
            raise AssertionError(f"no pending request: {waiting.communicate(timeout=30)}")
        rid = next(r["id"] for r in bed.approvals() if r["status"] == "pending")
        rejected = bed.nexus("bob", "reject", str(rid), "--comment", "not today")
        assert rejected.returncode == 0, rejected.stderr
        _, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 77, err
    assert f"was rejected by {bed.users['bob']}" in err and "not today" in err
    assert not (bed.out / "migrate").exists()
    cancelled = bed.start("alice", "run", "migrate")
    try:
        assert wait_for(lambda: any(r["status"] == "pending" for r in bed.approvals()), timeout=90)
        seen = [cancelled.stderr.readline() for _ in range(4)] if cancelled.stderr else []
        assert any("Waiting for approval" in line for line in seen), seen
        cancelled.send_signal(signal.SIGINT)
        _, err = cancelled.communicate(timeout=30)
    finally:
        cancelled.kill()
    assert cancelled.returncode == 130, err
    assert "Cancelled approval request" in err and "Traceback" not in err
    assert [r["status"] for r in bed.approvals()][-1] == "cancelled"


# --- change windows and dry runs -----------------------------------------------------------


def test_change_window_refuses_with_next_start_and_override_needs_a_reason(bed: Bed) -> None:
    closed = bed.nexus("alice", "run", "release", now=CLOSED)
    assert closed.returncode == 77, closed.stderr
    assert "outside its change window prod" in closed.stderr
    assert "Next window opens: Thu 2026-12-03 10:00 EST (2026-12-03T15:00Z)" in closed.stderr
    assert not (bed.out / "release").exists()
    no_reason = bed.nexus("alice", "run", "release", "--override-window", now=CLOSED)
    assert no_reason.returncode == 2 and "--override-window needs --reason" in no_reason.stderr
    forced = bed.nexus("alice", "run", "release", "--override-window", "--reason", "INC-7 hotfix", now=CLOSED)
    assert forced.returncode == 0, forced.stderr
    assert "change_window.override" in bed.audited()
    (bed.out / "release").unlink()
    inside = bed.nexus("alice", "run", "release", now=OPEN)
    assert inside.returncode == 0 and (bed.out / "release").exists(), inside.stderr


def test_injected_clock_needs_the_policys_consent(bed: Bed) -> None:
    text = POLICY.format(alice=bed.users["alice"], group=bed.group, shared=bed.shared)
    bed.write_policy(text.replace("clock_override = true", "clock_override = false"))
    real = bed.nexus("alice", "policy", "check", "release", now=CLOSED)
    assert real.returncode == 0
    # The real clock decides: the run is refused or allowed as the real week says, never by NEXUS_TEST_NOW.
    import datetime as dt
    from zoneinfo import ZoneInfo

    here = dt.datetime.now(ZoneInfo("America/New_York"))
    is_open = here.weekday() in (1, 3) and 10 <= here.hour < 16
    proc = bed.nexus("alice", "run", "release", now=OPEN if not is_open else CLOSED)
    assert proc.returncode == (0 if is_open else 77), proc.stderr


def test_require_dry_run_same_plan_same_user_within_ttl(bed: Bed) -> None:
    cold = bed.nexus("alice", "run", "checked", now=CLOSED)
    assert cold.returncode == 77 and "needs a dry run of this exact plan" in cold.stderr
    assert "nexus run --dry-run checked" in cold.stderr
    dry = bed.nexus("alice", "run", "--dry-run", "checked", now=CLOSED)
    assert dry.returncode == 0, dry.stderr
    other = bed.nexus("bob", "run", "checked", now=CLOSED)  # bob may run it, but did not dry-run it
    assert other.returncode == 77 and f"{bed.users['bob']} never dry-ran this plan" in other.stderr
    ok = bed.nexus("alice", "run", "checked", now="2026-12-02T16:05:00+00:00")
    assert ok.returncode == 0 and (bed.out / "checked").exists(), ok.stderr
    stale = bed.nexus("alice", "run", "checked", now="2026-12-02T17:00:00+00:00")
    assert stale.returncode == 77 and "last dry-ran this plan" in stale.stderr
    assert "dry_run.recorded" in bed.audited()


def test_refusals_and_checks_reach_the_audit_file_sink(bed: Bed) -> None:
    """Outside a run too: a refusal and ``nexus policy check`` are records of the declared sinks."""
    log = bed.base / "audit.log"
    conf = bed.project / ".nexus" / "config.toml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(f'[audit.sinks.trail]\ntype = "file"\npath = "{log}"\n', encoding="utf-8")
    try:
        denied = bed.nexus("root", "run", "build")  # root holds no role in this policy
        assert denied.returncode == 77, denied.stderr
        checked = bed.nexus("root", "policy", "check", "--user", bed.users["alice"], "deploy")
        assert checked.returncode == 0, checked.stderr
        records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
        checks = [r for r in records if r.get("event") == "policy.check"]
        assert [c["allowed"] for c in checks] == [False, True], records
        assert checks[0]["user"] == "root" and checks[0]["action"] == "run" and "default deny" in checks[0]["rule"]
        assert checks[1]["subject"] == bed.users["alice"] and checks[1]["correlation_id"]
        # A run that stops waiting for an approval (exit 75) records the checks it passed too.
        theirs = bed.shared / "alice-audit.log"  # a log of alice's own (the one above is root's)
        conf.write_text(f'[audit.sinks.trail]\ntype = "file"\npath = "{theirs}"\n', encoding="utf-8")
        pending = bed.nexus("alice", "run", "migrate", "--no-wait")
        assert pending.returncode == 75, pending.stderr
        lines = theirs.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        mine = [r for r in records if r.get("event") == "policy.check"]
        assert any(r.get("target") == "migrate" and r["allowed"] for r in mine), [
            r for r in records if r.get("event") == "policy.check"
        ]
    finally:
        shutil.rmtree(conf.parent)


RESUMABLE = """\
from nexus_core import change_window, require_dry_run, run, task

change_window("prod", days=["tue", "thu"], hours="10-16", timezone="America/New_York")
require_dry_run(tasks=["checked"], ttl=600)


@task(change_window="prod")
def release():
    run("test -f {out}/go")
    run("echo released > {out}/release")


@task
def checked():
    run("test -f {out}/go")
    run("echo checked > {out}/checked")
"""


def _run_id(proc: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r'"run_id": ?"([^"]+)"', proc.stdout)
    assert found, proc.stdout + proc.stderr
    return found.group(1)


def test_resume_rechecks_the_change_window_and_the_dry_run(bed: Bed) -> None:
    (bed.project / "nexusfile.py").write_text(RESUMABLE.format(out=bed.out), encoding="utf-8")
    failed = bed.nexus("alice", "run", "release", "--format", "json", now=OPEN)  # inside: runs, fails
    assert failed.returncode == 1, failed.stderr
    rid = _run_id(failed)
    (bed.out / "go").touch()
    (bed.out / "go").chmod(0o666)
    closed = bed.nexus("alice", "resume", rid, now=CLOSED)
    assert closed.returncode == 77 and "outside its change window prod" in closed.stderr, closed.stderr
    assert not (bed.out / "release").exists()
    hint = bed.nexus("alice", "resume", rid, "--override-window", now=CLOSED)  # the refusal's hint works here too
    assert hint.returncode == 2 and "--override-window needs --reason" in hint.stderr, hint.stderr
    inside = bed.nexus("alice", "resume", rid, now=OPEN)
    assert inside.returncode == 0 and (bed.out / "release").exists(), inside.stderr
    (bed.out / "go").unlink()
    assert bed.nexus("alice", "run", "--dry-run", "checked", now=CLOSED).returncode == 0
    checked = bed.nexus("alice", "run", "checked", "--format", "json", now="2026-12-02T16:05:00+00:00")
    assert checked.returncode == 1, checked.stderr
    (bed.out / "go").touch()
    stale = bed.nexus("alice", "resume", _run_id(checked), now="2026-12-02T17:00:00+00:00")  # past the TTL
    assert stale.returncode == 77 and "last dry-ran this plan" in stale.stderr, stale.stderr
    assert not (bed.out / "checked").exists()
    fresh = bed.nexus("alice", "resume", _run_id(checked), now="2026-12-02T16:08:00+00:00")
    assert fresh.returncode == 0 and (bed.out / "checked").exists(), fresh.stderr


APPROVED_RESUME = """\
from nexus_core import run, task


@task(approval="required")
def migrate():
    run("test -f {out}/go")
    run("{second} > {out}/migrate")


@task(approval="required", deps=[migrate])
def deploy_all():
    run("echo deployed > {out}/deployed")
"""


def test_a_resume_holds_its_approval_for_the_approved_plan_only(bed: Bed) -> None:
    """`nexus resume --force` of an approved run whose commands changed ran the changed
    commands, never approved; a resume of the same plan needs no new approval."""

    def write(second: str) -> None:
        text = APPROVED_RESUME.format(out=bed.out, second=second)
        (bed.project / "nexusfile.py").write_text(text, encoding="utf-8")

    write("echo migrated")
    first = bed.nexus("alice", "run", "migrate", "--no-wait")
    rid = request_id(first.stderr)
    assert bed.nexus("bob", "approve", rid).returncode == 0
    failed = bed.nexus("alice", "run", "migrate", "--format", "json")
    assert failed.returncode == 1, failed.stderr
    run_id = _run_id(failed)
    (bed.out / "go").touch()
    (bed.out / "go").chmod(0o666)
    write("echo UNAPPROVED")
    forced = bed.nexus("alice", "resume", run_id, "--force", "--no-wait")
    assert forced.returncode == 75, forced.stderr  # a new request for the changed plan
    assert not (bed.out / "migrate").exists()
    write("echo migrated")
    same = bed.nexus("alice", "resume", run_id)  # the plan approved: its approval holds
    assert same.returncode == 0, same.stderr
    assert (bed.out / "migrate").read_text().strip() == "migrated"


def test_an_approver_of_some_tasks_cannot_approve_a_request_that_holds_others(bed: Bed) -> None:
    (bed.project / "nexusfile.py").write_text(
        APPROVED_RESUME.format(out=bed.out, second="echo migrated"), encoding="utf-8"
    )
    bed.write_policy(
        POLICY.format(alice=bed.users["alice"], group=bed.group, shared=bed.shared)
        .replace(
            'can = ["approve", {{ action = "run", tasks = ["checked"] }}]'.replace("{{", "{").replace("}}", "}"),
            'can = [{ action = "approve", tasks = ["migrate*"] }]',
        )
        .replace('tasks = ["build", "migrate",', 'tasks = ["build", "migrate", "deploy_all",')
    )
    first = bed.nexus("alice", "run", "deploy_all", "--no-wait")  # the request holds migrate, deploy_all
    assert first.returncode == 75, first.stderr
    denied = bed.nexus("bob", "approve", request_id(first.stderr))
    assert denied.returncode == 77, denied.stderr
    assert "task 'deploy_all'" in denied.stderr, denied.stderr


def test_a_cannot_rule_on_a_host_denies_wherever_the_task_names_it(bed: Bed) -> None:
    """A forbidden host beside a harmless one, or inside a group of another name, is still that
    host: a `cannot ... on=[prod*]` rule denied only when every target matched."""
    (bed.project / "nexusfile.py").write_text(
        'from nexus_core import hosts, run, task\nhosts("staging", "prod-db.invalid")\n\n'
        '@task(on=["prod-db.invalid", "harmless.invalid"])\ndef mixed():\n    run("true")\n\n'
        '@task(on="staging")\ndef hidden():\n    run("true")\n',
        encoding="utf-8",
    )
    bed.write_policy(
        f'[roles.dev]\ncan = [{{ action = "run" }}, "list"]\ncannot = [{{ action = "run", on = ["prod*"] }}]\n\n'
        f'[[assign]]\nuser = "{bed.users["alice"]}"\nrole = "dev"\n'
    )
    for task, more in (("mixed", ()), ("mixed", ("-H", "prod-db.invalid")), ("hidden", ())):
        out = bed.nexus("alice", "run", task, *more)
        assert out.returncode == 77, (task, more, out.stdout, out.stderr)
        assert "cannot[0]" in out.stderr, out.stderr
    harmless = bed.nexus("alice", "run", "mixed", "-H", "harmless.invalid")  # allowed: it fails to connect
    assert harmless.returncode == 3 and "Cannot resolve host name" in harmless.stdout + harmless.stderr, harmless


def test_an_approval_a_required_sink_could_not_record_is_not_kept(bed: Bed) -> None:
    """Fail closed: `nexus approve` exits 2 when a required audit sink cannot write, and the
    request stays pending (it used to be approved all the same, and usable, unaudited)."""
    first = bed.nexus("alice", "run", "migrate", "--no-wait")
    assert first.returncode == 75, first.stderr
    rid = request_id(first.stderr)
    locked = bed.base / "locked"
    locked.mkdir(mode=0o755, exist_ok=True)  # root's: bob cannot write the sink's file there
    conf = bed.project / ".nexus" / "config.toml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{locked}/audit.log"\n')
    try:
        refused = bed.nexus("bob", "approve", rid, "--comment", "not recorded")
        assert refused.returncode == 2, refused.stderr
        no_traceback(refused)
    finally:
        shutil.rmtree(conf.parent)
    row = next(r for r in bed.approvals() if r["id"] == rid)
    assert row["status"] == "pending" and not row["decided_by"], row
    still = bed.nexus("alice", "run", "migrate", "--no-wait")
    assert still.returncode == 75 and f"Approval request {rid} for this plan is still pending" in still.stderr
    assert not (bed.out / "migrate").exists()


def test_an_approval_request_never_holds_a_secret_value(bed: Bed) -> None:
    """The request keeps the plan's text for the approvers; a real run's plan holds the secret
    values it resolved: they are masked there, in the approvals database and on screen."""
    value = "s3cr3t-approval-7c1e"
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    (bed.project / "nexusfile.py").write_text(
        'from nexus_core import run, secret, task\n\n\n@task(approval="required")\ndef migrate():\n'
        f"    run(f\"echo {{secret('DB_PW')}} > {bed.out}/migrate\")\n"
    )
    argv, environ = bed.command("alice", "secret", "set", "DB_PW", NEXUS_MASTER_KEY=key)
    stored = subprocess.run(argv, env=environ, cwd=bed.project, input=value, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    first = bed.nexus("alice", "run", "migrate", "--no-wait", NEXUS_MASTER_KEY=key)
    assert first.returncode == 75, first.stderr
    rid = request_id(first.stderr)
    shown = bed.nexus("bob", "policy", "approvals", rid)
    assert shown.returncode == 0 and "echo *** >" in shown.stdout, shown.stdout + shown.stderr
    assert value not in shown.stdout + shown.stderr + first.stdout + first.stderr
    assert all(value not in str(r["dry_run"]) for r in bed.approvals())


def test_a_dry_run_of_a_plan_with_a_secret_lets_that_plan_run(bed: Bed) -> None:
    """A real run's plan holds the secret's value, its dry run ***: their hashes never matched,
    and a require_dry_run task using secret() could never run."""
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    (bed.project / "nexusfile.py").write_text(
        'from nexus_core import require_dry_run, run, secret, task\n\nrequire_dry_run(tasks=["checked"], ttl=600)\n\n'
        f"@task\ndef checked():\n    run(f\"echo {{secret('API_TOKEN')}} > /dev/null; touch {bed.out}/checked\")\n"
    )
    argv, environ = bed.command("alice", "secret", "set", "API_TOKEN", NEXUS_MASTER_KEY=key)
    stored = subprocess.run(argv, env=environ, cwd=bed.project, input="tok-9f1e", capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    dry = bed.nexus("alice", "run", "--dry-run", "checked", now=CLOSED, NEXUS_MASTER_KEY=key)
    assert dry.returncode == 0, dry.stderr
    real = bed.nexus("alice", "run", "checked", now="2026-12-02T16:05:00+00:00", NEXUS_MASTER_KEY=key)
    assert real.returncode == 0, real.stderr
    assert (bed.out / "checked").exists()


EXEC_POLICY_RULE = '  {{ action = "run", tasks = ["exec"], on = ["web"] }},\n'


def test_exec_is_a_run_of_a_task_named_exec_on_its_target(bed: Bed) -> None:
    """`nexus exec` ran any command on any host whatever the policy said (a viewer ran commands on
    prod): it is now checked as `run` of a task named `exec` on the group TARGET names, or on
    each host's string: naming a host by its address is not a way round a group's rule."""
    project = bed.base / "execproj"
    project.mkdir(exist_ok=True)
    (project / "nexusfile.py").write_text(
        'from nexus_core import hosts\n\nhosts("web", "nobody@127.0.0.1:9")\nhosts("db", "nobody@127.0.0.2:9")\n',
        encoding="utf-8",
    )
    text = POLICY.replace('  "approve",\n]', EXEC_POLICY_RULE + '  "approve",\n]')
    assert text != POLICY
    bed.write_policy(text.format(alice=bed.users["alice"], group=bed.group, shared=bed.shared))
    try:
        carol = bed.nexus("carol", "exec", "-c", str(project), "local", "--", f"touch {bed.out}/exec-carol")
        assert carol.returncode == 77, carol.stderr
        assert "may not run exec on local" in carol.stderr and "Traceback" not in carol.stderr
        assert not (bed.out / "exec-carol").exists()
        for target in ("db", "nobody@127.0.0.2:9", "*", "nobody@127.0.0.1:9", "local"):
            proc = bed.nexus("alice", "exec", "-c", str(project), target, "--", "true")
            assert proc.returncode == 77, (target, proc.stderr)
            assert "Permission denied" in proc.stderr and "may not run exec on" in proc.stderr, proc.stderr
        allowed = bed.nexus("alice", "exec", "-c", str(project), "web", "--", "true")  # nothing listens on :9
        assert allowed.returncode == 3 and "Permission denied" not in allowed.stderr, allowed.stderr
        assert "policy.check" in bed.audited()
    finally:
        bed.write_policy()
