"""``nexus secret``: the local encrypted store (set, get, list, delete, rotate-key, init, unlock).

Values are never printed, except by ``get NAME --reveal`` (for scripts). Every error is one
message in Nexus's shape with exit code 2, never a traceback and never ciphertext.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import rich_click as click

from nexus_core.cli.application import ExitCode, config_option, fail, format_option, main, plugin_manager

# What a run needs of secrets (``nexus run`` and ``resume`` call them) lives in the module
# every run imports anyway, so that a run does not register this module's commands.
from nexus_core.cli.running import rotation_reminders as rotation_reminders
from nexus_core.cli.running import run_secrets as run_secrets
from nexus_core.cli.running import secret_warning as _warn


def _can_prompt() -> bool:
    try:
        return not os.environ.get("CI") and sys.stdin is not None and sys.stdin.isatty()
    except ValueError:
        return False


# --- the command group ---------------------------------------------------------------------


@main.group("secret")
def secret_group() -> None:
    """Manage encrypted secrets for secret("NAME") in the nexusfile.

    The personal store is $XDG_DATA_HOME/nexus/secrets.enc; a project's store is
    .nexus/secrets.enc next to its nexusfile (it wins for a name in both). Keys come from
    NEXUS_MASTER_KEY (base64), --keyfile / NEXUS_KEYFILE, .nexus/team.key, a keyfile
    remembered by `nexus secret unlock`, or a passphrase (NEXUS_PASSPHRASE or a prompt).
    """


def _keyfile_option(f: Any) -> Any:
    return click.option(
        "--keyfile", metavar="FILE", help="Keyfile that opens the store (env NEXUS_KEYFILE; before other keyfiles)."
    )(f)


def _store_options(f: Any) -> Any:
    f = click.option(
        "--project/--personal",
        "project",
        default=None,
        help="Which store: the project's .nexus/secrets.enc or the personal one "
        "(default: the project's when it exists).",
    )(f)
    return _keyfile_option(config_option(f))


def _root(config_path: str | None) -> str:
    """The project folder: the nexusfile's, else the nearest folder (this one or a parent) that
    holds a team store (``.nexus/secrets.enc``: ``nexus secret init --team`` in a project
    without a nexusfile yet, or a clone of one); '' when there is no project here."""
    from nexus_core.loader import NexusfileNotFound, find_nexusfile, nearest_file
    from nexus_core.secrets.local import project_path

    try:
        return os.path.dirname(os.path.abspath(find_nexusfile(config_path)))
    except NexusfileNotFound:
        if config_path:
            fail(ExitCode.CONFIG, f"No nexusfile at {config_path}", suggestions=["Check -c/--config or NEXUS_CONFIG"])
    store = nearest_file(project_path(""))
    return os.path.dirname(os.path.dirname(store)) if store else ""


def _backend(config_path: str | None, keyfile: str | None, interactive: bool | None = None) -> Any:
    from nexus_core.api import SecretContext
    from nexus_core.secrets.local import LocalBackend

    config: dict[str, Any] = {}
    if keyfile:
        config["secret_keyfile"] = os.path.abspath(os.path.expanduser(keyfile))
    root = _root(config_path)
    return LocalBackend(SecretContext(config, root, "", _can_prompt() if interactive is None else interactive, _warn))


@contextmanager
def _errors(reference: str = "") -> Iterator[None]:
    """Secret errors as Nexus errors: one message (naming ``reference`` once), exit 2, no traceback."""
    from nexus_core.api import SecretError

    try:
        yield
    except SecretError as exc:
        text = str(exc)
        if reference and reference not in text:
            text = f"{reference}: {text}"
        fail(ExitCode.CONFIG, text, suggestions=[exc.hint] if exc.hint else [])
    except (EOFError, KeyboardInterrupt):
        click.echo("", err=True)
        fail(ExitCode.INTERRUPTED, "Interrupted; nothing was changed")


def _read_value(name: str, from_file: str | None) -> str:
    """The value to store: a file's content, standard input (not a terminal) or a prompt without echo."""
    if from_file is not None:
        from nexus_core.userfiles import read_small

        try:
            data = read_small(from_file, 16 << 20)  # never /dev/zero or a FIFO read forever
        except OSError as exc:
            fail(ExitCode.CONFIG, f"Cannot read {from_file}: {exc.strerror or exc}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            fail(ExitCode.CONFIG, f"{from_file} is not UTF-8 text", suggestions=["Store binary data base64-encoded"])
    if not _can_prompt():
        text = sys.stdin.read() if sys.stdin is not None else ""
        return text[:-1] if text.endswith("\n") else text  # `echo value |` adds one newline
    import getpass

    first = getpass.getpass(f"Value for {name}: ")
    if getpass.getpass("Again: ") != first:
        fail(ExitCode.CONFIG, "The two values differ; nothing was stored")
    return first


@secret_group.command("set")
@click.argument("name")
@click.option("--from-file", metavar="FILE", help="Read the value from FILE (exact bytes, UTF-8).")
@_store_options
def set_secret(name: str, from_file: str | None, project: bool | None, keyfile: str | None,
               config_path: str | None) -> None:  # fmt: skip
    """Store NAME (asked without echo; read from standard input when it is not a terminal)."""
    with _errors():
        from nexus_core.secrets.local import check_name

        backend = _backend(config_path, keyfile)
        check_name(name)
        path = backend.target(project)
        value = _read_value(name, from_file)
        if not value:
            fail(ExitCode.CONFIG, f"Empty value for {name}; nothing was stored")
        replaced = name in backend.store(path)
        backend.set(name, value, project)
    _config_changed(config_path, "secret set", path, {"secrets": {"replaced" if replaced else "added": [name]}})
    click.echo(f"Stored {name} in {path}")


@secret_group.command("get")
@click.argument("reference")
@click.option(
    "--reveal", is_flag=True, help="Print the value on standard output (required: values are never shown otherwise)."
)
@_keyfile_option
@config_option
def get_secret(reference: str, reveal: bool, keyfile: str | None, config_path: str | None) -> None:
    """Print a secret's value for scripts, only with --reveal (REFERENCE: NAME or BACKEND:REF)."""
    if not reveal:
        fail(
            ExitCode.CONFIG,
            f"Refusing to print {reference} without --reveal",
            suggestions=[f"nexus secret get {reference} --reveal (the value goes to standard output)"],
        )
    from nexus_core.secrets.resolve import Secrets

    root = _root(config_path)
    config = _project_config(config_path) if root else {}
    if keyfile:
        config["secret_keyfile"] = os.path.abspath(os.path.expanduser(keyfile))
    secrets = Secrets(plugin_manager().registry, config, root, resolve=True, interactive=_can_prompt(), warn=_warn)
    try:
        with _errors(reference):
            value = secrets.get(reference)
    finally:
        secrets.close()
    raw = sys.__stdout__  # past the redacting net of sys.stdout: this is the one place that shows a value
    if raw is None:
        fail(ExitCode.CONFIG, "No standard output to print the value on")
    sys.stdout.flush()
    try:
        raw.write(value + "\n")
        raw.flush()
    except BrokenPipeError:
        pass


def _project_config(config_path: str | None) -> dict[str, Any]:
    """The nexusfile's config values (for secret_backend and the backends' keys); {} when it cannot load."""
    from nexus_core.cli.application import load

    try:
        return dict(load(config_path).config)
    except Exception:  # noqa: BLE001 - a broken nexusfile: the local store still works
        return {}


@secret_group.command("list")
@click.option("--backend", "backend_name", metavar="NAME", help="List another backend's secrets (if it can list).")
@format_option
@config_option
def list_secrets(backend_name: str | None, fmt: str, config_path: str | None) -> None:
    """List secret names, dates and where they live; never values."""
    from nexus_core.api import SecretInfo

    infos: list[SecretInfo] = []
    with _errors():
        if backend_name and backend_name != "local":
            from nexus_core.secrets.resolve import Secrets

            root = _root(config_path)
            secrets = Secrets(plugin_manager().registry, _project_config(config_path) if root else {}, root)
            try:
                try:
                    infos = list(secrets.backend(backend_name).list_names())
                except NotImplementedError as exc:
                    fail(ExitCode.CONFIG, str(exc))
            finally:
                secrets.close()
        else:
            backend = _backend(config_path, None, interactive=False)
            infos = list(backend.list_names())
    if fmt == "json":
        click.echo(json.dumps({"secrets": [info.__dict__ for info in infos]}))
        return
    if not infos:
        click.echo("No secrets. Add one with: nexus secret set NAME")
        return
    from nexus_core.output.safe import clean

    # The names and dates are the file's, read without its key: shown with controls made visible.
    rows = [(clean(i.name), clean(str(i.updated_at or "-")), clean(i.backend), clean(i.location)) for i in infos]
    width = max(len("NAME"), *(len(r[0]) for r in rows))
    click.echo(f"{'NAME':<{width}}  {'UPDATED':<20}  {'BACKEND':<8}  WHERE")
    for name, updated, backend_name, where in rows:
        click.echo(f"{name:<{width}}  {updated:<20}  {backend_name:<8}  {where}")


@secret_group.command("delete")
@click.argument("name")
@_store_options
def delete_secret(name: str, project: bool | None, keyfile: str | None, config_path: str | None) -> None:
    """Remove NAME from the store that holds it (the project's first)."""
    with _errors():
        backend = _backend(config_path, keyfile)
        path = _store_path(backend, name) if project is None else backend.target(project)
        backend.delete(name, project)
    _config_changed(config_path, "secret delete", path, {"secrets": {"removed": [name]}})
    click.echo(f"Deleted {name}")


def _store_path(backend: Any, name: str) -> str:
    """The file of the store that holds ``name`` ("" when none does)."""
    return str(getattr(backend.where(name), "path", "") or "")


def _config_changed(config_path: str | None, change_type: str, target: str, diff: dict[str, Any]) -> None:
    """A ``config.changed`` audit record of what ``change_type`` changed (names only, never a value)."""
    from nexus_core.policy.gate import config_changed

    config_changed(change_type, target, diff, root=_root(config_path) or None)


@secret_group.command("rotate-key")
@click.option("--new-keyfile", metavar="FILE", help="Use the key in FILE (made when it does not exist) from now on.")
@_store_options
def rotate_key(new_keyfile: str | None, project: bool | None, keyfile: str | None, config_path: str | None) -> None:
    """Re-encrypt every secret under a new master key, keeping the old file as secrets.enc.bak.

    A passphrase store asks for the new passphrase (NEXUS_NEW_PASSPHRASE without a terminal).
    A store opened with a keyfile gets a new key in that keyfile (the old one kept as .bak),
    unless --new-keyfile names another file.
    """
    from nexus_core.secrets.local import PROJECT_DIR, TEAM_KEY
    from nexus_core.secrets.store import (
        MasterKey,
        Store,
        derive_passphrase,
        key_from_file,
        locked,
        new_key_text,
        passphrase_params,
        write_atomic,
    )

    with _errors():
        backend = _backend(config_path, keyfile)
        path = backend.target(project)
        with locked(path):
            store = Store.read(path)
            if not store.exists:
                _missing(path)
            backend.unlock(store)
            count = len(store.names())
            click.echo(f"Rotating master key of {path}...")
            params: dict[str, Any] | None = None
            replace_keyfile = ""
            if new_keyfile:
                target = os.path.abspath(os.path.expanduser(new_keyfile))
                if not os.path.exists(target):
                    write_atomic(target, (new_key_text() + "\n").encode())
                key = key_from_file(target)
            elif store.kdf == "argon2id":
                new = os.environ.get("NEXUS_NEW_PASSPHRASE")
                if new is None:
                    if not _can_prompt():
                        fail(ExitCode.CONFIG, "The new passphrase is needed",
                             suggestions=["Set NEXUS_NEW_PASSPHRASE, or run on a terminal"])  # fmt: skip
                    import getpass

                    new = getpass.getpass("Enter new passphrase: ")
                    if getpass.getpass("Confirm new passphrase: ") != new:
                        fail(ExitCode.CONFIG, "The two passphrases differ; nothing was changed")
                params = passphrase_params()
                key = MasterKey(derive_passphrase(new, params), "the new passphrase")
            elif store.key_source.startswith("keyfile "):
                replace_keyfile = store.key_source.removeprefix("keyfile ")
                key = MasterKey(b"", "")  # set below, once the old keyfile is backed up
            else:
                fail(
                    ExitCode.CONFIG,
                    f"{path} was opened with {store.key_source}: say where the new key goes",
                    suggestions=["nexus secret rotate-key --new-keyfile FILE, then use FILE's content as the new key"],
                )
            click.echo(f"  ✓ Decrypted {count} secrets with old key")
            backup = path + ".bak"
            import shutil

            shutil.copy2(path, backup)
            os.chmod(backup, 0o600)
            if replace_keyfile:
                shutil.copy2(replace_keyfile, replace_keyfile + ".bak")
                os.chmod(replace_keyfile + ".bak", 0o600)
                write_atomic(replace_keyfile, (new_key_text() + "\n").encode())
                key = key_from_file(replace_keyfile)
            store.rekey(key, params)
            click.echo(f"  ✓ Re-encrypted {count} secrets with new key")
            click.echo(f"  ✓ Backed up old {os.path.basename(path)} to {os.path.basename(backup)}")
            store.save()
            click.echo(f"  ✓ Updated {os.path.basename(path)}")
    click.echo("\nMaster key rotated successfully.")
    click.echo(f"Old backup: {backup} (delete after verification)")
    if replace_keyfile:
        click.echo(f"New key in {replace_keyfile} (old one: {replace_keyfile}.bak).")
        if os.path.basename(replace_keyfile) == TEAM_KEY:
            click.echo("Distribute the new team.key to the team securely.")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.basename(folder) == PROJECT_DIR:  # a team store: the old key must not reach git
        added = _ignore_team(os.path.dirname(folder))
        if added:
            click.echo("Added to .gitignore:\n  " + "\n  ".join(added))


@secret_group.command("init")
@click.option("--team", is_flag=True, help="Make a project store with a shared keyfile (.nexus/team.key).")
@config_option
def init(team: bool, config_path: str | None) -> None:
    """Create a secrets file: the project's with a team keyfile (--team), else the personal one."""
    from nexus_core.secrets.local import PROJECT_DIR, STORE_FILE, TEAM_KEY, personal_path
    from nexus_core.secrets.store import Store, key_from_file, new_key_text, write_atomic

    with _errors():
        if not team:
            backend = _backend(config_path, None)
            path = personal_path()
            store = Store.read(path)
            if store.exists:
                fail(ExitCode.CONFIG, f"{path} already exists", suggestions=["Add secrets with: nexus secret set NAME"])
            backend.create(store)
            store.save()
            click.echo(f"Generated secrets file: {path}")
            return
        root = _root(config_path) or os.getcwd()
        folder = os.path.join(root, PROJECT_DIR)
        key_path, store_path = os.path.join(folder, TEAM_KEY), os.path.join(folder, STORE_FILE)
        for existing in (store_path, key_path):
            if os.path.exists(existing):
                hint = "Team members open it with: nexus secret unlock --keyfile /path/to/team.key"
                fail(ExitCode.CONFIG, f"{existing} already exists; nothing was changed", suggestions=[hint])
        write_atomic(key_path, (new_key_text() + "\n").encode())
        store = Store(store_path)
        store.create(key_from_file(key_path))
        store.save()
        ignored = _ignore_team(root)
    rel = os.path.relpath(key_path, os.getcwd())
    click.echo(f"Generated keyfile: {rel}")
    click.echo(f"Generated secrets file: {os.path.relpath(store_path, os.getcwd())}")
    click.echo(f"\n{'Added to' if ignored else 'Already in'} .gitignore:\n  " + "\n  ".join(ignored or _team_ignored()))
    click.echo(f"\nDistribute {TEAM_KEY} securely to team members.\nDO NOT commit {TEAM_KEY} to git.")


def _team_ignored() -> list[str]:
    """What a team store's project keeps out of git: the key, the old key a rotation keeps
    (``team.key.bak`` opens every copy of ``secrets.enc`` committed before it), the old
    store's copy and the lock file."""
    from nexus_core.secrets.local import PROJECT_DIR, STORE_FILE, TEAM_KEY

    return [f"{PROJECT_DIR}/{TEAM_KEY}", f"{PROJECT_DIR}/{TEAM_KEY}.bak", f"{PROJECT_DIR}/{STORE_FILE}.bak",
            f"{PROJECT_DIR}/{STORE_FILE}.lock"]  # fmt: skip


def _ignore_team(root: str) -> list[str]:
    """Add :func:`_team_ignored` to ROOT/.gitignore, each unless a line already says it; the ones added."""
    path = os.path.join(root, ".gitignore")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    there = {line.strip().lstrip("/") for line in text.splitlines()}
    added = [entry for entry in _team_ignored() if entry not in there]
    if added:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(("" if not text or text.endswith("\n") else "\n") + "".join(e + "\n" for e in added))
    return added


@secret_group.command("unlock")
@click.option("--keyfile", required=True, metavar="FILE", help="The keyfile you were given (e.g. team.key).")
@click.option("--project/--personal", "project", default=None, help="Which store the keyfile opens.")
@config_option
def unlock(keyfile: str, project: bool | None, config_path: str | None) -> None:
    """Check that FILE opens the store and remember it, so that runs find the key."""
    from nexus_core.secrets.local import remember_keyfile
    from nexus_core.secrets.store import Store, key_from_file

    with _errors():
        backend = _backend(config_path, None, interactive=False)
        path = backend.target(project)
        store = Store.read(path)
        if not store.exists:
            _missing(path)
        store.unlock(key_from_file(os.path.abspath(os.path.expanduser(keyfile))))
        remember_keyfile(path, keyfile)
    click.echo("Keyfile loaded successfully.")
    click.echo(f"{path} now opens with {os.path.abspath(keyfile)}")


def _missing(path: str) -> NoReturn:
    fail(ExitCode.CONFIG, f"No secrets file at {path}",
         suggestions=["Create one with: nexus secret init --team (project) or nexus secret set NAME"])  # fmt: skip
