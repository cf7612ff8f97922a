"""Fixtures for the nexus-azure tests: a self-signed certificate, the fake Azure, a fake ``az``.

The fake Azure (:mod:`nexus_azure.testing`) serves HTTPS with a certificate made here with
``cryptography``; the SDK trusts it through ``connection_verify`` (in-process clients) or
``REQUESTS_CA_BUNDLE`` (the ``nexus`` subprocesses). Every test starts with no breakers,
rate windows or cached credentials, and with none of the Azure variables of the shell.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from azurebed import standard_vms, vm_env, write_fake_az  # noqa: E402

from nexus_azure import arm as arm_module  # noqa: E402
from nexus_azure import auth  # noqa: E402
from nexus_azure.testing import FakeAzure  # noqa: E402

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


@pytest.fixture
def fake(certificate: tuple[str, str], tmp_path: Path) -> Iterator[FakeAzure]:
    """A fresh fake Azure with :func:`standard_vms` (subscription ``sub-1``), pages of 2."""
    with FakeAzure(standard_vms(), *certificate, script_env=vm_env(tmp_path / "vm-home")) as server:
        yield server


@pytest.fixture
def fake_az(tmp_path: Path) -> Path:
    """A folder holding the fake ``az`` (put it first on PATH)."""
    write_fake_az(tmp_path / "azbin")
    return tmp_path / "azbin"
