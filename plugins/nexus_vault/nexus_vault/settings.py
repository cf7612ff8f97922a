"""The Vault settings of one run: ``config(vault_...)`` first, then the standard ``VAULT_*`` variables.

Precedence for each setting: the ``vault_*`` key (``config(...)``, or ``NEXUS_VAULT_*``, or a
Nexus config file, as for every key), then Vault's own variable, then the default:

=================== ========================== =============================================
key                 Vault variable             default
=================== ========================== =============================================
vault_addr          VAULT_ADDR                 none: an error says to set one
vault_namespace     VAULT_NAMESPACE            none (the root namespace)
(token)             VAULT_TOKEN                ``~/.vault-token`` (what ``vault login`` writes)
vault_role_id       VAULT_ROLE_ID              none
vault_secret_id     VAULT_SECRET_ID            none
vault_ca_cert       VAULT_CACERT, VAULT_CAPATH the system's CA bundle
vault_client_cert   VAULT_CLIENT_CERT          none
vault_client_key    VAULT_CLIENT_KEY           none
vault_verify        VAULT_SKIP_VERIFY (negated) true
=================== ========================== =============================================

The token is deliberately not a ``config()`` key: a token belongs in the environment or in
the file ``vault login`` writes, never in a nexusfile that is committed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nexus_core.plugin import SecretError

#: Where Kubernetes mounts a pod's service account token.
K8S_JWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#: Default mount path of each auth method.
AUTH_MOUNTS = {"token": "token", "approle": "approle", "kubernetes": "kubernetes"}


class VaultConfigError(SecretError):
    """The Vault settings are incomplete or contradictory (the message says which key to set)."""


@dataclass(frozen=True)
class VaultSettings:
    """Everything needed to reach and log in to Vault (the token and secret_id never printed)."""

    addr: str
    auth: str = "token"
    auth_mount: str = "token"
    mount: str | None = None
    namespace: str | None = None
    token: str | None = None
    token_source: str = ""
    role_id: str | None = None
    secret_id: str | None = None
    k8s_role: str | None = None
    jwt_file: str = K8S_JWT
    verify: bool | str = True
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = 10.0
    retries: int = 2
    cache_ttl: float = 0.0

    @property
    def where(self) -> str:
        """The address, and the namespace when there is one, for messages."""
        return f"{self.addr} (namespace {self.namespace})" if self.namespace else self.addr

    @property
    def cert(self) -> tuple[str, str] | None:
        """The (certificate, key) pair for hvac, or None without a client certificate."""
        if not self.client_cert:
            return None
        return (self.client_cert, self.client_key or self.client_cert)

    def __repr__(self) -> str:  # never show credentials, even in a debug log
        return f"VaultSettings(addr={self.addr!r}, auth={self.auth!r}, namespace={self.namespace!r})"


def _truthy(text: str) -> bool:
    return text.strip().lower() not in ("", "0", "false", "no", "off")


def _pick(config: Mapping[str, Any], key: str, environ: Mapping[str, str], *variables: str) -> Any:
    value = config.get(key)
    if value is not None and value != "":
        return value
    for name in variables:
        if environ.get(name):
            return environ[name]
    return None


def _read_token(environ: Mapping[str, str]) -> tuple[str | None, str]:
    """(token, where it came from): VAULT_TOKEN, else the token helper file ``vault login`` writes."""
    if environ.get("VAULT_TOKEN"):
        return environ["VAULT_TOKEN"].strip(), "VAULT_TOKEN"
    home = environ.get("HOME") or os.path.expanduser("~")
    path = os.path.join(home, ".vault-token")
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError:
        return None, ""
    return (token or None), path


def load(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> VaultSettings:
    """The settings from ``config`` (the run's ``config(...)`` values) and ``environ``.

    Raises :class:`VaultConfigError` naming the missing key and how to set it.
    """
    env = os.environ if environ is None else environ
    addr = _pick(config, "vault_addr", env, "VAULT_ADDR")
    if not addr:
        raise VaultConfigError(
            "no Vault address; set config(vault_addr='https://vault.example.com:8200') or VAULT_ADDR"
        )
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(addr))
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is not a number or out of range
        usable = False
    if not usable:
        raise VaultConfigError(
            f"the Vault address {str(addr)!r} is not an http(s) URL; "
            "set config(vault_addr='https://vault.example.com:8200') or VAULT_ADDR to one"
        )
    auth = str(config.get("vault_auth") or "token")
    token, token_source = _read_token(env) if auth == "token" else (None, "")
    if auth == "token" and not token:
        raise VaultConfigError(
            f"no Vault token for {addr}; "
            "set VAULT_TOKEN, run `vault login` (it writes ~/.vault-token), "
            "or log in another way with config(vault_auth='approle' or 'kubernetes')"
        )
    role_id = _pick(config, "vault_role_id", env, "VAULT_ROLE_ID")
    secret_id = _pick(config, "vault_secret_id", env, "VAULT_SECRET_ID")
    if auth == "approle" and not role_id:
        raise VaultConfigError(
            f"vault_auth='approle' needs a role_id for {addr}; set config(vault_role_id=...) or VAULT_ROLE_ID"
        )
    k8s_role = config.get("vault_k8s_role")
    if auth == "kubernetes" and not k8s_role:
        raise VaultConfigError(
            f"vault_auth='kubernetes' needs the Vault role to log in as ({addr}); "
            "set config(vault_k8s_role='my-app')"
        )
    ca = _pick(config, "vault_ca_cert", env, "VAULT_CACERT", "VAULT_CAPATH")
    verify_key = config.get("vault_verify")
    if verify_key is None:
        skip = env.get("VAULT_SKIP_VERIFY", "")
        verify: bool | str = not _truthy(skip)
    else:
        verify = bool(verify_key)
    if verify is True and ca:
        verify = os.path.expanduser(str(ca))
    client_cert = _pick(config, "vault_client_cert", env, "VAULT_CLIENT_CERT")
    client_key = _pick(config, "vault_client_key", env, "VAULT_CLIENT_KEY")
    for key, path in (
        ("vault_ca_cert", ca),
        ("vault_client_cert", client_cert),
        ("vault_client_key", client_key),
    ):
        if path and not os.path.exists(os.path.expanduser(str(path))):
            raise VaultConfigError(f"{key}: {path} does not exist; pass the path of an existing PEM file")
    if (
        ca
        and os.path.isdir(os.path.expanduser(str(ca)))
        and not pem_certificates(os.path.expanduser(str(ca)))
    ):
        raise VaultConfigError(
            f"vault_ca_cert: the folder {ca} holds no PEM certificate; put the CA there "
            "(a file with -----BEGIN CERTIFICATE-----) or pass the CA file itself"
        )
    return VaultSettings(
        addr=str(addr).rstrip("/"),
        auth=auth,
        auth_mount=str(config.get("vault_auth_mount") or AUTH_MOUNTS[auth]).strip("/"),
        mount=config.get("vault_mount"),
        namespace=_pick(config, "vault_namespace", env, "VAULT_NAMESPACE"),
        token=token,
        token_source=token_source,
        role_id=role_id,
        secret_id=secret_id,
        k8s_role=k8s_role,
        jwt_file=os.path.expanduser(str(config.get("vault_jwt_file") or K8S_JWT)),
        verify=verify,
        client_cert=os.path.expanduser(str(client_cert)) if client_cert else None,
        client_key=os.path.expanduser(str(client_key)) if client_key else None,
        timeout=float(config.get("vault_timeout") or 10),
        retries=int(config.get("vault_retries", 2) or 0),
        cache_ttl=float(config.get("vault_cache_ttl") or 0),
    )


def pem_certificates(folder: str) -> list[str]:
    """The text of each file in ``folder`` that holds a PEM certificate (in name order)."""
    found: list[str] = []
    for name in sorted(os.listdir(folder)):
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                text = fh.read(1 << 20)
        except OSError:  # a subfolder, an unreadable file: not a certificate of ours
            continue
        if "-----BEGIN CERTIFICATE-----" in text:
            found.append(text)
    return found
