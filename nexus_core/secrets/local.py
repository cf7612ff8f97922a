"""The built-in secret backend ``local``: the personal and the project store files.

- personal store: ``$XDG_DATA_HOME/nexus/secrets.enc`` (``NEXUS_SECRETS_FILE`` overrides);
- project store: ``.nexus/secrets.enc`` next to the nexusfile; for a name in both, the
  project store wins.

Keys, in this order (the first that opens the store is used; each store is unlocked once
per process, when its first value is needed):

1. ``NEXUS_MASTER_KEY`` (base64);
2. a keyfile: ``--keyfile``/``config(secret_keyfile=...)``, then ``NEXUS_KEYFILE``; for the
   project store also ``.nexus/team.key`` and the keyfile ``nexus secret unlock`` remembered;
3. a passphrase (stores made with one): ``NEXUS_PASSPHRASE``, else a prompt on a terminal,
   through Argon2id.

A key the user gave (1, and the keyfiles of 2 named by ``--keyfile``, ``secret_keyfile`` or
``NEXUS_KEYFILE``) that cannot be read at all is an error rather than skipped; one that reads
but does not open a store is skipped (it may open the other store).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from nexus_core.api import (
    SecretBackend,
    SecretContext,
    SecretDenied,
    SecretError,
    SecretInfo,
    SecretNotFound,
    SecretUnavailable,
)
from nexus_core.secrets import NAME
from nexus_core.secrets.store import MasterKey, Store, derive_passphrase, key_from_file, key_from_text, locked

PROJECT_DIR = ".nexus"
STORE_FILE = "secrets.enc"
TEAM_KEY = "team.key"


def personal_path() -> str:
    """The personal store: ``NEXUS_SECRETS_FILE``, else ``$XDG_DATA_HOME/nexus/secrets.enc``."""
    from nexus_core.state.paths import data_dir

    return os.environ.get("NEXUS_SECRETS_FILE") or os.path.join(data_dir(), STORE_FILE)


def project_path(root: str) -> str:
    """The project store of the project in ``root``: ``ROOT/.nexus/secrets.enc``."""
    return os.path.join(root, PROJECT_DIR, STORE_FILE)


def _remembered_file() -> str:
    from nexus_core.state.paths import data_dir

    return os.path.join(data_dir(), "keyfiles.json")


def remembered_keyfiles() -> dict[str, str]:
    """Store path -> keyfile path, as ``nexus secret unlock --keyfile`` recorded them."""
    try:
        with open(_remembered_file(), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember_keyfile(store: str, keyfile: str) -> None:
    """Record that ``keyfile`` opens ``store`` (paths only: the key stays where it is)."""
    from nexus_core.secrets.store import write_atomic

    known = remembered_keyfiles()
    known[os.path.abspath(store)] = os.path.abspath(keyfile)
    write_atomic(_remembered_file(), (json.dumps(known, indent=1, sort_keys=True) + "\n").encode())


def check_name(name: str) -> None:
    """SecretNotFound with the rules when ``name`` cannot be a name of the local store."""
    if not isinstance(name, str) or not NAME.match(name):
        raise SecretNotFound(
            f"{name!r} is not a valid secret name: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or '_'), e.g. DB_PASSWORD"
        )


class GivenKey:
    """A key source the user named (see :meth:`LocalBackend.candidates`): called, it reads the key."""

    __slots__ = ("read",)

    def __init__(self, read: Callable[[], MasterKey]) -> None:
        self.read = read

    def __call__(self) -> MasterKey:
        return self.read()


class LocalBackend(SecretBackend):
    """The encrypted store files (personal and project): see the module docstring."""

    name = "local"
    caches = False
    writable = True

    def __init__(self, context: SecretContext) -> None:
        super().__init__(context)
        root = context.root
        self.project = project_path(root) if root else ""
        self.personal = personal_path()
        self._stores: dict[str, Store] = {}
        #: Asks for a passphrase (prompt text, confirm twice?) -> the passphrase; None: no prompt.
        self.prompt: Callable[[str, bool], str] | None = _terminal_prompt if context.interactive else None

    # --- stores --------------------------------------------------------------------------

    def store(self, path: str) -> Store:
        """The store file at ``path``, read once per backend."""
        found = self._stores.get(path)
        if found is None:
            found = self._stores[path] = Store.read(path)
        return found

    def paths(self) -> list[str]:
        """Where names are looked up, first match wins: the project store, then the personal one."""
        return [p for p in (self.project, self.personal) if p]

    def where(self, name: str) -> Store | None:
        """The store that holds ``name`` (project first), without any key; None when none does."""
        for path in self.paths():
            store = self.store(path)
            if name in store:
                return store
        return None

    def exists(self, reference: str) -> bool:
        """True when a store holds the name ``reference`` (no key needed: names are in the clear)."""
        check_name(reference)
        return self.where(reference) is not None

    # --- keys ----------------------------------------------------------------------------

    def candidates(self, store: Store) -> list[Callable[[], MasterKey]]:
        """The key sources to try for ``store``, in priority order (each read when tried).

        The ones the user gave (``NEXUS_MASTER_KEY``, ``--keyfile``/``secret_keyfile``,
        ``NEXUS_KEYFILE``) are :class:`GivenKey`: one that cannot be read at all (not base64, no
        such file) is an error, not skipped for the next source (a mistyped key in CI went
        unnoticed while ``.nexus/team.key`` opened the store). A key that reads but does not
        open this store is skipped: it may be the other store's."""
        out: list[Callable[[], MasterKey]] = []
        env_key = os.environ.get("NEXUS_MASTER_KEY")
        if env_key:
            out.append(GivenKey(lambda: key_from_text(env_key, "NEXUS_MASTER_KEY")))
        given: list[str] = []
        option = self.context.config.get("secret_keyfile")
        if isinstance(option, str) and option:
            given.append(os.path.join(self.context.root or ".", os.path.expanduser(option)))
        if os.environ.get("NEXUS_KEYFILE"):
            given.append(os.path.expanduser(os.environ["NEXUS_KEYFILE"]))
        found: list[str] = []
        team = os.path.join(os.path.dirname(store.path), TEAM_KEY)
        if os.path.exists(team):
            found.append(team)
        remembered = remembered_keyfiles().get(os.path.abspath(store.path))
        if remembered:
            found.append(remembered)
        for path in dict.fromkeys(given):
            out.append(GivenKey(lambda path=path: key_from_file(path)))  # type: ignore[misc]
        for path in dict.fromkeys(found):
            if path not in given:
                out.append(lambda path=path: key_from_file(path))  # type: ignore[misc]
        return out

    def unlock(self, store: Store, ask: bool = True) -> None:
        """Open ``store`` with the first key source that fits; SecretDenied saying how to give one.
        ``ask``: a passphrase may be asked for (else only the key sources and ``NEXUS_PASSPHRASE``)."""
        if store.unlocked:
            return
        first: SecretError | None = None
        for make in self.candidates(store):
            try:
                key = make()
            except SecretError as exc:  # an unreadable keyfile: try the next source, unless given
                if isinstance(make, GivenKey):
                    raise
                first = first or exc
                continue
            try:
                store.unlock(key)
                return
            except SecretDenied as exc:  # not this key; a tampered file (SecretUnavailable) stops here
                first = first or exc
        if store.kdf == "argon2id":
            passphrase = os.environ.get("NEXUS_PASSPHRASE")
            source = "NEXUS_PASSPHRASE"
            if passphrase is None and self.prompt is not None and ask:
                passphrase = self.prompt(f"Passphrase for {store.path}: ", False)
                source = "the passphrase"
            if passphrase is not None:
                params = dict(store.doc["kdf_params"]) if store.doc else {}
                store.unlock(MasterKey(derive_passphrase(passphrase, params), source))
                return
        if first is not None:
            raise first
        how = (
            "set NEXUS_PASSPHRASE, or run on a terminal to be asked for it"
            if store.kdf == "argon2id"
            else "pass --keyfile FILE, set NEXUS_KEYFILE or NEXUS_MASTER_KEY, "
            "or run `nexus secret unlock --keyfile FILE` once"
        )
        raise SecretDenied(f"{store.path} is locked: no key was given ({how})")

    def purpose_key(self, purpose: str) -> bytes | None:
        """Key material for ``purpose`` from the master key, when one can be had without asking.

        The first store (project, then personal) already unlocked in this process, or opened
        now by a key that needs no prompt (``NEXUS_MASTER_KEY``, a keyfile); without any store,
        ``NEXUS_MASTER_KEY`` itself. A passphrase store lends its key only once the run has
        unlocked it for a secret of its own: nobody is asked for a passphrase for a cache.
        None when no master key is at hand (the caller then uses a key of its own).
        """
        from nexus_core.secrets.store import purpose_key

        stores = [self.store(p) for p in self.paths()]
        stores = [s for s in stores if s.exists]
        for store in stores:
            if store.unlocked:
                return store.purpose_key(purpose)
        for store in stores:
            for make in self.candidates(store):
                try:
                    store.unlock(make())
                except SecretError:  # not this key (or a damaged store): try the next
                    continue
                return store.purpose_key(purpose)
        env_key = os.environ.get("NEXUS_MASTER_KEY")
        if env_key and not stores:
            try:
                return purpose_key(key_from_text(env_key, "NEXUS_MASTER_KEY").material, purpose)
            except SecretError:
                return None
        return None

    # --- the backend interface -----------------------------------------------------------

    def resolve(self, reference: str) -> str:
        """The value of ``reference`` (a name) from the project store, else the personal one."""
        check_name(reference)
        store = self.where(reference)
        if store is None:
            for path in self.paths():  # a name edited by hand is a changed file, not a missing secret
                self._check_unattended(self.store(path))
            places = " or ".join(self.paths())
            raise SecretNotFound(f"no secret {reference!r} in {places}; add it with `nexus secret set {reference}`")
        self.unlock(store)
        return store.get(reference)

    def _check_unattended(self, store: Store) -> None:
        """Raise the store's SecretUnavailable when a key at hand without asking (the key
        sources, ``NEXUS_PASSPHRASE``) opens it and finds it changed outside Nexus."""
        if not store.exists:
            return
        try:
            self.unlock(store, ask=False)
        except SecretUnavailable:
            raise
        except SecretError:  # no key at hand, or not this one: nothing more to say
            pass

    def list_names(self) -> Sequence[SecretInfo]:
        """Every name of both stores (a name in both shows once, from the project store)."""
        seen: dict[str, SecretInfo] = {}
        for path in self.paths():
            for info in self.store(path).infos(self.name):
                seen.setdefault(info.name, info)
        return sorted(seen.values(), key=lambda i: i.name)

    def target(self, project: bool | None = None) -> str:
        """The store ``set`` writes to: the project store when it exists (or ``project``), else the personal one."""
        if project is None:
            project = bool(self.project) and self.store(self.project).exists
        if project and not self.project:
            raise SecretUnavailable("no project here (no nexusfile found): the project store lives next to it")
        return self.project if project else self.personal

    def set(self, name: str, value: str, project: bool | None = None) -> None:
        """Store ``value`` as ``name`` (new data key), creating the store when needed."""
        check_name(name)
        path = self.target(project)
        with locked(path):
            store = self._stores[path] = Store.read(path)
            if store.exists:
                self.unlock(store)
            else:
                self.create(store)
            store.put(name, value)
            store.save()

    def create(self, store: Store) -> None:
        """Make ``store`` new under the first key given (a key or keyfile, else a new passphrase)."""
        from nexus_core.secrets.store import passphrase_params

        makers = self.candidates(store)
        if makers:
            store.create(makers[0]())
            return
        passphrase = os.environ.get("NEXUS_PASSPHRASE")
        if passphrase is None and self.prompt is not None:
            passphrase = self.prompt(f"New passphrase for {store.path}: ", True)
        if not passphrase:
            raise SecretDenied(
                f"{store.path} does not exist yet and no key was given to create it: set NEXUS_PASSPHRASE "
                "(or run on a terminal to choose a passphrase), or give a key (NEXUS_MASTER_KEY, --keyfile)"
            )
        params = passphrase_params()
        store.create(MasterKey(derive_passphrase(passphrase, params), "the new passphrase"), params)

    def delete(self, name: str, project: bool | None = None) -> None:
        """Remove ``name`` from the store that holds it (the project store first)."""
        check_name(name)
        paths = self.paths() if project is None else [self.target(project)]
        for path in paths:
            with locked(path):
                store = self._stores[path] = Store.read(path)
                if name not in store:
                    continue
                self.unlock(store)
                store.remove(name)
                store.save()
                return
        raise SecretNotFound(f"no secret {name!r} in {' or '.join(paths)}")

    def close(self) -> None:
        """Forget the keys."""
        self._stores.clear()


def _terminal_prompt(text: str, confirm: bool) -> str:
    """Ask on the terminal without echo (twice when ``confirm``)."""
    import getpass

    first = getpass.getpass(text)
    if confirm and getpass.getpass("Again: ") != first:
        raise SecretDenied("the two passphrases differ; nothing was changed")
    return first


def used_stores(backend: Any) -> list[Store]:
    """The stores a local backend unlocked (for rotation reminders)."""
    if not isinstance(backend, LocalBackend):
        return []
    return [s for s in backend._stores.values() if s.unlocked]
