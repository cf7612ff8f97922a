"""The ``config(vault_...)`` keys, contributed to the core through ``nexus_config_options``.

Cheap to import (the plugin manager asks for them at every start): no hvac here. Each key
also has a ``NEXUS_VAULT_...`` variable (the core's rule for every key); the standard Vault
variables (``VAULT_ADDR``, ``VAULT_TOKEN``, ``VAULT_NAMESPACE``, ``VAULT_CACERT``...) are read
by :mod:`nexus_vault.settings` when the key is not set.
"""

from __future__ import annotations

from typing import Any

from nexus_core.plugin import Option

#: ``vault_auth`` values.
AUTH_METHODS = ("token", "approle", "kubernetes")
_NUM = (int, float)


def _addr(value: Any) -> str | None:
    if not str(value).startswith(("http://", "https://")):
        return f"vault_addr must start with https:// or http://, not {value!r} (e.g. https://vault.example.com:8200)"
    return None


def _mount(value: Any) -> str | None:
    if not str(value).strip("/"):
        return "vault_mount must name a mount (e.g. 'secret' or 'kv'), not an empty string"
    return None


def config_options() -> list[Option]:
    """Every ``vault_*`` key: names, types, defaults, choices and help."""
    return [
        Option("vault_addr", (str,), None, "Vault address (default: VAULT_ADDR)", check=_addr),
        Option(
            "vault_auth",
            (str,),
            "token",
            "how to log in: 'token' (VAULT_TOKEN or ~/.vault-token), 'approle', 'kubernetes'",
            choices=AUTH_METHODS,
        ),
        Option(
            "vault_auth_mount",
            (str,),
            None,
            "path the auth method is mounted at (default: 'approle', 'kubernetes' or 'token')",
        ),
        Option(
            "vault_mount",
            (str,),
            None,
            "KV v2 mount the references are relative to (default: the reference's first segment)",
            check=_mount,
        ),
        Option("vault_namespace", (str,), None, "Vault Enterprise namespace (default: VAULT_NAMESPACE)"),
        Option("vault_role_id", (str,), None, "AppRole role_id (default: VAULT_ROLE_ID)"),
        Option("vault_secret_id", (str,), None, "AppRole secret_id (default: VAULT_SECRET_ID)"),
        Option("vault_k8s_role", (str,), None, "Kubernetes auth role"),
        Option(
            "vault_jwt_file",
            (str,),
            None,
            "service account token for Kubernetes auth "
            "(default: /var/run/secrets/kubernetes.io/serviceaccount/token)",
        ),
        Option(
            "vault_ca_cert",
            (str,),
            None,
            "CA bundle (file or folder) to verify Vault (default: VAULT_CACERT)",
        ),
        Option("vault_client_cert", (str,), None, "client certificate for TLS (default: VAULT_CLIENT_CERT)"),
        Option("vault_client_key", (str,), None, "client certificate's key (default: VAULT_CLIENT_KEY)"),
        Option(
            "vault_verify",
            (bool,),
            None,
            "verify Vault's certificate (default: true unless VAULT_SKIP_VERIFY)",
        ),
        Option("vault_timeout", _NUM, 10, "seconds per request to Vault", minimum=0.1),
        Option("vault_retries", (int,), 2, "extra attempts when Vault cannot be reached", minimum=0),
        Option(
            "vault_cache_ttl",
            _NUM,
            0,
            "seconds an encrypted local copy may stand in for Vault when it cannot be reached (0: no copy)",
            minimum=0,
        ),
    ]
