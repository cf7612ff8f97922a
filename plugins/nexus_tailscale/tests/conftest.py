"""Fixtures for the nexus-tailscale tests: a fake ``tailscale`` on PATH and a local API server.

The fakes live in :mod:`nexus_tailscale.testing` (standard library only, so ``bench/`` uses
them too). Every test starts with no breakers, tokens or rate windows, and with none of
the credential variables Tailscale's tools read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[1]
_ROOT = _PLUGIN.parents[1]
for p in (str(_ROOT), str(_PLUGIN), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from nexus_tailscale import api  # noqa: E402
from nexus_tailscale.options import ENV  # noqa: E402
from nexus_tailscale.testing import SAMPLE, FakeApi, write_fake_cli  # noqa: E402


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for names in ENV.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    api.reset_state()
    yield
    api.reset_state()


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``tailscale`` printing the SAMPLE tailnet, first on PATH (rewrite it to change it)."""
    folder = tmp_path / "fakebin"
    script = write_fake_cli(folder, SAMPLE)
    monkeypatch.setenv("PATH", f"{folder}:{__import__('os').environ.get('PATH', '')}")
    return script


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """The SAMPLE tailnet behind a local API server (key ``tskey-api-test``, OAuth client ``cid``)."""
    with FakeApi(SAMPLE, api_keys={"tskey-api-test"}, oauth={"cid": "tskey-client-secret"}) as server:
        yield server


@pytest.fixture(scope="session")
def sshbed():  # type: ignore[no-untyped-def]
    """The shared real-sshd bed: 3 hosts on 127.0.0.2-4 (nexus_core/testing/sshbed.py)."""
    if __import__("os").geteuid() != 0:
        pytest.skip("the SSH test bed needs root (creates users, runs sshd)")
    from nexus_core.testing.sshbed import shared_bed

    return shared_bed(3)
