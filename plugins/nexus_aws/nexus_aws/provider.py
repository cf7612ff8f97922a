"""The ``aws`` cloud provider: EC2 instances (spot first) that join the agent cluster.

- **Spot, then on-demand**: ``run_instances`` with spot market options (``MaxPrice`` from
  ``spot_price``); when EC2 has no spot capacity, or the current spot price is over
  ``spot_price``, ``spot_fallback="on_demand"`` starts an on-demand instance instead and
  ``"fail"`` stops with a clear error.
- **Image**: ``ami=None`` takes the newest available Amazon Linux 2023 image for the
  architecture of ``instance_type`` (``describe_instance_types``).
- **Prices**: the spot price history (the highest current price over the region's zones);
  with an on-demand fallback the worst case is the declared ``price`` (EC2 does not report
  on-demand prices), so a cost limit needs ``price=`` there.
- **Self-destruct**: user data from the core (shutdown after ``max_runtime`` first, then
  nexus-agent's install and join) and ``InstanceInitiatedShutdownBehavior=terminate``.
- **Credentials**: boto3's standard chain; a missing or rejected credential says where the
  SDK looked and what it found.

Throttling and 5xx answers are ``retryable`` (the core retries, rate-limits and breaks);
boto3's own retries are off so that the core's count is the only one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.plugin import CloudError, CloudInstance, CloudProvider, CloudRequest, Option

from nexus_aws.plugin import SETTINGS

#: EC2 error codes that mean "no spot capacity or price for this request".
CAPACITY = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "UnfulfillableCapacity",
        "InsufficientHostCapacity",
    }
)
#: EC2 error codes worth another try.
TRANSIENT = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "Unavailable",
                       "ServiceUnavailable", "RequestTimeout"})  # fmt: skip
#: EC2 error codes of an account quota (vCPUs, instances) that a start would pass.
QUOTA = frozenset({"VcpuLimitExceeded", "InstanceLimitExceeded"})
#: EC2 (and IAM) error codes of a ``cloud("aws", ...)`` setting naming nothing in the region.
SETTING_ERRORS = {
    "InvalidInstanceType": "instance_type",
    "InvalidAMIID.NotFound": "ami",
    "InvalidAMIID.Malformed": "ami",
    "InvalidSubnetID.NotFound": "subnet",
    "InvalidSubnetID.Malformed": "subnet",
    "InvalidGroup.NotFound": "security_group",
    "InvalidGroupId.Malformed": "security_group",
    "InvalidKeyPair.NotFound": "key_name",
    "NoSuchEntity": "iam_role",
}
#: EC2 error codes of a credential the API rejected.
REJECTED = frozenset({"AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                      "ExpiredToken", "RequestExpired"})  # fmt: skip
#: EC2 error codes of a credential the API accepted but whose policy does not allow the call.
DENIED = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "OptInRequired"})
PRICE_TAG = "nexus:hourly-price"
#: Amazon Linux 2023 image names, by architecture.
IMAGE_NAMES = {"x86_64": "al2023-ami-2023*-x86_64", "arm64": "al2023-ami-2023*-arm64"}


def _where_looked() -> str:
    profile = os.environ.get("AWS_PROFILE") or "default"
    return (
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, "
        f"profile {profile!r} in {os.environ.get('AWS_SHARED_CREDENTIALS_FILE') or '~/.aws/credentials'} and "
        f"{os.environ.get('AWS_CONFIG_FILE') or '~/.aws/config'} (SSO, assume-role), AWS_WEB_IDENTITY_TOKEN_FILE, "
        "the container and instance metadata endpoints"
    )


class AwsProvider(CloudProvider):
    """EC2 instances for ``cloud("aws", ...)``."""

    name: ClassVar[str] = "aws"
    settings: ClassVar[tuple[Option, ...]] = SETTINGS

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._client: Any = None
        self._source = ""
        self._ami: str | None = None

    # --- the client -------------------------------------------------------------------------

    def client(self) -> Any:
        """The EC2 client (made once), or CloudError naming where credentials were looked for."""
        if self._client is not None:
            return self._client
        import boto3
        from botocore.config import Config

        region = self.context.settings.get("region") or None
        session = boto3.session.Session(region_name=region)
        creds = session.get_credentials()
        if creds is None:
            raise CloudError(
                "no AWS credentials found; looked in " + _where_looked(),
                "set AWS_PROFILE (see `aws configure`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                exit_code=2,
            )
        if not session.region_name:
            raise CloudError(
                'no AWS region: cloud("aws") has no region= and the SDK found none',
                'write cloud("aws", region="eu-west-1", ...) or set AWS_REGION',
                exit_code=2,
            )
        self._source = str(getattr(creds, "method", "") or "unknown")
        self._client = session.client(
            "ec2",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30),
        )
        return self._client

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return getattr(self.client(), method)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            message = str(error.get("Message") or exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in REJECTED:
                raise CloudError(
                    f"AWS rejected the credentials from {self._source} ({code}: {message})",
                    "check them with `aws sts get-caller-identity`; looked in " + _where_looked(),
                    exit_code=2,
                ) from None
            if code in DENIED or status == 403:
                action = "ec2:" + method.replace("_", " ").title().replace(" ", "")
                raise CloudError(
                    f"EC2 could not {what}: {code or status}: the credentials from {self._source} may not ({message})",
                    f"allow {action} to them (an IAM policy of the user or role: see the nexus-aws docs for the "
                    "actions Nexus uses); `aws sts get-caller-identity` shows who they are",
                    exit_code=2,
                ) from None
            setting = SETTING_ERRORS.get(code)
            if setting:
                region = getattr(getattr(self._client, "meta", None), "region_name", None) or "?"
                raise CloudError(
                    f"EC2 could not {what}: {code}: {message}",
                    f'fix {setting}= in cloud("aws", ...): it must name one that exists in region {region}',
                    exit_code=2,
                ) from None
            if code in QUOTA:
                raise CloudError(
                    f"EC2 could not {what}: {code}: {message}",
                    "an account quota of this region: ask for more in the Service Quotas console (Amazon EC2, "
                    "Running On-Demand or All Standard Spot Instance Requests), or lower count/max_instances",
                    exit_code=1,
                ) from None
            if code in CAPACITY:
                raise CloudError(f"EC2 could not {what}: {code}: {message}", capacity=True) from None
            retryable = code in TRANSIENT or status >= 500
            raise CloudError(f"EC2 could not {what}: {code or status}: {message}", retryable=retryable) from None
        except EndpointConnectionError as exc:
            raise CloudError(f"EC2 could not be reached to {what}: {exc}", retryable=True) from None
        except BotoCoreError as exc:
            raise CloudError(f"EC2 could not {what}: {exc}", retryable=True) from None

    # --- read only ----------------------------------------------------------------------------

    def spot_price(self, settings: Mapping[str, Any]) -> float | None:
        """The highest current spot price of the instance type over the region's zones."""
        answer = self._call(
            "read the spot price history",
            "describe_spot_price_history",
            InstanceTypes=[str(settings.get("instance_type") or "t3.micro")],
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=time.time(),
        )
        latest: dict[str, tuple[Any, float]] = {}
        for item in answer.get("SpotPriceHistory") or ():
            zone = str(item.get("AvailabilityZone") or "")
            when = item.get("Timestamp")
            if zone not in latest or (when is not None and when > latest[zone][0]):
                latest[zone] = (when, float(item["SpotPrice"]))
        return max((p for _, p in latest.values()), default=None)

    def hourly_price(self, settings: Mapping[str, Any]) -> float | None:
        """The worst case per instance and hour: the spot price, or with an on-demand fallback
        the declared ``price`` too (None when that is not declared)."""
        spot = self.spot_price(settings)
        declared = settings.get("price")
        if settings.get("spot_fallback") == "on_demand":
            if declared is None:
                return None
            return max(float(declared), spot or 0.0)
        return spot

    def describe(self, settings: Mapping[str, Any]) -> str:
        """``c6i.large spot in eu-west-1 (on-demand fallback)``."""
        fallback = " (on-demand fallback)" if settings.get("spot_fallback") == "on_demand" else ""
        region = settings.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "?"
        return f"{settings.get('instance_type') or 't3.micro'} spot in {region}{fallback}"

    def image(self, settings: Mapping[str, Any]) -> str:
        """``ami``, or the newest Amazon Linux 2023 image for the instance type's architecture."""
        if settings.get("ami"):
            return str(settings["ami"])
        if self._ami is not None:
            return self._ami
        kind = str(settings.get("instance_type") or "t3.micro")
        types = self._call("look up the instance type", "describe_instance_types", InstanceTypes=[kind])
        found = types.get("InstanceTypes") or [{}]
        arches = found[0].get("ProcessorInfo", {}).get("SupportedArchitectures") or ["x86_64"]
        arch = "arm64" if "arm64" in arches and "x86_64" not in arches else "x86_64"
        images = (
            self._call(
                "find an image",
                "describe_images",
                Owners=["amazon"],
                Filters=[
                    {"Name": "name", "Values": [IMAGE_NAMES[arch]]},
                    {"Name": "state", "Values": ["available"]},
                    {"Name": "architecture", "Values": [arch]},
                ],
            ).get("Images")
            or []
        )
        if not images:
            raise CloudError(f"no Amazon Linux 2023 image for {arch} in this region", "give ami=... in cloud(\"aws\")",
                             exit_code=2)  # fmt: skip
        newest = max(images, key=lambda i: str(i.get("CreationDate") or ""))
        self._ami = str(newest["ImageId"])
        return self._ami

    def list(self, tags: Mapping[str, str]) -> Sequence[CloudInstance]:
        """Instances with every tag, pending to stopping."""
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "shutting-down"]})
        out: list[CloudInstance] = []
        token: str | None = None
        for _ in range(1000):
            kwargs: dict[str, Any] = {"Filters": filters}
            if token:
                kwargs["NextToken"] = token
            page = self._call("list instances", "describe_instances", **kwargs)
            for reservation in page.get("Reservations") or ():
                out.extend(_instance(i) for i in reservation.get("Instances") or ())
            token = page.get("NextToken")
            if not token:
                break
        return out

    # --- changes ------------------------------------------------------------------------------

    def provision(self, request: CloudRequest) -> CloudInstance:
        """One spot instance, or on-demand when spot is unavailable and the fallback allows it."""
        settings = request.settings
        cap = settings.get("spot_price")
        fallback = settings.get("spot_fallback") or "on_demand"
        why_not_spot = ""
        if cap is not None:
            current = self.spot_price(settings)
            if current is not None and current > float(cap):
                why_not_spot = f"the spot price ${current:.4f}/h is over spot_price=${float(cap):.4f}/h"
        if not why_not_spot:
            try:
                return self._run(request, spot=True)
            except CloudError as exc:
                if not exc.capacity:
                    raise
                why_not_spot = exc.message
        if fallback != "on_demand":
            raise CloudError(
                f"no spot instance: {why_not_spot}",
                'allow on-demand with spot_fallback="on_demand", raise spot_price, or pick another instance_type',
                capacity=True,
                exit_code=1,
            )
        self.context.warn(f"nexus: aws: no spot instance ({why_not_spot}); starting on-demand")
        return self._run(request, spot=False)

    def _run(self, request: CloudRequest, spot: bool) -> CloudInstance:
        settings = request.settings
        kind = str(settings.get("instance_type") or "t3.micro")
        price = self.spot_price(settings) if spot else settings.get("price")
        tags = {**request.tags, "Name": request.name}
        if price is not None:
            tags[PRICE_TAG] = f"{float(price):.6f}"
        tag_list = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
        user_data = request.bootstrap
        if settings.get("user_data"):
            user_data += "\n# the user's own user_data\n" + str(settings["user_data"]) + "\n"
        kwargs: dict[str, Any] = {
            "ImageId": self.image(settings),
            "InstanceType": kind,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": user_data,
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": kind_, "Tags": tag_list} for kind_ in ("instance", "volume", "network-interface")
            ],
        }
        if spot:
            options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if settings.get("spot_price") is not None:
                options["MaxPrice"] = f"{float(settings['spot_price']):.6f}"
            kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
        if settings.get("subnet"):
            kwargs["SubnetId"] = settings["subnet"]
        if settings.get("security_group"):
            kwargs["SecurityGroupIds"] = [settings["security_group"]]
        if settings.get("key_name"):
            kwargs["KeyName"] = settings["key_name"]
        role = settings.get("iam_role")
        if role:
            kwargs["IamInstanceProfile"] = {"Arn": role} if str(role).startswith("arn:") else {"Name": role}
        answer = self._call("start an instance", "run_instances", **kwargs)
        return _instance(answer["Instances"][0])

    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate the instances (ids EC2 does not know are skipped)."""
        wanted = [i for i in ids if i]
        if not wanted:
            return
        try:
            self._call("terminate instances", "terminate_instances", InstanceIds=wanted)
        except CloudError as exc:
            if "InvalidInstanceID" not in exc.message or len(wanted) == 1:
                if "InvalidInstanceID" in exc.message:
                    return
                raise
            for one in wanted:  # one unknown id fails the whole call: end the others one by one
                self.terminate([one])

    def close(self) -> None:
        """Forget the client."""
        self._client = None


def _instance(data: Mapping[str, Any]) -> CloudInstance:
    tags = {str(t["Key"]): str(t["Value"]) for t in data.get("Tags") or ()}
    state = str((data.get("State") or {}).get("Name") or "pending")
    launched = data.get("LaunchTime")
    price = tags.get(PRICE_TAG)
    return CloudInstance(
        id=str(data["InstanceId"]),
        name=tags.get("Name", str(data["InstanceId"])),
        state={"shutting-down": "stopping"}.get(state, state),
        instance_type=str(data.get("InstanceType") or ""),
        launched=float(launched.timestamp())
        if launched is not None and hasattr(launched, "timestamp")
        else time.time(),
        hourly_price=float(price) if price else None,
        tags=tags,
        address=str(data.get("PrivateIpAddress") or data.get("PublicIpAddress") or ""),
        market="spot" if data.get("InstanceLifecycle") == "spot" else "on_demand",
        zone=str((data.get("Placement") or {}).get("AvailabilityZone") or ""),
    )
