"""Output modes and terminal conventions: tree, -v, -q, JSON events, colour and symbols."""

from __future__ import annotations

import json
import re

PIPE = '''
from nexus_core import task, run

@task
def build():
    """Build it."""
    run("echo compiling; echo warning >&2")

@task(deps=[build])
def ship():
    run("echo shipping")
'''

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_normal_mode_prints_a_tree_per_task_and_a_summary(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship")
    assert out.code == 0, out
    assert "● build" in out.stdout and "● ship" in out.stdout
    assert "└─ echo shipping ✓" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("✓ Completed in")
    assert "compiling" not in out.stdout.splitlines(), "normal mode shows commands, not their output"


def test_verbose_streams_each_line_tagged_with_task_and_host(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship", "-v")
    assert "[build local] $ echo compiling; echo warning >&2" in out.stdout
    assert "[build local] > compiling" in out.stdout
    assert "[build local] > warning" in out.stdout
    assert "[ship local] > shipping" in out.stdout


def test_verbose_tags_every_line_of_a_multi_line_command(nexus_project):
    nexus_project.write(
        'from nexus_core import task, run\n\n@task\ndef build():\n    run("""\n    echo one\n    echo two\n    """)\n'
    )
    out = nexus_project.run("run", "build", "-v")
    assert out.code == 0, out
    lines = out.stdout.splitlines()
    assert any(line.startswith("[build local] $ ") and "echo one" in line for line in lines), out
    assert any(line.startswith("[build local]   ") and "echo two" in line for line in lines), out
    assert not any("^J" in line for line in lines), out
    assert "[build local] > one" in lines and "[build local] > two" in lines


def test_quiet_prints_one_line_per_task(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship", "-q")
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("✓ build (") and lines[1].startswith("✓ ship (")


def test_verbose_and_quiet_together_is_a_usage_error(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship", "-v", "-q")
    assert out.code == 2 and "cannot be used together" in out.stderr


def test_json_is_one_event_object_per_line_with_run_id_and_timestamp(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship", "--format", "json")
    assert out.code == 0
    events = [json.loads(line) for line in out.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "pipeline.start" and names[-1] == "pipeline.stop"
    for required in (
        "task.start",
        "task.stop",
        "command.start",
        "command.output",
        "command.stop",
        "host.start",
        "host.stop",
    ):
        assert required in names
    run_ids = {e["run_id"] for e in events}
    assert len(run_ids) == 1
    assert all(isinstance(e["ts"], float) for e in events)
    output = [e for e in events if e["event"] == "command.output"]
    assert {"stream": "stderr", "line": "warning"}.items() <= next(e for e in output if e["line"] == "warning").items()


def test_no_color_by_default_in_a_pipe_and_force_color_turns_it_on(nexus_project):
    nexus_project.write(PIPE)
    plain = nexus_project.run("run", "ship")
    assert not ANSI.search(plain.stdout)
    forced = nexus_project.run("run", "ship", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert ANSI.search(forced.stdout)
    no = nexus_project.run("run", "ship", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert not ANSI.search(no.stdout)


def test_nexus_no_emoji_uses_ascii_marks(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship", env={"NEXUS_NO_EMOJI": "1"})
    assert out.code == 0
    assert "✓" not in out.stdout and "●" not in out.stdout
    assert "[ok]" in out.stdout
    assert all(ord(c) < 128 for c in out.stdout)


def test_results_on_stdout_logs_on_stderr(nexus_project):
    nexus_project.write(PIPE)
    out = nexus_project.run("run", "ship", "--log-level", "debug", "--log-format", "json")
    assert out.code == 0
    logs = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert logs and all(entry["level"] == "debug" for entry in logs)
    assert "● ship" in out.stdout and "● ship" not in out.stderr


def test_failed_subscriber_does_not_stop_the_run():
    from nexus_core import events as ev

    seen: list[str] = []
    reports: list[str] = []
    bus = ev.EventBus("r1", report=reports.append)

    def broken(event: ev.Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("broken-sink", broken)
    bus.subscribe("good", lambda e: seen.append(e.name))
    bus.emit(ev.Log("r1", level="info", message="one"))
    bus.emit(ev.Log("r1", level="info", message="two"))
    assert seen == ["log", "log"]
    assert len(reports) == 1 and "broken-sink" in reports[0] and "boom" in reports[0]


def test_every_catalogue_event_serialises_to_json():
    import dataclasses

    from nexus_core import events as ev

    for cls in ev.CATALOGUE:
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in ("run_id",):
                kwargs[f.name] = "r"
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kwargs[f.name] = () if "tuple" in str(f.type) else 0 if f.type in ("float", "int") else "x"
        data = cls(**kwargs).to_dict()
        assert data["event"] == cls.name
        json.dumps(data)


def test_a_task_on_many_hosts_is_shown_grouped_by_outcome():
    import io

    from nexus_core import events as ev
    from nexus_core.output.render import GROUP_HOSTS, TreeRenderer
    from nexus_core.output.style import Style

    out = io.StringIO()
    r = TreeRenderer(Style(color=False, live=False, unicode=False, interactive=False), out=out)
    names = tuple(f"web-{i}" for i in range(GROUP_HOSTS * 4))
    r(ev.TaskStart("r", task="deploy", hosts=names))
    for i, name in enumerate(names):
        r(ev.HostStart("r", task="deploy", host=name))
        failed = i % 5 == 4
        reason = "exit code 1" if failed else ""
        r(ev.HostStop("r", task="deploy", host=name, status="failed" if failed else "ok", duration=0.5, reason=reason))
    r(ev.TaskStop("r", task="deploy", hosts=names, status="failed", duration=1.0))
    text = out.getvalue()
    assert f"deploy [{len(names)} hosts]" in text and "web-13," not in text.splitlines()[0]
    assert "160 hosts ok" in text
    assert "40 hosts failed: exit code 1 (web-4, web-9, web-14, web-19, web-24, +35 more)" in text
    assert len(text.strip().splitlines()) == 3  # the header and one line per outcome


def test_a_shared_error_names_its_first_hosts_in_the_headline_and_all_on_hosts():
    from nexus_core.engine import Failure
    from nexus_core.output.report import HEADLINE_HOSTS, failures_text
    from nexus_core.output.style import Style

    hosts = [f"db-{i}" for i in range(HEADLINE_HOSTS + 5)]
    failures = [
        Failure(task="t", host=h, command="false", status="failed", exit_code=1, reason="exit code 1") for h in hosts
    ]
    text = failures_text(Style(color=False, live=False, unicode=False, interactive=False), failures)
    assert f"(same error on {len(hosts)} hosts: db-0, db-1," in text and "+5 more)" in text
    assert "Hosts: " + ", ".join(hosts) in text


def test_a_file_operation_with_nothing_to_write_says_unchanged_in_the_tree(nexus_project):
    (nexus_project.root / "app.conf").write_text("port = 8080\n")
    (nexus_project.root / "out").mkdir()
    nexus_project.write("from nexus_core import task, upload\n\n@task\ndef deploy():\n    upload('app.conf', 'out/')\n")
    first = nexus_project.run("run", "deploy")
    assert first.code == 0 and "unchanged" not in first.stdout, first
    again = nexus_project.run("run", "deploy")
    assert again.code == 0, again
    line = next(ln for ln in again.stdout.splitlines() if "upload app.conf" in ln)
    assert line.rstrip().endswith("unchanged"), line
    verbose = nexus_project.run("run", "deploy", "-v")
    assert re.search(r"\S+ \d+ms unchanged$", verbose.stdout, re.M), verbose


def test_the_plan_shows_a_secret_write_by_what_it_does_and_keeps_multi_line_commands_in_the_tree():
    from nexus_core.model import Command
    from nexus_core.output.report import _shown
    from nexus_core.secrets.files import write_script

    script = write_script("DB_PASSWORD", "/etc/app/db.pass")
    secret = Command(script, input_secret="DB_PASSWORD")
    assert _shown(secret, "      ") == "write secret DB_PASSWORD to /etc/app/db.pass"
    assert _shown(Command("echo one\necho two"), "  │ ") == "echo one\n  │  echo two"
    assert _shown(Command("printf '\x1b[2J'"), "") == "printf '^[[2J'"


def _plain_style():
    from nexus_core.output.style import Style

    return Style(color=False, live=False, unicode=False, interactive=False)


def test_connection_errors_naming_each_host_are_one_block_in_the_plans_host_order():
    from nexus_core.engine import Failure
    from nexus_core.output.report import failures_text

    def refused(host: str, port: int = 2222) -> Failure:
        address = host.split(":")[0]
        return Failure(task="t", host=host, command="true", status="unreachable", exit_code=None,
                       reason=f"Connection refused ({address} port {port}) after 3 attempts",
                       hint=f"- Verify the host is reachable: ping {address}\n- nc -zv {address} {port}",
                       headline="SSH connection failed")  # fmt: skip

    plan = [f"10.0.0.{i}:2222" for i in (9, 10, 2, 11)]
    done = [plan[2], plan[0], plan[3], plan[1]]  # the order they failed in
    failures = [refused(h) for h in done] + [refused("10.0.0.12", port=22)]  # another port: another error
    text = failures_text(_plain_style(), failures, order=[*plan, "10.0.0.12"])
    assert text.count("Error: ") == 2, text
    assert f"Error: SSH connection failed (same error on 4 hosts: {', '.join(plan)})" in text
    assert "Hosts: " + ", ".join(plan) in text
    # the details are the first host's (in the plan's order)
    assert "Reason: Connection refused (10.0.0.9 port 2222) after 3 attempts" in text
    assert "ping 10.0.0.9" in text and "nc -zv 10.0.0.9 2222" in text
    assert "Host: 10.0.0.12" in text
    assert "Reason: Connection refused (10.0.0.12 port 22) after 3 attempts" in text
    # without the plan's order: in the order given
    assert "Hosts: " + ", ".join(done) in failures_text(_plain_style(), failures)


def test_host_keys_interrupts_and_timeouts_group_without_their_host_pgid_and_fingerprint():
    from nexus_core.engine import Failure
    from nexus_core.output.report import failures_text

    def fail(host: str, reason: str, status: str = "unreachable", code: int | None = None) -> Failure:
        return Failure(task="t", host=host, command="sleep 9", status=status, exit_code=code, reason=reason)

    key = "Host key not known for [{h}]:2222 ({kind} SHA256:{fp}); strict host key verification is on."
    failures = [
        fail(f"{h}:2222", key.format(h=h, kind="ssh-ed25519", fp=fp))
        for h, fp in (("10.0.0.1", "A" * 43), ("10.0.0.2", "B" * 43))
    ]
    failures.append(fail("10.0.0.3:2222", key.format(h="10.0.0.3", kind="ssh-rsa", fp="C" * 43)))
    for i, h in enumerate(("web-1", "web-2", "web-3")):
        failures.append(fail(h, f"interrupted (SIGINT); remote process group {340 + i} sent SIGINT ({h})",
                             status="interrupted"))  # fmt: skip
    for code, h in ((1, "db-1"), (1, "db-2"), (2, "db-3")):
        failures.append(fail(h, f"exit code {code}", status="failed", code=code))
    text = failures_text(_plain_style(), failures)
    assert text.count("Error: ") == 5, text  # ed25519 (2 hosts), rsa, interrupted (3), exit 1 (2), exit 2
    assert f"Reason: Host key not known for [10.0.0.1]:2222 (ssh-ed25519 SHA256:{'A' * 43})" in text
    assert "(same error on 2 hosts: 10.0.0.1:2222, 10.0.0.2:2222)" in text
    rsa = f"Reason: Host key not known for [10.0.0.3]:2222 (ssh-rsa SHA256:{'C' * 43})"
    assert f"Host: 10.0.0.3:2222\n  Task: t\n  {rsa}" in text
    assert "(same error on 3 hosts: web-1, web-2, web-3)" in text
    assert "Reason: interrupted (SIGINT); remote process group 340 sent SIGINT (web-1)" in text
    assert "(same error on 2 hosts: db-1, db-2)" in text and "Host: db-3" in text


def test_many_hosts_failing_alike_but_for_their_address_and_pgid_are_one_outcome_line():
    import io

    from nexus_core import events as ev
    from nexus_core.output.render import TreeRenderer

    out = io.StringIO()
    r = TreeRenderer(_plain_style(), out=out)
    names = tuple(f"10.0.{i // 200}.{i % 200 + 1}:56393" for i in range(200))
    r(ev.TaskStart("r", task="deploy", hosts=names))
    for i, name in reversed(list(enumerate(names))):
        address = name.split(":")[0]
        if i < 100:
            reason, status = f"Connection refused ({address} port 56393) after 3 attempts", "unreachable"
        elif i < 150:
            status = "stopped"
            reason = f"interrupted (SIGINT); remote process group {1000 + i} sent SIGINT ({name})"
        else:
            status = "timeout"
            reason = f"timed out after 5s; remote process group {i} {i + 1} sent SIGTERM/KILL"
        r(ev.HostStart("r", task="deploy", host=name))
        r(ev.HostStop("r", task="deploy", host=name, status=status, duration=0.5, reason=reason))
    r(ev.TaskStop("r", task="deploy", hosts=names, status="failed", duration=1.0))
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 4, lines  # the header and one line per outcome
    refused = "100 hosts unreachable: Connection refused (<host> port 56393) after 3 attempts"
    assert f"{refused} (10.0.0.1:56393, 10.0.0.2:56393," in lines[1], lines
    stopped = "50 hosts stopped: interrupted (SIGINT); remote process group <pgid> sent SIGINT (<host>)"
    assert stopped in lines[2], lines
    assert "50 hosts timeout: timed out after 5s; remote process group <pgid> sent SIGTERM/KILL" in lines[3]


def test_a_changed_host_key_on_many_hosts_is_one_error_whatever_line_of_known_hosts_held_each():
    from nexus_core.output.alike import merged, names_of, shape

    def changed(address: str, line: int, old: str) -> str:
        name = f"[{address}]:2222"
        return (
            f"HOST KEY CHANGED for {name} - possible man-in-the-middle attack!\n"
            f"Expected: ssh-ed25519 SHA256:{old * 43} (from /home/u/kh line {line})\n"
            f"Got:      ssh-ed25519 SHA256:{'Z' * 43}\n"
            f"- If the change is expected (host reinstalled), remove the old key: "
            f"ssh-keygen -R '{name}' -f /home/u/kh   (or delete line {line} of /home/u/kh)"
        )

    a = shape(changed("10.0.0.1", 1, "A"), names_of("10.0.0.1:2222"))
    b = shape(changed("10.0.0.2", 2, "B"), names_of("10.0.0.2:2222"))
    assert a.key == b.key
    text = merged([a, b])
    assert "(from /home/u/kh line <line>)" in text and "delete line <line> of /home/u/kh" in text, text
    # Other numbers stay: a different known_hosts file, or another key type, is another error.
    c = shape(changed("10.0.0.3", 3, "C").replace("/home/u/kh", "/etc/kh"), names_of("10.0.0.3:2222"))
    assert c.key != a.key


def test_a_hosts_own_name_is_set_aside_but_ports_users_and_other_names_are_not():
    from nexus_core.output.alike import merged, names_of, shape

    def key(text: str, label: str) -> str:
        return shape(text, names_of(label)).key

    assert names_of("deploy@web-1:2222") == ("deploy@web-1:2222", "web-1")
    assert names_of("[2001:db8::1]:22") == ("[2001:db8::1]:22", "2001:db8::1")
    assert key("refused (web-1 port 22)", "web-1") == key("refused (web-2 port 22)", "web-2")
    assert key("refused (web-1 port 22)", "web-1") != key("refused (web-2 port 2222)", "web-2")
    assert key("auth failed for deploy@web-1", "web-1") != key("auth failed for root@web-2", "web-2")
    assert key("web-12 is down", "web-1") != key("web-13 is down", "web-2")  # another host, named
    assert key("via web-1.example.com", "web-1") != key("via web-2.example.com", "web-2")
    assert key("exit code 1", "a") != key("exit code 2", "b")
    alike = [shape(f"group {g} on {h}", names_of(h)) for g, h in ((7, "x-1"), (7, "x-2"))]
    assert merged(alike) == "group 7 on <host>" and merged(alike[:1]) == "group 7 on x-1"


def test_a_dry_run_of_a_fleet_names_its_size_not_every_host(nexus_project):
    hosts = ", ".join(f"'127.0.0.{n}:1'" for n in range(2, 14))
    nexus_project.write(
        "from nexus_core import config, hosts, run, task, handler, hostname\n"
        "config(ssh_connect_timeout=2, ssh_connect_attempts=1)\n"
        f"hosts('fleet', {hosts})\n"
        "@handler\ndef restart():\n    run('echo restart ' + hostname())\n"
        "@task(on='fleet')\ndef check():\n    run('uptime', notify=restart)\n"
    )
    dry = nexus_project.run("run", "check", "-n")
    assert "check [12 hosts: 127.0.0.2:1, 127.0.0.3:1, 127.0.0.4:1, +9 more]" in dry.stdout, dry
    assert "handler restart (if notified; as on 127.0.0.2:1):" in dry.stdout, dry


def test_many_problems_of_one_kind_at_one_line_are_counted_after_the_first_three() -> None:
    """A variable missing on every host of a large inventory printed one block per host
    (300,000 lines for 100,000 hosts); the others of a line and kind are counted now."""
    from nexus_core.model import Location, Problem
    from nexus_core.output.report import problems_block
    from nexus_core.output.style import Style

    at, other = Location("nexusfile.py", 5), Location("nexusfile.py", 9)
    problems = [Problem(f"host web-{i} has no variable 'env'", at, "set it", "host-var") for i in range(1, 101)]
    problems += [Problem("task 'x' runs no commands", other, "add run(...)", "empty-task")]
    text = problems_block(Style(color=False, live=False, unicode=True, interactive=False), problems)
    assert "Validation failed (101 problems)" in text
    assert "web-3 has" in text and "web-4 has" not in text
    assert "nexusfile.py:5: ... and 97 more problems like these (--format json lists them all)" in text
    assert "nexusfile.py:9: task 'x' runs no commands" in text


def test_log_levels_info_and_warning_log_the_run_s_milestones_on_stderr(nexus_project):
    """--log-level info and warning printed nothing at all: info is each task's start and end
    (and each connection), warning each retry."""
    nexus_project.write(
        "from nexus_core import run, task\n\n@task\ndef b():\n    run('echo hi')\n\n"
        "@task(deps=[b])\ndef r():\n    run('exit 1', retries=1, retry_delay=0.1)\n"
    )
    info = nexus_project.run("run", "r", "--log-level", "info")
    assert info.code == 1, info
    lines = [line for line in info.stderr.splitlines() if line.startswith("nexus: ")]
    assert lines[0].startswith("nexus: INFO: run ") and lines[0].endswith("started: b, r (1 host)"), lines
    assert "nexus: INFO: task b started on local" in lines and any(
        line.startswith("nexus: INFO: task b ok in ") for line in lines
    ), lines
    assert "nexus: WARNING: task r on local failed (exit code 1): attempt 2 of 2 in" in info.stderr, info
    assert any(line.startswith("nexus: INFO: run ") and "failed in" in line for line in lines), lines
    assert "● b" not in info.stderr  # results stay on stdout
    warning = nexus_project.run("run", "r", "--log-level", "warning", "--log-format", "json")
    logged = [json.loads(line) for line in warning.stderr.splitlines() if line.startswith("{")]
    assert [entry["level"] for entry in logged] == ["warning"], logged
    plain = nexus_project.run("run", "r")
    assert "nexus: WARNING" not in plain.stderr and "nexus: INFO" not in plain.stderr, plain


def test_a_multi_line_command_reads_as_lines_in_the_tree_and_the_failure_report(nexus_project):
    """It was one line joined by ^J: `Command: ^Jecho one^Jfalse^Jecho three^J`."""
    nexus_project.write(
        'from nexus_core import run, task\n\n@task\ndef t():\n    run("""\necho one\nfalse\necho three\n""")\n'
    )
    out = nexus_project.run("run", "t")
    assert out.code == 1, out
    assert "^J" not in out.stdout + out.stderr, out
    assert "└─ echo one … (+2 lines) ✗" in out.stdout, out
    assert "  Command: (3 lines)\n    echo one\n    false\n    echo three\n  Exit code: 1" in out.stderr, out


def test_preflight_errors_alike_on_many_hosts_are_one_entry_naming_them():
    from nexus_core.api import CheckResult
    from nexus_core.output.report import preflight_errors

    def refused(i: int) -> CheckResult:
        address = f"10.0.0.{i}"
        return CheckResult(
            "Connectivity",
            "fail",
            f"Connection refused ({address} port 2222)",
            host=f"{address}:2222",
            hint=f"- Check if SSH is running: nc -zv {address} 2222",
        )

    auth = CheckResult("Authentication", "fail", "Authentication failed for deploy@db-1", host="db-1", hint="")
    text = preflight_errors(_plain_style(), [refused(i) for i in range(1, 9)] + [auth])
    lines = text.splitlines()
    assert lines[0] == "Pre-flight checks failed (9 errors):", text
    assert lines[1] == (
        "  1. 8 hosts (10.0.0.1:2222, 10.0.0.2:2222, 10.0.0.3:2222, 10.0.0.4:2222, 10.0.0.5:2222 and 3 more): "
        "Connection refused (<host> port 2222)"
    ), text
    assert text.count("nc -zv") == 1 and "  2. db-1: Authentication failed for deploy@db-1" in text, text
    # one host: as before
    single = preflight_errors(_plain_style(), [refused(7)])
    assert "  1. 10.0.0.7:2222: Connection refused (10.0.0.7 port 2222)" in single, single
