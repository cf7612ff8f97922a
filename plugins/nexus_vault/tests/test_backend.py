"""The vault backend against the fake Vault server, driven by the unmodified hvac client."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MakeBackend
from nexus_core.plugin import SecretDenied, SecretError, SecretNotFound, SecretUnavailable
from pki import Pki
from vaultfake import VaultFake, blackhole

from nexus_vault.reference import BadReference, parse
from nexus_vault.session import CircuitOpen

VALUE = "pa55-Unique-4f9c"


def wait_until(check: Callable[[], bool], limit: float = 15.0) -> bool:
    """Poll ``check`` until true (bounded); never asserts a duration."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def closed_port_url() -> str:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def said(err: BaseException) -> str:
    """What the user reads of ``err``: its message, then its hint (the fix) when it has one."""
    hint = getattr(err, "hint", "")
    return f"{err}; {hint}" if hint else str(err)


def no_value(err: BaseException, *values: str) -> str:
    """What the user reads of ``err``, checked to hold none of ``values`` (nor VALUE) and no traceback."""
    text = said(err)
    for value in (VALUE, *values):
        assert value not in text
    assert "Traceback" not in text
    return text


@pytest.fixture
def token_env(vault: VaultFake, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VAULT_TOKEN", vault.root_token)
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    return vault.root_token


# --- references ---------------------------------------------------------------------------


def test_references_parse_mount_path_key_and_version() -> None:
    ref = parse("kv/app/db#password@3")
    assert (ref.mount, ref.path, ref.key, ref.version) == ("kv", "app/db", "password", 3)
    assert ref.api_path == "kv/data/app/db"
    assert parse("kv/app").key is None
    inside = parse("app#x", mount="team/kv")
    assert (inside.mount, inside.path, inside.key) == ("team/kv", "app", "x")
    assert parse("kv/app#user@example.com").key == "user@example.com"  # '@' not followed by digits only


@pytest.mark.parametrize(
    "text", ["", "#key", "kv/app#", "app#key", "kv/app#k@0", "kv//app#k", "kv/../sys/health#x", "kv/./app#k"]
)
def test_bad_references_show_the_syntax(text: str) -> None:
    with pytest.raises(BadReference) as caught:
        parse(text)
    assert "vault:" in said(caught.value)


# --- reading ------------------------------------------------------------------------------


def test_every_key_of_a_path_and_every_repeat_share_one_read(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app", {"db_password": VALUE, "user": "app", "port": 5432, "tags": ["a"]}, mount="kv")
    backend, _ = make_backend()
    assert backend.resolve("kv/app#db_password") == VALUE
    assert backend.resolve("kv/app#user") == "app"
    assert backend.resolve("kv/app#port") == "5432"
    assert backend.resolve("kv/app#tags") == '["a"]'
    assert backend.resolve("kv/app#db_password") == VALUE
    assert vault.reads == 1
    assert vault.count("GET", "/v1/auth/token/lookup-self") == 1  # one login for the run


def test_versions_are_selected_with_at(vault: VaultFake, token_env: str, make_backend: MakeBackend) -> None:
    for n in (1, 2, 3):
        vault.put("app", {"pw": f"v{n}"})
    backend, _ = make_backend()
    assert backend.resolve("secret/app#pw@1") == "v1"
    assert backend.resolve("secret/app#pw@2") == "v2"
    assert backend.resolve("secret/app#pw") == "v3"
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("secret/app#pw@9")
    assert "no secret version 9 at secret/app" in no_value(caught.value)


def test_a_deleted_version_says_so_and_how_to_restore_it(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app", {"pw": VALUE})
    vault.put("app", {"pw": "new"})
    vault.delete_version("app", 1)
    backend, _ = make_backend()
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("secret/app#pw@1")
    text = no_value(caught.value)
    assert text.startswith("version 1 of secret/app was deleted")
    assert "vault kv undelete -versions=1 secret/app" in text


def test_a_secret_with_one_key_needs_no_key_and_one_with_several_names_them(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("one", {"token": VALUE})
    vault.put("two", {"a": VALUE, "b": VALUE})
    backend, _ = make_backend()
    assert backend.resolve("secret/one") == VALUE
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("secret/two")
    assert "holds 2 keys (a, b)" in no_value(caught.value)
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("secret/two#c")
    assert "has no key 'c' (its keys: a, b)" in no_value(caught.value)


def test_vault_mount_makes_references_relative_and_explains_the_repeated_mount(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app", {"pw": VALUE}, mount="kv")
    backend, _ = make_backend(vault_mount="kv")
    assert backend.resolve("app#pw") == VALUE
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("kv/app#pw")  # hvac#473: the mount named twice
    text = no_value(caught.value)
    assert "no secret at kv/kv/app (read kv/data/kv/app)" in text
    assert "write vault:app#pw" in text


def test_a_data_segment_in_the_path_is_explained(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app", {"pw": VALUE})
    backend, _ = make_backend()
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("secret/data/app#pw")
    assert "leave 'data/' out" in no_value(caught.value)


def test_a_missing_mount_is_named(vault: VaultFake, token_env: str, make_backend: MakeBackend) -> None:
    backend, _ = make_backend()
    with pytest.raises(SecretNotFound) as caught:
        backend.resolve("nope/app#pw")
    text = no_value(caught.value)
    assert "no KV version 2 engine is mounted at 'nope'" in text
    assert vault.url in text


# --- failures -----------------------------------------------------------------------------


def test_permission_denied_names_the_path_address_and_policy(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": VALUE}, mount="kv")
    token = vault.add_token(policy=("kv/data/other*",))
    monkeypatch.setenv("VAULT_TOKEN", token)
    backend, _ = make_backend(vault_addr=vault.url)
    with pytest.raises(SecretDenied) as caught:
        backend.resolve("kv/app#pw")
    text = no_value(caught.value, token)
    assert text.split("; ")[0] == f"permission denied reading kv/data/app: {vault.url}"
    assert 'path "kv/data/app" { capabilities = ["read"] }' in text


def test_an_expired_or_revoked_token_says_where_it_came_from(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = vault.add_token()
    del vault.tokens[token]  # revoked (an expired token answers the same)
    monkeypatch.setenv("VAULT_TOKEN", token)
    backend, _ = make_backend(vault_addr=vault.url)
    with pytest.raises(SecretDenied) as caught:
        backend.resolve("kv/app#pw")
    text = no_value(caught.value, token)
    assert text.split("; ")[0] == f"the Vault token is invalid or expired: {vault.url}"
    assert "vault login" in text and "VAULT_TOKEN" in text


def test_a_token_that_expires_by_ttl_is_reported_as_expired(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": VALUE})
    token = vault.add_token(ttl=1, renewable=False)
    monkeypatch.setenv("VAULT_TOKEN", token)
    backend, _ = make_backend(vault_addr=vault.url)
    assert backend.resolve("secret/app#pw") == VALUE
    assert wait_until(lambda: not vault.tokens[token].alive())
    with pytest.raises(SecretDenied) as caught:
        backend.resolve("secret/app#pw@1")
    assert "the Vault token is invalid or expired" in no_value(caught.value, token)


def test_the_token_file_of_vault_login_is_used_and_named(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": VALUE})
    token_file = Path(os.environ["HOME"]) / ".vault-token"
    token_file.write_text(vault.root_token + "\n")
    backend, _ = make_backend(vault_addr=vault.url)
    assert backend.resolve("secret/app#pw") == VALUE
    del vault.tokens[vault.root_token]
    other, _ = make_backend(vault_addr=vault.url)
    with pytest.raises(SecretDenied) as caught:
        other.resolve("secret/app#pw")
    assert f"this one came from {token_file}" in no_value(caught.value, vault.root_token)


def test_a_sealed_vault_says_it_must_be_unsealed(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.sealed = True
    backend, _ = make_backend()
    with pytest.raises(SecretUnavailable) as caught:
        backend.resolve("kv/app#pw")
    text = no_value(caught.value)
    assert text.split("; ")[0] == f"Vault at {vault.url} is sealed"
    assert "vault operator unseal" in text
    assert vault.count("GET", "lookup-self") == 1  # not retried: unsealing takes a person


def test_an_unreachable_vault_fails_once_then_the_circuit_is_open(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = closed_port_url()
    monkeypatch.setenv("VAULT_TOKEN", "hvs.whatever")
    backend, _ = make_backend(vault_addr=url, vault_retries=1)
    with pytest.raises(SecretUnavailable) as caught:
        backend.resolve("kv/app#pw")
    text = no_value(caught.value, "hvs.whatever")
    assert str(caught.value) == f"Vault cannot be reached (connection refused): {url}"
    assert "VAULT_ADDR" in text
    with pytest.raises(CircuitOpen) as again:
        backend.resolve("kv/other#pw")
    assert "not asked, Vault failed earlier in this run (Vault cannot be reached" in said(again.value)


def test_a_vault_that_never_answers_costs_one_timeout_not_one_per_secret(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, accepted, close = blackhole()
    try:
        monkeypatch.setenv("VAULT_TOKEN", "hvs.whatever")
        backend, _ = make_backend(vault_addr=url, vault_timeout=0.3, vault_retries=1)
        with pytest.raises(SecretUnavailable) as caught:
            backend.resolve("kv/app#s0")
        assert "Vault did not answer within 0.3 s" in said(caught.value)
        seen = accepted[0]
        assert 1 <= seen <= 2  # the first attempt and one retry
        for n in range(1, 20):
            with pytest.raises(CircuitOpen):
                backend.resolve(f"kv/app#s{n}")
        assert accepted[0] == seen  # no connection for the 19 other secrets
    finally:
        close()


# --- auth methods, namespaces, renewal -----------------------------------------------------


def test_approle_logs_in_once_for_many_secrets(vault: VaultFake, make_backend: MakeBackend) -> None:
    for n in range(20):
        vault.put(f"app/s{n}", {"v": f"value-{n}"})
    vault.add_approle("role-1", "secret-1")
    backend, _ = make_backend(
        vault_addr=vault.url, vault_auth="approle", vault_role_id="role-1", vault_secret_id="secret-1"
    )
    assert [backend.resolve(f"secret/app/s{n}#v") for n in range(20)] == [f"value-{n}" for n in range(20)]
    assert vault.logins == 1
    assert vault.reads == 20


def test_approle_with_a_wrong_secret_id_is_refused_clearly(
    vault: VaultFake, make_backend: MakeBackend
) -> None:
    vault.add_approle("role-1", "secret-1")
    backend, _ = make_backend(
        vault_addr=vault.url, vault_auth="approle", vault_role_id="role-1", vault_secret_id="wrong-secret-id"
    )
    with pytest.raises(SecretDenied) as caught:
        backend.resolve("secret/app#pw")
    text = no_value(caught.value, "wrong-secret-id", "secret-1")
    assert "AppRole login was refused (invalid role or secret ID)" in text
    assert "vault_secret_id" in text


def test_approle_credentials_come_from_the_environment_and_a_custom_mount(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": VALUE})
    vault.add_approle("r", "s", mount="ci-approle")
    monkeypatch.setenv("VAULT_ROLE_ID", "r")
    monkeypatch.setenv("VAULT_SECRET_ID", "s")
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    backend, _ = make_backend(vault_auth="approle", vault_auth_mount="ci-approle")
    assert backend.resolve("secret/app#pw") == VALUE
    wrong, _ = make_backend(vault_auth="approle")
    with pytest.raises(SecretDenied) as caught:
        wrong.resolve("secret/app#pw")
    assert "no approle auth method at auth/approle" in said(caught.value)
    assert "vault_auth_mount" in said(caught.value)


def test_kubernetes_login_reads_the_service_account_token(
    vault: VaultFake, make_backend: MakeBackend, tmp_path: Path
) -> None:
    vault.put("app", {"pw": VALUE})
    jwt = tmp_path / "token"
    jwt.write_text("eyJhbGciOiJSUzI1NiJ9.payload.sig\n")
    vault.add_k8s_role("web", "eyJhbGciOiJSUzI1NiJ9.payload.sig")
    backend, _ = make_backend(
        vault_addr=vault.url, vault_auth="kubernetes", vault_k8s_role="web", vault_jwt_file=str(jwt)
    )
    assert backend.resolve("secret/app#pw") == VALUE
    assert vault.logins == 1
    jwt.write_text("another.jwt.token")
    refused, _ = make_backend(
        vault_addr=vault.url, vault_auth="kubernetes", vault_k8s_role="web", vault_jwt_file=str(jwt)
    )
    with pytest.raises(SecretDenied) as caught:
        refused.resolve("secret/app#pw")
    assert "Kubernetes login was refused (permission denied)" in no_value(caught.value, "another.jwt.token")
    missing, _ = make_backend(
        vault_addr=vault.url,
        vault_auth="kubernetes",
        vault_k8s_role="web",
        vault_jwt_file=str(tmp_path / "none"),
    )
    with pytest.raises(SecretError) as caught:
        missing.resolve("secret/app#pw")
    assert f"cannot read the Kubernetes service account token {tmp_path / 'none'}" in said(caught.value)


def test_namespaces_go_in_the_x_vault_namespace_header(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": "in-team"}, mount="kv", namespace="team")
    vault.put("app", {"pw": "in-root"}, mount="kv")
    monkeypatch.setenv("VAULT_TOKEN", vault.root_token)
    backend, _ = make_backend(vault_addr=vault.url, vault_namespace="team")
    assert backend.resolve("kv/app#pw") == "in-team"
    assert ("GET", "/v1/kv/data/app", "team") in vault.requests
    monkeypatch.setenv("VAULT_NAMESPACE", "team")
    from_env, _ = make_backend(vault_addr=vault.url)
    assert from_env.resolve("kv/app#pw") == "in-team"
    # A token of the namespace "team" is refused in the root namespace.
    monkeypatch.delenv("VAULT_NAMESPACE")
    monkeypatch.setenv("VAULT_TOKEN", vault.add_token(namespace="team"))
    outside, _ = make_backend(vault_addr=vault.url)
    with pytest.raises(SecretDenied):
        outside.resolve("kv/app#pw")
    inside, _ = make_backend(vault_addr=vault.url, vault_namespace="team")
    with pytest.raises(SecretNotFound) as caught:
        inside.resolve("kv/other#pw")
    assert f"{vault.url} (namespace team)" in said(caught.value)


def test_a_renewable_token_is_renewed_during_a_long_run(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": VALUE})
    token = vault.add_token(ttl=2, renewable=True)
    monkeypatch.setenv("VAULT_TOKEN", token)
    backend, warnings = make_backend(vault_addr=vault.url)
    assert backend.resolve("secret/app#pw") == VALUE
    assert wait_until(lambda: vault.renewals >= 2)
    assert vault.tokens[token].alive()  # kept alive past its first TTL
    assert backend.resolve("secret/app#pw@1") == VALUE
    assert warnings == []
    backend.close()
    stopped = vault.renewals
    time.sleep(1.5)
    assert vault.renewals == stopped  # close() stops the renewals


def test_a_token_at_its_max_ttl_is_warned_about(
    vault: VaultFake, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("app", {"pw": VALUE})
    token = vault.add_token(ttl=2, max_ttl=2.5, renewable=True)
    monkeypatch.setenv("VAULT_TOKEN", token)
    backend, warnings = make_backend(vault_addr=vault.url)
    backend.resolve("secret/app#pw")
    assert wait_until(lambda: bool(warnings))
    assert "reached its max TTL" in warnings[0]
    assert token not in warnings[0]


def test_approle_logs_in_again_when_its_token_reaches_the_max_ttl(
    vault: VaultFake, make_backend: MakeBackend
) -> None:
    vault.put("app", {"pw": VALUE})
    vault.add_approle("r", "s", ttl=2, max_ttl=2.5)
    backend, warnings = make_backend(
        vault_addr=vault.url, vault_auth="approle", vault_role_id="r", vault_secret_id="s"
    )
    assert backend.resolve("secret/app#pw") == VALUE
    assert wait_until(lambda: vault.renewals >= 1)
    assert wait_until(lambda: all(not t.alive() for t in vault.tokens.values() if t.ttl == 2))
    assert backend.resolve("secret/app#pw@1") == VALUE  # a fresh login, not an "expired token" error
    assert vault.logins == 2
    assert warnings == []


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_vault(pki: Pki) -> VaultFake:
    with VaultFake(certfile=pki.server_cert, keyfile=pki.server_key) as fake:
        fake.put("app", {"pw": VALUE})
        yield fake


def test_tls_with_the_ca_given(
    tls_vault: VaultFake, pki: Pki, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", tls_vault.root_token)
    backend, _ = make_backend(vault_addr=tls_vault.url, vault_ca_cert=str(pki.ca))
    assert backend.resolve("secret/app#pw") == VALUE
    monkeypatch.setenv("VAULT_CACERT", str(pki.ca))
    from_env, _ = make_backend(vault_addr=tls_vault.url)
    assert from_env.resolve("secret/app#pw") == VALUE


def test_tls_with_an_unknown_ca_says_which_option_to_set(
    tls_vault: VaultFake, pki: Pki, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", tls_vault.root_token)
    for config in ({}, {"vault_ca_cert": str(pki.other_ca)}):
        backend, _ = make_backend(vault_addr=tls_vault.url, **config)
        with pytest.raises(SecretUnavailable) as caught:
            backend.resolve("secret/app#pw")
        text = no_value(caught.value, tls_vault.root_token)
        assert "Vault's TLS certificate could not be verified" in text
        assert "vault_ca_cert" in text and "VAULT_CACERT" in text
    insecure, warnings = make_backend(vault_addr=tls_vault.url, vault_verify=False)
    assert insecure.resolve("secret/app#pw") == VALUE
    assert len(warnings) == 1 and "is not verified" in warnings[0]


def test_tls_client_certificates(
    pki: Pki, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VaultFake(certfile=pki.server_cert, keyfile=pki.server_key, client_ca=pki.ca) as fake:
        fake.put("app", {"pw": VALUE})
        monkeypatch.setenv("VAULT_TOKEN", fake.root_token)
        without, _ = make_backend(vault_addr=fake.url, vault_ca_cert=str(pki.ca))
        with pytest.raises(SecretUnavailable) as caught:
            without.resolve("secret/app#pw")
        text = no_value(caught.value)
        headline = text.split("; ")[0]
        assert "requires a client certificate" in headline and headline.endswith(fake.url)
        assert "vault_client_cert" in text
        backend, _ = make_backend(
            vault_addr=fake.url,
            vault_ca_cert=str(pki.ca),
            vault_client_cert=str(pki.client_cert),
            vault_client_key=str(pki.client_key),
        )
        assert backend.resolve("secret/app#pw") == VALUE


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "no Vault address"),
        ({"vault_addr": "not a url"}, "the Vault address 'not a url' is not an http(s) URL"),
        ({"vault_addr": "127.0.0.1:8200"}, "is not an http(s) URL"),
        ({"vault_addr": "https://vault:99999"}, "is not an http(s) URL"),
        ({"vault_addr": "http://127.0.0.1:1"}, "no Vault token for http://127.0.0.1:1"),
        (
            {"vault_addr": "http://127.0.0.1:1", "vault_auth": "approle"},
            "vault_auth='approle' needs a role_id",
        ),
        (
            {"vault_addr": "http://127.0.0.1:1", "vault_auth": "kubernetes"},
            "set config(vault_k8s_role='my-app')",
        ),
        (
            {
                "vault_addr": "http://127.0.0.1:1",
                "vault_auth": "approle",
                "vault_role_id": "r",
                "vault_ca_cert": "/no/ca.pem",
            },
            "vault_ca_cert: /no/ca.pem does not exist",
        ),
    ],
)
def test_missing_settings_name_the_key_to_set(
    make_backend: MakeBackend, config: dict[str, object], expected: str
) -> None:
    backend, _ = make_backend(**config)
    with pytest.raises(SecretError) as caught:
        backend.resolve("kv/app#pw")
    assert not str(caught.value).startswith("vault:")  # the core names the reference, once
    assert expected in said(caught.value)


# --- the encrypted cache ----------------------------------------------------------------------


def test_the_cache_stands_in_when_vault_is_down_and_holds_no_plain_value(
    token_env: str, make_backend: MakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VaultFake() as fake:
        fake.put("app", {"pw": VALUE, "user": "app"})
        monkeypatch.setenv("VAULT_TOKEN", fake.root_token)
        first, _ = make_backend(vault_addr=fake.url, vault_cache_ttl=60)
        assert first.resolve("secret/app#pw") == VALUE
        first.close()
        url = fake.url
    files = list((tmp_path / "cache").iterdir())
    assert {f.name for f in files} == {"vault-cache.json", "vault-cache.key"}
    for f in files:
        assert VALUE.encode() not in f.read_bytes()
        assert oct(f.stat().st_mode & 0o777) == "0o600"
    second, warnings = make_backend(vault_addr=url, vault_cache_ttl=60, vault_retries=0)
    assert second.resolve("secret/app#pw") == VALUE  # Vault is gone: the copy stands in
    assert second.resolve("secret/app#user") == "app"
    assert len(warnings) == 1 and "using encrypted local copies" in warnings[0]
    assert "connection refused" in warnings[0]
    with pytest.raises(SecretUnavailable):
        second.resolve("secret/never-read#pw")  # no copy of what was never read
    uncached, _ = make_backend(vault_addr=url, vault_retries=0)
    with pytest.raises(SecretUnavailable):
        uncached.resolve("secret/app#pw")  # without vault_cache_ttl the copies are not used


def test_a_copy_is_never_used_instead_of_a_vault_that_answers(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app", {"pw": "old"})
    first, _ = make_backend(vault_cache_ttl=60)
    assert first.resolve("secret/app#pw") == "old"
    vault.put("app", {"pw": "rotated"})
    second, _ = make_backend(vault_cache_ttl=60)
    assert second.resolve("secret/app#pw") == "rotated"


def test_expired_or_tampered_copies_are_not_used(
    token_env: str, make_backend: MakeBackend, tmp_path: Path
) -> None:
    with VaultFake() as fake:
        fake.put("app", {"pw": VALUE})
        os.environ["VAULT_TOKEN"] = fake.root_token
        first, _ = make_backend(vault_addr=fake.url, vault_cache_ttl=60)
        first.resolve("secret/app#pw")
        url = fake.url
    cache = tmp_path / "cache" / "vault-cache.json"
    body = json.loads(cache.read_text())
    (entry,) = body["entries"].values()
    entry["stored"] -= 120  # older than the TTL
    cache.write_text(json.dumps(body))
    expired, _ = make_backend(vault_addr=url, vault_cache_ttl=60, vault_retries=0)
    with pytest.raises(SecretUnavailable):
        expired.resolve("secret/app#pw")
    entry["stored"] += 120
    entry["data"] = entry["data"][:-4] + "AAA="  # edited ciphertext
    cache.write_text(json.dumps(body))
    tampered, _ = make_backend(vault_addr=url, vault_cache_ttl=60, vault_retries=0)
    with pytest.raises(SecretUnavailable):
        tampered.resolve("secret/app#pw")
    cache.write_text("{not json")
    damaged, _ = make_backend(vault_addr=url, vault_cache_ttl=60, vault_retries=0)
    with pytest.raises(SecretUnavailable):
        damaged.resolve("secret/app#pw")


# --- writing and listing -------------------------------------------------------------------------


def test_set_writes_a_new_version_keeping_the_other_keys(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app", {"user": "app"}, mount="kv")
    backend, _ = make_backend()
    backend.set("kv/app#pw", VALUE)
    assert vault.kv[("", "kv", "app")][-1].data == {"user": "app", "pw": VALUE}
    assert backend.resolve("kv/app#pw") == VALUE
    backend.set("kv/new#token", "t")
    assert vault.kv[("", "kv", "new")][-1].data == {"token": "t"}
    backend.delete("kv/app#user")
    assert vault.kv[("", "kv", "app")][-1].data == {"pw": VALUE}
    backend.delete("kv/new")
    assert vault.kv[("", "kv", "new")][-1].deletion_time
    with pytest.raises(SecretNotFound):
        backend.delete("kv/app#nope")
    with pytest.raises(BadReference):
        backend.set("kv/app", "x")


def test_list_names_walks_the_mount_with_dates(
    vault: VaultFake, token_env: str, make_backend: MakeBackend
) -> None:
    vault.put("app/db", {"pw": VALUE})
    vault.put("app/web/tls", {"key": VALUE})
    vault.put("top", {"x": VALUE})
    backend, _ = make_backend()
    infos = backend.list_names()
    assert [i.name for i in infos] == ["secret/top", "secret/app/db", "secret/app/web/tls"]
    assert all(i.backend == "vault" and i.updated_at for i in infos)
    assert all(VALUE not in repr(i) for i in infos)
    scoped, _ = make_backend(vault_mount="secret")
    assert scoped.list_names()[0].name == "top"
    vault.kv.clear()  # an empty mount lists nothing (Vault: 404 without errors), not an error
    assert backend.list_names() == [] and scoped.list_names() == []


def test_tls_with_a_ca_folder_whose_files_are_not_hashed(
    tls_vault: VaultFake, pki: Pki, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A VAULT_CAPATH folder is read as Vault's CLI reads it: every PEM file in it, without the
    hash-named links OpenSSL wants (`openssl rehash`); a folder without one is said at once."""
    monkeypatch.setenv("VAULT_TOKEN", tls_vault.root_token)
    folder = tmp_path / "cas"
    folder.mkdir()
    (folder / "README").write_text("our CAs\n")
    (folder / "other.pem").write_bytes(Path(pki.other_ca).read_bytes())
    (folder / "ca.crt").write_bytes(Path(pki.ca).read_bytes())
    backend, _ = make_backend(vault_addr=tls_vault.url, vault_ca_cert=str(folder))
    assert backend.resolve("secret/app#pw") == VALUE
    monkeypatch.setenv("VAULT_CAPATH", str(folder))
    from_env, _ = make_backend(vault_addr=tls_vault.url)
    assert from_env.resolve("secret/app#pw") == VALUE
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SecretError, match="holds no PEM certificate"):
        make_backend(vault_addr=tls_vault.url, vault_ca_cert=str(empty))[0].resolve("secret/app#pw")
