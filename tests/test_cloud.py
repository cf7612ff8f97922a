"""Cloud bursting in the core: the cloud-provider hook family, ``cloud(...)``, the controller's
hard limits, tags, retries and breaker, the autoscaling policy and ``nexus cloud``.

Providers here are a fake *installed* distribution (``tests/plugin_fixtures.py``, feature
``cloud_provider``: instances in a JSON file) driven through the real ``nexus`` CLI; the
real providers have their own tests (nexus-agent's ``local``, nexus-aws against moto).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

from nexus_core.api import CloudContext, CloudDemand, CloudError, CloudInstance, CloudProvider, CloudRequest
from nexus_core.clouds import MANUAL, TAG_CLUSTER, TAG_MANAGED, TAG_OWNER, TAG_RUN
from nexus_core.clouds.autoscale import Autoscaler
from nexus_core.clouds.controller import Controller, bootstrap_script, reset_state
from tests.helpers import start_nexus, stopped

FEATURES = ("cloud_provider", "executor")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture
def project(nexus_project, site, tmp_path):
    """A project whose ``nexus`` sees the fake cloud (instances in ``fakecloud.json``)."""
    site.mkdir()
    make_dist(site, features=FEATURES)
    nexus_project.env.update(plugin_env(site, Logs(tmp_path / "imports.log", tmp_path / "runs.log")))
    nexus_project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake"
    nexus_project.env["NEXUS_FAKE_CLOUD"] = str(tmp_path / "fakecloud.json")
    nexus_project.env["NEXUS_CLUSTER"] = "tls://hub.test:7400"
    return nexus_project


def fake_instances(project) -> dict[str, Any]:
    path = Path(project.env["NEXUS_FAKE_CLOUD"])
    return json.loads(path.read_text()) if path.exists() else {}


# --- the nexusfile ------------------------------------------------------------------------------


def test_cloud_is_part_of_the_nexusfile_language_and_not_shadowed_by_the_package():
    import nexus_core
    import nexus_core.clouds  # importing the package must not replace the function

    assert callable(nexus_core.cloud)
    assert "cloud" in nexus_core.__all__


@pytest.mark.hook("nexus_cloud_providers")
def test_declarations_are_validated_without_asking_the_provider(project):
    """nexus_cloud_providers: unknown providers name the package; settings are checked by name and type."""
    project.write(
        """
        from nexus_core import cloud, run, task

        cloud("aws", instance_type="t3.micro")
        cloud("fakecloud", count=(3, 1), max_hourly_cost="lots", fake_mod="flaky", tags=["burst", "gpu,arm"])
        cloud("fakecluod")

        @task
        def hello():
            run("true")
        """
    )
    out = project.run("validate")
    assert out.code == 2, out
    assert "no 'aws' cloud provider is" in out.stderr  # installed, or loaded when nexus-aws is there
    assert "nexus-aws" in out.stderr
    assert "count must be (MIN, MAX)" in out.stderr
    assert "max_hourly_cost must be" in out.stderr
    assert "did you mean 'fake_mode'?" in out.stderr
    assert "agent tags are single words without commas or spaces, not 'gpu,arm'" in out.stderr
    assert out.stderr.count("did you mean 'fakecloud'?") == 1, out  # it was asked twice in one hint


# --- nexus cloud: scale, status, terminate, reap -------------------------------------------------


@pytest.mark.hook("nexus_cloud_providers")
def test_scale_stops_at_the_hard_limits_and_tags_every_instance(project):
    """The hard limits are checked before every start: max_instances and max_hourly_cost."""
    project.write(
        """
        from nexus_core import cloud

        cloud("fakecloud", count=(0, 10), max_instances=3, max_hourly_cost=1.2, fake_price=0.5,
              tags={"team": "ml"})
        """
    )
    out = project.run("cloud", "scale", "fakecloud=5")
    assert out.code == 1, out
    assert "fakecloud: 0 -> 2 instance(s)" in out.stdout
    assert "max_hourly_cost=$1.2/h would be passed" in out.stderr
    made = fake_instances(project)
    assert len(made) == 2
    for item in made.values():
        tags = item["tags"]
        assert tags[TAG_MANAGED] == "true" and tags[TAG_CLUSTER] == "tls://hub.test:7400"
        assert tags[TAG_RUN] == MANUAL and tags["team"] == "ml" and tags[TAG_OWNER]

    status = project.run("cloud", "status", "--format", "json")
    assert status.code == 0, status
    data = json.loads(status.stdout)
    assert len(data["instances"]) == 2 and data["hourly_cost"] == 1.0
    assert all(i["cost"] > 0 and i["provider"] == "fakecloud" for i in data["instances"])
    text = project.run("cloud", "status")
    assert "2 instance(s), $1.0000/h" in text.stdout, text

    down = project.run("cloud", "scale", "fakecloud=1")
    assert down.code == 0 and "fakecloud: 2 -> 1 instance(s), terminated" in down.stdout, down
    one = next(iter(fake_instances(project)))
    gone = project.run("cloud", "terminate", one)
    assert gone.code == 0 and f"terminated {one}" in gone.stdout, gone
    assert fake_instances(project) == {}
    missing = project.run("cloud", "terminate", "i-nothere")
    assert missing.code == 1 and "No such instance: i-nothere" in missing.stderr, missing


def test_scale_and_terminate_outside_a_run_are_audited_and_a_sink_that_cannot_write_refuses(project, tmp_path):
    """`nexus cloud scale` / `terminate` start and end paid machines: their records reach the
    audit sinks as a run's do (the documented codes and fields), and a required sink that
    cannot write refuses the command before any machine starts."""
    project.write('from nexus_core import cloud\ncloud("fakecloud", max_instances=3, fake_price=0.5)\n')
    trail = tmp_path / "audit.log"
    config = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{trail}"\n')
    up = project.run("cloud", "scale", "fakecloud=2")
    assert up.code == 0, up
    gone = project.run("cloud", "terminate", "--all")
    assert gone.code == 0, gone
    records = [r for r in map(json.loads, trail.read_text().splitlines()) if "event" in r]  # not checkpoints
    started = [r for r in records if r["event"] == "cloud.instance.provisioned"]
    ended = [r for r in records if r["event"] == "cloud.instance.terminated"]
    assert len(started) == 2 and len(ended) == 2, records
    assert {r["instance_id"] for r in started} == {r["instance_id"] for r in ended}
    first = started[0]
    assert first["provider"] == "fakecloud" and first["cost_per_hour"] == 0.5 and first["currency"] == "USD"
    assert first["user"] and first["correlation_id"] == MANUAL and "size" in first and "region" in first
    assert all(r["reason"] == "terminated by hand" and r["cost"] is not None for r in ended)

    config.write_text(f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{trail}/x.log"\n')
    refused = project.run("cloud", "scale", "fakecloud=1")
    assert refused.code == 2, refused
    assert "trail" in refused.stderr and "Traceback" not in refused.stderr, refused
    assert fake_instances(project) == {}  # nothing started without its record
    looked = project.run("cloud", "reap", "-n")  # a dry run ends nothing: no sink needed
    assert looked.code == 0 and "nothing to reap" in looked.stdout, looked
    assert project.run("cloud", "reap").code == 2


def test_max_instances_and_usage_mistakes(project):
    project.write('from nexus_core import cloud\ncloud("fakecloud", max_instances=1)\n')
    out = project.run("cloud", "scale", "fakecloud=2")
    assert out.code == 1 and "max_instances=1 reached (1 running)" in out.stderr, out
    bad = project.run("cloud", "scale", "fakecloud")
    assert bad.code == 2 and "is not PROVIDER=COUNT" in bad.stderr, bad
    unknown = project.run("cloud", "scale", "aws=1")
    assert unknown.code == 2 and "nexus-aws" in unknown.stderr, unknown
    both = project.run("cloud", "terminate")
    assert both.code == 2 and "IDs, or --all" in both.stderr, both
    assert project.run("cloud", "terminate", "--all").code == 0
    assert fake_instances(project) == {}


def test_reap_ends_instances_of_dead_runs_and_keeps_manual_ones(project):
    project.write('from nexus_core import cloud\ncloud("fakecloud")\n')
    base = {TAG_MANAGED: "true", TAG_CLUSTER: "tls://hub.test:7400", "nexus:provider": "fakecloud"}
    import os

    me = os.uname().nodename
    Path(project.env["NEXUS_FAKE_CLOUD"]).write_text(
        json.dumps(
            {
                "orphan": {"tags": {**base, TAG_RUN: "r-dead", TAG_OWNER: f"{me}:999999"}, "launched": 1e9, "price": 1},
                "alive": {"tags": {**base, TAG_RUN: "r-live", TAG_OWNER: f"{me}:{os.getpid()}"}, "launched": 1e9,
                          "price": 1},
                "manual": {"tags": {**base, TAG_RUN: MANUAL, TAG_OWNER: f"{me}:999999"}, "launched": 1e9, "price": 1},
                "elsewhere": {"tags": {**base, TAG_RUN: "r-x", TAG_OWNER: "other-machine:1"}, "launched": 1e9,
                              "price": 1},
            }
        )
    )  # fmt: skip
    dry = project.run("cloud", "reap", "--dry-run")
    assert dry.code == 0 and "would terminate orphan" in dry.stdout, dry
    assert "orphan" in fake_instances(project)
    out = project.run("cloud", "reap")
    assert out.code == 0, out
    assert "terminated orphan (orphan, run r-dead)" in out.stdout
    assert "kept 1 instance(s) started by `nexus cloud scale`" in out.stdout
    assert sorted(fake_instances(project)) == ["alive", "elsewhere", "manual"]


def test_a_dry_run_with_scale_prices_the_instances_and_starts_nothing(project, tmp_path):
    project.write(
        """
        from nexus_core import cloud, run, task

        cloud("fakecloud", max_instances=3, fake_price=0.5, max_runtime=7200)

        @task
        def hello():
            run("echo hi")
        """
    )
    out = project.run("run", "hello", "-n", "--scale", "fakecloud=5")
    assert out.code == 0, out
    assert "the limits allow 3: max_instances=3 reached (0 running, 3 planned)" in out.stdout, out
    assert "estimated $1.5000/h for 3 instance(s); $1.5000 to $3.0000" in out.stdout
    calls = [json.loads(line) for line in (tmp_path / "runs.log").read_text().splitlines()]
    assert {c["what"] for c in calls if c["kind"] == "cloud"} <= {"price", "list"}
    assert fake_instances(project) == {}
    data = project.run("run", "hello", "-n", "--scale", "fakecloud=1", "--format", "json")
    first = json.loads(data.stdout.splitlines()[0])
    assert first["event"] == "cloud.dry_run" and first["clouds"][0]["allowed"] == 1, data
    refused = project.run("run", "hello", "--scale", "fakecloud=1")
    assert refused.code == 2 and "--scale only goes with --dry-run" in refused.stderr, refused


def test_simulate_failure_says_who_runs_fails_and_is_skipped(project):
    project.write(
        """
        from nexus_core import run, task

        WEB = ["fake://web-1", "fake://web-2", "fake://web-3"]

        @task(on=WEB, strategy="rolling", batch=1)
        def deploy():
            run("deploy")

        @task(deps=[deploy], on=["fake://lb"])
        def announce():
            run("announce")
        """
    )
    out = project.run("run", "announce", "-n", "--simulate-failure", "web-2")
    assert out.code == 0, out
    assert "  • web-1: would execute normally" in out.stdout
    assert "  • web-2: ✗ SIMULATED FAILURE" in out.stdout
    assert "  • web-3: would be SKIPPED" in out.stdout
    assert "With parallel strategy (announce): depends on deploy, which would fail" in out.stdout
    assert "deploy: 1 of 3 host(s) would run it" in out.stdout and "--continue-on-error" in out.stdout
    keep = project.run("run", "announce", "-n", "--simulate-failure", "web-2", "--continue-on-error")
    # a run with --continue-on-error runs web-3, and still skips what depends on the failed deploy
    assert "web-3: would execute normally" in keep.stdout and "lb: would be SKIPPED" in keep.stdout, keep
    nobody = project.run("run", "announce", "-n", "--simulate-failure", "db-9")
    assert nobody.code == 2 and "no task of this run uses that host" in nobody.stderr, nobody
    assert "Re-run just the failed host later with -H web-2" in out.stdout


def test_simulate_failure_of_a_local_run_does_not_advise_a_refused_h(nexus_project):
    """It advised `-H local`, which a run of local tasks only refuses (exit 2)."""
    nexus_project.write("from nexus_core import run, task\n\n@task\ndef build():\n    run('make')\n")
    out = nexus_project.run("run", "build", "-n", "--simulate-failure", "local")
    assert out.code == 0, out
    assert "-H local" not in out.stdout and "`nexus resume` skips what already succeeded" in out.stdout, out


def test_simulate_failure_asks_the_task_s_own_strategy(project):
    """The what-if drives the strategy itself: a rolling rollout tolerating 40% failures goes
    on after 1 failed host of 3 (33%), as a real run does; with forks=1 a parallel task's
    hosts start one by one, so those after the failing host would not start."""
    project.write(
        """
        from nexus_core import config, hosts, run, task

        config(forks=1)
        hosts("web", "fake://web-1", "fake://web-2", "fake://web-3")

        @task(on="web", strategy="rolling", batch=1, max_fail_percentage=40)
        def deploy():
            run("deploy")

        @task(on="web")
        def check():
            run("check")
        """
    )
    out = project.run("run", "deploy", "-n", "--simulate-failure", "web-1")
    assert out.code == 0, out
    assert "  • web-1: ✗ SIMULATED FAILURE" in out.stdout
    assert "  • web-2: would execute normally" in out.stdout and "  • web-3: would execute normally" in out.stdout, out
    assert "deploy: 2 of 3 host(s) would run it" in out.stdout, out
    data = project.run("run", "check", "-n", "--simulate-failure", "web-1", "--format", "json")
    what_if = json.loads(data.stdout.splitlines()[0])
    assert what_if["event"] == "what_if", data
    assert what_if["tasks"][0]["hosts"] == {"web-1": "failed", "web-2": "skipped", "web-3": "skipped"}, what_if
    keep = project.run("run", "check", "-n", "--simulate-failure", "web-1", "--continue-on-error", "--format", "json")
    hosts = json.loads(keep.stdout.splitlines()[0])["tasks"][0]["hosts"]
    assert hosts == {"web-1": "failed", "web-2": "ok", "web-3": "ok"}, keep


def test_status_without_any_provider_says_how_to_name_one(project):
    out = project.run("cloud", "status")
    assert out.code == 2 and "nexus cloud status local" in out.stderr, out


@pytest.mark.parametrize(("rate", "why"), [("lots", "is not a rate"), ("0/second", "allows no call at all")])
def test_a_cloud_api_rate_that_is_no_rate_is_a_configuration_error(project, rate, why):
    project.write(f'from nexus_core import cloud, config\nconfig(cloud_api_rate="{rate}")\ncloud("fakecloud")\n')
    out = project.run("cloud", "status", timeout=30)  # "0/second" waited for a free slot for hours
    assert out.code == 2 and f"cloud_api_rate='{rate}' {why}" in out.stderr, out
    assert 'config(cloud_api_rate="10/second")' in out.stderr and "internal error" not in out.stderr
    checked = project.run("validate")  # and before any cloud call, with the nexusfile's line
    assert checked.code == 2 and f"nexusfile.py:2: config(): cloud_api_rate='{rate}' {why}" in checked.stderr, checked


# --- the controller, in process -------------------------------------------------------------------


class Flaky(CloudProvider):
    """Fails ``failures`` calls as transient, then works."""

    name = "flaky"

    def __init__(self, context: CloudContext, failures: int = 0) -> None:
        super().__init__(context)
        self.failures = failures
        self.calls = 0
        self.made: dict[str, CloudInstance] = {}

    def _call(self) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise CloudError("503 from the API", retryable=True)

    def provision(self, request: CloudRequest) -> CloudInstance:
        self._call()
        made = CloudInstance(request.name, request.name, "running", launched=1.0, tags=request.tags)
        self.made[made.id] = made
        return made

    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        self._call()
        return [i for i in self.made.values() if all(i.tags.get(k) == v for k, v in tags.items())]

    def terminate(self, ids: Sequence[str]) -> None:
        self._call()
        for i in ids:
            self.made.pop(i, None)


def controller(failures: int = 0, **settings: Any) -> tuple[Controller, list[str]]:
    reset_state()
    said: list[str] = []
    values = {"count": (0, 5), "tags": ("burst",), "max_runtime": 60, **settings}
    provider = Flaky(CloudContext(config={}, settings=values), failures)
    return Controller(provider, values, cluster="tls://c:1", run_id="r1", warn=said.append,
                      sleep=lambda _s: None), said  # fmt: skip


def test_transient_failures_are_retried_and_a_provider_that_keeps_failing_is_not_asked_again():
    ctl, said = controller(failures=2)
    assert ctl.instances() == []  # two 503s, then an answer
    ctl, said = controller(failures=1000)
    for _ in range(3):
        with pytest.raises(CloudError, match="503 from the API"):
            ctl.instances()
    calls = ctl.provider.calls  # type: ignore[attr-defined]
    for _ in range(2):
        with pytest.raises(CloudError, match="keeps failing"):
            ctl.instances()
    assert ctl.provider.calls == calls  # type: ignore[attr-defined]  # the breaker: not asked
    assert len(said) == 1 and "keeps failing" in said[0]
    reset_state()


def test_a_provider_call_that_takes_long_is_said_while_it_lasts(monkeypatch: pytest.MonkeyPatch):
    """A provider's SDK retrying timeouts (or a rate limit waited out) was minutes of silence."""
    import time

    from nexus_core.clouds import controller as module

    monkeypatch.setattr(module, "SLOW_CALL", 0.2)
    ctl, said = controller()
    assert ctl.call("list instances", lambda: time.sleep(0.7) or "done") == "done"
    assert said and said[0].startswith("nexus: still waiting for ") and "to list instances (0 s)" in said[0]
    assert len(said) == 1  # then once a minute
    said.clear()
    assert ctl.call("list instances", lambda: "quick") == "quick"
    time.sleep(0.3)
    assert said == []  # a call that ended says nothing, nor does its watcher later
    reset_state()


def test_an_instance_left_by_a_killed_run_is_said_and_not_waited_for(monkeypatch: pytest.MonkeyPatch):
    """After kill -9 of a burst run, the next run waited for the dead run's instance to join (it
    never would) and failed without saying whose it was or that `nexus cloud reap` ends it."""
    import os
    from types import SimpleNamespace

    from nexus_core.clouds import burst as module

    ctl, _ = controller()
    me = os.uname().nodename
    tags = ctl.cluster_tags()
    for name, run, owner in (("left", "r-dead", f"{me}:999999"), ("manual", MANUAL, f"{me}:999999")):
        ctl.provider.made[name] = CloudInstance(  # type: ignore[attr-defined]
            name, f"{name}-1", "running", launched=1.0, tags={**tags, TAG_RUN: run, TAG_OWNER: owner}
        )
    view = SimpleNamespace(agents=lambda: {})
    session = SimpleNamespace(
        declared=["flaky"],
        settings=lambda _n: {"tags": ("burst",), "count": (1, 5), "join_timeout": 0.5},
        controller=lambda _n: ctl,
        cluster=lambda: view,
        bootstrap=lambda _n: None,
    )
    said: list[str] = []
    run = module.BurstRun.__new__(module.BurstRun)
    run.project, run.tasks, run.cloud, run.say, run._said = None, None, session, said.append, set()
    monkeypatch.setattr(module, "targeted_tags", lambda _p, _t: set())
    with pytest.raises(CloudError) as late:
        run.before_plan()
    assert said == [
        "cloud: flaky: instance left (left-1) was left by run r-dead, whose process is gone: not waited for; "
        "`nexus cloud reap` ends it (it is billed until then)"
    ]
    assert "manual-1" in str(late.value) and "left-1" not in str(late.value)  # `cloud scale`'s is waited for
    reset_state()


def test_an_unknown_price_with_a_cost_limit_is_refused():
    ctl, _ = controller(max_hourly_cost=5)
    with pytest.raises(CloudError, match="reports no price"):
        ctl.provision()
    ctl, _ = controller(max_hourly_cost=1, price=0.4)
    ctl.scale_to(5)
    assert len(ctl.instances()) == 2


def test_the_boot_script_destructs_first_then_installs_and_joins():
    script = bootstrap_script("aws-1", {"ca.pem": "CA", "aws-1.pem": "CERT"}, cluster="tls://hub:7400",
                              tags=("burst", "gpu"), max_runtime=3600)  # fmt: skip
    lines = script.splitlines()
    assert lines[2].startswith("shutdown -h +60")
    assert "pip install -q nexus-agent" in script
    assert "CERT" in script and "chmod 600 /root/.config/nexus/agent/aws-1.pem" in script
    assert lines[-1].endswith("--tags burst,gpu --join hub:7400")


# --- the autoscaling policy -----------------------------------------------------------------------


def instance(name: str) -> CloudInstance:
    return CloudInstance(name, name, "running")


def test_scale_up_on_a_deep_queue_or_a_long_wait_within_count():
    scaler = Autoscaler({"count": (0, 3), "scale_up_wait": 30, "scale_up_queue": 4})
    assert scaler.decide(CloudDemand(waiting=2, oldest_wait=5), [], 100).start == 0
    assert scaler.decide(CloudDemand(waiting=2, oldest_wait=31), [], 100).start == 2
    assert scaler.decide(CloudDemand(waiting=9, oldest_wait=1), [], 100).start == 3  # count maximum
    # one instance started and not joined yet absorbs one waiting command
    assert scaler.decide(CloudDemand(waiting=2, oldest_wait=31), [instance("a")], 100).start == 1
    assert scaler.decide(CloudDemand(), [], 100).start == 0
    assert Autoscaler({"count": (2, 3)}).decide(CloudDemand(), [], 0).start == 2  # the minimum


def test_scale_down_only_after_idle_timeout_and_the_cooldown_never_below_the_minimum():
    scaler = Autoscaler({"count": (1, 5), "idle_timeout": 60, "scale_down_cooldown": 100})
    live = [instance("a"), instance("b"), instance("c")]
    idle = CloudDemand(idle_since={"a": 0.0, "b": 0.0, "c": None})
    scaler.last_up = 50.0
    assert scaler.decide(idle, live, 120).stop == ()  # idle long enough, but a scale-up was recent
    assert set(scaler.decide(idle, live, 200).stop) == {"a", "b"}  # c is busy
    assert scaler.decide(CloudDemand(idle_since={"a": 0.0}), [instance("a")], 500).stop == ()  # the minimum
    waiting = CloudDemand(waiting=1, oldest_wait=1, idle_since={"a": 0.0, "b": 0.0})
    assert scaler.decide(waiting, live[:2], 500).stop == ()  # work waits: nobody leaves


def test_instance_names_never_repeat_within_a_millisecond():
    """Two instances started in the same millisecond still get different names."""
    from nexus_core.clouds.controller import _stamp

    stamps = [_stamp() for _ in range(2000)]
    assert len(set(stamps)) == len(stamps)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_run_terminates_its_instances_does_not_stop_that(project, tmp_path, sig):
    """A second Ctrl+C, or the SIGTERM a CI runner sends, must not leave a billed instance behind."""
    project.write(
        """
        from nexus_core import cloud, run, task

        cloud("fakecloud", count=(1, 2), fake_mode="slow-terminate")

        @task
        def hello():
            run("true")
        """
    )
    runs = tmp_path / "runs.log"
    with stopped(start_nexus(project, "run", "hello")) as proc:
        for _ in range(300):  # 30 s at most: until the run asks to terminate its instance
            if runs.exists() and '"what": "terminate"' in runs.read_text():
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the run never terminated its instance: {proc.communicate(timeout=30)}")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert fake_instances(project) == {}, (proc.returncode, out, err)  # terminated all the same
    assert "cloud: 1 instance(s) started" in err and "Traceback" not in err, err
    assert f"cloud: {signal.Signals(sig).name} waited until this run's instances were terminated" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_the_run_is_planned_terminates_the_instances_it_started(project, tmp_path, sig):
    """Between the machines' start and the run's own signal handlers (the plan, which runs the
    task bodies), SIGTERM or SIGHUP killed the process on the spot and left the machine billed."""
    planning = tmp_path / "planning"
    project.write(
        f"""
        import pathlib, time
        from nexus_core import cloud, run, task

        cloud("fakecloud", count=(1, 2))

        @task
        def hello():
            pathlib.Path("{planning}").touch()
            time.sleep(20)  # the body runs while the run is planned
            run("true")
        """
    )
    with stopped(start_nexus(project, "run", "hello")) as proc:
        for _ in range(300):  # 30 s at most: until the plan runs the body
            if planning.exists():
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the plan never ran the body: {proc.communicate(timeout=30)}")
        assert len(fake_instances(project)) == 1
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert fake_instances(project) == {}, (proc.returncode, out, err)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert f"nexus: {signal.Signals(sig).name} before the run started: stopping" in err and "Traceback" not in err


def test_machines_of_a_run_that_fails_before_it_starts_are_in_its_json_output(project):
    """The plan fails after the cloud's machine started (a task body raises): the machine is
    terminated, and its cloud.provisioned and cloud.terminated events are printed, not dropped."""
    project.write(
        """
        from nexus_core import cloud, run, task

        cloud("fakecloud", count=(1, 2))

        @task
        def hello():
            raise RuntimeError("broken body")
        """
    )
    out = project.run("run", "hello", "--format", "json")
    assert out.code == 2, out
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "cloud.provisioned" in names and "cloud.terminated" in names, out
    assert fake_instances(project) == {}


def test_a_run_that_does_not_include_the_tagged_task_starts_no_machine(project):
    """Scaling from zero follows the run's tasks: a task on tagged(TAG) elsewhere in the
    nexusfile started a billed machine (and waited for it to join) for a local task's run."""
    project.write(
        """
        from nexus_core import cloud, run, tagged, task

        cloud("fakecloud", count=(0, 2), tags=["burst"], join_timeout=5)

        @task(on=tagged("burst"))
        def work():
            run("true")

        @task
        def build():
            run("true")

        @task(deps=[build])
        def loc():
            run("echo local")
        """
    )
    project.env["NEXUS_LOAD_PLUGINS"] = "nexus-fake,nexus-agent"  # tagged(...) runs on agents
    out = project.run("run", "loc", "--format", "json")
    assert out.code == 0, out
    events = [json.loads(line)["event"] for line in out.stdout.splitlines() if line.startswith("{")]
    assert "cloud.provisioned" not in events and "cloud: started" not in out.stderr, out
    assert fake_instances(project) == {}
