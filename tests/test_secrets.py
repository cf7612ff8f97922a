"""Secrets: the secret-backend hook family, the local store, ``nexus secret``, ``secret(...)``."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

from nexus_core.api import SecretBackend, SecretContext, SecretNotFound
from nexus_core.plugins import PluginManager
from nexus_core.secrets import split_reference


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    return Logs(tmp_path / "imports.log", tmp_path / "runs.log")


@pytest.fixture
def project(nexus_project, site, logs):
    """A nexus project whose subprocesses see the fake distributions in ``site``."""
    site.mkdir()
    nexus_project.env.update(plugin_env(site, logs))
    return nexus_project


# --- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "default", "expected"),
    [
        ("DB_PASSWORD", "local", ("local", "DB_PASSWORD")),
        ("vault:kv/app#db_password", "local", ("vault", "kv/app#db_password")),
        ("kv/app#db_password", "vault", ("vault", "kv/app#db_password")),
        ("kv/app:odd", "vault", ("vault", "kv/app:odd")),
        ("local:DB", "vault", ("local", "DB")),
    ],
)
def test_a_reference_names_its_backend_or_goes_to_the_default(reference, default, expected):
    assert split_reference(reference, default) == expected


# --- the hook family -------------------------------------------------------------------------


@pytest.mark.hook("nexus_secret_backends")
def test_a_secret_backend_plugin_is_registered_by_name_and_listed(project, site, logs, monkeypatch):
    """nexus_secret_backends: the plugin's backend is found by its prefix and resolves references."""
    make_dist(site, features=("secret_backend",))
    out = project.run("plugins", "--format", "json")
    assert out.code == 0, out
    row = {p["distribution"]: p for p in out.json()["plugins"]}["nexus-fake"]
    assert "nexus_secret_backends" in row["hooks"] and not row["error"]

    monkeypatch.syspath_prepend(str(site))
    for key, value in plugin_env(site, logs).items():
        monkeypatch.setenv(key, value)
    registry = PluginManager().registry
    assert "fake" in registry.secret_backends
    cls = registry.secret_backends["fake"]
    assert issubclass(cls, SecretBackend) and not cls.writable and not cls.caches
    backend = cls(SecretContext(config={"fake_endpoint": "lab"}))
    assert backend.resolve("alpha") == "fake-secret-alpha"
    with pytest.raises(SecretNotFound, match="no secret 'missing'"):
        backend.resolve("missing")
    assert [i.name for i in backend.list_names()] == ["alpha", "beta"]
    with pytest.raises(NotImplementedError, match="read-only"):
        backend.set("x", "y")


# --- the local store through `nexus secret` -----------------------------------------------

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()
VALUE = "v4lue-7c1e0f-unique"


@pytest.fixture
def keyed(nexus_project):
    """A project whose nexus runs get NEXUS_MASTER_KEY."""
    nexus_project.env["NEXUS_MASTER_KEY"] = KEY
    return nexus_project


def personal(project) -> Path:
    return Path(project.env["XDG_DATA_HOME"]) / "nexus" / "secrets.enc"


def no_traceback(out) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out
    assert "internal error" not in out.stderr, out


def test_set_list_get_delete_through_the_cli(keyed):
    out = keyed.run("secret", "set", "DB_PASSWORD", input=VALUE + "\n")
    assert out.code == 0, out
    assert f"Stored DB_PASSWORD in {personal(keyed)}" in out.stdout
    assert VALUE not in out.stdout + out.stderr

    listed = keyed.run("secret", "list")
    assert listed.code == 0 and "DB_PASSWORD" in listed.stdout and "local" in listed.stdout, listed
    assert VALUE not in listed.stdout
    rows = keyed.run("secret", "list", "--format", "json").json()["secrets"]
    assert [(r["name"], r["backend"], r["location"]) for r in rows] == [("DB_PASSWORD", "local", str(personal(keyed)))]
    assert rows[0]["created_at"].endswith("Z") and rows[0]["updated_at"].endswith("Z")

    hidden = keyed.run("secret", "get", "DB_PASSWORD")
    assert hidden.code == 2 and "--reveal" in hidden.stderr and VALUE not in hidden.stdout + hidden.stderr

    shown = keyed.run("secret", "get", "DB_PASSWORD", "--reveal")
    assert shown.code == 0 and shown.stdout == VALUE + "\n", shown

    assert keyed.run("secret", "delete", "DB_PASSWORD").code == 0
    gone = keyed.run("secret", "get", "DB_PASSWORD", "--reveal")
    assert gone.code == 2 and "no secret 'DB_PASSWORD'" in gone.stderr, gone
    no_traceback(gone)


def test_from_file_keeps_the_exact_content_and_the_file_is_private(keyed, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERT-----\nAAAA\n-----END CERT-----\n", encoding="utf-8")
    assert keyed.run("secret", "set", "TLS_CERT", "--from-file", str(cert)).code == 0
    shown = keyed.run("secret", "get", "TLS_CERT", "--reveal")
    assert shown.stdout == cert.read_text() + "\n"
    mode = stat.S_IMODE(personal(keyed).stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_the_file_holds_names_and_dates_in_the_clear_and_values_encrypted_per_secret(keyed):
    for name in ("A", "B"):
        assert keyed.run("secret", "set", name, input=VALUE).code == 0
    raw = personal(keyed).read_text()
    doc = json.loads(raw)
    assert VALUE not in raw and base64.b64encode(VALUE.encode()).decode() not in raw
    assert doc["version"] == 2 and doc["kdf"] == "key"
    assert [s["name"] for s in doc["secrets"]] == ["A", "B"]
    a, b = doc["secrets"]
    assert set(a) == {"name", "created_at", "updated_at", "encrypted_dek", "iv", "ciphertext", "auth_tag"}
    assert a["encrypted_dek"] != b["encrypted_dek"] and a["ciphertext"] != b["ciphertext"]  # a data key each
    assert len(base64.b64decode(a["auth_tag"])) == 16 and len(base64.b64decode(a["iv"])) == 12


def test_a_wrong_key_is_a_clear_error_naming_the_file(keyed):
    assert keyed.run("secret", "set", "A", input=VALUE).code == 0
    doc = json.loads(personal(keyed).read_text())
    out = keyed.run("secret", "get", "A", "--reveal", env={"NEXUS_MASTER_KEY": OTHER_KEY})
    assert out.code == 2, out
    assert f"does not open {personal(keyed)} (wrong key or passphrase)" in out.stderr
    assert doc["secrets"][0]["ciphertext"] not in out.stderr + out.stdout
    no_traceback(out)


def test_a_secret_renamed_by_hand_is_a_changed_file_not_a_missing_secret(keyed):
    """Editing TOKEN's name in the file made `nexus run` say "no secret 'TOKEN' ... add it with
    nexus secret set": the run now opens the store with the key at hand and says it was changed."""
    assert keyed.run("secret", "set", "TOKEN", input=VALUE).code == 0
    path = personal(keyed)
    doc = json.loads(path.read_text())
    doc["secrets"][0]["name"] = "TOKEX"
    path.write_text(json.dumps(doc))
    keyed.write(NEXUSFILE_ECHO)
    out = keyed.run("run", "show")
    assert out.code == 2, out
    assert "was changed outside Nexus" in out.stderr and str(path) in out.stderr, out
    assert "add it with" not in out.stderr and VALUE not in out.stdout + out.stderr, out
    no_traceback(out)


@pytest.mark.parametrize("damage", ["ciphertext", "renamed", "removed", "truncated", "garbage"])
def test_a_tampered_or_truncated_file_is_a_clear_error_naming_the_file(keyed, damage):
    for name in ("A", "B"):
        assert keyed.run("secret", "set", name, input=VALUE).code == 0
    path = personal(keyed)
    raw = path.read_text()
    doc = json.loads(raw)
    if damage == "ciphertext":
        c = doc["secrets"][0]["ciphertext"]
        doc["secrets"][0]["ciphertext"] = ("B" if c[0] != "B" else "C") + c[1:]
    elif damage == "renamed":
        doc["secrets"][0]["name"] = "B2"
    elif damage == "removed":
        del doc["secrets"][1]
    if damage == "truncated":
        path.write_text(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff" * 40)
    else:
        path.write_text(json.dumps(doc))
    out = keyed.run("secret", "get", "A", "--reveal")
    assert out.code == 2, out
    assert str(path) in out.stderr, out
    assert VALUE not in out.stdout and out.stdout == "", out
    for e in doc["secrets"]:
        assert e["ciphertext"] not in out.stderr
    no_traceback(out)


@pytest.mark.parametrize(
    "costs",
    [
        {"t_cost": 10**9},
        {"m_cost": 2**32 - 1},
        {"m_cost": 8},
        {"t_cost": 64, "m_cost": 4194304},  # each within the old limits: 64 passes over 4 GiB ran for minutes
        {"t_cost": 8, "m_cost": 2097152},
    ],
)
def test_argon2_costs_edited_beyond_reason_are_a_damaged_file_not_a_hang(nexus_project, costs):
    p = nexus_project
    assert p.run("secret", "set", "A", input=VALUE, env={"NEXUS_PASSPHRASE": "pp"}).code == 0
    doc = json.loads(personal(p).read_text())
    doc["kdf_params"].update(costs)
    personal(p).write_text(json.dumps(doc))
    started = time.monotonic()
    out = p.run("secret", "get", "A", "--reveal", env={"NEXUS_PASSPHRASE": "pp"}, timeout=60)
    assert out.code == 2 and f"{personal(p)} is damaged" in out.stderr, out
    assert time.monotonic() - started < 30 and "MemoryError" not in out.stderr
    no_traceback(out)


def test_a_passphrase_store_and_its_key_rotation_keep_a_backup(nexus_project):
    p = nexus_project
    env = {"NEXUS_PASSPHRASE": "correct horse"}
    assert p.run("secret", "set", "A", input=VALUE, env=env).code == 0
    assert json.loads(personal(p).read_text())["kdf"] == "argon2id"
    wrong = p.run("secret", "get", "A", "--reveal", env={"NEXUS_PASSPHRASE": "wrong"})
    assert wrong.code == 2 and "wrong key or passphrase" in wrong.stderr, wrong

    rotated = p.run("secret", "rotate-key", env={**env, "NEXUS_NEW_PASSPHRASE": "battery staple"})
    assert rotated.code == 0, rotated
    assert (
        "Re-encrypted 1 secrets with new key" in rotated.stdout and "Master key rotated successfully." in rotated.stdout
    )
    backup = Path(str(personal(p)) + ".bak")
    assert backup.exists() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert p.run("secret", "get", "A", "--reveal", env=env).code == 2  # the old passphrase no longer opens it
    assert p.run("secret", "get", "A", "--reveal", env={"NEXUS_PASSPHRASE": "battery staple"}).stdout == VALUE + "\n"
    # the backup is the old file: the old passphrase still opens it
    old = p.run("secret", "get", "A", "--reveal", env={**env, "NEXUS_SECRETS_FILE": str(backup)})
    assert old.stdout == VALUE + "\n", old


def test_rotating_a_keyfile_store_writes_a_new_key_into_the_keyfile(nexus_project, tmp_path):
    p = nexus_project
    keyfile = tmp_path / "my.key"
    keyfile.write_text(KEY + "\n")
    assert p.run("secret", "set", "A", "--keyfile", str(keyfile), input=VALUE).code == 0
    out = p.run("secret", "rotate-key", "--keyfile", str(keyfile))
    assert out.code == 0, out
    assert keyfile.read_text().strip() != KEY and Path(str(keyfile) + ".bak").read_text().strip() == KEY
    assert p.run("secret", "get", "A", "--reveal", "--keyfile", str(keyfile)).stdout == VALUE + "\n"
    # opened with NEXUS_MASTER_KEY, the new key needs a place to go
    env = {"NEXUS_MASTER_KEY": keyfile.read_text().strip()}
    refused = p.run("secret", "rotate-key", env=env)
    assert refused.code == 2 and "--new-keyfile" in refused.stderr, refused
    fresh = tmp_path / "fresh.key"
    assert p.run("secret", "rotate-key", "--new-keyfile", str(fresh), env=env).code == 0
    assert p.run("secret", "get", "A", "--reveal", "--keyfile", str(fresh)).stdout == VALUE + "\n"


def test_team_init_unlock_and_the_project_store_wins(nexus_project, tmp_path):
    p = nexus_project
    p.write(NEXUSFILE_ECHO)
    out = p.run("secret", "init", "--team")
    assert out.code == 0, out
    assert "Generated keyfile: .nexus/team.key" in out.stdout and "DO NOT commit team.key to git." in out.stdout
    # the old key a rotation keeps (team.key.bak opens every secrets.enc committed before it),
    # the old store and the lock file stay out of git too
    ignored = [".nexus/team.key", ".nexus/team.key.bak", ".nexus/secrets.enc.bak", ".nexus/secrets.enc.lock"]
    assert (p.root / ".gitignore").read_text().splitlines() == ignored
    assert stat.S_IMODE((p.root / ".nexus" / "team.key").stat().st_mode) == 0o600
    again = p.run("secret", "init", "--team")
    assert again.code == 2 and "already exists" in again.stderr

    # the personal store has the same name with another value: the project's wins
    assert (
        p.run("secret", "set", "TOKEN", "--personal", input="personal-value", env={"NEXUS_MASTER_KEY": KEY}).code == 0
    )
    assert p.run("secret", "set", "TOKEN", input="project-value").code == 0  # team.key is found next to the store
    ran = p.run("run", "show", "-v", env={"NEXUS_MASTER_KEY": KEY})
    assert ran.code == 0, ran
    assert "token is ***" in ran.stdout and "project-value" not in ran.stdout

    # a team member who has the key elsewhere: unlock remembers it
    moved = tmp_path / "team.key"
    (p.root / ".nexus" / "team.key").rename(moved)
    locked = p.run("run", "show")
    assert locked.code == 2 and "is locked" in locked.stderr and "nexusfile.py:5" in locked.stderr, locked
    wrong = tmp_path / "wrong.key"
    wrong.write_text(OTHER_KEY)
    bad = p.run("secret", "unlock", "--keyfile", str(wrong))
    assert bad.code == 2 and "wrong key" in bad.stderr, bad
    ok = p.run("secret", "unlock", "--keyfile", str(moved))
    assert ok.code == 0 and "Keyfile loaded successfully." in ok.stdout, ok
    assert p.run("run", "show").code == 0


def test_a_key_given_that_cannot_be_read_is_said_even_when_the_team_key_opens_the_store(nexus_project):
    """A mistyped NEXUS_MASTER_KEY or a --keyfile that does not exist was passed over for
    .nexus/team.key: the command succeeded and the mistake went unnoticed."""
    p = nexus_project
    p.write(NEXUSFILE_ECHO + '\n\n@task\ndef cat_key():\n    run("cat .nexus/team.key")\n')
    assert p.run("secret", "init", "--team").code == 0
    assert p.run("secret", "set", "TOKEN", input="project-value").code == 0
    assert p.run("secret", "get", "TOKEN", "--reveal").code == 0
    missing = p.run("secret", "get", "TOKEN", "--reveal", "--keyfile", "/nonexistent/key")
    assert missing.code == 2 and "cannot read the keyfile /nonexistent/key" in missing.stderr, missing
    assert "project-value" not in missing.stdout
    garbage = p.run("secret", "get", "TOKEN", "--reveal", env={"NEXUS_MASTER_KEY": "garbage!"})
    assert garbage.code == 2 and "NEXUS_MASTER_KEY is not base64" in garbage.stderr, garbage
    other = p.run("secret", "get", "TOKEN", "--reveal", env={"NEXUS_MASTER_KEY": OTHER_KEY})
    assert other.code == 0 and "project-value" in other.stdout, other  # another store's key: passed over
    # the keyfile's text is hidden like a secret's value
    team = (p.root / ".nexus" / "team.key").read_text().strip()
    shown = p.run("run", "cat_key", "-v")
    assert shown.code == 0 and team not in shown.stdout + shown.stderr and "***" in shown.stdout, shown


def test_a_team_key_rotation_keeps_the_old_key_out_of_git(nexus_project):
    """A project made before init listed them: rotate-key left .nexus/team.key.bak (the old key,
    which opens every committed copy of secrets.enc) for `git add -A` to take."""
    p = nexus_project
    p.write(NEXUSFILE_ECHO)
    assert p.run("secret", "init", "--team").code == 0
    (p.root / ".gitignore").write_text("node_modules/\n.nexus/team.key\n")  # as an older init left it
    assert p.run("secret", "set", "TOKEN", input="project-value").code == 0
    out = p.run("secret", "rotate-key")
    assert out.code == 0, out
    assert (p.root / ".nexus" / "team.key.bak").exists()
    assert "Added to .gitignore:" in out.stdout and ".nexus/team.key.bak" in out.stdout, out
    lines = (p.root / ".gitignore").read_text().splitlines()
    assert lines == ["node_modules/", ".nexus/team.key", ".nexus/team.key.bak", ".nexus/secrets.enc.bak",
                     ".nexus/secrets.enc.lock"]  # fmt: skip
    again = p.run("secret", "rotate-key")
    assert again.code == 0 and "Added to .gitignore" not in again.stdout, again


NEXUSFILE_ECHO = """
from nexus_core import run, secret, task

@task
def show():
    run(f"echo token is {secret('TOKEN')}")
"""


def test_writes_are_atomic_when_the_writer_is_killed(keyed):
    """SIGKILL at random moments of `nexus secret set`: the file is always the old or the new one."""
    assert keyed.run("secret", "set", "A", input="first").code == 0
    env = {**os.environ, "NO_COLOR": "1", "CI": "1", **keyed.env}
    import random

    rng = random.Random(7)
    for i in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexus_core", "secret", "set", f"S{i}"],
            cwd=keyed.root, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(b"x" * 100)
        proc.stdin.close()
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        listed = keyed.run("secret", "get", "A", "--reveal")
        assert listed.code == 0 and listed.stdout == "first\n", listed
    leftovers = [f for f in personal(keyed).parent.iterdir() if f.name.endswith(".tmp")]
    assert len(leftovers) <= 12  # a killed writer may leave its temporary file, never a torn store


# --- secret() in a nexusfile -----------------------------------------------------------------

USES = """
from nexus_core import config, run, secret, task

@task
def show():
    run(f"echo token is {secret('TOKEN')}")

@task
def missing():
    run(f"echo {secret('NOPE')}")
"""


def test_dry_run_and_validate_decrypt_nothing_and_report_missing_secrets(nexus_project):
    p = nexus_project
    p.write(USES)
    assert p.run("secret", "set", "TOKEN", input=VALUE, env={"NEXUS_MASTER_KEY": KEY}).code == 0
    dry = p.run("run", "show", "--dry-run")  # no key at all
    assert dry.code == 0, dry
    assert "echo token is ***" in dry.stdout
    out = p.run("validate")
    assert out.code == 2, out
    assert "nexusfile.py:9" in out.stderr and "no secret 'NOPE'" in out.stderr, out
    assert "nexus secret set NOPE" in out.stderr
    assert "TOKEN" not in out.stderr
    js = p.run("validate", "--format", "json")
    problems = (
        js.json()["problems"] if js.stdout.startswith("{") else json.loads(js.stdout.splitlines()[-1])["problems"]
    )
    assert [(pr["line"], pr["code"]) for pr in problems] == [(9, "secret")]


def test_an_unknown_backend_names_the_package_to_install(keyed):
    # sops: a known backend no distribution of this repository installs (nexus-vault may be).
    keyed.write(
        """
        from nexus_core import run, secret, task

        @task
        def show():
            run(f"echo {secret('sops:app.yaml#db_password')}")
        """
    )
    out = keyed.run("run", "show")
    assert out.code == 2, out
    assert "no secret backend 'sops' is installed" in out.stderr and "pip install nexus-sops" in out.stderr, out
    other = keyed.run("run", "show", "--dry-run")
    assert other.code == 2 and "pip install nexus-sops" in other.stderr
    keyed.write(keyed.nexusfile.read_text().replace("secret('sops:app.yaml#db_password')", "secret('app.yaml#pw')")
                .replace("from nexus_core import", "from nexus_core import config,")
                + '\nconfig(secret_backend="sops")\n')  # fmt: skip
    out = keyed.run("validate")
    assert out.code == 2 and "pip install nexus-sops" in out.stderr, out
    # with no secret() at all, the setting is still checked (it was: only at the first secret())
    keyed.write("from nexus_core import config, run, task\nconfig(secret_backend='vaul')\n\n@task\ndef t():\n"
                "    run('true')\n")  # fmt: skip
    unused = keyed.run("validate")
    assert unused.code == 2 and "nexusfile.py:2: config(secret_backend='vaul'): no such secret backend" in unused.stderr


@pytest.mark.hook("nexus_secret_backends")
def test_a_plugin_backend_serves_prefixed_references_and_its_values_are_redacted(project, site, logs):
    make_dist(site, features=("secret_backend", "options"))
    project.write(
        """
        from nexus_core import config, run, secret, task
        config(fake_endpoint="lab")

        @task
        def show():
            run(f"echo {secret('fake:alpha')} {secret('fake:alpha')}")
        """
    )
    out = project.run("run", "show", "-v")
    assert out.code == 0, out
    assert "fake-secret-alpha" not in out.stdout + out.stderr and "> *** ***" in out.stdout, out
    records = [json.loads(line) for line in logs.runs.read_text().splitlines()]
    secrets = [r for r in records if r["kind"] == "secret"]
    assert secrets == [{"plugin": "nexus_fake", "kind": "secret", "reference": "alpha", "endpoint": "lab"}]  # once
    assert any(r["kind"] == "secret-close" for r in records)
    project.write(project.nexusfile.read_text().replace("fake:alpha", "fake:missing"))
    out = project.run("run", "show")
    assert out.code == 2 and "fake: no secret 'missing'" in out.stderr, out


def test_secret_to_a_file_writes_it_atomically_with_its_mode_and_never_in_the_command(keyed, tmp_path):
    target = tmp_path / "out" / "token"
    target.parent.mkdir()
    keyed.write(
        f"""
        from nexus_core import run, secret, task

        @task
        def place():
            secret("TOKEN", to="{target}")
            secret("TOKEN", to="{target}.640", mode=0o640)
            run("cat {target} > /dev/null")
        """
    )
    assert keyed.run("secret", "set", "TOKEN", input=VALUE).code == 0
    dry = keyed.run("run", "place", "--dry-run")
    assert f"write secret TOKEN to {target}" in dry.stdout and VALUE not in dry.stdout, dry
    assert "NEXUS-SECRET-" not in dry.stdout, "the plan shows what the write does, not its script"
    out = keyed.run("run", "place", "-v", "--format", "json")
    assert out.code == 0, out
    assert target.read_text() == VALUE
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{target}.640").stat().st_mode) == 0o640
    assert VALUE not in out.stdout + out.stderr
    for cmd in out.of("command.start"):
        assert VALUE not in cmd["command"]
    assert [f.name for f in target.parent.iterdir() if ".nexus-" in f.name] == []  # no temporary left


def test_a_secret_file_mode_is_checked_as_an_upload_s_and_may_be_a_string(keyed, tmp_path):
    """mode=600 (decimal: 0o1130, the owner could not read the file) was taken as it was."""
    keyed.write(
        f"""
        from nexus_core import secret, task

        @task
        def place():
            secret("TOKEN", to="{tmp_path}/a", mode=600)
            secret("TOKEN", to="{tmp_path}/b", mode="640")
        """
    )
    assert keyed.run("secret", "set", "TOKEN", input=VALUE).code == 0
    out = keyed.run("validate")
    assert out.code == 2, out
    assert "nexusfile.py:5: secret(): mode=600 (0o1130) sets the sticky bit" in out.stderr, out
    assert "write mode=0o600 (octal)" in out.stderr and "nexusfile.py:6" not in out.stderr, out
    keyed.write(out_text := keyed.nexusfile.read_text().replace("mode=600", "mode=0o600"))
    assert "mode=0o600" in out_text
    ran = keyed.run("run", "place")
    assert ran.code == 0, ran
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o640


def test_secret_to_a_folder_fails_and_leaves_no_copy_in_it(keyed, tmp_path):
    """`mv` into an existing folder would succeed and leave the value there under a temporary name."""
    folder = tmp_path / "conf"
    folder.mkdir()
    keyed.write(
        f"""
        from nexus_core import secret, task

        @task
        def place():
            secret("TOKEN", to="{folder}")
        """
    )
    assert keyed.run("secret", "set", "TOKEN", input=VALUE).code == 0
    out = keyed.run("run", "place")
    assert out.code == 1 and f"nexus: {folder} is a folder: to= names the file to write" in out.stderr, out
    assert list(folder.iterdir()) == [] and VALUE not in out.stdout + out.stderr
    # the tree and the failure report name the write by what it does, not by Nexus's script
    assert f"write secret TOKEN to {folder}" in out.stdout and f"Command: write secret TOKEN to {folder}" in out.stderr
    assert "mktemp" not in out.stdout + out.stderr and "NEXUS-SECRET" not in out.stdout + out.stderr, out


def test_remote_only_is_refused_on_this_machine_and_without_to(keyed):
    keyed.write(
        """
        from nexus_core import run, secret, task

        @task
        def place():
            secret("TOKEN", to="/tmp/x", remote_only=True)
            secret("TOKEN", remote_only=True)
            secret("TOKEN", to="relative/path")
        """
    )
    out = keyed.run("validate")
    assert out.code == 2, out
    assert "runs on this machine" in out.stderr and "needs to=PATH" in out.stderr and "to='relative/path'" in out.stderr


def test_rotation_reminders_warn_on_run_and_can_be_turned_off(keyed):
    keyed.write(
        """
        from nexus_core import config, run, secret, task
        config(secret_rotation_reminder=0.000001, key_rotation_reminder=0.000001)

        @task
        def show():
            run(f"echo {secret('TOKEN')}")
        """
    )
    assert keyed.run("secret", "set", "TOKEN", input=VALUE).code == 0
    time.sleep(0.3)
    out = keyed.run("run", "show")
    assert out.code == 0, out
    assert "Warning: the master key of" in out.stderr and "nexus secret rotate-key" in out.stderr, out
    assert "Warning: secret 'TOKEN'" in out.stderr and "nexus secret set TOKEN" in out.stderr
    keyed.write(keyed.nexusfile.read_text().replace("key_rotation_reminder=0.000001", "check_rotation_on_run=False"))
    quiet = keyed.run("run", "show")
    assert quiet.code == 0 and "Warning" not in quiet.stderr, quiet


# --- redaction -------------------------------------------------------------------------------


def test_the_redactor_hides_values_whole_and_line_by_line():
    from dataclasses import dataclass

    from nexus_core.secrets.redact import Redactor

    r = Redactor()
    same = "nothing to hide"
    assert r.text(same) is same and r.data({"a": [same]}) == {"a": [same]}
    r.add("abc")
    r.add("abcdef")  # the longer value is hidden whole, not as ***def
    r.add("")
    r.add("   ")
    cert = "-----BEGIN KEY-----\nMIIBOgIBAAJBAK\nxyz\n-----END KEY-----"
    r.add(cert)
    assert r.text("x abcdef y abc") == "x *** y ***"
    assert r.text(cert) == "***"
    assert r.text("line MIIBOgIBAAJBAK printed alone") == "line *** printed alone"
    assert r.text("xyz stays: lines under 4 characters are not registered alone").startswith("xyz")
    r.add("tab\there")  # escaped as a JSON string or a Python repr shows it
    assert r.text(json.dumps({"v": "tab\there"})) == '{"v": "***"}' and r.text(repr("tab\there")) == "'***'"

    @dataclass(frozen=True)
    class Ev:
        line: str
        tags: tuple[str, ...]
        n: int = 0

    ev = Ev("got abc", ("abcdef", "ok"), 3)
    assert r.data(ev) == Ev("got ***", ("***", "ok"), 3)
    clean = Ev("fine", ("ok",))
    assert r.data(clean) is clean


def test_a_value_across_a_cut_lines_cap_is_hidden_whole(monkeypatch):
    """An output line longer than the cap is cut before its redaction: a value across the cut
    showed its first characters (the rest was dropped with the line's end)."""
    from nexus_core.executors.lines import LineSplitter
    from nexus_core.secrets import redact

    r = redact.Redactor()
    monkeypatch.setattr(redact, "REDACTOR", r)
    r.add("S3cr3t-PaSS!word")
    for cut in range(1, 16):  # every place the cap can fall inside the value
        line = LineSplitter(max_line=40).feed("a" * (40 - cut) + "S3cr3t-PaSS!word tail\n")[0]
        assert "S3cr3t-PaSS!word"[:cut] not in r.text(line), (cut, line)
        assert line.startswith("a" * (40 - cut) + "***") and "more characters not shown" in line
    assert LineSplitter(max_line=40).feed("a" * 30 + "xyz" + "b" * 20 + "\n")[0].startswith("a" * 30 + "xyzbbbbbbb")


def test_a_value_across_the_1_mib_cap_never_shows_through_the_cli(keyed):
    keyed.write(
        """
        from nexus_core import run, secret, task

        @task
        def cut():
            run("head -c 1048570 /dev/zero | tr '\\\\0' a; printenv X; exit 1", env={"X": secret("PW")})
        """
    )
    assert keyed.run("secret", "set", "PW", input=VALUE).code == 0
    for args in (("run", "cut"), ("run", "cut", "-v"), ("run", "cut", "--format", "json")):
        out = keyed.run(*args)
        assert out.code == 1, out
        assert "more characters not shown" in out.stdout + out.stderr, out
        assert VALUE[:4] not in out.stdout + out.stderr, out


def _state_text(project) -> str:
    """Every file of the project's run state (database, gzipped run logs), as text."""
    import gzip

    texts = []
    for path in Path(project.env["XDG_STATE_HOME"]).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            texts.append((gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", "replace"))
    return "\n".join(texts)


def test_a_value_shell_quoted_or_printed_without_its_blanks_is_hidden_everywhere(keyed, tmp_path):
    """shlex.quote() rewrites a quote in the value; `echo $PW` drops its trailing blank: both stay hidden."""
    quoted, padded = "pa'ss\"w\\rd-7Kq", "Hunter2-Zq9 "
    assert keyed.run("secret", "set", "QUOTED", input=quoted).code == 0
    assert keyed.run("secret", "set", "PADDED", input=padded).code == 0
    audit = tmp_path / "audit" / "audit.log"
    (keyed.root / ".nexus").mkdir(exist_ok=True)
    (keyed.root / ".nexus" / "config.toml").write_text(
        f'[audit.sinks.trail]\ntype = "file"\npath = "{audit}"\nkey = "{tmp_path / "audit" / "s.key"}"\n'
    )
    keyed.write(
        """
        import shlex
        from nexus_core import run, secret, task

        @task
        def show():
            run(f"printf 'q=%s\\n' {shlex.quote(secret('QUOTED'))}")
            run(f"echo p={secret('PADDED')}")
            run(f"printf '%s\\n' {shlex.quote(secret('QUOTED'))} >&2; exit 3")
        """
    )
    leaks = ("pa'", 'ss"w', "'\"'\"'ss", "Hunter2")
    for args in (("run", "show", "-v"), ("run", "show", "--format", "json")):
        out = keyed.run(*args)
        assert out.code == 1, out
        assert not [leak for leak in leaks if leak in out.stdout + out.stderr], out
    assert "q=***" in keyed.run("logs").stdout
    stored = _state_text(keyed) + audit.read_text()
    assert not [leak for leak in leaks if leak in stored]


def test_the_master_key_and_passphrase_a_command_inherits_are_hidden(keyed):
    """Commands inherit NEXUS_MASTER_KEY / NEXUS_PASSPHRASE: printing the environment shows ***."""
    keyed.write(
        """
        from nexus_core import run, task

        @task
        def show():
            run("env | grep -E '^NEXUS_(MASTER_KEY|PASSPHRASE)=' | sort")
        """
    )
    phrase = "long-enough-phrase-81"
    for args in (("run", "show", "-v"), ("run", "show", "--format", "json")):
        out = keyed.run(*args, env={"NEXUS_PASSPHRASE": phrase})
        assert out.code == 0, out
        assert KEY not in out.stdout + out.stderr and phrase not in out.stdout + out.stderr, out
    assert keyed.run("logs").stdout.count("=***") == 2
    assert KEY not in _state_text(keyed) and phrase not in _state_text(keyed)
    # nexus exec too, with or without a nexusfile; and the Vault token a command inherits
    token = "hvs.inherited-token-5521"
    elsewhere = keyed.root.parent / "no-nexusfile"  # beside the project: no nexusfile above it
    elsewhere.mkdir()
    for folder in (keyed.root, elsewhere):
        out = keyed.run("exec", "local", "--", "env | grep -E '^(NEXUS_MASTER_KEY|VAULT_TOKEN)='",
                        env={"VAULT_TOKEN": token}, cwd=folder)  # fmt: skip
        assert out.code == 0 and "NEXUS_MASTER_KEY=***" in out.stdout, out
        assert KEY not in out.stdout + out.stderr and token not in out.stdout + out.stderr, out


def test_an_exception_carrying_a_value_is_shown_redacted(keyed):
    keyed.write(
        """
        from nexus_core import run, secret, task

        @task
        def boom():
            value = secret("TOKEN")
            raise RuntimeError(f"could not use {value}")
        """
    )
    assert keyed.run("secret", "set", "TOKEN", input=VALUE).code == 0
    for args in (("run", "boom"), ("run", "boom", "--format", "json"), ("run", "boom", "--log-level", "debug")):
        out = keyed.run(*args)
        assert out.code == 2, out
        assert "could not use ***" in out.stdout + out.stderr, out
        assert VALUE not in out.stdout + out.stderr


def test_a_value_with_quotes_in_an_exceptions_repr_is_hidden_in_json_too(keyed):
    # int(value) fails with the value's repr (quotes escaped) in its message; inside the JSON
    # error object that repr is escaped once more, and the value was printed.
    quoted = "Qu0te'd\"Val$ue-ZZQ"
    keyed.write(
        """
        from nexus_core import secret, task

        @task
        def boomq():
            int(secret("QSEC"))
        """
    )
    assert keyed.run("secret", "set", "QSEC", input=quoted).code == 0
    for args in (("run", "boomq"), ("run", "boomq", "--format", "json"), ("validate", "--format", "json")):
        out = keyed.run(*args)
        text = out.stdout + out.stderr
        assert out.code == 2, out
        assert "ZZQ" not in text and "Val$ue" not in text, (args, text)
        assert "***" in text, (args, text)


# --- a key for plugins' caches: SecretContext.cache_key ----------------------------------------


def test_cache_key_comes_from_the_master_key_without_a_prompt(tmp_path: Path, monkeypatch):
    """Each purpose its own key from the master key; none without a key; never a prompt."""
    from nexus_core.plugins import builtin_registry
    from nexus_core.secrets.resolve import Secrets
    from nexus_core.secrets.store import MasterKey, Store, key_from_text, purpose_key

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("NEXUS_SECRETS_FILE", raising=False)
    monkeypatch.delenv("NEXUS_KEYFILE", raising=False)
    monkeypatch.delenv("NEXUS_PASSPHRASE", raising=False)
    monkeypatch.delenv("NEXUS_MASTER_KEY", raising=False)

    def context(root: Path) -> SecretContext:
        secrets = Secrets(builtin_registry(), {}, str(root))
        return SecretContext({}, str(root), "", False, lambda m: None, secrets.purpose_key)

    root = tmp_path / "project"
    root.mkdir()
    assert context(root).cache_key("nexus-vault cache") is None  # no store, no key
    assert SecretContext({}).cache_key("x") is None  # a context the core did not make

    monkeypatch.setenv("NEXUS_MASTER_KEY", KEY)  # no store yet: the key itself
    material = key_from_text(KEY, "test").material
    first = context(root).cache_key("nexus-vault cache")
    assert first == purpose_key(material, "nexus-vault cache") and len(first) == 32
    assert context(root).cache_key("another plugin") not in (None, first)
    assert material not in (first,)

    store_path = tmp_path / "data" / "nexus" / "secrets.enc"  # a store opened by that key: the same key
    store_path.parent.mkdir(parents=True)
    store = Store(str(store_path))
    store.create(key_from_text(KEY, "test"))
    store.save()
    assert context(root).cache_key("nexus-vault cache") == first

    monkeypatch.setenv("NEXUS_MASTER_KEY", OTHER_KEY)  # a key that does not open the store: none
    assert context(root).cache_key("nexus-vault cache") is None

    monkeypatch.delenv("NEXUS_MASTER_KEY")
    phrase = Store(str(store_path))
    phrase.create(MasterKey(bytes(32), "passphrase"), {"salt": "x", "t_cost": 1, "m_cost": 8, "parallelism": 1})
    phrase.save()
    monkeypatch.setenv("NEXUS_PASSPHRASE", "not asked for a cache")
    assert context(root).cache_key("nexus-vault cache") is None  # a passphrase store is never opened for it


def test_a_team_store_is_the_project_store_before_the_nexusfile_exists(nexus_project):
    """`secret init --team` in a new folder, then `secret set` (as docs/secrets.md shows) wrote to
    the personal store, and `secret unlock` in a fresh clone said there was no secrets file:
    without a nexusfile the folder holding .nexus/secrets.enc was not taken as the project."""
    p = nexus_project
    assert not (p.root / "nexusfile.py").exists()
    assert p.run("secret", "init", "--team").code == 0
    stored = p.run("secret", "set", "FOO", input="v1")
    assert stored.code == 0 and ".nexus/secrets.enc" in stored.stdout, stored
    assert p.run("secret", "get", "FOO", "--reveal").stdout == "v1\n"
    key = p.root / "team.key"
    (p.root / ".nexus" / "team.key").rename(key)  # a clone: the store without its key
    opened = p.run("secret", "unlock", "--keyfile", str(key))
    assert opened.code == 0 and "Keyfile loaded successfully." in opened.stdout, opened


def test_secret_list_lines_up_short_names_and_shows_controls_in_names(keyed):
    assert keyed.run("secret", "set", "DB", input=VALUE).code == 0
    listed = keyed.run("secret", "list")
    header, row = listed.stdout.splitlines()[:2]
    assert header.index("UPDATED") == row.index(row.split()[1]), listed  # NAME was wider than "DB"
    store = personal(keyed)
    text = store.read_text()
    assert '"DB"' in text
    store.write_text(text.replace('"DB"', '"D\\u001b[31mB"'))  # a name edited by hand
    odd = keyed.run("secret", "list")
    assert "\x1b" not in odd.stdout + odd.stderr, odd


def test_env_values_named_like_secrets_never_reach_the_state_database(nexus_project):
    # The run's plan was written to the state database before those values were registered:
    # runs.plan held "API_TOKEN": "LocalTok-5566" in plain text.
    import sqlite3

    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def loc():
            run("echo hi", env={"API_TOKEN": "LocalTok-5566", "DB_PASSWORD": "pw-77aa"})
        """
    )
    assert nexus_project.run("run", "loc").code == 0
    state = Path(nexus_project.env["XDG_STATE_HOME"]) / "nexus" / "state.db"
    db = sqlite3.connect(state)
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert "LocalTok-5566" not in dump and "pw-77aa" not in dump
    assert '"API_TOKEN": "***"' in dump or "API_TOKEN" in dump
