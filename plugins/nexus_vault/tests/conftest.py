"""Fixtures for the nexus-vault tests: the fake Vault server, a PKI, and backend factories.

Every test runs without the caller's Vault settings (``VAULT_*`` variables cleared, ``HOME``
a temporary folder so that no ``~/.vault-token`` is read).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from nexus_core.plugin import SecretContext  # noqa: E402
from pki import Pki, make_pki  # noqa: E402
from vaultfake import VaultFake  # noqa: E402

from nexus_vault.backend import VaultBackend  # noqa: E402

VAULT_VARIABLES = (
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "VAULT_SKIP_VERIFY",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
)


@pytest.fixture(autouse=True)
def _no_user_vault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VAULT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def vault() -> Iterator[VaultFake]:
    """A fake Vault on plain HTTP, with a root token and the KV v2 mounts ``secret`` and ``kv``."""
    with VaultFake() as fake:
        yield fake


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server certificate for 127.0.0.1 and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


MakeBackend = Callable[..., tuple[VaultBackend, list[str]]]


@pytest.fixture
def make_backend(tmp_path: Path) -> Iterator[MakeBackend]:
    """``make_backend(**config)`` -> (backend, warnings): closed at the end of the test."""
    made: list[VaultBackend] = []

    def make(**config: Any) -> tuple[VaultBackend, list[str]]:
        warnings: list[str] = []
        cache = tmp_path / "cache"
        cache.mkdir(mode=0o700, exist_ok=True)
        context = SecretContext(
            config=config, root=str(tmp_path), cache_dir=str(cache), interactive=False, warn=warnings.append
        )
        backend = VaultBackend(context)
        backend.name = "vault"
        made.append(backend)
        return backend, warnings

    yield make
    for backend in made:
        backend.close()
