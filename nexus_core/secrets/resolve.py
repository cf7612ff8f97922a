"""The secrets of one run: which backend serves a reference, each backend created once, values cached.

Two modes:

- **check** (the default: ``nexus validate``, ``list``, ``--dry-run``, ``preflight``): no
  value is decrypted. ``secret("NAME")`` checks that the name exists where that is possible
  without a key (the local store keeps names in the clear) and that the backend is installed,
  and stands for ``***``.
- **resolve** (``nexus run``, ``nexus resume``, between :func:`activate` and
  :func:`deactivate`): values are fetched, once per reference, and registered for redaction
  before ``secret()`` returns them. References written to files with ``to=`` are resolved
  only when the command runs (:func:`reveal`), so their values never enter the plan.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nexus_core.lazy import lazy_getattr
from nexus_core.secrets import LOCAL, split_reference
from nexus_core.secrets.redact import MASK, register

if TYPE_CHECKING:
    from nexus_core.contracts.secrets import SecretBackend
    from nexus_core.registry import Registry
    from nexus_core.secrets.errors import UnknownBackend as UnknownBackend

# Every command that loads a nexusfile starts a Secrets (check mode): the contract of secret
# backends (nexus_core.contracts.secrets, with UnknownBackend) is imported when a secret is
# used, not at each start. Methods import the names they raise or catch.
__getattr__ = lazy_getattr(__name__, {"UnknownBackend": "nexus_core.secrets.errors"}, globals())

#: What ``secret(...)`` stands for when nothing is decrypted (check mode).
PLACEHOLDER = MASK


def missing_backend(registry: Registry, name: str) -> tuple[str, str] | None:
    """When no secret backend ``name`` is installed: why (blocked by policy, or the ones that
    are) and the fix (the package to install, the nearest name); None when it is."""
    if name in registry.secret_backends:
        return None
    why, hint = registry.missing("secret backend", name, f"the {name!r} secret backend")
    return why or "installed: " + (", ".join(sorted(registry.secret_backends)) or "none"), hint


class Secrets:
    """The backends and values of one run (thread-safe: the engine reveals ``to=`` values from many threads)."""

    def __init__(
        self,
        registry: Registry,
        config: Mapping[str, Any],
        root: str,
        *,
        resolve: bool = True,
        interactive: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.config = dict(config)
        self.root = root
        self.resolving = resolve
        self.interactive = interactive
        self.warn = warn or (lambda message: print(f"Warning: {message}", file=sys.stderr, flush=True))
        self._backends: dict[str, SecretBackend] = {}
        self._values: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()
        #: References resolved in this run, by backend (for rotation reminders and audit).
        self.used: set[tuple[str, str]] = set()

    def bind(self, config: Mapping[str, Any], root: str) -> None:
        """Take the project's ``config(...)`` values and folder (the nexusfile sets them as it loads)."""
        with self._lock:
            self.config = dict(config)
            self.root = root or self.root

    @property
    def default(self) -> str:
        """The backend of references without a prefix (``config(secret_backend=...)``, else local)."""
        chosen = self.config.get("secret_backend")
        return chosen if isinstance(chosen, str) and chosen else LOCAL

    def route(self, reference: str) -> tuple[str, str]:
        """``(backend, rest)`` of ``reference``."""
        return split_reference(reference, self.default)

    def backend_class(self, name: str) -> type[SecretBackend]:
        """The class registered as ``name`` (imported now); UnknownBackend naming the package when none."""
        from nexus_core.contracts.secrets import SecretUnavailable
        from nexus_core.secrets.errors import UnknownBackend

        table = self.registry.secret_backends
        missing = missing_backend(self.registry, name)
        if missing is not None:
            raise UnknownBackend(f"no secret backend {name!r} is installed ({missing[0]})", missing[1])
        try:
            return table[name]
        except Exception as exc:  # noqa: BLE001 - PluginError: a broken registration, named
            raise SecretUnavailable(str(exc)) from None

    def backend(self, name: str) -> SecretBackend:
        """The run's instance of backend ``name`` (created on first use); UnknownBackend when none."""
        from nexus_core.contracts.secrets import SecretContext, SecretError, SecretUnavailable

        with self._lock:
            found = self._backends.get(name)
            if found is not None:
                return found
            cls = self.backend_class(name)
            from nexus_core.state.paths import cache_dir

            folder = os.path.join(cache_dir(), "secrets", name)
            if name != LOCAL:  # the local store keeps nothing in the cache
                try:
                    os.makedirs(folder, mode=0o700, exist_ok=True)
                except OSError:
                    folder = ""  # no cache folder: a backend must work without one
            context = SecretContext(self.config, self.root, folder, self.interactive, self.warn, self.purpose_key)
            try:
                found = cls(context)
            except SecretError:
                raise
            except Exception as exc:  # noqa: BLE001 - plugin code: report by name, never a traceback
                owner = self.registry.owners.get(f"secret backend:{name}", "?")
                raise SecretUnavailable(
                    f"secret backend {name!r} ({owner}) failed to start: {type(exc).__name__}: {exc}"
                ) from None
            self._backends[name] = found
            return found

    def purpose_key(self, purpose: str) -> bytes | None:
        """What :meth:`SecretContext.cache_key` answers: a key from the local store's master key, or None."""
        from nexus_core.contracts.secrets import SecretError
        from nexus_core.secrets.local import LocalBackend

        try:
            local = self.backend(LOCAL)
            return local.purpose_key(purpose) if isinstance(local, LocalBackend) else None
        except SecretError:
            return None

    def get(self, reference: str) -> str:
        """The value of ``reference``, fetched once per run and registered for redaction."""
        from nexus_core.contracts.secrets import SecretError, SecretUnavailable

        name, rest = self.route(reference)
        key = (name, rest)
        with self._lock:
            if key in self._values:
                return self._values[key]
            backend = self.backend(name)
            try:
                value = backend.resolve(rest)
            except SecretError:
                raise
            except NotImplementedError as exc:
                raise SecretUnavailable(str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - plugin code: its own words, never the value
                owner = self.registry.owners.get(f"secret backend:{name}", "?")
                raise SecretUnavailable(
                    f"secret backend {name!r} ({owner}) failed on {rest!r}: {type(exc).__name__}"
                ) from None
            if not isinstance(value, str):
                raise SecretUnavailable(
                    f"secret backend {name!r} returned {type(value).__name__} for {rest!r}, not str"
                )
            register(value)
            self._values[key] = value
            self.used.add(key)
            return value

    def check(self, reference: str) -> None:
        """Raise what :meth:`get` would for a missing name or backend, without decrypting anything."""
        from nexus_core.contracts.secrets import SecretBackend, SecretNotFound

        name, rest = self.route(reference)
        with self._lock:
            cls = self.backend_class(name)
            if cls.exists is SecretBackend.exists:
                return  # it cannot tell without fetching: not even created (no login for a dry run)
            backend = self.backend(name)
        if backend.exists(rest) is False:
            from nexus_core.secrets.local import LocalBackend

            if isinstance(backend, LocalBackend):
                backend.resolve(rest)  # raises SecretNotFound naming the stores, without a key
            raise SecretNotFound(f"secret backend {name!r} has no secret {rest!r}")

    def value(self, reference: str) -> str:
        """What ``secret(reference)`` returns: the value (resolve mode) or ``***`` after a check."""
        if self.resolving:
            return self.get(reference)
        self.check(reference)
        return PLACEHOLDER

    def close(self) -> None:
        """Close every backend (errors are reported, never raised)."""
        with self._lock:
            backends, self._backends = self._backends, {}
        for name, backend in backends.items():
            try:
                backend.close()
            except Exception as exc:  # noqa: BLE001 - plugin code at the end of a run
                self.warn(f"secret backend {name!r} failed to close: {type(exc).__name__}")


_ACTIVE: Secrets | None = None
_ACTIVE_LOCK = threading.Lock()


def active() -> Secrets | None:
    """The secrets of the run being planned or executed (None: check mode, nothing active)."""
    return _ACTIVE


def activate(secrets: Secrets) -> None:
    """Make ``secrets`` the process's current run secrets (``secret()`` and ``to=`` use it)."""
    global _ACTIVE
    with _ACTIVE_LOCK:
        _ACTIVE = secrets


def deactivate() -> None:
    """Close and forget the current run secrets."""
    global _ACTIVE
    with _ACTIVE_LOCK:
        current, _ACTIVE = _ACTIVE, None
    if current is not None:
        current.close()


def reveal(reference: str) -> str:
    """The value of a ``to=`` reference at execution time (SecretUnavailable outside a resolving run)."""
    current = _ACTIVE
    if current is None or not current.resolving:
        from nexus_core.contracts.secrets import SecretUnavailable

        raise SecretUnavailable(f"secret {reference!r} cannot be read here: this is not a run that resolves secrets")
    return current.get(reference)


def for_project(project: Any) -> Secrets:
    """The current run secrets, told the project's config and folder (check mode when none is active)."""
    global _ACTIVE
    with _ACTIVE_LOCK:
        current = _ACTIVE
        if current is None:
            from nexus_core.plugins import PluginManager

            current = _ACTIVE = Secrets(PluginManager().registry, project.config, project.root, resolve=False)
    current.bind(project.config, project.root)
    return current


_CLOSE_AT_EXIT: list[bool] = []

#: Passphrases shorter than this are not hidden in output (they would hide common words).
MIN_PASSPHRASE = 8


def register_credentials(environ: Mapping[str, str]) -> None:
    """Hide the credentials this process was given in its environment, in every mode (dry runs too).

    The sudo password, the secret stores' master key and passphrases: commands inherit the
    environment, so a command that prints it (``env``, ``set -x``) shows them as ``***``.
    """
    register(environ.get("NEXUS_SUDO_PASSWORD", ""))
    register(environ.get("NEXUS_MASTER_KEY", "").strip())
    # HashiCorp's own variables, which nexus-vault reads (and the `vault` CLI a command runs)
    for name in ("VAULT_TOKEN", "VAULT_SECRET_ID"):
        register(environ.get(name, "").strip())
    for name in ("NEXUS_PASSPHRASE", "NEXUS_NEW_PASSPHRASE"):
        phrase = environ.get(name, "")
        if len(phrase) >= MIN_PASSPHRASE:
            register(phrase)


def register_team_key(root: str) -> None:
    """Hide the project's team keyfile (``.nexus/team.key``) in every output, whether or not the
    run opens the store: a command that prints it shows ``***`` (as ``NEXUS_MASTER_KEY`` does).
    Only a small regular file written as ``nexus secret init --team`` writes it (base64 text)."""
    path = os.path.join(root, ".nexus", "team.key")  # nexus_core.secrets.local.TEAM_KEY, not imported for it
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > 4096:
            return
        with open(path, "rb") as fh:
            text = fh.read(4096).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return
    if len(text) >= 16:
        register(text)


def start(
    registry: Registry,
    *,
    resolve: bool,
    interactive: bool = False,
    warn: Callable[[str], None] | None = None,
    replace: bool = True,
) -> Secrets:
    """Make a new :class:`Secrets` current (closed at the latest when the process exits).

    ``replace=False`` keeps the one already current, if any (commands that only plan).
    """
    import atexit

    register_credentials(os.environ)
    current = _ACTIVE
    if current is not None and not replace:
        return current
    made = Secrets(registry, {}, os.getcwd(), resolve=resolve, interactive=interactive, warn=warn)
    deactivate()
    activate(made)
    if not _CLOSE_AT_EXIT:
        _CLOSE_AT_EXIT.append(True)
        atexit.register(deactivate)
    return made
