"""Credentials: the ``DefaultAzureCredential`` chain, or one method by name (``azure_auth``).

``default`` is the SDK's chain (environment, workload identity, managed identity, Azure
CLI, ...); ``AZURE_TOKEN_CREDENTIALS`` narrows it (``dev``, ``prod`` or one credential's
name), which the SDK reads itself: setting it to ``prod`` on a laptop, or to
``ManagedIdentityCredential`` on a VM, skips the slow probes of the others. A named method
builds exactly that credential from the ``azure_*`` keys, else from the variables the SDK
reads (``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``,
``AZURE_CLIENT_CERTIFICATE_PATH``, ``AZURE_FEDERATED_TOKEN_FILE``).

A failed token request becomes an :class:`~nexus_azure.errors.AzureError` (exit code 2)
that lists each method tried and why it failed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexus_azure.errors import CONFIG, AzureError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], TokenCredential] = {}

_HINTS = {
    "default": "sign in with `az login`, or set azure_auth to the method you use "
    "(AZURE_TOKEN_CREDENTIALS=prod|dev|CREDENTIAL_NAME narrows the default chain)",
    "managed_identity": "run on an Azure VM (or Arc machine) with a managed identity; for a "
    "user-assigned identity set azure_client_id",
    "service_principal": "set azure_tenant_id, azure_client_id and azure_client_secret (or "
    "azure_client_certificate), or AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
    "cli": "install the Azure CLI and sign in with `az login`",
    "workload_identity": "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE "
    "(the AKS workload identity webhook does)",
    "environment": "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or "
    "AZURE_CLIENT_CERTIFICATE_PATH)",
}


def _value(config: Mapping[str, Any], key: str, env: str) -> str | None:
    value = config.get(key)
    if value not in (None, ""):
        return str(value)
    return os.environ.get(env) or None


def reset_state() -> None:
    """Forget the cached credentials (tests; after a configuration change)."""
    with _LOCK:
        _CACHE.clear()


def credential(config: Mapping[str, Any]) -> TokenCredential:
    """The credential ``azure_auth`` names, made once per process and configuration."""
    method = str(config.get("azure_auth") or "default")
    tenant = _value(config, "azure_tenant_id", "AZURE_TENANT_ID")
    client = _value(config, "azure_client_id", "AZURE_CLIENT_ID")
    secret = _value(config, "azure_client_secret", "AZURE_CLIENT_SECRET")
    cert = _value(config, "azure_client_certificate", "AZURE_CLIENT_CERTIFICATE_PATH")
    key = (method, tenant, client, secret, cert, os.environ.get("AZURE_TOKEN_CREDENTIALS"))
    _quiet_sdk()
    with _LOCK:
        found = _CACHE.get(key)
        if found is None:
            found = _CACHE[key] = _make(method, tenant, client, secret, cert)
        return found


def _quiet_sdk() -> None:
    """azure-identity logs each failed token request as a warning ("ClientSecretCredential.
    get_token_info failed: ..."), which reached the terminal raw before Nexus's own message
    (the same facts, with the fix: :func:`token_error`). Unless something configured that
    logger, only its errors are let through."""
    import logging

    found = logging.getLogger("azure.identity")
    if found.level == logging.NOTSET:
        found.setLevel(logging.ERROR)


def _make(
    method: str, tenant: str | None, client: str | None, secret: str | None, cert: str | None
) -> TokenCredential:
    import azure.identity as identity

    if method == "managed_identity":
        return (
            identity.ManagedIdentityCredential(client_id=client)
            if client
            else identity.ManagedIdentityCredential()
        )
    if method == "cli":
        return identity.AzureCliCredential(tenant_id=tenant or "")
    if method == "environment":
        return identity.EnvironmentCredential()
    if method == "workload_identity":
        token_file = os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        missing = [
            n for n, v in (("tenant", tenant), ("client ID", client), ("token file", token_file)) if not v
        ]
        if missing:
            raise AzureError(
                f"azure_auth='workload_identity' lacks its {', '.join(missing)}",
                hint=_HINTS[method],
                exit_code=CONFIG,
            )
        return identity.WorkloadIdentityCredential(
            tenant_id=str(tenant), client_id=str(client), token_file_path=str(token_file)
        )
    if method == "service_principal":
        missing = [n for n, v in (("azure_tenant_id", tenant), ("azure_client_id", client)) if not v]
        if not secret and not cert:
            missing.append("azure_client_secret or azure_client_certificate")
        if missing:
            raise AzureError(
                f"azure_auth='service_principal' lacks {', '.join(missing)}",
                hint=_HINTS[method],
                exit_code=CONFIG,
            )
        if cert:
            if not os.path.isfile(cert):
                raise AzureError(
                    f"azure_client_certificate {cert!r} is not a file",
                    hint="give the path of the service principal's PEM or PKCS12 certificate",
                    exit_code=CONFIG,
                )
            return identity.CertificateCredential(str(tenant), str(client), certificate_path=cert)
        return identity.ClientSecretCredential(str(tenant), str(client), str(secret))
    # The SDK's chain; it reads AZURE_TOKEN_CREDENTIALS itself.
    kwargs: dict[str, Any] = {}
    if client:
        kwargs["managed_identity_client_id"] = client
    return identity.DefaultAzureCredential(**kwargs)


def token_error(exc: BaseException, method: str) -> AzureError:
    """An :class:`AzureError` for a credential that gave no token: each method tried, and why."""
    text = str(getattr(exc, "message", None) or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    context: list[str] = []
    if "Attempted credentials:" in lines:
        start = lines.index("Attempted credentials:") + 1
        for line in lines[start:]:
            if line.lower().startswith("to mitigate this issue"):
                break
            context.append(f"tried {line}")
        headline = (
            "Azure authentication failed: no credential of the DefaultAzureCredential chain gave a token"
        )
    else:
        headline = f"Azure authentication failed ({method}): {lines[0] if lines else type(exc).__name__}"
        context = [ln for ln in lines[1:] if not ln.lower().startswith("to mitigate")][:6]
    return AzureError(headline, hint=_HINTS.get(method, _HINTS["default"]), context=context, exit_code=CONFIG)
