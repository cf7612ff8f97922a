"""nexus-aws against EC2 served by moto (server mode) behind a fault-injecting proxy, through
the real ``nexus cloud`` commands."""

from __future__ import annotations

import base64
import json
import signal
import time
from typing import Any

import pytest
from nexus_core.testing import NexusProject
from tests.helpers import start_nexus, stopped

BASE = 'from nexus_core import cloud\ncloud("aws", region="us-east-1", instance_type="t3.micro"{extra})\n'


def declare(project: NexusProject, extra: str = "") -> None:
    project.write(BASE.format(extra=extra))


def live(ec2: Any) -> list[dict]:  # type: ignore[type-arg]
    client = ec2.client()
    return [i for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] in ("pending", "running")]  # fmt: skip


def test_spot_instances_with_tags_image_self_destruct_and_status(aws: NexusProject, ec2: Any) -> None:
    declare(aws, ', spot_fallback="fail", tags={"team": "ml"}, max_runtime=600')
    out = aws.run("cloud", "scale", "aws=2")
    assert out.code == 0 and "aws: 0 -> 2 instance(s), started aws-" in out.stdout, out
    found = live(ec2)
    assert len(found) == 2
    client = ec2.client()
    newest = max(
        client.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["al2023-ami-2023*-x86_64"]}])[
            "Images"
        ],
        key=lambda i: i["CreationDate"],
    )
    for i in found:
        tags = {t["Key"]: t["Value"] for t in i["Tags"]}
        assert i.get("InstanceLifecycle") == "spot" and i["ImageId"] == newest["ImageId"]
        assert tags["nexus:managed"] == "true" and tags["nexus:run"] == "manual" and tags["team"] == "ml"
        assert tags["nexus:cluster"] == "tls://127.0.0.1:9" and float(tags["nexus:hourly-price"]) > 0
        behaviour = client.describe_instance_attribute(InstanceId=i["InstanceId"],
                                                       Attribute="instanceInitiatedShutdownBehavior")  # fmt: skip
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        data = client.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
        script = base64.b64decode(data["UserData"]["Value"]).decode()
        assert script.splitlines()[2].startswith("shutdown -h +10")  # the self-destruct comes first
        assert "BEGIN CERTIFICATE" in script and "--join 127.0.0.1:9" in script
    status = aws.run("cloud", "status", "--format", "json")
    rows = json.loads(status.stdout)["instances"]
    assert {r["market"] for r in rows} == {"spot"} and len(rows) == 2, status
    assert aws.run("cloud", "terminate", "--all").code == 0
    assert live(ec2) == []


def test_no_spot_capacity_falls_back_to_on_demand_or_fails_clearly(aws: NexusProject, ec2: Any) -> None:
    declare(aws)
    ec2.faults.add("RunInstances", "InsufficientInstanceCapacity", 500, spot_only=True)
    out = aws.run("cloud", "scale", "aws=1")
    assert out.code == 0, out
    assert "no spot instance (EC2 could not start an instance: InsufficientInstanceCapacity" in out.stderr
    (made,) = live(ec2)
    assert made.get("InstanceLifecycle") != "spot"
    aws.run("cloud", "terminate", "--all")

    declare(aws, ', spot_fallback="fail"')
    ec2.faults.add("RunInstances", "InsufficientInstanceCapacity", 500, spot_only=True)
    out = aws.run("cloud", "scale", "aws=1")
    assert out.code == 1 and "no spot instance: EC2 could not start" in out.stderr, out
    assert 'spot_fallback="on_demand"' in out.stderr
    assert live(ec2) == []


def test_a_spot_price_over_spot_price_falls_back_and_prices_come_from_the_history(aws: NexusProject, ec2: Any) -> None:
    declare(aws, ", spot_price=0.000001, price=0.0104")
    out = aws.run("cloud", "scale", "aws=1")
    assert out.code == 0 and "is over spot_price=$0.0000/h" in out.stderr, out
    (made,) = live(ec2)
    assert made.get("InstanceLifecycle") != "spot"
    aws.run("cloud", "terminate", "--all")
    # the cost limit with the spot price from the history (moto: $0.00001/h per instance)
    declare(aws, ', spot_fallback="fail", max_hourly_cost=0.000025')
    out = aws.run("cloud", "scale", "aws=5")
    assert out.code == 1 and "aws: 0 -> 2 instance(s)" in out.stdout and "max_hourly_cost" in out.stderr, out


def test_throttling_is_retried_and_credentials_are_explained(aws: NexusProject, ec2: Any) -> None:
    declare(aws, ', spot_fallback="fail"')
    ec2.faults.add("DescribeInstances", "RequestLimitExceeded", 503, times=2)
    out = aws.run("cloud", "status", "--format", "json")
    assert out.code == 0 and json.loads(out.stdout)["instances"] == [], out
    ec2.faults.add("DescribeInstances", "AuthFailure", 401)
    out = aws.run("cloud", "status")
    assert out.code == 2 and "AWS rejected the credentials from env (AuthFailure" in out.stderr, out
    out = aws.run("cloud", "status", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert out.code == 2 and "no AWS credentials found; looked in AWS_ACCESS_KEY_ID" in out.stderr, out
    assert "none-credentials" in out.stderr
    ec2.faults.add("DescribeInstances", "UnauthorizedOperation", 403)  # accepted, but not allowed
    out = aws.run("cloud", "status")
    assert out.code == 2 and "allow ec2:DescribeInstances" in out.stderr, out


TAGGED_TASK = """
from nexus_core import run, tagged, task

@task(on=tagged("burst"), parallel="sharded", shards=2)
def encode():
    run("true")
"""


def _wait_live(ec2: Any, count: int, seconds: float = 60) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = live(ec2)
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{count} instance(s) never ran: {live(ec2)}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_run_waits_for_its_instance_to_join_terminates_it(
    aws: NexusProject, ec2: Any, sig: int, code: int
) -> None:
    aws.write(BASE.format(extra=', spot_fallback="fail", join_timeout=120') + TAGGED_TASK)
    with stopped(start_nexus(aws, "run", "encode")) as proc:
        _wait_live(ec2, 1)  # started, and never joins (nothing listens at the cluster's address)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (out, err)
    assert f"interrupted ({signal.Signals(sig).name}) while waiting for the cloud's instances to join" in err
    assert "cloud: 1 instance(s) started" in err and "Traceback" not in err
    assert live(ec2) == []  # nothing left running, and billed


def test_a_run_waits_for_an_instance_another_run_left_joining(aws: NexusProject, ec2: Any) -> None:
    aws.write(BASE.format(extra=', spot_fallback="fail", join_timeout=2') + TAGGED_TASK)
    assert aws.run("cloud", "scale", "aws=1").code == 0
    (left,) = live(ec2)
    name = {t["Key"]: t["Value"] for t in left["Tags"]}["Name"]
    out = aws.run("run", "encode")
    assert out.code == 3 and f"instance(s) {name} did not join the cluster within 2 s" in out.stderr, out
    assert f"{name} did not start with this run: `nexus cloud terminate ID`" in out.stderr, out
    assert "no agent matches" not in out.stderr and len(live(ec2)) == 1  # none started beside it


def test_a_quota_error_says_which_quota_and_how_to_raise_it(aws: NexusProject, ec2: Any) -> None:
    declare(aws)
    ec2.faults.add("RunInstances", "VcpuLimitExceeded", 400)
    out = aws.run("cloud", "scale", "aws=1")
    assert out.code == 1 and "EC2 could not start an instance: VcpuLimitExceeded" in out.stderr, out
    assert "Service Quotas console" in out.stderr and "Traceback" not in out.stderr
    assert live(ec2) == []


def test_a_setting_that_names_nothing_in_the_region_is_a_configuration_error(aws: NexusProject, ec2: Any) -> None:
    for extra, setting in ((', instance_type="t3.mega"', "instance_type"), (', subnet="subnet-nope"', "subnet"),
                           (', security_group="sg-nope"', "security_group")):  # fmt: skip
        aws.write(BASE.replace(', instance_type="t3.micro"', "").format(extra=', spot_fallback="fail"' + extra))
        out = aws.run("cloud", "scale", "aws=1")
        assert out.code == 2, (extra, out)
        assert f'fix {setting}= in cloud("aws", ...): it must name one that exists in region us-east-1' in out.stderr
        assert live(ec2) == []
