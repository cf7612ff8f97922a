"""Fixtures for the nexus-azure tests: a self-signed certificate, the fake Azure, a fake ``az``.

The fake Azure (:mod:`nexus_azure.testing`) serves HTTPS with a certificate made here with
``cryptography``; the SDK trusts it through ``connection_verify`` (in-process clients) or
``REQUESTS_CA_BUNDLE`` (the ``nexus`` subprocesses). Every test starts with no breakers,
rate windows or cached credentials, and with none of the Azure variables of the shell.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nexus_azure import arm as arm_module
from nexus_azure import auth
from nexus_azure.arm import Arm
from nexus_azure.testing import TOKEN, FakeAzure, FakeVM, TestCredential

AZURE_VARIABLES = (
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    arm_module.reset_state()
    auth.reset_state()
    yield
    arm_module.reset_state()
    auth.reset_state()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certificate, key) files of a self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-azure")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


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


@pytest.fixture
def fake(certificate: tuple[str, str], tmp_path: Path) -> Iterator[FakeAzure]:
    """A fresh fake Azure with :func:`standard_vms` (subscription ``sub-1``), pages of 2."""
    with FakeAzure(standard_vms(), *certificate, script_env=vm_env(tmp_path / "vm-home")) as server:
        yield server


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
    """A fake ``az`` answering ``az account get-access-token`` (what AzureCliCredential runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "az"
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
        "print('fake az: unsupported ' + ' '.join(sys.argv[1:]), file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return script


@pytest.fixture
def fake_az(tmp_path: Path) -> Path:
    """A folder holding the fake ``az`` (put it first on PATH)."""
    write_fake_az(tmp_path / "azbin")
    return tmp_path / "azbin"


def _env_path(folder: Path) -> str:
    return f"{folder}:{os.environ.get('PATH', '')}"
