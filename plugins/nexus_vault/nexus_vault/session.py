"""One logged-in hvac client per run: login once, renew the token in the background, read KV v2.

- **One login per run**: the first read logs in (token lookup, AppRole or Kubernetes login);
  every later read reuses the token. Ansible's Vault lookups log in again for each lookup
  (community.hashi_vault#104); a run of Nexus over 50 secrets makes one login.
- **Renewal**: a renewable token is renewed (``renew-self``) by a daemon thread when two
  thirds of its TTL have passed, for as long as the run lasts (bounded: at most
  :data:`MAX_RENEWALS` renewals, and it stops at ``close``). When Vault will not extend it
  any more (the max TTL), AppRole and Kubernetes log in again before it expires; a token
  given by the user cannot be replaced, so a warning says when it will expire.
- **Retries** (tenacity): a read or login that fails on the network or with a 5xx is tried
  ``vault_retries`` more times (exponential backoff with jitter); never on 403/404/400, a
  TLS failure or a sealed Vault.
- **Circuit breaker** (pybreaker): the first read that still fails because Vault is
  unusable opens the circuit; every later read of the run fails at once with that same
  explanation (or is served from the encrypted cache) instead of waiting for its own
  timeouts. After :data:`RESET_SECONDS` one read is let through to try again.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import pybreaker
from nexus_core.plugin import SecretError, SecretUnavailable
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from nexus_vault import errors
from nexus_vault.reference import Reference
from nexus_vault.settings import VaultConfigError, VaultSettings, pem_certificates

log = logging.getLogger("nexus.vault")

#: Renewals one run makes at most (a guard for the loop; a day of 1-minute tokens is 2160).
MAX_RENEWALS = 10_000
#: Shortest wait between two renewals, in seconds.
MIN_RENEW_WAIT = 0.5
#: Seconds the circuit stays open before one read may try Vault again.
RESET_SECONDS = 30.0


def _read_version(client: Any, ref: Reference) -> Any:
    return client.secrets.kv.v2.read_secret_version(
        path=ref.path, version=ref.version, mount_point=ref.mount, raise_on_deleted_version=True
    )


class CircuitOpen(SecretUnavailable):
    """Vault was found unusable earlier in this run; not asked again until the circuit resets."""


class VaultSession:
    """A lazily logged-in hvac client shared by every read of one run (thread-safe)."""

    def __init__(self, settings: VaultSettings, warn: Callable[[str], None] = lambda _m: None) -> None:
        self.settings = settings
        self.warn = warn
        self.logins = 0
        self.renewals = 0
        self._client: Any = None
        self._expires_at: float | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._first_failure: SecretError | None = None
        self._warned: set[str] = set()
        #: Credentials besides the settings' that Vault's error texts must not show.
        self._hidden: set[str] = set()
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=1,
            reset_timeout=RESET_SECONDS,
            exclude=[lambda exc: not errors.is_unavailable(exc)],
            throw_new_error_on_trip=False,
            name="vault",
        )

    # --- calls -----------------------------------------------------------------------------

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2),
            retry=retry_if_exception(errors.is_transient),
            reraise=True,
        )

    def _call(self, action: Callable[[], Any], ref: Reference | None, *, login: bool = False) -> Any:
        """Run ``action`` with retries inside the circuit breaker; explain any failure."""

        def checked() -> Any:
            reply = action()
            # hvac hands back the HTTP response itself when the body is not JSON (or empty)
            if reply is None or isinstance(reply, dict) or getattr(reply, "status_code", None) == 204:
                return reply
            raise errors.not_vault(reply, self.settings, ref)

        try:
            return self._breaker.call(lambda: self._retrying()(checked))
        except pybreaker.CircuitBreakerError:
            first = self._first_failure
            headline = errors.headline(first) if first else "Vault could not be used"
            subject = ref.shown if ref is not None else "vault"
            raise CircuitOpen(
                f"{subject}: not asked, Vault failed earlier in this run ({headline}); "
                "fix that first; Nexus asks Vault again after "
                f"{RESET_SECONDS:g} s (vault_cache_ttl lets encrypted copies stand in meanwhile)"
            ) from None
        except SecretError:
            raise
        except Exception as exc:  # hvac and requests errors: explained, never a traceback
            err = errors.explain(exc, self.settings, ref, login=login, hide=self._hidden)
            if errors.is_unavailable(exc):
                self._first_failure = err  # what the open circuit will repeat
            raise err from None

    # --- login and renewal --------------------------------------------------------------------

    def client(self, ref: Reference | None = None) -> Any:
        """The logged-in hvac client (logs in on first use, and again when a login's token ran out)."""
        with self._lock:
            expired = self._expires_at is not None and time.monotonic() >= self._expires_at - 1
            if self._client is None or (expired and self.settings.auth != "token"):
                self._login(ref)
            return self._client

    def _new_client(self) -> Any:
        import hvac

        s = self.settings
        if s.verify is False and s.addr.startswith("https://"):
            # urllib3 would print its own warning on every request; one line from us instead.
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
            self._warn_once(
                "verify",
                f"vault: the TLS certificate of {s.addr} is not verified (vault_verify=False or "
                "VAULT_SKIP_VERIFY): pass its CA with vault_ca_cert instead",
            )
        return hvac.Client(
            url=s.addr,
            token=s.token or "",
            verify=ca_bundle(s.verify),
            cert=s.cert,
            timeout=s.timeout,
            namespace=s.namespace or None,
        )

    def _login(self, ref: Reference | None) -> None:
        s = self.settings
        client = self._new_client()
        if s.auth == "token":
            info = self._call(lambda: client.auth.token.lookup_self(), ref, login=True)
            data = info.get("data") or {}
            ttl, renewable = float(data.get("ttl") or 0), bool(data.get("renewable"))
        else:
            if s.auth == "approle":

                def action() -> Any:
                    return client.auth.approle.login(
                        role_id=s.role_id, secret_id=s.secret_id, mount_point=s.auth_mount
                    )

            else:
                jwt = self._jwt(ref)
                self._hidden.add(jwt)

                def action() -> Any:
                    return client.auth.kubernetes.login(role=s.k8s_role, jwt=jwt, mount_point=s.auth_mount)

            auth = self._call(action, ref, login=True).get("auth") or {}
            ttl, renewable = float(auth.get("lease_duration") or 0), bool(auth.get("renewable"))
        self.logins += 1
        if client.token:
            self._hidden.add(str(client.token))
        self._client = client
        self._expires_at = time.monotonic() + ttl if ttl > 0 else None
        log.debug("vault: logged in to %s with %s (ttl %ss, renewable %s)", s.where, s.auth, ttl, renewable)
        if ttl > 0 and renewable and self._renewer is None:
            self._renewer = threading.Thread(
                target=self._renew_loop, args=(ttl,), name="nexus-vault-renew", daemon=True
            )
            self._renewer.start()

    def _jwt(self, ref: Reference | None) -> str:
        path = self.settings.jwt_file
        subject = ref.shown if ref is not None else "vault"
        try:
            with open(path, encoding="utf-8") as fh:
                jwt = fh.read().strip()
        except OSError as exc:
            raise VaultConfigError(
                f"{subject}: cannot read the Kubernetes service account token {path} ({exc.strerror}); "
                "run inside a pod with a service account, or set config(vault_jwt_file=...)"
            ) from None
        if not jwt:
            raise VaultConfigError(f"{subject}: the Kubernetes service account token {path} is empty")
        return jwt

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(message)

    def _renew_loop(self, ttl: float) -> None:
        """Renew the token at two thirds of its TTL until ``close`` (bounded by MAX_RENEWALS)."""
        for _ in range(MAX_RENEWALS):
            wait = max(MIN_RENEW_WAIT, ttl * 2 / 3)
            if self._stop.wait(wait):
                return
            try:
                with self._lock:
                    if self._client is None:  # logged out after a failed renewal: the next read logs in
                        continue
                    reply = self._client.auth.token.renew_self()
            except Exception as exc:  # reported as a warning; the next read will say more
                if self.settings.auth != "token":
                    log.debug("vault: renewal failed (%s); logging in again", type(exc).__name__)
                    with self._lock:
                        self._client = None  # the next read logs in again
                    continue
                self._warn_once(
                    "renew",
                    f"vault: could not renew the token at {self.settings.where} "
                    f"({errors.headline(errors.explain(exc, self.settings, hide=self._hidden))})",
                )
                return
            new_ttl = float((reply.get("auth") or {}).get("lease_duration") or 0)
            self.renewals += 1
            with self._lock:
                self._expires_at = time.monotonic() + new_ttl if new_ttl > 0 else None
            if new_ttl <= wait:  # Vault stopped extending it: the max TTL is near
                if self.settings.auth == "token":
                    self._warn_once(
                        "max-ttl",
                        f"vault: the token for {self.settings.where} reached its max TTL and expires in "
                        f"{new_ttl:.0f} s; later reads will fail (get a token with a longer max TTL)",
                    )
                    return
                with self._lock:
                    self._client = None  # AppRole/Kubernetes: the next read logs in again
            ttl = new_ttl if new_ttl > 0 else ttl

    # --- reads and writes -------------------------------------------------------------------

    def read(self, ref: Reference) -> dict[str, Any]:
        """The KV data of ``ref``'s secret (all its keys), at its version or the latest."""
        for attempt in range(2):  # a second time only after logging in again on "invalid token"
            action = partial(_read_version, self.client(ref), ref)
            try:
                reply = self._call(action, ref)
            except SecretError as err:
                if attempt == 0 and self.settings.auth != "token" and "invalid or expired" in str(err):
                    with self._lock:
                        self._client = None
                    continue
                raise
            data = (reply.get("data") or {}).get("data")
            if not isinstance(data, dict):
                raise errors.not_found(self.settings, ref)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, action: Callable[[Any], Any], ref: Reference | None = None) -> Any:
        """Run ``action(client)`` (a write, a list) with the same login, retries and explanations."""
        client = self.client(ref)
        return self._call(lambda: action(client), ref)

    def close(self) -> None:
        """Stop the renewal thread and close the HTTP session (the token is left to expire)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        with self._lock:
            if self._client is not None:
                try:
                    self._client.adapter.close()
                except Exception:  # closing is best effort
                    log.debug("vault: closing the HTTP session failed", exc_info=True)
                self._client = None


_BUNDLES: dict[str, str] = {}


def ca_bundle(verify: bool | str) -> bool | str:
    """What to give requests for ``verify``: a CA folder (``VAULT_CAPATH``) becomes one bundle
    file of every PEM certificate in it, as Vault's own CLI reads such a folder (OpenSSL alone
    would want its files named by their hash, ``openssl rehash``); anything else as it is."""
    import os

    if not isinstance(verify, str) or not os.path.isdir(verify):
        return verify
    found = _BUNDLES.get(verify)
    if found is not None and os.path.exists(found):
        return found
    import atexit
    import tempfile

    pems = pem_certificates(verify)
    if not pems:  # settings refused such a folder already
        return verify
    fd, bundle = tempfile.mkstemp(prefix="nexus-vault-ca-", suffix=".pem")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(p if p.endswith("\n") else p + "\n" for p in pems))
    atexit.register(_remove, bundle)
    _BUNDLES[verify] = bundle
    return bundle


def _remove(path: str) -> None:
    import contextlib
    import os

    with contextlib.suppress(OSError):
        os.unlink(path)
