"""Helpers of the nexus-azure tests: the standard VMs, configurations, a fake ``az``.

A module of its own (not conftest.py) so that tests import it by a name no other plugin's
tests use (the suite runs with ``--import-mode=importlib``).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from nexus_azure.arm import Arm
from nexus_azure.testing import TOKEN, FakeAzure, FakeVM, TestCredential


def standard_vms() -> list[FakeVM]:
    """Five VMs over two resource groups, one stopped, one Windows."""
    return [
        FakeVM("web-1", tags={"env": "prod", "role": "web"}, zones=("1",), public_ips=("20.1.1.1",)),
        FakeVM("web-2", tags={"env": "prod", "role": "web"}, private_ips=("10.0.0.5",), zones=("2",)),
        FakeVM(
            "web-old", tags={"env": "prod", "role": "web"}, power="deallocated", private_ips=("10.0.0.6",)
        ),
        FakeVM(
            "db-1",
            "rg-data",
            tags={"env": "prod", "role": "db"},
            location="northeurope",
            private_ips=("10.0.1.4",),
            size="Standard_E4s_v5",
        ),
        FakeVM("win-1", tags={"env": "dev"}, os="Windows", private_ips=("10.0.0.9",)),
    ]


def vm_env(home: Path) -> dict[str, str]:
    """The environment of the fake VMs' scripts: a HOME of their own (status files go there)."""
    home.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "NEXUS_"))}
    return {**keep, "HOME": str(home)}


def config_for(server: FakeAzure, **extra: Any) -> dict[str, Any]:
    """The ``azure_*`` configuration pointing at ``server``, fast polls."""
    return {
        "azure_subscription": "sub-1",
        "azure_arm_endpoint": server.endpoint,
        "azure_poll_interval": 0.05,
        "azure_api_rate": "1000/second",
        "azure_api_attempts": 3,
        **extra,
    }


def make_arm(server: FakeAzure, certificate: tuple[str, str], cred: Any = None, **extra: Any) -> Arm:
    """An :class:`Arm` on ``server`` with the test credential, trusting the test certificate."""
    a = Arm(config_for(server, **extra), cred or TestCredential())
    a.extra = {"connection_verify": certificate[0]}
    return a


def write_fake_az(folder: Path, token: str = TOKEN) -> Path:
    """A fake ``az`` answering ``az account get-access-token`` (what AzureCliCredential runs) and
    ``az network bastion tunnel`` (``fake_bastion.py``: a TCP relay to ``FAKE_BASTION_TARGET``)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "az"
    relay = str(Path(__file__).resolve().parent / "fake_bastion.py")
    answer = {
        "accessToken": token,
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": 4070908800,
        "subscription": "sub-1",
        "tenant": "tenant-1",
        "tokenType": "Bearer",
    }
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "if sys.argv[1:3] == ['account', 'get-access-token']:\n"
        f"    print({json.dumps(json.dumps(answer))})\n"
        "    sys.exit(0)\n"
        "if sys.argv[1:4] == ['network', 'bastion', 'tunnel']:\n"
        "    import runpy\n"
        f"    runpy.run_path({relay!r}, run_name='__main__')\n"
        "    sys.exit(0)\n"
        "print('fake az: unsupported ' + ' '.join(sys.argv[1:]), file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return script
