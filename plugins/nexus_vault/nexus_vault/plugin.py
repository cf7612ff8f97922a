"""Entry module of the ``nexus-vault`` plugin (entry point ``nexus: vault``).

Cheap to import: the backend is named as a ``"module:Class"`` registration, so hvac,
requests, pybreaker and cryptography are imported only when a run resolves a ``vault:``
secret (``secret("vault:kv/app#db_password")``, or any ``secret(...)`` with
``config(secret_backend="vault")``).
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.plugin import Option, Registration, hookimpl

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1


@hookimpl
def nexus_secret_backends() -> Sequence[Registration]:
    """The ``vault`` backend (:class:`nexus_vault.backend.VaultBackend`): HashiCorp Vault's KV v2."""
    return [Registration("vault", "nexus_vault.backend:VaultBackend")]


@hookimpl
def nexus_config_options() -> Sequence[Option]:
    """The ``vault_*`` keys (``nexus_vault.options``): address, auth method and its credentials,
    KV mount, namespace, TLS (CA, client certificate, verify), timeout, retries, cache TTL.

    Unset keys fall back to Vault's own variables (``VAULT_ADDR``, ``VAULT_TOKEN``,
    ``VAULT_NAMESPACE``, ``VAULT_CACERT``, ``VAULT_CLIENT_CERT``, ``VAULT_CLIENT_KEY``,
    ``VAULT_SKIP_VERIFY``); see docs/plugins/vault.md.
    """
    from nexus_vault.options import config_options

    return config_options()
