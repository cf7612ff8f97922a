"""What went wrong with Vault, in words: every hvac or network error becomes a ``SecretError``.

Each message is one line, as the core shows it after ``secret(...)``: the reference, the
problem and the Vault address (and namespace), then ``"; "`` and the fix. Messages carry
Vault's own error text (which never holds a secret value) and never a token, a secret_id or
a value.

``requests`` (hvac's HTTP library) is not imported: its exceptions derive from ``OSError`` and
are told apart by class name (``SSLError``, ``Timeout``, ``ConnectionError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nexus_core.plugin import SecretDenied, SecretError, SecretNotFound, SecretUnavailable

from nexus_vault.reference import Reference
from nexus_vault.settings import VaultSettings


def for_core(err: SecretError) -> SecretError:
    """``err`` as the backend hands it to the core: the message without its subject, the fix as ``hint``.

    Messages are built as ``SUBJECT: PROBLEM: WHERE; FIX`` (the subject being the reference,
    or ``vault``), which reads well in the backend's own warnings; the core names the
    reference itself (``secret('vault:kv/app#key'): ...``) and shows the hint under the
    message, so each error says what, where and how to fix it once.
    """
    if err.hint:
        return err
    text = str(err)
    head, sep, rest = text.partition(": ")
    if sep and (head == "vault" or (head.startswith("vault:") and " " not in head)):
        text = rest
    problem, _, fix = text.partition("; ")
    return type(err)(problem, fix)


def headline(err: BaseException) -> str:
    """The problem part of one of our messages: between ``"REFERENCE: "`` and the first ``"; "``."""
    return str(err).partition("; ")[0].partition(": ")[2] or str(err)


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _errors(exc: BaseException) -> list[str]:
    """Vault's ``errors`` list of an hvac exception, as clean one-line strings."""
    errors = getattr(exc, "errors", None)
    if not isinstance(errors, list):
        return []
    found = []
    for item in errors:
        for line in str(item).splitlines():
            line = line.strip().lstrip("*").strip()
            if line and not line.endswith("error occurred:") and not line.endswith("errors occurred:"):
                found.append(line)
    return found


def _json(exc: BaseException) -> dict[str, Any]:
    body = getattr(exc, "json", None)
    return body if isinstance(body, dict) else {}


def is_hvac_error(exc: BaseException) -> bool:
    """True for hvac's ``VaultError`` family (Vault answered with an error status)."""
    return "VaultError" in _names(exc)


def is_network_error(exc: BaseException) -> bool:
    """True when Vault could not be reached or did not answer (refused, reset, DNS, TLS, timeout)."""
    return isinstance(exc, OSError) and not is_hvac_error(exc)


def is_sealed(exc: BaseException) -> bool:
    """True for Vault's 503 ``Vault is sealed``."""
    return "VaultDown" in _names(exc) and any("sealed" in e.lower() for e in _errors(exc))


def is_invalid_token(exc: BaseException) -> bool:
    """True when Vault says the token itself is bad (expired, revoked, unknown): 403 ``invalid token``."""
    return "Forbidden" in _names(exc) and any("invalid token" in e.lower() for e in _errors(exc))


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the network (not TLS), a timeout, or a 5xx/429 other than "sealed"."""
    names = _names(exc)
    if is_network_error(exc):
        return "SSLError" not in names
    return bool(
        names & {"InternalServerError", "BadGateway", "RateLimitExceeded", "VaultDown"}
    ) and not is_sealed(exc)


def is_unavailable(exc: BaseException) -> bool:
    """Vault is not usable at all (what opens the circuit breaker): network, TLS, sealed, 5xx."""
    names = _names(exc)
    return is_network_error(exc) or bool(
        names & {"InternalServerError", "BadGateway", "RateLimitExceeded", "VaultDown", "VaultNotInitialized"}
    )


def _network(exc: BaseException, settings: VaultSettings) -> tuple[str, str]:
    names = _names(exc)
    text = str(exc)
    if "SSLError" in names or "SSL" in text:
        low = text.lower()
        if "certificate required" in low or ("alert" in low and "certificate" in low):
            return (
                "Vault refused the TLS connection: it requires a client certificate it trusts",
                "set config(vault_client_cert=..., vault_client_key=...) "
                "or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY",
            )
        if "verify failed" in low or "self-signed" in low or "self signed" in low or "hostname" in low:
            ca = settings.verify if isinstance(settings.verify, str) else "the system's CA bundle"
            return (
                f"Vault's TLS certificate could not be verified against {ca}",
                "pass the CA that signed Vault's certificate with config(vault_ca_cert=...) or VAULT_CACERT "
                "(vault_verify=False turns verification off: for throw-away test servers only)",
            )
        if "key values mismatch" in low or "pem lib" in low or "no such file" in low:
            return (
                "the client certificate or key could not be loaded",
                "check vault_client_cert / vault_client_key (PEM files, the key matching the certificate)",
            )
        if "wrong version number" in low or "record layer failure" in low or "unknown protocol" in low:
            return (
                "Vault does not speak TLS at this address",
                "if Vault serves plain HTTP, vault_addr must start with http://",
            )
        if settings.client_cert is None and ("eof" in low or "reset" in low):
            return (
                "Vault closed the TLS connection: it probably requires a client certificate",
                "set config(vault_client_cert=..., vault_client_key=...) "
                "or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY",
            )
        return (
            "the TLS handshake with Vault failed",
            "check the certificate options (vault_ca_cert, vault_client_cert, vault_client_key)",
        )
    if "Timeout" in names or "timed out" in text:
        return (
            f"Vault did not answer within {settings.timeout:g} s",
            "check the network path to Vault, or raise config(vault_timeout=...)",
        )
    short = _short_network(text)
    fix = "check vault_addr / VAULT_ADDR and that Vault is running and reachable from here"
    if settings.addr.startswith("http://") and short in ("connection reset", "connection closed by Vault"):
        fix += " (if Vault serves HTTPS, vault_addr must start with https://)"
    return f"Vault cannot be reached ({short})", fix


def _short_network(text: str) -> str:
    low = text.lower()
    for needle, short in (
        ("connection refused", "connection refused"),
        ("name or service not known", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("temporary failure in name resolution", "host name lookup failed"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
        ("connection reset", "connection reset"),
        ("remotedisconnected", "connection closed by Vault"),
    ):
        if needle in low:
            return short
    return "network error"


def _denied_fix(settings: VaultSettings) -> str:
    if settings.auth == "token":
        source = settings.token_source or "VAULT_TOKEN"
        return (
            f"get a new token (`vault login`, or renew it) and set VAULT_TOKEN (this one came from {source})"
        )
    if settings.auth == "approle":
        return (
            "check vault_role_id / vault_secret_id (secret IDs expire and can be used up: create a new one)"
        )
    return (
        f"check that the Vault role {settings.k8s_role!r} is bound to this pod's service account and "
        f"namespace, and that {settings.jwt_file} holds its current token"
    )


def explain(
    exc: BaseException,
    settings: VaultSettings,
    ref: Reference | None = None,
    *,
    login: bool = False,
    hide: Iterable[str] = (),
) -> SecretError:
    """A ``SecretError`` for ``exc`` raised while logging in (``login``) or reading ``ref``.

    Vault's own words are quoted, with the credentials (the token, the secret ID, and what
    ``hide`` adds: a service account token, a token a login returned) replaced by ``***``: a
    proxy or a plugin in front of Vault may echo what it was sent.
    """
    if isinstance(exc, SecretError):
        return exc
    subject = ref.shown if ref is not None else "vault"
    where = settings.where
    names = _names(exc)
    errors = [_scrub(e, (settings.token, settings.secret_id, *hide)) for e in _errors(exc)]
    said = ", ".join(errors)
    if is_network_error(exc):
        problem, fix = _network(exc, settings)
        return SecretUnavailable(f"{subject}: {problem}: {where}; {fix}")
    if is_sealed(exc):
        return SecretUnavailable(
            f"{subject}: Vault at {where} is sealed; "
            "it must be unsealed (`vault operator unseal`) by its operators before secrets can be read"
        )
    if is_invalid_token(exc) or (login and settings.auth == "token" and "Forbidden" in names):
        return SecretDenied(
            f"{subject}: the Vault token is invalid or expired: {where}; {_denied_fix(settings)}"
        )
    if login:
        how = {"token": "token lookup", "approle": "AppRole login", "kubernetes": "Kubernetes login"}[
            settings.auth
        ]
        if names & {"InvalidRequest", "Forbidden", "Unauthorized"}:
            what = f"{how} was refused ({said or 'permission denied'})"
            return SecretDenied(f"{subject}: {what}: {where}; {_denied_fix(settings)}")
        if "InvalidPath" in names:
            return SecretDenied(
                f"{subject}: no {settings.auth} auth method at auth/{settings.auth_mount}: {where}; "
                "set config(vault_auth_mount=...) to the path it is enabled at (`vault auth list`)"
            )
    if "Forbidden" in names and ref is not None:
        return SecretDenied(
            f"{subject}: permission denied reading {ref.api_path}: {where}; "
            f'the token\'s policies must allow it: path "{ref.api_path}" {{ capabilities = ["read"] }}'
        )
    if "InvalidPath" in names and ref is not None:
        return not_found(settings, ref, exc)
    if "InvalidRequest" in names and ref is not None:
        return SecretNotFound(
            f"{subject}: Vault refused the read of {ref.api_path} ({said or 'bad request'}): {where}; "
            "check that the mount is a KV version 2 engine (`vault secrets list -detailed`)"
        )
    status = getattr(exc, "status_code", None) or type(exc).__name__
    return SecretUnavailable(
        f"{subject}: Vault answered with an error ({said or status}): {where}; "
        "try again; if it persists, Vault's operators can tell from its logs"
    )


def _scrub(text: str, hidden: Iterable[str | None]) -> str:
    for value in sorted({h for h in hidden if h}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def not_vault(reply: Any, settings: VaultSettings, ref: Reference | None) -> SecretError:
    """``SecretUnavailable`` for an answer that is not Vault's JSON object (a proxy, a login page)."""
    subject = ref.shown if ref is not None else "vault"
    status = getattr(reply, "status_code", None)
    headers = getattr(reply, "headers", None) or {}
    if status is not None:
        what = f"HTTP {status}, {headers.get('Content-Type') or 'no content type'}"
    else:
        what = f"JSON {type(reply).__name__}"
    return SecretUnavailable(
        f"{subject}: the answer from {settings.where} is not Vault's ({what}, not a JSON object); "
        "check that vault_addr / VAULT_ADDR is Vault's API address (https://HOST:8200), "
        "not a proxy, a login page or the web UI"
    )


def not_found(settings: VaultSettings, ref: Reference, exc: BaseException | None = None) -> SecretError:
    """``SecretNotFound`` for ``ref``: a deleted version, a missing mount, or no secret (with hints)."""
    where = settings.where
    errors = _errors(exc) if exc is not None else []
    metadata = ((_json(exc).get("data") or {}).get("metadata")) if exc is not None else {}
    metadata = metadata or {}
    if isinstance(metadata, dict) and (metadata.get("deletion_time") or metadata.get("destroyed")):
        version = metadata.get("version") or ref.version or "latest"
        how = "destroyed" if metadata.get("destroyed") else "deleted"
        return SecretNotFound(
            f"{ref.shown}: version {version} of {ref.mount}/{ref.path} was {how}: {where}; "
            + (
                f"read another version (…@N) or restore it: vault kv undelete -versions={version} "
                f"{ref.mount}/{ref.path}"
                if how == "deleted"
                else "read another version (…@N): a destroyed version cannot come back"
            )
        )
    if any("no handler for route" in e for e in errors):
        return SecretNotFound(
            f"{ref.shown}: no KV version 2 engine is mounted at {ref.mount!r}: {where}; "
            "name the mount first in the reference (vault:MOUNT/PATH#KEY) or set config(vault_mount=...); "
            "`vault secrets list` shows the mounts"
        )
    hints = []
    segments = ref.path.split("/")
    if settings.mount and segments[0] == ref.mount:
        hints.append(
            f"vault_mount={settings.mount!r} is set, so the reference is inside that mount: "
            f"write vault:{'/'.join(segments[1:])}{'#' + ref.key if ref.key else ''}"
        )
    if segments[0] in ("data", "metadata"):
        hints.append(f"leave '{segments[0]}/' out: Nexus adds the KV v2 'data/' segment itself")
    version = f" version {ref.version}" if ref.version else ""
    hints.append(f"check the path with `vault kv get -mount={ref.mount} {ref.path}`")
    return SecretNotFound(
        f"{ref.shown}: no secret{version} at {ref.mount}/{ref.path} (read {ref.api_path}): {where}; "
        + "; ".join(hints)
    )
