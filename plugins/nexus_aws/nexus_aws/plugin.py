"""Entry module of ``nexus-aws`` (entry point ``nexus: aws``): cheap to import, boto3 is not."""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.plugin import Option, Registration, hookimpl

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1

#: ``cloud("aws", ...)``'s own settings (the names are promises).
SETTINGS: tuple[Option, ...] = (
    Option("region", (str,), None, "the AWS region (default: the SDK's: AWS_REGION, the profile's region)"),
    Option("instance_type", (str,), "t3.micro", "the EC2 instance type"),
    Option("ami", (str,), None, "the image; None: the latest Amazon Linux 2023 for the type's architecture"),
    Option("spot_price", (int, float), None, "the most to pay per hour for spot (None: spot at the market price)"),
    Option(
        "spot_fallback",
        (str,),
        "on_demand",
        "spot capacity or price unavailable: on_demand starts on-demand, fail stops",
        choices=("on_demand", "fail"),
    ),
    Option("subnet", (str,), None, "the subnet id (default: the default VPC's)"),
    Option("security_group", (str,), None, "the security group id"),
    Option("key_name", (str,), None, "an EC2 key pair, for SSH access to the instances"),
    Option("iam_role", (str,), None, "an instance profile name (or ARN) the instances get"),
    Option("user_data", (str,), None, "a shell script run after the agent's bootstrap"),
)


@hookimpl
def nexus_cloud_providers() -> Sequence[Registration]:
    """``cloud("aws", ...)``: EC2 instances that join the agent cluster."""
    return [Registration("aws", "nexus_aws.provider:AwsProvider", {"settings": SETTINGS})]
