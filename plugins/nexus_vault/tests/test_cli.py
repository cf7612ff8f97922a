"""nexus-vault through the real ``nexus`` CLI, against the fake Vault server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nexus_core.testing import NexusProject, Outcome
from pki import Pki
from vaultfake import VaultFake, blackhole

VALUE = "pa55-Unique-4f9c"
OTHER = "0ther-Unique-77aa"

DEPLOY = """
    from nexus_core import config, run, secret, task

    config({config})

    @task
    def deploy():
        run("echo password=$DB_PASSWORD", env={{"DB_PASSWORD": secret("vault:kv/app#db_password")}})
        run("echo user=" + secret("vault:kv/app#user"))

    @task(deps=[deploy])
    def check():
        run("test " + secret("vault:kv/app#db_password") + " = " + secret("vault:kv/app#db_password@1"))
        run("echo other=" + secret("vault:kv/other#token"))
"""


@pytest.fixture
def fake() -> Iterator[VaultFake]:
    with VaultFake() as server:
        server.put("app", {"db_password": VALUE, "user": "deployer"}, mount="kv")
        server.put("other", {"token": OTHER}, mount="kv")
        yield server


def vault_env(server: VaultFake | None = None, **extra: str) -> dict[str, str]:
    """The Vault variables of one run (the caller's own are always replaced)."""
    env = {
        "VAULT_ADDR": "",
        "VAULT_TOKEN": "",
        "VAULT_NAMESPACE": "",
        "VAULT_CACERT": "",
        "VAULT_CAPATH": "",
        "VAULT_CLIENT_CERT": "",
        "VAULT_CLIENT_KEY": "",
        "VAULT_SKIP_VERIFY": "",
        "VAULT_ROLE_ID": "",
        "VAULT_SECRET_ID": "",
    }
    if server is not None:
        env.update(VAULT_ADDR=server.url, VAULT_TOKEN=server.root_token)
    env.update(extra)
    return env


def deploy(project: NexusProject, config: str = "") -> None:
    project.write(DEPLOY.format(config=config))


def clean(out: Outcome, *values: str) -> None:
    """No value and no traceback anywhere in what the run printed."""
    for value in (VALUE, OTHER, *values):
        assert value not in out.stdout and value not in out.stderr, out
    assert "Traceback" not in out.stderr, out


def test_a_run_reads_vault_once_logs_in_once_and_shows_no_value(
    nexus_project: NexusProject, fake: VaultFake
) -> None:
    deploy(nexus_project)
    out = nexus_project.run("run", "check", "-v", env=vault_env(fake))
    assert out.code == 0, out
    clean(out, fake.root_token)
    assert "password=***" in out.stdout and "other=***" in out.stdout
    assert fake.count("GET", "/v1/auth/token/lookup-self") == 1  # one login for 5 secrets in 2 tasks
    assert fake.reads == 3  # kv/app, kv/app@1, kv/other: each path and version once


def test_json_events_and_the_run_state_hold_no_value(nexus_project: NexusProject, fake: VaultFake) -> None:
    deploy(nexus_project)
    out = nexus_project.run("run", "check", "--format", "json", env=vault_env(fake))
    assert out.code == 0, out
    clean(out)
    assert out.task_status("check") == "ok"
    state = Path(nexus_project.env.get("XDG_STATE_HOME", nexus_project.root))
    for path in [*state.rglob("*"), *nexus_project.root.rglob("*")]:
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path


def test_approle_from_the_nexusfile_and_vault_as_the_default_backend(
    nexus_project: NexusProject, fake: VaultFake
) -> None:
    fake.add_approle("role-1", "secret-1")
    for n in range(20):
        fake.put(f"many/s{n}", {"v": f"value-{n}"}, mount="kv")
    nexus_project.write(
        f"""
        from nexus_core import config, run, secret, task

        config(vault_addr="{fake.url}", vault_auth="approle", vault_role_id="role-1", secret_backend="vault")

        @task
        def many():
            for n in range(20):
                run("echo " + secret(f"kv/many/s{{n}}#v"))
        """
    )
    out = nexus_project.run("run", "many", env=vault_env(VAULT_SECRET_ID="secret-1"))
    assert out.code == 0, out
    clean(out, "secret-1")
    assert fake.logins == 1
    assert fake.reads == 20


def test_dry_run_and_validate_do_not_ask_vault(nexus_project: NexusProject, fake: VaultFake) -> None:
    deploy(nexus_project)
    for args in (("run", "check", "--dry-run"), ("validate",), ("list",)):
        out = nexus_project.run(*args, env=vault_env(fake))
        assert out.code == 0, out
        clean(out)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("denied", "permission denied reading kv/data/app"),
        ("missing", "no secret at kv/app (read kv/data/app)"),
        ("sealed", "is sealed"),
        ("expired", "the Vault token is invalid or expired"),
    ],
)
def test_vault_failures_are_one_clear_message_with_exit_2(
    nexus_project: NexusProject, fake: VaultFake, case: str, expected: str
) -> None:
    token = fake.root_token
    if case == "denied":
        token = fake.add_token(policy=("kv/data/elsewhere/*",))
    elif case == "missing":
        del fake.kv[("", "kv", "app")]
    elif case == "sealed":
        fake.sealed = True
    elif case == "expired":
        token = fake.add_token()
        del fake.tokens[token]
    deploy(nexus_project)
    out = nexus_project.run("run", "deploy", env=vault_env(fake, VAULT_TOKEN=token))
    assert out.code == 2, out
    clean(out, token)
    assert expected in out.stderr
    assert "vault:kv/app#db_password" in out.stderr and fake.url in out.stderr
    assert out.stderr.count("kv/app#db_password") == 1  # what, where and the fix: each once
    assert "exists there" not in out.stderr  # Vault's own fix, not a generic one besides it
    assert "password=" not in out.stdout  # nothing ran


@pytest.mark.parametrize(
    ("content_type", "body", "shown"),
    [
        ("text/html", b"<html>Sign in to the proxy</html>", "HTTP 200, text/html"),
        ("application/json", b"[1, 2]", "JSON list"),
    ],
)
def test_an_answer_that_is_not_vaults_json_is_named_with_exit_2(
    nexus_project: NexusProject, fake: VaultFake, content_type: str, body: bytes, shown: str
) -> None:
    """A proxy or a login page at vault_addr: said so, not a plugin's AttributeError."""
    fake.override = (200, content_type, body)
    deploy(nexus_project)
    out = nexus_project.run("run", "deploy", env=vault_env(fake))
    assert out.code == 2, out
    clean(out, fake.root_token)
    assert f"the answer from {fake.url} is not Vault's ({shown}, not a JSON object)" in out.stderr, out
    assert "vault_addr" in out.stderr and "Error" not in out.stderr.replace("Error: Validation failed", "")


@pytest.mark.parametrize("auth", ["token", "approle"])
def test_vault_error_texts_that_echo_a_credential_do_not_show_it(
    nexus_project: NexusProject, fake: VaultFake, auth: str
) -> None:
    """What a proxy in front of Vault echoes back (the token, the login body) is shown as ***."""
    secret_id = "s3cret-id-Unique-5e1d"
    fake.override = (400, "application/json", b'{"errors": ["refused {token} {body}"]}')
    deploy(nexus_project, 'vault_auth="approle"' if auth == "approle" else "")
    env = vault_env(fake, VAULT_ROLE_ID="role-1", VAULT_SECRET_ID=secret_id)
    out = nexus_project.run("run", "deploy", env=env)
    assert out.code == 2, out
    clean(out, fake.root_token, secret_id)
    assert ("refused ***" if auth == "token" else "***") in out.stderr, out


def test_an_unreachable_vault_is_one_timeout_not_one_per_secret(nexus_project: NexusProject) -> None:
    url, accepted, close = blackhole()
    try:
        nexus_project.write(
            """
            from nexus_core import config, run, secret, task

            config(vault_timeout=0.5, vault_retries=0)

            @task
            def many():
                for n in range(20):
                    run("echo " + secret(f"vault:kv/many/s{n}#v"))
            """
        )
        out = nexus_project.run(
            "run", "many", "--format", "json", env=vault_env(VAULT_ADDR=url, VAULT_TOKEN="hvs.x")
        )
        assert out.code == 2, out
        clean(out, "hvs.x")
        assert accepted[0] == 1  # one connection for 20 secrets
        (error,) = out.of("validation.error")
        messages = [p["message"] for p in error["problems"]]
        assert len(messages) == 20
        assert all("Vault did not answer within 0.5 s" in m and url in m for m in messages)
        assert sum("not asked, Vault failed earlier in this run" in m for m in messages) == 19
    finally:
        close()


def test_no_address_and_bad_settings_are_validation_errors(nexus_project: NexusProject) -> None:
    deploy(nexus_project)
    out = nexus_project.run("run", "deploy", env=vault_env())
    assert out.code == 2, out
    assert "secret('vault:kv/app#db_password'): no Vault address\n" in out.stderr  # the reference once
    assert "set config(vault_addr='https://vault.example.com:8200') or VAULT_ADDR" in out.stderr  # the fix
    deploy(nexus_project, 'vault_auth="ldap"')
    out = nexus_project.run("validate", env=vault_env())
    assert out.code == 2, out
    assert "vault_auth must be one of token, approle, kubernetes" in out.stderr
    deploy(nexus_project, 'vault_adr="http://x"')
    out = nexus_project.run("validate", env=vault_env())
    assert out.code == 2, out
    assert "config() has no key 'vault_adr'" in out.stderr and "'vault_addr'" in out.stderr  # did you mean


def test_tls_through_the_cli(nexus_project: NexusProject, pki: Pki) -> None:
    with VaultFake(certfile=pki.server_cert, keyfile=pki.server_key, client_ca=pki.ca) as server:
        server.put("app", {"db_password": VALUE, "user": "u"}, mount="kv")
        deploy(nexus_project)
        out = nexus_project.run("run", "deploy", env=vault_env(server, VAULT_CACERT=str(pki.ca)))
        assert out.code == 2, out
        assert "requires a client certificate" in out.stderr and "vault_client_cert" in out.stderr
        clean(out)
        deploy(nexus_project, f'vault_client_cert="{pki.client_cert}", vault_client_key="{pki.client_key}"')
        out = nexus_project.run("run", "deploy", env=vault_env(server, VAULT_CACERT=str(pki.ca)))
        assert out.code == 0, out
        out = nexus_project.run("run", "deploy", env=vault_env(server, VAULT_CACERT=str(pki.other_ca)))
        assert out.code == 2, out
        assert "Vault's TLS certificate could not be verified" in out.stderr
        clean(out)


def test_the_encrypted_cache_carries_a_run_through_a_vault_outage(nexus_project: NexusProject) -> None:
    with VaultFake() as server:
        server.put("app", {"db_password": VALUE, "user": "u"}, mount="kv")
        deploy(nexus_project, "vault_cache_ttl=600, vault_retries=0")
        env = vault_env(server)
        out = nexus_project.run("run", "deploy", env=env)
        assert out.code == 0, out
    out = nexus_project.run("run", "deploy", "-v", env=env)  # the server is gone
    assert out.code == 0, out
    clean(out)
    assert "using encrypted local copies" in out.stderr
    assert "password=***" in out.stdout
    cache = Path(nexus_project.env["XDG_CACHE_HOME"])
    for path in cache.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes()


def test_secret_get_and_list_with_the_vault_backend(nexus_project: NexusProject, fake: VaultFake) -> None:
    deploy(nexus_project)
    out = nexus_project.run("secret", "get", "vault:kv/app#db_password", "--reveal", env=vault_env(fake))
    assert out.code == 0, out
    assert out.stdout.strip() == VALUE
    deploy(nexus_project, 'vault_mount="kv"')
    out = nexus_project.run("secret", "list", "--backend", "vault", env=vault_env(fake))
    assert out.code == 0, out
    clean(out)
    assert "app" in out.stdout and "other" in out.stdout and "vault" in out.stdout
    out = nexus_project.run("secret", "get", "vault:nope#x", "--reveal", env=vault_env(fake))
    assert out.code == 2, out
    assert "no secret at kv/nope" in out.stderr


def test_a_vault_secret_written_to_a_file_is_fetched_when_its_command_runs(
    nexus_project: NexusProject, fake: VaultFake
) -> None:
    target = nexus_project.root / "out" / "db_password"
    nexus_project.write(
        f"""
        from nexus_core import run, secret, task

        @task
        def place():
            run("mkdir -p {target.parent}")
            secret("vault:kv/app#db_password", to="{target}")
            run("test -s {target}")
        """
    )
    out = nexus_project.run("run", "place", "-v", env=vault_env(fake))
    assert out.code == 0, out
    clean(out)
    assert target.read_text().strip() == VALUE
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    fake.sealed = True
    target.unlink()
    out = nexus_project.run("run", "place", env=vault_env(fake))
    assert out.code != 0, out
    clean(out)
    assert "is sealed" in out.stdout + out.stderr
    assert not target.exists()


def test_the_cache_is_keyed_by_the_secret_store_master_key(nexus_project: NexusProject) -> None:
    """With a master key at hand the cache needs no key file of its own, and only that key reads it."""
    import base64
    import os

    key_one, key_two = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    with VaultFake() as server:
        server.put("app", {"db_password": VALUE, "user": "u"}, mount="kv")
        deploy(nexus_project, "vault_cache_ttl=600, vault_retries=0")
        env = vault_env(server)
        out = nexus_project.run("run", "deploy", env={**env, "NEXUS_MASTER_KEY": key_one})
        assert out.code == 0, out
    cache = Path(nexus_project.env["XDG_CACHE_HOME"])
    assert list(cache.rglob("vault-cache.json")) and not list(cache.rglob("vault-cache.key"))
    out = nexus_project.run("run", "deploy", env={**env, "NEXUS_MASTER_KEY": key_two})  # Vault is gone
    assert out.code == 2, out  # another master key cannot read the copies: Vault's own error
    assert "Vault cannot be reached" in out.stderr
    clean(out)
    out = nexus_project.run("run", "deploy", env=env)  # no master key at all: the copies stay unreadable
    assert out.code == 2, out
    out = nexus_project.run("run", "deploy", "-v", env={**env, "NEXUS_MASTER_KEY": key_one})
    assert out.code == 0, out
    assert "using encrypted local copies" in out.stderr and "password=***" in out.stdout
    clean(out)


def test_a_team_store_lends_the_cache_its_key(nexus_project: NexusProject) -> None:
    """A project store opened by its team keyfile gives the cache key: no key file of the cache's own."""
    with VaultFake() as server:
        server.put("app", {"db_password": VALUE, "user": "u"}, mount="kv")
        deploy(nexus_project, "vault_cache_ttl=600, vault_retries=0")
        env = vault_env(server)
        made = nexus_project.run("secret", "init", "--team", env=env)
        assert made.code == 0, made
        assert nexus_project.run("run", "deploy", env=env).code == 0
    cache = Path(nexus_project.env["XDG_CACHE_HOME"])
    assert list(cache.rglob("vault-cache.json")) and not list(cache.rglob("vault-cache.key"))
    out = nexus_project.run("run", "deploy", env=env)  # Vault is gone
    assert out.code == 0, out
    assert "using encrypted local copies" in out.stderr
    clean(out)
