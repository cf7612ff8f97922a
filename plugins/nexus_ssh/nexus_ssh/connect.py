"""Opening authenticated SSH connections: sockets, jump hosts, host keys, auth, retries.

Auth order: explicit identity (``ssh_identity`` / ``-i``, then the ssh
config's ``IdentityFile``), ssh-agent, ``~/.ssh/id_ed25519``, ``id_ecdsa``, ``id_rsa``, then a
password: one given to the executor (option ``ssh_password``), or a prompt only when stdin
is a terminal and ``CI`` is unset. ``IdentitiesOnly yes`` skips the agent and default keys.
The agent is used when ``SSH_AUTH_SOCK`` is set and not empty (and ``ssh_no_agent`` is not);
``~`` is ``$HOME`` (:func:`os.path.expanduser`), so a temporary ``HOME`` isolates the default keys.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nexus_ssh.errors import (
    CancelledConnect,
    ConnectError,
    DroppedBeforeBanner,
    HandshakeTimeout,
    LoginTimeout,
    classify,
)
from nexus_ssh.hostkeys import HostKeyVerifier
from nexus_ssh.options import DEFAULT_CONNECT_ATTEMPTS, MAX_CONNECT_ATTEMPTS
from nexus_ssh.pacing import Pacer, PacingCancelled
from nexus_ssh.settings import ConnectSpec, Endpoint, Resolver

if TYPE_CHECKING:
    from paramiko.pkey import PKey
    from paramiko.transport import Transport

_PROMPT_LOCK = threading.Lock()
#: Config keys of connection pacing, read from the options, else from the config (pacing.py).
PACING_KEYS = ("ssh_connect_rate", "ssh_jump_concurrency", "ssh_connect_concurrency")
#: Bytes a probe reads at most while waiting for the server's banner line.
_BANNER_LIMIT = 4096
#: ``watch(abort) -> forget``: calls ``abort`` when the run stops (at once if it has), until ``forget()``.
Watch = Callable[[Callable[[], None]], Callable[[], None]]
_T = TypeVar("_T")
#: Seconds between a logged-in transport thread's checks for close (Paramiko's default 0.1).
IDLE_POLL = 2.0

# Paramiko logs handshake failures with tracebacks; with no handler configured Python would
# print them on stderr. Nexus reports those failures itself (``--log-level debug`` shows more).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


_PACKETIZER: list[type] = []


def timerless_packetizer() -> type:
    """Paramiko's ``Packetizer`` with a handshake deadline instead of a timer thread.

    For every connection Paramiko starts a ``threading.Timer`` -- one more OS thread per host,
    started (the caller waits for it to run) and cancelled (it wakes to exit) -- only to set a
    flag that its reader checks between reads. Reading the clock at those same checks gives
    the same timeout with no thread: at 100 hosts, 100 fewer threads and their wake-ups.
    ``packetizer_class`` is Paramiko's own hook for this (3.4 and later).
    """
    if not _PACKETIZER:
        from paramiko.packet import Packetizer

        class TimerlessPacketizer(Packetizer):  # type: ignore[misc]  # paramiko is untyped
            """A ``Packetizer`` whose handshake timeout is a deadline read between reads."""

            _nexus_deadline: float | None = None
            _nexus_done = False

            def start_handshake(self, timeout: float) -> None:
                """Note when the handshake must have ended (the first call counts, as in Paramiko)."""
                if self._nexus_deadline is None:
                    self._nexus_deadline = time.monotonic() + float(timeout)

            def handshake_timed_out(self) -> bool:
                """True once the deadline has passed with the handshake still under way."""
                deadline = self._nexus_deadline
                return deadline is not None and not self._nexus_done and time.monotonic() > deadline

            def complete_handshake(self) -> None:
                """The handshake ended: no timeout from now on."""
                if self._nexus_deadline is not None:
                    self._nexus_done = True

        _PACKETIZER.append(TimerlessPacketizer)
    return _PACKETIZER[0]


def handshake(t: Transport, timeout: float) -> None:
    """Negotiate ``t`` as a client, waiting at most ``timeout`` s; raises as Paramiko does.

    Paramiko's ``start_client(timeout=...)`` waits in steps of 0.1 s (each a wake-up taking the
    GIL, for every connection being opened); given an event, it returns at once and sets the
    event when negotiation ends, fails or the transport dies, so one wait does.
    """
    from paramiko.ssh_exception import SSHException

    done = threading.Event()
    t.start_client(event=done)
    done.wait(timeout)
    if not t.active:
        exc = t.get_exception()
        if exc is not None:
            raise exc
        raise SSHException("Negotiation failed.")
    if not done.is_set():  # Paramiko returns silently when the timeout passes
        raise HandshakeTimeout(f"no SSH handshake within {timeout:g} s")


def _still_open(t: Transport) -> None:
    """Raise ``EOFError`` (a dropped handshake: retried) when the server closed the connection.

    sshd drops a login that takes longer than its ``LoginGraceTime`` (or, past ``MaxStartups``,
    at random): on a client with a thousand handshakes queued, the key exchange can end just
    before, and the key then "fails" with "No existing session". That is not a wrong key.
    """
    if not t.is_active():
        raise EOFError("the server closed the connection during login (LoginGraceTime, MaxStartups)")


def auth_publickey(t: Transport, user: str, key: Any) -> list[str]:
    """``t.auth_publickey(user, key)`` with one wait instead of Paramiko's 0.1 s steps.

    Same results: the auth types still allowed after a partial success, else ``[]``; raises
    ``AuthenticationException`` (refused, transport gone), :class:`LoginTimeout` (no answer
    in time: retried, where Paramiko would call it a failed login) or the transport's error.
    """
    from paramiko.ssh_exception import AuthenticationException, PartialAuthentication

    done = threading.Event()
    t.auth_publickey(user, key, event=done)  # returns at once; the handler sets ``done``
    timeout = t.auth_timeout
    done.wait(timeout)  # also set when the transport dies (Paramiko aborts the auth handler)
    if not t.is_active():
        exc = t.get_exception()
        if exc is None or isinstance(exc, EOFError):
            exc = AuthenticationException("Authentication failed: transport shut down or saw EOF")
        raise exc
    if not done.is_set():  # no answer: not a refusal (on a loaded client, one came too late)
        raise LoginTimeout(f"no answer to the login within {timeout:g} s")
    if not t.is_authenticated():
        exc = t.get_exception() or AuthenticationException("Authentication failed.")
        if isinstance(exc, PartialAuthentication):
            return list(exc.allowed_types)
        raise exc
    return []


class Abort:
    """The streams one connection attempt has open, so that a stop can close them from another thread.

    Paramiko's banner read, key exchange and login block their thread until the server answers
    or ``ssh_connect_timeout`` passes (a minute, say, with a server that accepts TCP and never
    speaks). :meth:`abort` shuts the attempt's sockets down, which wakes those reads at once:
    the attempt then ends as :class:`CancelledConnect`. A finished attempt (:meth:`finish`)
    is no longer touched: its connection belongs to the caller.
    """

    def __init__(self, watched: bool = True) -> None:
        #: False when nothing can call :meth:`abort` (no ``watch``): plain blocking calls do.
        self.watched = watched
        self.aborted = False
        self._done = False
        self._held: list[Any] = []
        self._lock = threading.Lock()

    def hold(self, stream: Any) -> bool:
        """Note ``stream`` (a socket, jump-host channel or ProxyCommand); when the attempt was
        aborted already, shut it at once and return False."""
        with self._lock:
            if not self.aborted:
                self._held.append(stream)
                return True
        _shut(stream)
        return False

    def abort(self) -> None:
        """Stop the attempt: shut down every stream it holds (idempotent, any thread)."""
        with self._lock:
            if self.aborted or self._done:
                return
            self.aborted = True
            held, self._held = self._held, []
        for stream in held:
            _shut(stream)

    def finish(self) -> bool:
        """End the attempt: True when it may keep what it opened, False when it was aborted."""
        with self._lock:
            self._done = True
            self._held = []
            return not self.aborted


def _shut(stream: Any) -> None:
    """Wake whatever reads ``stream``: shut a socket down (its owner closes it), close anything else."""
    if not _shut_socket(stream):
        with contextlib.suppress(Exception):
            stream.close()


def _shut_socket(stream: Any) -> bool:
    """Shut ``stream`` down for reading and writing when it is a TCP socket, which wakes a
    thread blocked reading it at once (closing it would not); False when it is not one."""
    if not isinstance(stream, LowLatencySocket | socket.socket):
        return False
    with contextlib.suppress(OSError):
        stream.shutdown(socket.SHUT_RDWR)
    return True


@dataclass
class Connection:
    """One authenticated connection to a target (owning the hop transports it rides on)."""

    spec: ConnectSpec
    transport: Transport
    hops: list[Transport] = field(default_factory=list)
    auth: str = ""
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    broken: bool = False

    def alive(self) -> bool:
        """True while the transport (and every hop) is up."""
        return not self.broken and self.transport.is_active() and all(h.is_active() for h in self.hops)

    def close(self) -> None:
        """Close the target transport, then the hops (innermost first)."""
        for t in [self.transport, *reversed(self.hops)]:
            _shut_socket(t.sock)  # wake the transport thread out of its recv() now, not at its next poll
            with contextlib.suppress(Exception):  # best effort
                t.close()


def connect_attempts(options: Mapping[str, Any], config: Mapping[str, Any]) -> int:
    """How many times a connection is tried: the option (``ssh_connect_attempts``, which
    ``nexus hosts`` and preflight set to 1), else the config key (nexusfile, config files,
    ``NEXUS_SSH_CONNECT_ATTEMPTS``), else 3; kept within 1..100."""
    for value in (options.get("ssh_connect_attempts"), config.get("ssh_connect_attempts")):
        if value is not None and not isinstance(value, bool):
            try:
                return min(max(int(value), 1), MAX_CONNECT_ATTEMPTS)
            except (TypeError, ValueError):
                continue
    return DEFAULT_CONNECT_ATTEMPTS


class Connector:
    """Opens connections for a :class:`ConnectSpec`; one per executor, thread-safe."""

    def __init__(
        self, resolver: Resolver, options: Mapping[str, Any], sleep: Callable[[float], bool] | None = None
    ) -> None:
        self.resolver = resolver
        self.options = options
        self.verifier = HostKeyVerifier()
        config: Mapping[str, Any] = getattr(resolver, "config", None) or {}
        self.attempts = connect_attempts(options, config)
        #: Tries for a handshake the server dropped before its banner (sshd's MaxStartups): the
        #: configured ``ssh_connect_attempts`` (default 3) even where an option asks for 1 try
        #: (preflight, ``nexus hosts``): a throttled server says nothing of the host's health.
        self.drop_attempts = max(self.attempts, connect_attempts({}, config))
        self.backoff_base = float(options.get("ssh_retry_base", 0.5))
        self.backoff_max = float(options.get("ssh_retry_max", 8.0))
        self._keys: dict[str, PKey | None] = {}
        self._key_lock = threading.Lock()
        self._passwords: dict[str, str] = {}
        self._sleep = sleep
        #: Connection pacing: ``ssh_connect_rate`` and ``ssh_jump_concurrency`` (pacing.py),
        #: from the options, else the config (so every command that connects is paced alike).
        pacing = {k: options.get(k, config.get(k)) for k in PACING_KEYS}
        self.pacer = Pacer({k: v for k, v in pacing.items() if v is not None})
        #: A jump host's refusal that another try cannot change (its host key, the login), by
        #: the hops up to it and what the login offers: every other host behind it fails at
        #: once with the same reason instead of logging in again (see :meth:`_open_hops`).
        self._hop_refusals: dict[tuple[object, ...], ConnectError] = {}

    # --- keys ----------------------------------------------------------------------------

    def _load_key(self, path: str) -> PKey | None:
        from paramiko.pkey import PKey
        from paramiko.ssh_exception import PasswordRequiredException, SSHException

        with self._key_lock:
            if path in self._keys:
                return self._keys[path]
            key: PKey | None = None
            passphrase = self.options.get("ssh_key_passphrase")
            try:
                key = PKey.from_path(path)
            except (PasswordRequiredException, TypeError):  # cryptography: TypeError "password-protected"
                if passphrase:  # else: encrypted and no passphrase; the agent may hold it
                    try:
                        key = PKey.from_path(path, str(passphrase).encode())
                    except (OSError, SSHException, ValueError, TypeError):
                        key = None
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise  # out of descriptors, not a missing key: said as such, and not kept
                key = None
            except (SSHException, ValueError):
                key = None
            self._keys[path] = key
            return key

    def _key_candidates(self, spec: ConnectSpec) -> list[tuple[str, Any]]:
        """(label, key) pairs in auth order."""
        out: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for path in spec.identities:
            key = self._load_key(path)
            if key is not None and key.get_base64() not in seen:
                seen.add(key.get_base64())
                out.append((f"publickey {_short(path)}", key))
        if spec.identities_only:
            return out
        if os.environ.get("SSH_AUTH_SOCK") and not self.options.get("ssh_no_agent"):
            try:
                from paramiko.agent import Agent

                for key in Agent().get_keys():
                    if key.get_base64() not in seen:
                        seen.add(key.get_base64())
                        out.append(("agent", key))
            except Exception:  # an unreachable agent is not fatal
                pass
        for path in self.resolver.default_keys():
            key = self._load_key(path)
            if key is not None and key.get_base64() not in seen:
                seen.add(key.get_base64())
                out.append((f"publickey {_short(path)}", key))
        return out

    # --- auth ----------------------------------------------------------------------------

    def _password(self, ep: Endpoint) -> str | None:
        given = self.options.get("ssh_password")
        if given:
            return str(given)
        if os.environ.get("CI") or not sys.stdin or not sys.stdin.isatty():
            return None  # never prompt without a terminal or under CI
        if self.options.get("ssh_password_prompt") is False:
            return None
        with _PROMPT_LOCK:
            cache_key = f"{ep.user}@{ep.hostname}:{ep.port}"
            if cache_key not in self._passwords:
                import getpass

                self._passwords[cache_key] = getpass.getpass(f"Password for {cache_key}: ")
            return self._passwords[cache_key]

    def _authenticate(self, t: Transport, spec: ConnectSpec, ep: Endpoint) -> str:
        from paramiko.ssh_exception import AuthenticationException, BadAuthenticationType, SSHException

        tried: list[str] = []
        allowed: list[str] | None = None
        _still_open(t)
        if spec.auth_none and ep is spec.target:
            try:
                t.auth_none(ep.user)
            except BadAuthenticationType as exc:  # the server wants more: keys, as for any host
                allowed = list(exc.allowed_types)
                tried.append("none")
            except AuthenticationException:
                tried.append("none")
            if t.is_authenticated():
                return "none"
        for label, key in self._key_candidates(spec):
            if allowed is not None and "publickey" not in allowed:
                break
            try:
                auth_publickey(t, ep.user, key)
            except BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                tried.append(label)
                continue
            except AuthenticationException:
                _still_open(t)
                tried.append(label)
                continue
            except SSHException as exc:  # e.g. key type the server refuses outright
                _still_open(t)
                tried.append(f"{label} ({exc})")
                continue
            if t.is_authenticated():
                return label
        if allowed is None or "password" in allowed:
            password = self._password(ep)
            if password is not None:
                try:
                    t.auth_password(ep.user, password)
                    if t.is_authenticated():
                        return "password"
                except AuthenticationException:
                    tried.append("password")
        what = ", ".join(tried) or "no key found (ssh_identity, agent, ~/.ssh/id_*)"
        raise AuthenticationException(f"tried {what}")

    # --- sockets & transports ------------------------------------------------------------

    def _open_socket(
        self, spec: ConnectSpec, ep: Endpoint, via: Transport | None, attempt: Abort | None = None
    ) -> Any:
        """A byte stream to ``ep``'s SSH port: a channel through ``via``, the ProxyCommand, or
        a TCP socket; ``attempt`` holds it (see :class:`Abort`)."""
        stream: Any = None
        if via is not None:
            stream = via.open_channel(
                "direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0), timeout=spec.connect_timeout
            )
        elif spec.proxy_command and ep == spec.target:
            stream = open_proxy_command(spec.proxy_command)
        if stream is not None:
            if attempt is not None:
                attempt.hold(stream)
            return stream
        # An ASCII name goes to getaddrinfo as bytes: given a str, CPython encodes it with the
        # "idna" codec, whose first use imports stringprep and unicodedata (2 ms of every run).
        host: str | bytes = ep.hostname.encode("ascii") if ep.hostname.isascii() else ep.hostname
        if attempt is None or not attempt.watched:
            sock = socket.create_connection((host, ep.port), timeout=spec.connect_timeout)  # type: ignore[arg-type]
        else:  # held by the attempt from before it connects
            sock = _tcp_connect(host, ep.port, spec.connect_timeout, attempt)
        return LowLatencySocket(sock)

    def _transport(
        self, spec: ConnectSpec, ep: Endpoint, via: Transport | None, attempt: Abort | None = None
    ) -> tuple[Transport, str]:
        from paramiko.transport import Transport

        sock = self._open_socket(spec, ep, via, attempt)
        t = Transport(sock, packetizer_class=timerless_packetizer())
        # Paramiko's transport thread wakes every 0.1 s (its socket timeout) to see whether it
        # was closed or a timeout passed: with a thousand handshakes queued on a busy client
        # that is 10,000 wake-ups a second, each taking the GIL (and two context switches)
        # from the threads doing work. Data wakes the thread at once whatever the timeout;
        # Nexus times the handshake and login itself (``handshake``, ``auth_publickey``), and
        # ``close`` does not wait for the thread. So it may sleep longer from the start.
        with contextlib.suppress(Exception):
            t.sock.settimeout(IDLE_POLL)
        try:
            t.banner_timeout = spec.connect_timeout
            t.handshake_timeout = spec.connect_timeout
            t.auth_timeout = spec.connect_timeout
            opts = t.get_security_options()
            opts.ciphers = prefer_aead(tuple(opts.ciphers))
            vouched = spec.host_keys if ep is spec.target else ()
            if spec.policy != "off":
                opts.key_types = self.verifier.preferred_algorithms(
                    ep, spec.known_hosts_files, tuple(opts.key_types), vouched
                )
            handshake(t, spec.connect_timeout)
            self.verifier.verify(ep, t.get_remote_server_key(), spec.policy, spec.known_hosts_files, vouched)
            auth = self._authenticate(t, spec, ep)
            if spec.keepalive:
                t.set_keepalive(spec.keepalive)
            return t, auth
        except BaseException:
            t.close()
            raise

    def _open_hops(self, spec: ConnectSpec, attempt: Abort | None) -> list[Transport]:
        """The authenticated transports of ``spec``'s jump hosts, in order (each through the one
        before); raises :class:`ConnectError` when one fails, having closed those opened."""
        hops: list[Transport] = []
        try:
            for i, ep in enumerate(spec.hops):
                # What the hop's login depends on besides the hop itself (see _authenticate).
                key = (
                    spec.hops[: i + 1],
                    spec.identities,
                    spec.identities_only,
                    spec.policy,
                    spec.known_hosts_files,
                )
                refused = self._hop_refusals.get(key)
                if refused is not None:
                    # A jump host that refused a login or failed its host key check refuses every
                    # host behind it alike: a fleet of 60 made 60 failed logins there (sshd logs,
                    # fail2ban) and, failing fast, overran its MaxStartups (docs/ssh.md).
                    raise ConnectError(
                        refused.kind, refused.reason, transient=refused.transient, retryable=refused.retryable
                    )
                try:
                    t, _ = self._transport(spec, ep, hops[-1] if hops else None, attempt)
                except Exception as exc:
                    error = classify(exc, ep, str(spec.hops[i - 1]) if i else "")
                    if error.kind in ("auth", "hostkey") and not error.transient:
                        self._hop_refusals.setdefault(key, error)
                    raise error from exc
                hops.append(t)
        except BaseException:
            _close_all(hops)
            raise
        return hops

    def connect_once(self, spec: ConnectSpec, attempt: Abort | None = None) -> Connection:
        """One attempt through every hop; raises :class:`ConnectError` when it fails.

        ``attempt`` notes the streams opened, so that :meth:`Abort.abort` can end the attempt."""
        hops = self._open_hops(spec, attempt)
        try:
            try:
                t, auth = self._transport(spec, spec.target, hops[-1] if hops else None, attempt)
            except Exception as exc:
                raise classify(exc, spec.target, str(spec.hops[-1]) if spec.hops else "") from exc
        except BaseException:
            _close_all(hops)
            raise
        return Connection(spec=spec, transport=t, hops=hops, auth=auth)

    def _probe_once(self, spec: ConnectSpec, attempt: Abort | None = None) -> tuple[Any, list[Transport]]:
        """One try of :meth:`open_to_target`: the stream once the server said its first line."""
        hops = self._open_hops(spec, attempt)
        last_hop = str(spec.hops[-1]) if spec.hops else ""
        try:
            try:
                sock = self._open_socket(spec, spec.target, hops[-1] if hops else None, attempt)
            except Exception as exc:
                raise classify(exc, spec.target, last_hop) from exc
            try:
                return await_banner(sock, spec.connect_timeout), hops
            except Exception as exc:
                with contextlib.suppress(Exception):
                    sock.close()
                raise classify(exc, spec.target, last_hop) from exc
        except BaseException:
            _close_all(hops)
            raise

    def open_to_target(self, spec: ConnectSpec) -> tuple[Any, list[Transport]]:
        """A raw byte stream to the target's SSH port, through the (authenticated) hops.

        For probes that must not log in to the target (banner reads, host key scans). Paced
        and retried as :meth:`connect` is: the stream is handed over once the server has sent
        its first line (kept in the stream for the caller to read), so that a handshake the
        server dropped before its banner (sshd's ``MaxStartups``) is retried here. Each retry
        is a warning on the ``nexus`` logger (:func:`retry_warning`). The caller closes the
        stream, then the hop transports (:func:`close_probe`).
        """
        return self._retried(spec, self._probe_once, None, retry_warning(spec), None)

    def connect(
        self,
        spec: ConnectSpec,
        cancel_sleep: Callable[[float], bool] | None = None,
        on_retry: Callable[[int, int, str, float], None] | None = None,
        watch: Watch | None = None,
    ) -> Connection:
        """Connect with up to ``attempts`` tries on transient failures (exp. backoff, full jitter).

        Each try is bounded by ``ssh_connect_timeout``. ``on_retry(failed_attempt, attempts,
        reason, delay)`` is called before each new try, so the output can show them.
        ``watch(abort)`` (see :data:`Watch`) lets a stop end a try under way at once: its
        sockets are shut, and the call raises :class:`CancelledConnect`.
        """
        return self._retried(spec, self.connect_once, cancel_sleep, on_retry, watch)

    def tries(self, exc: BaseException) -> int:
        """How many tries a failure like ``exc`` gets in all (1: it is not retried)."""
        if not isinstance(exc, ConnectError) or not exc.transient:
            return 1
        return self.drop_attempts if exc.kind == "dropped" else self.attempts

    def _retried(
        self,
        spec: ConnectSpec,
        once: Callable[[ConnectSpec, Abort], _T],
        cancel_sleep: Callable[[float], bool] | None,
        on_retry: Callable[[int, int, str, float], None] | None,
        watch: Watch | None,
    ) -> _T:
        """``once(spec, attempt)`` paced (:class:`Pacer`), and tried again on transient failures.

        The first try runs before ``tenacity`` is imported: a connection that succeeds at once
        (the usual case) does not pay for the library's import, which brings ``asyncio`` and,
        where ``tornado`` is installed (nexus-agent's Dask has it), ``tornado`` too: about
        40 ms of a one-host run's start. A first failure is handed to ``tenacity`` as its own
        first attempt, so the retries, their waits and their announcements are unchanged.
        """
        sleep = cancel_sleep or self._sleep
        jump = str(spec.hops[0]) if spec.hops else ""

        def _may_go(seconds: float) -> bool:
            """Wait ``seconds``: False when a stop came first (only with a cancellable sleep)."""
            if sleep is None:
                if seconds > 0:
                    time.sleep(seconds)
                return True
            return sleep(seconds)

        def _paced_once(spec: ConnectSpec) -> _T:
            attempt = Abort(watched=watch is not None)
            forget = watch(attempt.abort) if watch is not None else None
            try:
                try:
                    with self.pacer.turn(jump, _may_go):
                        if attempt.aborted:
                            raise CancelledConnect()
                        got = once(spec, attempt)
                except PacingCancelled:
                    raise CancelledConnect() from None
                except ConnectError:
                    if attempt.aborted:  # the stop shut its sockets: not the host's failure
                        raise CancelledConnect() from None
                    raise
                if not attempt.finish():  # stopped just as it succeeded
                    _discard(got)
                    raise CancelledConnect()
                return got
            finally:
                if forget is not None:
                    forget()

        try:
            return _paced_once(spec)
        except ConnectError as exc:
            if self.tries(exc) <= 1:
                raise
            first: list[BaseException] = [exc]

        def _attempt(spec: ConnectSpec) -> _T:
            if first:  # tenacity's attempt 1 is the try made above
                raise first.pop()
            return _paced_once(spec)

        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception,
            wait_random_exponential,
        )

        def _sleep(seconds: float) -> None:
            if not _may_go(seconds):
                raise CancelledConnect()

        def _stop(state: Any) -> bool:
            exc = state.outcome.exception() if state.outcome is not None else None
            return bool(state.attempt_number >= (self.tries(exc) if exc is not None else 1))

        def _announce(state: Any) -> None:
            assert on_retry is not None and state.outcome is not None
            exc = state.outcome.exception()
            why = exc.reason.partition("\n")[0] if isinstance(exc, ConnectError) else str(exc)
            delay = state.next_action.sleep if state.next_action else 0.0
            on_retry(state.attempt_number, self.tries(exc), why, float(delay))

        retrying = Retrying(
            stop=_stop,
            wait=wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max),
            retry=retry_if_exception(lambda e: self.tries(e) > 1),
            sleep=_sleep,
            before_sleep=None if on_retry is None else _announce,
            reraise=True,
        )

        try:
            return retrying(_attempt, spec)
        except RetryError as exc:  # pragma: no cover - reraise=True makes this rare
            raise exc.last_attempt.exception() or ConnectError(
                "error", "connect failed", transient=False, retryable=True
            ) from exc


def _tcp_connect(host: str | bytes, port: int, timeout: float, attempt: Abort) -> socket.socket:
    """``socket.create_connection`` whose socket ``attempt`` holds while it connects: on Linux,
    shutting down a socket still waiting for the server's SYN-ACK ends the wait at once."""
    last: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        if not attempt.hold(sock):
            sock.close()
            raise ConnectionAbortedError("the run is stopping")
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
    raise last or OSError(f"getaddrinfo found no address for {host!r}")


def _discard(got: Any) -> None:
    """Close what an attempt stopped as it succeeded had opened (a connection, or a stream and hops)."""
    if isinstance(got, Connection):
        got.close()
    else:
        close_probe(*got)


def close_probe(stream: Any, hops: list[Transport]) -> None:
    """Close what :meth:`Connector.open_to_target` gave (or a transport over its stream), then
    the hop transports, innermost first; best effort."""
    with contextlib.suppress(Exception):
        stream.close()
    _close_all(hops)


def _close_all(hops: list[Transport]) -> None:
    """Close hop transports, innermost first (best effort)."""
    for hop in reversed(hops):
        with contextlib.suppress(Exception):
            hop.close()


def retry_warning(spec: ConnectSpec) -> Callable[[int, int, str, float], None]:
    """An ``on_retry`` that says each retry as a warning on the ``nexus`` logger (``nexus: WARNING: ...``)."""
    from nexus_ssh.events import host_label

    label = host_label(spec.target.hostname, spec.target.port)

    def say(failed: int, attempts: int, why: str, delay: float) -> None:
        logging.getLogger("nexus").warning("%s", retry_text(label, failed, attempts, why, delay))

    return say


def retry_text(label: str, failed: int, attempts: int, why: str, delay: float) -> str:
    """The warning for a connection try that failed and is made again (an ``on_retry``'s words)."""
    return f"{label}: connection attempt {failed}/{attempts} failed ({why}); retrying in {delay:.1f}s"


def await_banner(stream: Any, timeout: float) -> Any:
    """``stream`` once the server has sent its first line, which stays in it for the caller to read.

    Raises :class:`DroppedBeforeBanner` when the server closes (or resets) the connection before
    saying anything, or says ``Exceeded MaxStartups`` (what sshd writes before closing a
    connection it drops), and :class:`HandshakeTimeout` when it says nothing in ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < _BANNER_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with contextlib.suppress(Exception):
            stream.settimeout(left)
        try:
            chunk: bytes = stream.recv(256)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            if buf and b"MaxStartups" not in buf:
                raise
            raise DroppedBeforeBanner(f"the server closed the connection before its banner ({exc})") from exc
        except TimeoutError:
            break
        if not chunk:
            if buf and b"MaxStartups" not in buf:
                break  # a line that is not a banner: the caller says what it is
            said = buf.decode("utf-8", "replace").strip()
            raise DroppedBeforeBanner(f"the server closed the connection before its banner {said!r}".strip())
        buf += chunk
        lines = buf.split(b"\n")[:-1]
        if any(b"MaxStartups" in line for line in lines):
            raise DroppedBeforeBanner(buf.decode("utf-8", "replace").strip())
        if lines:
            break
    if not buf:
        raise HandshakeTimeout(f"no SSH banner within {timeout:g} s")
    return _Prefetched(stream, buf)


class _Prefetched:
    """A stream whose first bytes were read already (a probe's banner): ``recv`` serves them first."""

    __slots__ = ("_data", "_stream")

    def __init__(self, stream: Any, data: bytes) -> None:
        self._stream = stream
        self._data = data

    def recv(self, size: int) -> bytes:
        """What was read ahead first, then the stream's own ``recv``."""
        data = self._data
        if data:
            self._data = data[size:]
            return data[:size]
        got: bytes = self._stream.recv(size)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def open_proxy_command(command: str) -> Any:
    """Start ``ProxyCommand`` the way OpenSSH does (``/bin/sh -c "exec COMMAND"``); a socket-like stream.

    Paramiko's own :class:`paramiko.proxy.ProxyCommand` splits the line without a shell, spins
    until a timeout when the command exits, and never reaps it. This one reports the command's
    exit status and last stderr lines when it ends, and terminates and reaps it on close.
    """
    import subprocess
    import tempfile

    from paramiko.proxy import ProxyCommand
    from paramiko.ssh_exception import ProxyCommandFailure

    class _ShellProxyCommand(ProxyCommand):  # type: ignore[misc]  # paramiko is untyped
        def __init__(self, command_line: str) -> None:
            self.cmd = ["/bin/sh", "-c", "exec " + command_line]
            self.command_line = command_line
            self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            try:
                self.process = subprocess.Popen(
                    self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, bufsize=0
                )
            except BaseException:
                self.stderr.close()
                raise
            self.timeout: float | None = None

        def _failure(self, what: str) -> ProxyCommandFailure:
            try:
                code = self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                code = None
            try:
                self.stderr.seek(0)
                text = self.stderr.read().decode(errors="replace")
                said = [ln.strip() for ln in text.splitlines() if ln.strip()]
            except (OSError, ValueError):
                said = []
            status = f"exited with status {code}" if code is not None else what
            detail = status + (": " + " / ".join(said[-3:]) if said else "")
            return ProxyCommandFailure(self.command_line, detail)

        def send(self, content: bytes) -> int:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(content)
            except (OSError, ValueError) as exc:
                raise self._failure(f"stopped reading its input ({exc})") from exc
            return len(content)

        def recv(self, size: int) -> bytes:
            import select

            assert self.process.stdout is not None
            if self.process.stdout.closed:
                raise self._failure("closed its output")
            fd = self.process.stdout.fileno()
            start = time.monotonic()
            while True:
                wait = None
                if self.timeout is not None:
                    wait = self.timeout - (time.monotonic() - start)
                    if wait <= 0:
                        raise TimeoutError()
                readable, _, _ = select.select([fd], [], [], wait)
                if readable:
                    data = os.read(fd, size)
                    if not data:  # the command ended (or closed its stdout)
                        with contextlib.suppress(OSError):
                            self.process.stdout.close()
                        raise self._failure("closed its output")
                    return data

        def close(self) -> None:
            # stdout is closed by the reading thread when it sees EOF (or by the GC): closing a
            # file descriptor another thread may be reading could hand it a reused one.
            with contextlib.suppress(Exception):
                if self.process.stdin is not None:
                    self.process.stdin.close()
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            with contextlib.suppress(Exception):
                self.stderr.close()

        @property
        def closed(self) -> bool:
            return self.process.poll() is not None

    return _ShellProxyCommand(command)


def _short(path: str) -> str:
    """``path`` with the home folder written as ``~`` (for messages)."""
    home = os.path.expanduser("~")
    return "~" + path[len(home) :] if home != "/" and path.startswith(home + os.sep) else path


def prefer_aead(ciphers: tuple[str, ...]) -> tuple[str, ...]:
    """Paramiko's ciphers with AES-GCM first (the server still picks from what it offers).

    Paramiko prefers AES-CTR, whose HMAC it checks with a byte-by-byte loop in Python on
    every packet; with AES-GCM the cipher authenticates each packet itself, in C. On 200
    loopback hosts the client used about 7 % less CPU. AES-GCM is an AEAD mode that OpenSSH
    has offered since 6.2 and lists in its own defaults; servers without it get AES-CTR.
    """
    gcm = tuple(c for c in ciphers if c.startswith("aes128-gcm")) + tuple(
        c for c in ciphers if c.startswith("aes256-gcm")
    )
    return gcm + tuple(c for c in ciphers if c not in gcm)


class LowLatencySocket:
    """A TCP socket for Paramiko that never waits on TCP's delayed acknowledgements, and reads ahead.

    sshd leaves Nagle's algorithm on for sessions without a terminal, so when it sends two
    small messages in a row (after login: a ``hostkeys-00`` global request, then the reply
    to our first channel open) the second one waits until the first is acknowledged, and
    Linux delays that acknowledgement by up to 40 ms when we have nothing to send back.
    Measured on this project's test bed: the first ``open_session`` took 44 ms, and
    key exchange plus login 62 ms; with ``TCP_NODELAY`` on our side and ``TCP_QUICKACK``
    re-armed after every read (it is not sticky), 2 ms and 18 ms. The cost is one more
    small ACK per received segment and one ``setsockopt`` per read.

    Paramiko reads each packet in two or more ``recv`` calls of exactly the bytes it wants
    next (the first block, then the rest); with a timeout set, each is a ``poll`` and a
    ``recv``, and each releases and retakes the GIL -- with hundreds of hosts, a futex wait
    and a context switch for the transport thread every time. So one ``recv`` asks the
    kernel for everything that is there (up to ``READ_AHEAD`` bytes) and later calls are
    served from what was read: at 100 hosts, a third fewer context switches for the whole
    run (docs/decisions.md, Scale). Nothing selects on the socket's descriptor (Paramiko
    only calls ``recv``), so data held here is never missed.

    Everything but ``recv`` is the wrapped socket's own (Paramiko only needs a socket-like
    object). ``TCP_QUICKACK`` exists on Linux only; elsewhere only ``TCP_NODELAY`` is set.
    """

    __slots__ = ("_ahead", "_at", "_quickack", "_sock")

    #: Bytes asked of the kernel at least: a few small SSH packets (a blocked reader holds a
    #: buffer of this size, so a thousand hosts hold 4 MB; larger packets ask for more).
    READ_AHEAD = 4096

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack: int | None = getattr(socket, "TCP_QUICKACK", None)
        self._ahead = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        """Read like ``socket.recv`` (at most ``size`` bytes), then acknowledge at once what was read."""
        ahead, at = self._ahead, self._at
        if at < len(ahead):
            end = at + size
            self._at = end
            return ahead[at:end] if at or end < len(ahead) else ahead
        data = self._sock.recv(max(size, self.READ_AHEAD))
        if self._quickack is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
            except OSError:
                self._quickack = None
        if len(data) > size:
            self._ahead, self._at = data, size
            return data[:size]
        self._ahead, self._at = b"", 0
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
