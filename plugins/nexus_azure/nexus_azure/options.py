"""The ``config(azure_...)`` keys and the filters of ``discover("azure", ...)``.

Cheap to import (the plugin manager reads them at every start): nothing but the core's
``Option``. Credentials left out of the nexusfile come from the variables the Azure SDK
itself reads (``AZURE_SUBSCRIPTION_ID``, ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ...).
"""

from __future__ import annotations

from typing import Any

from nexus_core.plugin import Option

#: How to authenticate (``azure_auth``): the SDK's chain, or one method by name.
AUTH_METHODS = (
    "default",
    "managed_identity",
    "service_principal",
    "cli",
    "workload_identity",
    "environment",
)
#: How commands reach a discovered VM (``azure_connection`` / ``discover(..., connection=)``).
CONNECTIONS = ("run_command", "ssh", "bastion")
#: Which Run Command API the ``azure`` transport uses (``azure_run_command``).
RUN_COMMAND_KINDS = ("auto", "managed", "action")
#: Which address ``ssh`` connects to.
IP_KINDS = ("private", "public")


def _rate(value: Any) -> str | None:
    from limits import parse

    try:
        parse(str(value))
    except ValueError:
        return f"azure_api_rate must read like '10/second' or '100/minute', not {value!r}"
    return None


def _url(value: Any) -> str | None:
    if not str(value).startswith("https://"):
        return f"azure_arm_endpoint must start with https:// (ARM only speaks TLS), not {value!r}"
    return None


def _subscriptions(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value):
        return None
    return f"azure_subscription takes a subscription ID or a list of them, not {value!r}"


def config_options() -> list[Option]:
    """Every ``azure_*`` key: names, types, defaults and checks."""
    num = (int, float)
    return [
        Option(
            "azure_subscription",
            (str, list, tuple),
            None,
            "subscription ID(s) to search and run in (default: env AZURE_SUBSCRIPTION_ID)",
            check=_subscriptions,
        ),
        Option(
            "azure_auth",
            (str,),
            "default",
            "how to authenticate: 'default' (DefaultAzureCredential's chain; AZURE_TOKEN_CREDENTIALS "
            "narrows it), 'managed_identity', 'service_principal', 'cli', 'workload_identity', 'environment'",
            choices=AUTH_METHODS,
        ),
        Option("azure_tenant_id", (str,), None, "tenant (directory) ID (default: env AZURE_TENANT_ID)"),
        Option(
            "azure_client_id",
            (str,),
            None,
            "client ID of the service principal, the user-assigned managed identity or the workload "
            "identity (default: env AZURE_CLIENT_ID)",
        ),
        Option(
            "azure_client_secret",
            (str,),
            None,
            "service principal secret (default: env AZURE_CLIENT_SECRET; prefer secret(...))",
        ),
        Option(
            "azure_client_certificate",
            (str,),
            None,
            "service principal certificate, PEM or PKCS12 (default: env AZURE_CLIENT_CERTIFICATE_PATH)",
        ),
        Option(
            "azure_arm_endpoint",
            (str,),
            None,
            "Azure Resource Manager endpoint (default https://management.azure.com; sovereign clouds: "
            "https://management.chinacloudapi.cn, https://management.usgovcloudapi.net)",
            check=_url,
        ),
        Option(
            "azure_connection",
            (str,),
            "run_command",
            "how commands reach discovered VMs: 'run_command' (the azure transport), 'ssh' (to the "
            "private or public IP, through nexus-ssh), 'bastion' (ssh through az network bastion tunnel)",
            choices=CONNECTIONS,
        ),
        Option(
            "azure_run_command",
            (str,),
            "auto",
            "Run Command API: 'managed' (long-running, full output), 'action' (one script per VM at a "
            "time, last 4 KB of output), 'auto' (managed, falling back to action where refused)",
            choices=RUN_COMMAND_KINDS,
        ),
        Option(
            "azure_bastion",
            (str,),
            None,
            "the Azure Bastion of connection='bastion': its resource ID, or its name "
            "in the VMs' resource group",
        ),
        Option("azure_timeout", num, 30, "seconds to wait for one ARM request", minimum=1),
        Option(
            "azure_api_attempts",
            (int,),
            4,
            "attempts per ARM request (retries on no answer, 5xx, and 429 after its Retry-After)",
            minimum=1,
        ),
        Option("azure_api_rate", (str,), "20/second", "most ARM requests per subscription", check=_rate),
        Option(
            "azure_poll_interval",
            num,
            2,
            "seconds between two polls of a running command or long-running operation",
            minimum=0.01,
        ),
        Option(
            "azure_graph_lag",
            num,
            30,
            "minutes: VMs created this recently are also looked up through ARM (Resource Graph can lag)",
            minimum=0,
        ),
    ]


def filter_options() -> tuple[Option, ...]:
    """The filters ``discover("azure", ...)`` accepts (declared without importing the source)."""
    names = (str, list, tuple)
    return (
        Option("subscription", names, None, "subscription ID(s) (default: config azure_subscription)"),
        Option("resource_group", names, None, "resource group name(s) (any case)"),
        Option("tags", (dict,), None, "Azure tags the VM must carry: {'env': 'prod'} (value None: any)"),
        Option("name", (str,), None, "regular expression the VM name must match (re.search)"),
        Option(
            "power_state",
            names,
            None,
            "power state(s): 'running', 'stopped', 'deallocated'... (default: all; running ones targeted)",
        ),
        Option("location", names, None, "Azure region(s): 'westeurope'..."),
        Option("os", (str,), None, "'linux' or 'windows'", choices=("linux", "windows")),
        Option("scale_set", (str,), None, "the instances of this VM Scale Set (with resource_group)"),
        Option(
            "connection",
            (str,),
            None,
            "'run_command', 'ssh' or 'bastion' (default: config azure_connection)",
            choices=CONNECTIONS,
        ),
        Option("ip", (str,), "private", "for ssh: connect to the 'private' or 'public' IP", choices=IP_KINDS),
        Option("user", (str,), None, "for ssh and bastion: the login user"),
    )
