"""The policy file, change windows and the nexusfile's compliance functions, without other users."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_core.policy.model import PolicyError, load_policy
from nexus_core.policy.windows import ChangeWindow, WindowError

NY = "America/New_York"


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_window_open_closed_and_next_start_across_dst() -> None:
    w = ChangeWindow.parse("prod", days=["tuesday", "thu"], hours="10-16", timezone=NY)
    assert w.days == (1, 3) and (w.start, w.end) == (10, 16)
    assert w.is_open(at("2026-12-03T15:00:00+00:00"))  # Thursday 10:00 EST
    assert not w.is_open(at("2026-12-03T21:00:00+00:00"))  # Thursday 16:00 EST: the end hour is excluded
    assert w.next_start(at("2026-12-02T16:00:00+00:00")) == dt.datetime(2026, 12, 3, 10, tzinfo=w.zone())
    # Saturday before the switch to summer time (8 March 2026): the next Tuesday opens at 10:00 EDT (14:00Z)
    nxt = w.next_start(at("2026-03-07T12:00:00+00:00"))
    assert nxt.astimezone(dt.UTC) == at("2026-03-10T14:00:00+00:00")
    assert w.describe() == "Tue, Thu 10:00-16:00 America/New_York"
    assert ChangeWindow.parse("all").is_open(at("2026-01-01T03:00:00+00:00"))
    assert (ChangeWindow.parse("r", hours=range(8, 18)).start, ChangeWindow.parse("r", hours=(8, 18)).end) == (8, 18)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": ["tuesdy"]}, "unknown day 'tuesdy'; did you mean 'tuesday'?"),
        ({"days": []}, "days must be a list of day names"),
        ({"hours": "10-10"}, "must be two different hours"),
        ({"hours": "24-4"}, "the start 0-23 and the end 0-24"),
        ({"hours": "ten-four"}, "hours must be two whole hours"),
        ({"timezone": "Europe/Atlantis"}, "unknown timezone 'Europe/Atlantis'"),
    ],
)
def test_window_values_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WindowError) as caught:
        ChangeWindow.parse("prod", **kwargs)  # type: ignore[arg-type]
    assert message in caught.value.message and caught.value.hint


POLICY = """\
[roles.viewer]
can = ["list", "status", "logs"]

[roles.deployer]
inherit = ["viewer"]
can = [{ action = "run", tasks = ["deploy*"], on = ["staging", "web-*"] }]
cannot = [{ action = "run", tasks = ["deploy-db"] }]

[roles.root]
can = ["admin"]

[[assign]]
user = "alice"
role = "deployer"

[[assign]]
group = "ops"
roles = ["root"]

[approvals]
tasks = ["migrate*"]
ttl = 600

[change_windows.prod]
days = ["mon"]
tasks = ["deploy*"]

[require_dry_run]
tasks = ["deploy"]
"""


def test_decisions_follow_inheritance_cannot_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY, encoding="utf-8")
    p = load_policy(str(path))
    d = p.decide("alice", [], "run", "deploy-web", ["staging"])
    assert d.allowed and d.rule.startswith("roles.deployer.can[0]") and d.rule.endswith(f"{path}:6")
    assert not p.decide("alice", [], "run", "deploy-web", ["prod"]).allowed
    denied = p.decide("alice", [], "run", "deploy-db", ["staging"])
    assert not denied.allowed and denied.rule.startswith("roles.deployer.cannot[0]")
    assert p.decide("alice", [], "logs").rule.startswith("roles.viewer.can[2]")
    assert p.decide("bob", ["ops"], "approve").allowed
    nobody = p.decide("carol", ["users"], "list")
    assert not nobody.allowed and "no role assigned" in nobody.rule and "carol: list: denied" in nobody.explain()
    assert p.approval_tasks == ("migrate*",) and p.approval_ttl == 600
    assert p.window_tasks == {"prod": ("deploy*",)} and p.dry_run_tasks == ("deploy",)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[roles.a]\ncan = ["list"]\n[roles.b]\ninherit = ["c"]\n', 4, "inherits unknown role 'c'"),
        ('[roles.a]\ncan = [{ action = "run", hosts = ["x"] }]\n', 2, "unknown key 'hosts'"),
        ("[[assign]]\nrole = 'a'\n", 1, "exactly one of user"),
        ("[audit]\n", 1, "unknown section 'audit'"),
        ("[approvals]\nttl = -1\n", 2, "approvals.ttl must be a number of seconds > 0"),
        ('[testing]\nclock_override = "yes"\n', 1, "clock_override must be true or false"),  # was read as false
        ("[testing]\nclock_overide = true\n", 1, "unknown key 'clock_overide'"),
        # a misspelt key left the control off without a word
        ('[approvals]\ntask = ["deploy*"]\n', 1, "approvals: unknown key 'task'"),
        ("[approvals]\nTTL = 5\n", 1, "approvals: unknown key 'TTL'"),
        ('[require_dry_run]\ntaks = ["deploy"]\n', 1, "require_dry_run: unknown key 'taks'"),
    ],
)
def test_policy_mistakes_name_their_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert message in caught.value.message and caught.value.where == f"{path}:{line}" and caught.value.hint


def test_the_names_are_public() -> None:
    import nexus_core
    from nexus_core import change_window, require_dry_run

    assert callable(change_window) and callable(require_dry_run)
    assert {"change_window", "require_dry_run"} <= set(nexus_core.__all__)


def nexus(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEXUS_STATE_DB": str(cwd / "state.db"), "NO_COLOR": "1", **extra}
    env.pop("NEXUS_POLICY", None)
    return subprocess.run(
        [sys.executable, "-m", "nexus_core", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_nexusfile_mistakes_exit_2_with_file_line(tmp_path: Path) -> None:
    (tmp_path / "nexusfile.py").write_text(
        "from nexus_core import change_window, task, run\n\n"
        'change_window("prod", days=["funday"])\n\n'
        '@task(change_window="nope")\n'
        "def a():\n    run('true')\n",
        encoding="utf-8",
    )
    proc = nexus(tmp_path, "run", "a")
    assert proc.returncode == 2 and "nexusfile.py:3" in proc.stderr and "unknown day 'funday'" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "nexusfile.py").write_text(
        "from nexus_core import task, run\n\n@task(change_window='nope')\ndef a():\n    run('true')\n",
        encoding="utf-8",
    )
    for args in (("run", "a"), ("validate",), ("run", "a", "--dry-run")):  # validate and -n said it was valid
        proc = nexus(tmp_path, *args)
        assert proc.returncode == 2 and "unknown change window 'nope'" in proc.stderr, (args, proc.stderr)
        assert "nexusfile.py:3" in proc.stderr, (args, proc.stderr)
    (tmp_path / "nexusfile.py").write_text(
        "from nexus_core import task, run\n\n@task(approval='maybe')\ndef a():\n    run('true')\n", encoding="utf-8"
    )
    proc = nexus(tmp_path, "run", "a")
    assert proc.returncode == 2 and "approval must be one of required" in proc.stderr


OVERNIGHT = """\
from nexus_core import change_window, task, run

change_window("night", days=["sat"], hours="22-4", timezone="Europe/Berlin")

@task(change_window="night")
def patch():
    run("echo patched")
"""


@pytest.mark.skipif(os.path.exists("/etc/nexus/policy.toml"), reason="a system policy is installed here")
def test_a_window_across_midnight_and_a_clock_that_is_no_time(tmp_path: Path) -> None:
    """Saturday 22:00 to Sunday 04:00 Berlin time; a mistyped NEXUS_TEST_NOW is exit 2, not an internal error."""
    (tmp_path / "nexusfile.py").write_text(OVERNIGHT, encoding="utf-8")
    for when, code in (
        ("2026-12-05T21:30:00+00:00", 0),  # Saturday 22:30 in Berlin
        ("2026-12-06T02:59:00+00:00", 0),  # Sunday 03:59
        ("2026-12-06T03:00:00+00:00", 77),  # Sunday 04:00: closed
        ("2026-12-04T22:00:00+00:00", 77),  # Friday 23:00: the window's day is Saturday
    ):
        proc = nexus(tmp_path, "run", "patch", NEXUS_TEST_NOW=when)
        assert proc.returncode == code, (when, proc.stdout, proc.stderr)
    assert "Sat 22:00-04:00 (to the next day) Europe/Berlin" in proc.stderr
    assert "Next window opens: Sat 2026-12-05 22:00 CET" in proc.stderr, proc.stderr
    for wrong in ("yesterday", "1e400", "nan"):
        proc = nexus(tmp_path, "run", "patch", NEXUS_TEST_NOW=wrong)
        assert proc.returncode == 2 and f"NEXUS_TEST_NOW={wrong!r} is not a time" in proc.stderr, proc.stderr
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(os.path.exists("/etc/nexus/policy.toml"), reason="a system policy is installed here")
def test_a_plain_run_imports_nothing_of_the_policy(tmp_path: Path) -> None:
    (tmp_path / "nexusfile.py").write_text("from nexus_core import task, run\n\n@task\ndef a():\n    run('true')\n")
    env = {**os.environ, "NEXUS_STATE_DB": str(tmp_path / "state.db"), "PYTHONPROFILEIMPORTTIME": "1"}
    env.pop("NEXUS_POLICY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_core", "run", "a"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "nexus_core.policy" not in proc.stderr and "nexus_core.cli.policy" not in proc.stderr


def test_the_access_policy_and_the_plugin_allowlist_share_one_file(tmp_path: Path) -> None:
    # /etc/nexus/policy.toml is both the plugin allowlist's file (allow = [...]) and the access
    # policy's: each side reads its own keys, and a file with only the other's is not its policy.
    from nexus_core.plugins import Policy as PluginPolicy
    from nexus_core.policy.local import declares_access

    roles = '[roles.viewer]\ncan = ["list"]\n\n[[assign]]\nuser = "alice"\nrole = "viewer"\n'
    both = tmp_path / "both.toml"
    both.write_text('allow = ["nexus-ssh"]\n' + roles)
    only_roles = tmp_path / "roles.toml"
    only_roles.write_text(roles)
    only_allow = tmp_path / "allow.toml"
    only_allow.write_text('allow = ["nexus-ssh"]\n')
    typo = tmp_path / "typo.toml"
    typo.write_text('alow = ["nexus-ssh"]\n')

    plugins = PluginPolicy.from_environment({"NEXUS_POLICY_FILE": str(both)})
    assert plugins.restricts and not plugins.broken and not plugins.problems
    assert plugins.check("nexus-ssh", "0.1.0")[0] and not plugins.check("nexus-aws", "0.1.0")[0]
    assert load_policy(str(both)).decide("alice", [], "list").allowed
    assert declares_access(str(both)) and declares_access(str(only_roles)) and declares_access(str(typo))
    assert not declares_access(str(only_allow))  # an allowlist alone does not deny every command

    alone = PluginPolicy.from_environment({"NEXUS_POLICY_FILE": str(only_roles)})
    assert not alone.restricts and not alone.broken  # roles alone do not block every plugin
    broken = PluginPolicy.from_environment({"NEXUS_POLICY_FILE": str(typo)})
    assert broken.broken  # a typo still fails closed


def test_each_rule_is_named_at_its_own_line(tmp_path: Path) -> None:
    # Denials cited the first line after the role's header that named the rule's action.
    path = tmp_path / "policy.toml"
    path.write_text(
        '# access\n[roles.viewer]\ncan = ["list", \'status\', "logs"]  # read only\n\n[roles.deployer]\n'
        'inherit = ["viewer"]\ncan = [\n  {action="run", tasks=["build", "deploy*"]},\n'
        '  {action="run", on=["staging"]},\n  "approve",\n]\ncannot = [{action="run", tasks=["drop*"]}]\n',
        encoding="utf-8",
    )
    p = load_policy(str(path))
    lines = {r.name: r.line for role in p.roles.values() for r in (*role.can, *role.cannot)}
    assert lines == {
        "roles.viewer.can[0]": 3, "roles.viewer.can[1]": 3, "roles.viewer.can[2]": 3,
        "roles.deployer.can[0]": 8, "roles.deployer.can[1]": 9, "roles.deployer.can[2]": 10,
        "roles.deployer.cannot[0]": 12,
    }  # fmt: skip
    misspelt = tmp_path / "misspelt.toml"
    misspelt.write_text('[roles.a]\ncan = ["list"]\n\n[role.viewer]\ncan = ["list"]\n', encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(misspelt))
    assert caught.value.where == f"{misspelt}:4", caught.value.where
