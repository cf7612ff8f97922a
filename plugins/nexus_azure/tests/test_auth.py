"""Authentication: the credential each ``azure_auth`` builds, and what a failure says."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_azure.auth import credential, token_error
from nexus_azure.errors import AzureError


def test_each_method_builds_its_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from azure import identity

    assert isinstance(credential({}), identity.DefaultAzureCredential)
    assert credential({}) is credential({})  # made once per configuration
    assert isinstance(credential({"azure_auth": "cli"}), identity.AzureCliCredential)
    assert isinstance(credential({"azure_auth": "managed_identity"}), identity.ManagedIdentityCredential)
    user_assigned = credential({"azure_auth": "managed_identity", "azure_client_id": "cid"})
    assert isinstance(user_assigned, identity.ManagedIdentityCredential)
    sp = credential(
        {
            "azure_auth": "service_principal",
            "azure_tenant_id": "t",
            "azure_client_id": "c",
            "azure_client_secret": "s",
        }
    )
    assert isinstance(sp, identity.ClientSecretCredential)
    monkeypatch.setenv("AZURE_TENANT_ID", "t")
    monkeypatch.setenv("AZURE_CLIENT_ID", "c")
    token = tmp_path / "token"
    token.write_text("jwt")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    assert isinstance(credential({"azure_auth": "workload_identity"}), identity.WorkloadIdentityCredential)


def test_missing_pieces_are_named():
    with pytest.raises(AzureError) as info:
        credential({"azure_auth": "service_principal", "azure_client_id": "c"})
    assert "azure_tenant_id" in info.value.headline and "azure_client_secret" in info.value.headline
    assert info.value.exit_code == 2
    with pytest.raises(AzureError, match="is not a file"):
        credential(
            {
                "azure_auth": "service_principal",
                "azure_tenant_id": "t",
                "azure_client_id": "c",
                "azure_client_certificate": "/nonexistent.pem",
            }
        )
    with pytest.raises(AzureError, match="token file"):
        credential({"azure_auth": "workload_identity"})


def test_a_failed_chain_lists_every_method_tried(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    cred = credential({})
    with pytest.raises(Exception) as info:
        cred.get_token("https://management.azure.com/.default")
    err = token_error(info.value, "default")
    assert err.exit_code == 2
    assert "Azure authentication failed" in err.headline
    assert any("AzureCliCredential" in line for line in err.context), err.context
