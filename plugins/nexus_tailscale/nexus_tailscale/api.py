"""The API backend: ``GET {api_url}/api/v2/tailnet/{tailnet}/devices?fields=all``.

Credentials: an API access token (``tskey-api-...``, sent as a bearer token), or an OAuth
client whose short-lived token comes from ``POST {api_url}/api/v2/oauth/token``
(client-credentials grant) and is fetched again when it expires or is refused.

Requests are rate-limited (``limits``, a moving window shared by the whole process), retried
(``tenacity``: no answer, 5xx, and 429 honouring ``Retry-After``), and guarded by a circuit
breaker (``pybreaker``, one per API URL and tailnet): once the API has failed after its
retries, the other groups of the same run fail at once with the same message instead of
each waiting for the API again.

Each of the three is imported when it first has work, not before: the limiter at the
process's second request (a first request cannot exceed a rate; it is counted when the
limiter starts), tenacity at the first failure worth retrying, the breaker at the first
failure of the API. A run whose one request succeeds imports none of them (together with
``asyncio``, which ``limits`` and ``tenacity`` import, that is most of what discovery would
add to a run's start; docs/decisions.md has the figures).

HTTP goes through :mod:`http.client` (one or two requests per run need no client library);
:mod:`urllib.request`, which adds some twenty modules to a run, only when the environment names
a proxy (``HTTPS_PROXY``...: urllib honours them and ``NO_PROXY``), on macOS and Windows (whose
system proxy settings urllib reads), and to follow a redirect.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nexus_tailscale.devices import Tailnet, parse_devices
from nexus_tailscale.errors import CONFIG, CONNECTION, ApiError, TailscaleError
from nexus_tailscale.settings import DEFAULT_API_URL, ApiSettings, Credentials

if TYPE_CHECKING:
    from email.message import Message

    import pybreaker
    from limits.strategies import MovingWindowRateLimiter
    from tenacity import RetryCallState

__all__ = ["DEFAULT_API_URL", "ApiClient", "ApiSettings", "Credentials", "reset_state"]

#: Read at most this much of an answer (the CLI's own client stops at 10 MB).
MAX_BODY = 64 * 1024 * 1024
USER_AGENT = "nexus-tailscale"
_RATE_SCOPE = "tailscale-api"


# --- process-wide state: rate limiter, breakers, OAuth tokens -------------------------------------

_LOCK = threading.Lock()
_LIMITER: list[MovingWindowRateLimiter] = []  # made on the second request of the process
_REQUESTS: dict[str, int] = {}  # requests sent before the limiter existed, by API URL
_BREAKERS: dict[tuple[str, str], pybreaker.CircuitBreaker] = {}  # made at an API's first failure
_LAST_FAILURE: dict[tuple[str, str], ApiError] = {}
_TOKENS: dict[tuple[str, str], tuple[str, float]] = {}


def reset_state() -> None:
    """Forget breakers, tokens and rate windows (tests; a long-lived process after a fix)."""
    with _LOCK:
        _BREAKERS.clear()
        _LAST_FAILURE.clear()
        _TOKENS.clear()
        _REQUESTS.clear()
        _LIMITER.clear()


def _not_transient(exc: BaseException) -> bool:
    """Breaker exclusion: only an API that does not answer (or keeps failing) counts as dead."""
    return not (isinstance(exc, ApiError) and exc.transient)


def _breaker(key: tuple[str, str], reset: float) -> pybreaker.CircuitBreaker:
    import pybreaker

    with _LOCK:
        breaker = _BREAKERS.get(key)
        if breaker is None:
            breaker = pybreaker.CircuitBreaker(
                fail_max=1,
                reset_timeout=reset,
                exclude=[_not_transient],
                name=f"tailscale-api {key[0]} {key[1]}",
                throw_new_error_on_trip=False,
            )
            _BREAKERS[key] = breaker
        return breaker


def _trip(key: tuple[str, str], reset: float, exc: ApiError) -> None:
    """Count ``exc`` against the API's breaker (made now): later calls fail at once."""

    def fail() -> None:
        raise exc

    with contextlib.suppress(ApiError):
        _breaker(key, reset).call(fail)


def _wait_for_rate(rate: str, key: str, sleep: Callable[[float], None]) -> None:
    """Block until the process-wide window allows one more request to ``key`` (bounded)."""
    with _LOCK:
        if not _LIMITER and not _REQUESTS:  # the process's first request: nothing to limit yet
            _REQUESTS[key] = 1
            return
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    item = parse(rate)
    with _LOCK:
        if not _LIMITER:
            _LIMITER.append(MovingWindowRateLimiter(MemoryStorage()))
            for earlier_key, count in _REQUESTS.items():  # the requests sent before the limiter
                for _ in range(count):
                    _LIMITER[0].hit(item, _RATE_SCOPE, earlier_key)
        limiter = _LIMITER[0]
    for _ in range(1000):
        if limiter.hit(item, _RATE_SCOPE, key):
            return
        stats = limiter.get_window_stats(item, _RATE_SCOPE, key)
        sleep(min(max(stats.reset_time - time.time(), 0.01), 5.0))
    raise TailscaleError(
        f"the rate limit tailscale_api_rate={rate!r} never freed a slot", hint="raise tailscale_api_rate"
    )


# --- the client -------------------------------------------------------------------------------


class ApiClient:
    """Lists a tailnet's devices through the API; raises :class:`ApiError` with the fix."""

    def __init__(
        self,
        credentials: Credentials,
        settings: ApiSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if not credentials:
            raise TailscaleError(
                "no Tailscale API credentials",
                hint="set TS_API_KEY (or config(tailscale_api_key=...)), or an OAuth client: "
                "TS_OAUTH_ID and TS_OAUTH_SECRET (config tailscale_oauth_client_id/_secret)",
                exit_code=CONFIG,
            )
        self.credentials = credentials
        self.settings = settings or ApiSettings()
        self.base = self.settings.api_url.rstrip("/")
        self._sleep = sleep
        #: Told (one line) each time a failed request is retried: a run that waits says why.
        self._warn = warn

    # -- public ------------------------------------------------------------------------------

    def devices_url(self) -> str:
        """The URL the devices are listed from."""
        tailnet = urllib.parse.quote(self.settings.tailnet, safe="")
        return f"{self.base}/api/v2/tailnet/{tailnet}/devices?fields=all"

    def devices(self) -> Tailnet:
        """Every device of the tailnet (retried, rate-limited, behind the breaker)."""
        key = (self.base, self.settings.tailnet)
        url = self.devices_url()
        with _LOCK:
            breaker = _BREAKERS.get(key)
        try:
            # no failure yet in this process: no breaker to ask
            data = self._attempts(url) if breaker is None else self._through(breaker, key, url)
        except ApiError as exc:
            if exc.transient:
                _LAST_FAILURE[key] = exc
                if breaker is None:
                    _trip(key, self.settings.breaker_reset, exc)
            raise
        return parse_devices(data, what=f"the Tailscale API ({self.base})")

    def _through(self, breaker: pybreaker.CircuitBreaker, key: tuple[str, str], url: str) -> Any:
        import pybreaker

        try:
            return breaker.call(self._attempts, url)
        except pybreaker.CircuitBreakerError as exc:
            last = _LAST_FAILURE.get(key)
            if last is None:  # pragma: no cover - the breaker opens only after a recorded failure
                raise ApiError(f"the Tailscale API at {self.base} failed earlier in this run") from exc
            raise ApiError(
                last.headline,
                status=last.status,
                retry_after=last.retry_after,
                hint=last.hint,
                context=[*last.context, "(it failed earlier in this run: not asked again for this group)"],
                exit_code=last.exit_code,
            ) from exc

    # -- retries -----------------------------------------------------------------------------

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, ApiError) or not exc.transient:
            return False
        return exc.retry_after is None or exc.retry_after <= self.settings.max_wait

    def _wait(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds before the attempt after ``attempt``: ``Retry-After``, else backoff with jitter."""
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            return exc.retry_after
        import random

        return float(random.uniform(0, self.settings.backoff * 2 ** (attempt - 1)))

    def _retrying(self, exc: BaseException | None, attempt: int, seconds: float) -> None:
        """Say that attempt ``attempt`` failed and the next one comes in ``seconds`` (only when
        it does come: tenacity computes a wait before it decides to stop)."""
        if self._warn is None or not isinstance(exc, ApiError):
            return
        if exc.status == 429:  # a Retry-After that is no time ("nan") leaves the wait to the backoff
            asked = f"Retry-After {seconds:g} s" if exc.retry_after is not None else "no usable Retry-After"
            why = f"rate-limited this run (429, {asked})"
        else:
            why = exc.headline.removeprefix("the Tailscale API ").removeprefix(f"at {self.base} ")
        attempts = max(1, self.settings.attempts)
        self._warn(
            f"tailscale: the API {why}: asking again in {seconds:.1f} s (attempt {attempt + 1} of {attempts})"
        )

    def _attempts(self, url: str) -> Any:
        """The first attempt directly; tenacity takes over when it failed in a way worth retrying."""
        attempts = max(1, self.settings.attempts)
        try:
            return self._get_json(url)
        except ApiError as exc:
            if attempts == 1 or not self._retryable(exc):
                raise
            seconds = self._wait(exc, 1)
            self._retrying(exc, 1, seconds)
            self._sleep(seconds)
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._wait(exc, state.attempt_number + 1)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action is not None else 0.0
            self._retrying(exc, state.attempt_number + 1, seconds)

        retrying = Retrying(
            stop=stop_after_attempt(attempts - 1),
            wait=wait,
            retry=retry_if_exception(self._retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(self._get_json, url)

    # -- authentication ------------------------------------------------------------------------

    def _authorization(self, fresh: bool = False) -> str:
        c = self.credentials
        if not c.oauth:
            return f"Bearer {c.api_key}"
        return f"Bearer {self._oauth_token(fresh)}"

    def _oauth_token(self, fresh: bool) -> str:
        key = (self.base, self.credentials.client_id)
        now = time.monotonic()
        with _LOCK:
            cached = _TOKENS.get(key)
        if cached and not fresh and cached[1] > now:
            return cached[0]
        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self.credentials.client_id,
                "client_secret": self.credentials.client_secret,
            }
        ).encode()
        import base64

        pair = f"{self.credentials.client_id}:{self.credentials.client_secret}".encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
        }
        try:
            data = self._request(f"{self.base}/api/v2/oauth/token", body=body, headers=headers)
        except ApiError as exc:
            if exc.status in (400, 401, 403):
                raise ApiError(
                    f"the OAuth client was refused by the token endpoint (HTTP {exc.status})",
                    status=exc.status,
                    context=exc.context,
                    hint="check tailscale_oauth_client_id / _secret (TS_OAUTH_ID / TS_OAUTH_SECRET): "
                    "the client may have been deleted, or the secret mistyped",
                    exit_code=CONFIG,
                ) from exc
            raise
        token = data.get("access_token") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise ApiError(
                "the OAuth token endpoint answered without an access_token",
                hint="check tailscale_api_url: it must be the API's base URL",
                exit_code=CONFIG,
            )
        lifetime = data.get("expires_in", 3600)
        lifetime = float(lifetime) if isinstance(lifetime, (int, float)) else 3600.0
        with _LOCK:  # refresh a minute early (or halfway, for very short tokens)
            _TOKENS[key] = (token, now + max(lifetime - min(60.0, lifetime / 2), 0.0))
        return token

    def _get_json(self, url: str) -> Any:
        _wait_for_rate(self.settings.rate, self.base, self._sleep)
        try:
            return self._request(url, headers={"Authorization": self._authorization()})
        except ApiError as exc:
            if exc.status == 401 and self.credentials.oauth:  # the token expired early: one fresh try
                return self._request(url, headers={"Authorization": self._authorization(fresh=True)})
            raise

    def _request(self, url: str, *, body: bytes | None = None, headers: Mapping[str, str]) -> Any:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}
        status, raw, answer_headers = (
            self._urllib(url, body, headers) if _proxied() else self._direct(url, body, headers)
        )
        if 300 <= status < 400 and answer_headers.get("Location"):  # urllib follows redirects
            status, raw, answer_headers = self._urllib(url, body, headers)
        if not 200 <= status < 300:
            raise self._http_error(status, raw, answer_headers)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                f"the Tailscale API at {self.base} answered something that is not JSON",
                hint="check tailscale_api_url: it must be the API's base URL (https://api.tailscale.com)",
                exit_code=CONFIG,
            ) from exc

    def _no_answer(self, reason: object) -> ApiError:
        return ApiError(
            f"the Tailscale API at {self.base} does not answer ({reason})",
            hint="check the network (or a proxy) and tailscale_api_url; "
            "or use this machine's tailscale: config(tailscale_backend='cli')",
            exit_code=CONNECTION,
        )

    def _direct(self, url: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes, Message]:
        """One request through :mod:`http.client`: (status, body, headers), whatever the status."""
        import http.client

        parts = urllib.parse.urlsplit(url)
        https = parts.scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn = kind(parts.hostname or "", parts.port, timeout=self.settings.timeout)
        except (ValueError, http.client.HTTPException) as exc:  # a port that is not a number...
            raise self._no_answer(exc) from exc
        try:
            conn.request(
                "POST" if body is not None else "GET",
                target or "/",
                body=body,
                headers={**headers, "Connection": "close"},
            )
            resp = conn.getresponse()
            raw = resp.read(MAX_BODY)
        except (OSError, http.client.HTTPException) as exc:
            raise self._no_answer(getattr(exc, "reason", exc)) from exc
        finally:
            conn.close()
        return resp.status, raw, resp.headers

    def _urllib(self, url: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes, Message]:
        """One request through :mod:`urllib.request` (proxies, redirects): (status, body, headers)."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
        for k, v in headers.items():
            req.add_header(k, v)
        try:
            # An opener of its own: ``urlopen`` keeps the first one it builds for the whole
            # process, with the proxy variables of that moment.
            with urllib.request.build_opener().open(req, timeout=self.settings.timeout) as resp:
                return resp.status, resp.read(MAX_BODY), resp.headers
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read(64 * 1024)
            except OSError:
                raw = b""
            return exc.code, raw, exc.headers
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise self._no_answer(getattr(exc, "reason", exc)) from exc

    def _http_error(self, status: int, raw: bytes, headers: Message | None) -> ApiError:
        message = ""
        try:
            data = json.loads(raw) if raw else {}
            if isinstance(data, Mapping):
                message = str(data.get("message") or "")
        except ValueError:
            pass
        context = [f"the API said: {message}"] if message else []
        what = "OAuth token" if self.credentials.oauth else "API key"
        if status == 401:
            return ApiError(
                f"the Tailscale {what} was refused (401 Unauthorized): expired, revoked or mistyped",
                status=status,
                context=context,
                hint="API keys last at most 90 days: create one at "
                "https://login.tailscale.com/admin/settings/keys and set TS_API_KEY, "
                "or use an OAuth client (TS_OAUTH_ID / TS_OAUTH_SECRET), which does not expire",
                exit_code=CONFIG,
            )
        if status == 403:
            return ApiError(
                f"the Tailscale {what} may not list this tailnet's devices (403 Forbidden)",
                status=status,
                context=context,
                hint="give the OAuth client the devices:core:read scope, or use a key of a user who can see "
                "the devices; check tailscale_tailnet",
                exit_code=CONFIG,
            )
        if status == 404:
            return ApiError(
                f"tailnet {self.settings.tailnet!r} not found (404)",
                status=status,
                context=context,
                hint="set tailscale_tailnet (or TS_TAILNET) to the tailnet's name, "
                "or '-' for the credentials' own",
                exit_code=CONFIG,
            )
        if status == 429:
            after = _retry_after(headers.get("Retry-After") if headers is not None else None)
            when = f"; retry after {after:g} s" if after is not None else ""
            return ApiError(
                f"the Tailscale API is rate-limiting requests (429 Too Many Requests{when})",
                status=status,
                retry_after=after,
                context=context,
                hint="run again later; other tools sharing these credentials count against the same limit",
                exit_code=CONNECTION,
            )
        if status >= 500:
            return ApiError(
                f"the Tailscale API failed (HTTP {status})",
                status=status,
                context=context,
                hint="try again later (https://status.tailscale.com), or use config(tailscale_backend='cli')",
                exit_code=CONNECTION,
            )
        return ApiError(
            f"the Tailscale API refused the request (HTTP {status})",
            status=status,
            context=context,
            hint="check tailscale_api_url and tailscale_tailnet",
            exit_code=CONFIG,
        )


def _proxied() -> bool:
    """True when urllib would find a proxy to use: a ``*_proxy`` variable, or macOS or Windows,
    whose system settings it reads (requests then go through urllib, exactly as before)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return any(value and name.lower().endswith("_proxy") for name, value in os.environ.items())


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # 'nan' and 'inf' are floats too, not a time to wait: as if no Retry-After was sent
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
