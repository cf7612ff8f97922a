"""Host identity (user, port and transport make a host) and host attributes (tags, vars).

Two hosts that differ only in user, port or transport are two hosts everywhere: plan,
labels, events, state and resume. Attributes describe a host and never change which host
it is.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus_core.hosts import HostAttributeError, assign_labels, check_tags, check_vars, format_host, parse_host
from nexus_core.loader import load_project
from nexus_core.model import LOCAL, FrozenMap, Host, Problem
from nexus_core.plan import Plan, ValidationFailed, build_plan
from nexus_core.plugins import builtin_registry
from nexus_core.registry import Registry
from nexus_core.testing import NexusProject

HEADER = "from nexus_core import config, current_host, host, host_tags, host_var, hostname, hosts, run, task\n"


def registry() -> Registry:
    """The built-ins plus a stand-in ``ssh`` executor, so plans may name remote hosts."""
    reg = builtin_registry()
    reg.executors["ssh"] = type("FakeSSHExecutor", (), {})  # type: ignore[assignment]
    return reg


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "nexusfile.py"
    path.write_text(HEADER + textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def plan_of(path: Path) -> Plan:
    return build_plan(load_project(str(path)), registry())


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ValidationFailed) as err:
        plan_of(path)
    return err.value.problems


def line_of(path: Path, marker: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(marker)


def labels(plan: Plan, task: str) -> list[str]:
    return [hp.host.label for hp in plan.tasks[task].hosts]


# --- identity -------------------------------------------------------------------------------------

users = st.one_of(st.none(), st.sampled_from(["deploy", "root", "ops", "svc_1"]))
names = st.sampled_from(["web-1", "web-1.example.com", "10.0.0.7", "2001:db8::1", "db"])
ports = st.one_of(st.none(), st.sampled_from([22, 2222, 65535]))
transports = st.sampled_from(["ssh", "agent", "azure"])
hosts_st = st.builds(lambda t, u, n, p: Host(name=n, user=u, port=p, transport=t), transports, users, names, ports)


@given(hosts_st, hosts_st)
def test_distinct_user_address_port_transport_give_distinct_keys(a: Host, b: Host) -> None:
    same = (a.transport, a.user, a.name, a.port) == (b.transport, b.user, b.name, b.port)
    assert (a.key == b.key) == same
    # Written out and read back, a host keeps its identity.
    assert parse_host(format_host(a)).key == a.key


@given(st.lists(hosts_st, min_size=1, max_size=12))
def test_labels_are_unique_and_a_host_alone_keeps_its_short_label(hosts: list[Host]) -> None:
    found = assign_labels([*hosts, LOCAL])
    distinct = {h.key: h for h in [*hosts, LOCAL]}
    assert set(found) == set(distinct)
    assert len(set(found.values())) == len(found), found
    assert found[LOCAL.key] == "local"
    for key, host in distinct.items():
        sharing = [h for h in distinct.values() if h.short_label == host.short_label]
        if len(sharing) == 1:
            assert found[key] == host.short_label


def test_labels_only_grow_when_two_hosts_share_one() -> None:
    hosts = [parse_host(t) for t in ("deploy@web-1", "root@web-1", "web-1", "web-1:2222", "agent://db", "db", "x@y")]
    assert list(assign_labels(hosts).values()) == [
        "deploy@web-1",
        "root@web-1",
        "web-1",
        "web-1:2222",
        "agent://db",
        "db",
        "y",
    ]


def test_two_users_on_one_machine_are_two_hosts_of_the_plan(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts("web", "deploy@web-1", "root@web-1", "web-2", "deploy@web-2", "web-3:2222")

        @task(on="web")
        def deploy():
            run("echo " + hostname())

        @task(on=["deploy@web-1", "deploy@web-1", "web-3:2222", "local"])
        def check():
            run("true")
        """,
    )
    plan = plan_of(path)
    assert labels(plan, "deploy") == ["deploy@web-1", "root@web-1", "web-2", "deploy@web-2", "web-3:2222"]
    assert labels(plan, "check") == ["deploy@web-1", "web-3:2222", "local"]
    assert [h.label for h in plan.hosts] == [*labels(plan, "deploy"), "local"]
    assert [c.cmd for hp in plan.tasks["deploy"].hosts for c in hp.commands][:2] == ["echo web-1", "echo web-1"]
    data = plan.to_dict()
    shown = [(h["user"], h["name"], h["label"]) for h in data["tasks"]["deploy"]["hosts"] for h in [h["host"]]]
    assert shown[:2] == [("deploy", "web-1", "deploy@web-1"), ("root", "web-1", "root@web-1")]
    assert plan.tasks["deploy"].batches == (tuple(labels(plan, "deploy")),)


def test_a_host_written_once_keeps_todays_label(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        @task(on=["deploy@web-1", "ops@[2001:db8::1]:2222", "ssh://web-2"])
        def deploy():
            run("true")
        """,
    )
    assert labels(plan_of(path), "deploy") == ["web-1", "[2001:db8::1]:2222", "web-2"]


# --- "local" in a group --------------------------------------------------------------------------


def test_local_in_a_group_is_this_machine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts("both", "local", "web-1")
        hosts("here", "local")

        @task(on="both")
        def a():
            run("true")

        @task(on="here")
        def b():
            run("true")
        """,
    )
    plan = plan_of(path)
    assert plan.tasks["a"].hosts[0].host == LOCAL
    assert labels(plan, "a") == ["local", "web-1"]
    assert [hp.host.is_local for hp in plan.tasks["b"].hosts] == [True]
    assert plan.tasks["b"].remote is False


def test_local_in_a_group_runs_here(nexus_project: NexusProject) -> None:
    nexus_project.write(
        """
        from nexus_core import hosts, run, task
        hosts("here", "local")

        @task(on="here")
        def hello():
            run("echo hello from a group")
        """
    )
    out = nexus_project.run("run", "hello")
    assert out.code == 0, out
    assert "hello from a group" in out.stdout or "hello" in out.stdout


# --- attributes ----------------------------------------------------------------------------------


def test_attributes_are_frozen_plain_data_in_the_plan_and_its_json(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts("web", host("web-1", tags=["blue", "eu"], vars={"port": 8080, "peers": ["a", "b"]}), "web-2")

        @task(on="web")
        def deploy():
            port = host_var("port", 80)
            run(f"serve --port {port} --tags {','.join(host_tags())} --user {current_host().user}")
        """,
    )
    plan = plan_of(path)
    web1, web2 = (hp.host for hp in plan.tasks["deploy"].hosts)
    assert web1.tags == ("blue", "eu")
    assert isinstance(web1.vars, FrozenMap) and web1.vars["peers"] == ("a", "b")
    assert web2.tags == () and dict(web2.vars) == {}
    assert [c.cmd for hp in plan.tasks["deploy"].hosts for c in hp.commands] == [
        "serve --port 8080 --tags blue,eu --user None",
        "serve --port 80 --tags  --user None",
    ]
    data = json.loads(json.dumps(plan.to_dict()))
    first = data["tasks"]["deploy"]["hosts"][0]["host"]
    assert first["tags"] == ["blue", "eu"]
    assert first["vars"] == {"port": 8080, "peers": ["a", "b"]}
    assert first["facts"] == {} and first["resource_ids"] == {}
    assert data["hosts"][0]["vars"]["port"] == 8080
    # Attributes do not change identity: the same host with or without them is one host.
    assert web1 == parse_host("web-1") and web1.key == parse_host("web-1").key


def test_attributes_belong_to_the_host_wherever_it_is_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts("web", host("web-1", tags=["blue"], vars={"port": 8080}))
        hosts("canary", host("web-1", tags=["canary"], vars={"weight": 5}))

        @task(on=["web-1", host("deploy@web-1", tags=["other"])])
        def deploy():
            run(f"echo {sorted(host_tags())} {host_var('port', None)} {host_var('weight', None)}")
        """,
    )
    plan = plan_of(path)
    assert [c.cmd for hp in plan.tasks["deploy"].hosts for c in hp.commands] == [
        "echo ['blue', 'canary'] 8080 5",
        "echo ['other'] None None",
    ]
    assert labels(plan, "deploy") == ["web-1", "deploy@web-1"]


def test_one_variable_with_two_values_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts("a", host("web-1", vars={"port": 8080}))  # first
        hosts("b", host("web-1", vars={"port": 9090}))  # second

        @task(on="a")
        def t():
            run("true")
        """,
    )
    found = [p for p in problems_of(path) if "variable 'port'" in p.message]
    assert len(found) == 1, found
    assert found[0].location is not None and found[0].location.line == line_of(path, "# second")
    assert f"8080 at line {line_of(path, '# first')} and 9090 here" in found[0].message


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ('host("web-1", tags=5)', "tags= must be a list of strings, not int"),
        ('host("web-1", tags=["ok", 3])', "tag 3 is not a non-empty string"),
        ('host("web-1", tags=["two words"])', "without spaces"),
        ('host("web-1", vars=[1, 2])', "vars= must be a dict"),
        ('host("web-1", vars={"when": object()})', "vars['when'] is a object"),
        ('host("web-1", vars={1: "x"})', "keys must be non-empty strings"),
        ('host("web-1", vars={"s": {1, 2}})', "vars['s'] is a set"),
        ('host("web-1", tag=["x"])', "host() has no option 'tag'"),
        ('host("web 1")', "contains whitespace"),
    ],
)
def test_bad_attributes_are_validation_errors_at_their_line(tmp_path: Path, call: str, fragment: str) -> None:
    path = write(
        tmp_path,
        f"""
        hosts("web",
              {call},  # here
              "web-2")

        @task(on="web")
        def t():
            run("true")
        """,
    )
    found = [p for p in problems_of(path) if fragment in p.message]
    assert found, [p.message for p in problems_of(path)]
    assert found[0].location is not None and found[0].location.line == line_of(path, "# here")


def test_unknown_host_option_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        @task(on=[host("web-1", tag=["x"])])
        def t():
            run("true")
        """,
    )
    found = [p for p in problems_of(path) if "no option 'tag'" in p.message]
    assert found and "did you mean 'tags'" in found[0].hint


def test_an_unset_host_variable_is_reported_at_the_body_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        @task(on=[host("web-1", vars={"port": 1}), "web-2"])
        def t():
            run(f"serve {host_var('port')}")  # body
        """,
    )
    found = [p for p in problems_of(path) if "has no variable 'port'" in p.message]
    assert len(found) == 1 and "web-2" in found[0].message
    assert found[0].location is not None and found[0].location.line == line_of(path, "# body")
    assert 'host_var("port", default)' in found[0].hint


def test_context_functions_outside_a_body_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        host_var("x")  # top

        @task
        def t():
            run("true")
        """,
    )
    found = [p for p in problems_of(path) if "host_var() is called outside a task body" in p.message]
    assert found and found[0].location is not None and found[0].location.line == line_of(path, "# top")


def test_local_body_sees_the_local_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts("here", host("local", tags=["dev"], vars={"port": 3}))

        @task(on="here")
        def t():
            run(f"echo {current_host().label} {host_tags()} {host_var('port')}")
        """,
    )
    plan = plan_of(path)
    assert [c.cmd for hp in plan.tasks["t"].hosts for c in hp.commands] == ["echo local ('dev',) 3"]


@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=3), inner)),
        max_leaves=10,
    )
)
def test_frozen_vars_thaw_back_to_the_same_json(value: Any) -> None:
    frozen = check_vars({"v": value})
    hash(frozen)  # frozen all the way down
    assert Host("h", vars=frozen).to_dict()["vars"] == json.loads(json.dumps({"v": value}))


def test_check_tags_accepts_one_string_and_drops_repeats() -> None:
    assert check_tags("blue") == ("blue",)
    assert check_tags(["b", "a", "b"]) == ("b", "a")
    with pytest.raises(HostAttributeError):
        check_tags([""])


# --- resume matches hosts by identity ------------------------------------------------------------


def _record(plan: Plan, hosts: dict[tuple[str, str], str], commands: dict[tuple[str, str, int], str]) -> Any:
    from nexus_core.state.store import RunRecord

    return RunRecord(
        id="r1", nexusfile=plan.nexusfile, nexusfile_hash="", requested=[], options={},
        plan=json.loads(json.dumps(plan.to_dict())), status="interrupted", started=0.0, ended=None,
        exit_code=None, pid=0, machine="", resumes=0,
        hosts={k: {"status": v} for k, v in hosts.items()},
        commands={k: {"status": v} for k, v in commands.items()},
    )  # fmt: skip


def test_resume_reads_each_login_under_its_own_label(tmp_path: Path) -> None:
    from nexus_core.state.resume import plan_changes, resume_point

    path = write(
        tmp_path,
        """
        @task(on=["deploy@web-1", "root@web-1"])
        def t():
            run("one")
            run("two")
        """,
    )
    plan = plan_of(path)
    record = _record(
        plan,
        {("t", "deploy@web-1"): "ok", ("t", "root@web-1"): "running"},
        {("t", "root@web-1", 0): "ok"},
    )
    point = resume_point(record, plan)
    assert point.done_hosts == {("t", "deploy@web-1")}
    assert point.start_at == {("t", "root@web-1"): 1}
    assert point.uncertain == {("t", "root@web-1", 1)}
    assert plan_changes(record, plan, point) == []


def test_resume_refuses_when_a_host_is_recorded_under_another_label(tmp_path: Path) -> None:
    from nexus_core.state.resume import plan_changes, resume_point

    before = plan_of(write(tmp_path, '@task(on=["deploy@web-1"])\ndef t():\n    run("one")\n'))
    record = _record(before, {("t", "web-1"): "running"}, {})
    after = plan_of(write(tmp_path, '@task(on=["deploy@web-1", "root@web-1"])\ndef t():\n    run("one")\n'))
    point = resume_point(record, after)
    assert point.start_at == {("t", "deploy@web-1"): 0}  # read under the old label "web-1"
    changes = plan_changes(record, after, point)
    assert "host deploy@web-1 was recorded as web-1" in changes
    assert "task 't' now also runs on root@web-1" in changes


def test_a_strategy_reads_the_hosts_attributes(tmp_path: Path) -> None:
    from nexus_core.api import Strategy

    class CanariesFirst(Strategy):
        """Hosts tagged ``canary`` go first, alone; the rest follow together."""

        name = "canaries_first"

        def batches(self, hosts: Any, options: Any) -> list[list[Host]]:
            first = [h for h in hosts if "canary" in h.tags]
            return [first, [h for h in hosts if h not in first]]

    reg = registry()
    reg.strategies["canaries_first"] = CanariesFirst
    path = write(
        tmp_path,
        """
        hosts("web", "web-1", host("web-2", tags=["canary"]), "web-3")

        @task(on="web", strategy="canaries_first")
        def deploy():
            run("true")
        """,
    )
    plan = build_plan(load_project(str(path)), reg)
    assert plan.tasks["deploy"].batches == (("web-2",), ("web-1", "web-3"))


def test_a_new_label_on_a_host_with_no_work_left_does_not_stop_a_resume(tmp_path: Path) -> None:
    from nexus_core.state.resume import plan_changes, resume_point

    before = plan_of(
        write(tmp_path, '@task(on=["deploy@web-1"])\ndef a():\n    run("one")\n@task\ndef b():\n    run("two")\n')
    )
    record = _record(before, {("a", "web-1"): "ok"}, {})
    record.tasks = {"a": {"status": "ok"}}
    after = plan_of(
        write(
            tmp_path,
            '@task(on=["deploy@web-1"])\ndef a():\n    run("one")\n'
            '@task(on=["local", "root@web-1"])\ndef b():\n    run("two")\n',
        )
    )
    point = resume_point(record, after)
    assert point.done_tasks == {"a"}
    assert plan_changes(record, after, point) == ["task 'b' now also runs on root@web-1"]


def test_resume_refuses_a_host_left_out_of_an_unfinished_task(tmp_path: Path) -> None:
    """A host removed from the nexusfile after its command failed was skipped by the resume,
    which marked the run ok (the rest of the task never ran there) and ran its dependants."""
    from nexus_core.state.resume import plan_changes, resume_point

    before = plan_of(write(tmp_path, '@task(on=["web-1", "web-2", "web-3"])\ndef t():\n    run("one")\n'))
    record = _record(before, {("t", "web-1"): "ok", ("t", "web-2"): "failed", ("t", "web-3"): "ok"}, {})
    after = plan_of(write(tmp_path, '@task(on=["web-1", "web-2"])\ndef t():\n    run("one")\n'))
    assert plan_changes(record, after, resume_point(record, after)) == []  # web-3 had finished: fine
    after = plan_of(write(tmp_path, '@task(on=["web-1", "web-3"])\ndef t():\n    run("one")\n'))
    changes = plan_changes(record, after, resume_point(record, after))
    assert changes == ["task 't' no longer runs on web-2, where it has not finished"]
    after = plan_of(write(tmp_path, '@task\ndef t():\n    run("one")\n'))  # on= made local
    changes = plan_changes(record, after, resume_point(record, after))
    assert "task 't' now also runs on local" in changes
    assert "task 't' no longer runs on web-2, where it has not finished" in changes
