"""``nexus plugin new``: the generated plugin installs into a fresh venv and passes its own checks."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from nexus_core._version import API_VERSION
from nexus_core.plugin_template import TemplateError, core_requirement, generate, names, plugin_group

ROOT = Path(__file__).resolve().parents[1]


def test_names_accept_the_short_or_the_full_name() -> None:
    assert names("vault") == ("vault", "nexus-vault", "nexus_vault")
    assert names("nexus-cloud-init") == ("cloud-init", "nexus-cloud-init", "nexus_cloud_init")
    assert names("nexus_tail_scale") == ("tail-scale", "nexus-tail-scale", "nexus_tail_scale")
    for bad in ("", "Vault", "9lives", "a--b", "a b", "x/y", "nexus-"):
        with pytest.raises(TemplateError, match="invalid plugin name"):
            names(bad)


def test_core_requirement_is_bounded_to_the_api_keeping_releases() -> None:
    assert core_requirement("0.1.0") == "nexus-core>=0.1,<0.2"
    assert core_requirement("0.4.2") == "nexus-core>=0.4,<0.5"
    assert core_requirement("1.2.0") == "nexus-core>=1.2,<2"


def test_generated_files(tmp_path: Path) -> None:
    written = generate("demo", tmp_path / "nexus-demo")
    rel = sorted(str(p.relative_to(tmp_path / "nexus-demo")) for p in written)
    assert "pyproject.toml" in rel and "README.md" in rel and "nexus_demo/plugin.py" in rel
    assert "tests/test_plugin.py" in rel and "nexus_demo/py.typed" in rel
    project = tomllib.loads((tmp_path / "nexus-demo" / "pyproject.toml").read_text())
    assert project["project"]["name"] == "nexus-demo"
    assert project["project"]["entry-points"]["nexus"] == {"demo": "nexus_demo.plugin"}
    assert project["project"]["dependencies"] == [core_requirement()]
    assert f"NEXUS_API_VERSION = {API_VERSION}\n" in (tmp_path / "nexus-demo" / "nexus_demo" / "plugin.py").read_text()
    assert "-p nexus_core.testing" in project["tool"]["pytest"]["ini_options"]["addopts"]


def test_lint_and_type_settings_are_the_repositorys(tmp_path: Path) -> None:
    generate("demo", tmp_path / "p")
    mine = tomllib.loads((tmp_path / "p" / "pyproject.toml").read_text())["tool"]
    repo = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert mine["ruff"]["line-length"] == repo["ruff"]["line-length"]
    assert mine["ruff"]["target-version"] == repo["ruff"]["target-version"]
    assert mine["ruff"]["lint"]["select"] == repo["ruff"]["lint"]["select"]
    assert mine["ruff"]["lint"]["ignore"] == repo["ruff"]["lint"]["ignore"]
    assert mine["ruff"]["lint"]["per-file-ignores"]["tests/**"] == repo["ruff"]["lint"]["per-file-ignores"]["tests/**"]
    assert mine["mypy"]["strict"] is repo["mypy"]["strict"] is True
    assert mine["mypy"]["python_version"] == repo["mypy"]["python_version"]


def test_generate_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(TemplateError, match="already exists"):
        generate("demo", tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    generate("demo", tmp_path / "empty-is-fine")


def test_plugin_new_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(plugin_group(), ["new", "demo"])
    assert result.exit_code == 0, result.output
    assert "created nexus-demo in nexus-demo" in result.output
    assert (tmp_path / "nexus-demo" / "nexus_demo" / "plugin.py").is_file()
    again = runner.invoke(plugin_group(), ["new", "demo"])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(plugin_group(), ["new", "Bad Name", "--dest", "x"])
    assert bad.exit_code == 2 and "invalid plugin name 'Bad Name'" in bad.output
    assert not (tmp_path / "x").exists()


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_generated_plugin_installs_and_passes_its_tests_lint_and_types(tmp_path: Path) -> None:
    """The whole path of a plugin author: generate, install next to nexus-core, test, lint, type-check."""
    plugin = tmp_path / "nexus-demo"
    generate("demo", plugin)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "PYTHON", "VIRTUAL_ENV"))}
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = str(venv / "bin" / "python")
    # This venv's pip installs into the new one (no pip of its own to set up); no byte-code
    # compiling and hatchling installed once instead of per build keep it quick.
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-compile"]
    _run([*pip, "hatchling"], tmp_path, env)
    _run([*pip, "--no-build-isolation", str(ROOT), str(plugin), "pytest", "ruff", "mypy"], tmp_path, env)
    out = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], plugin, env)
    assert "3 passed" in out, out
    _run([py, "-m", "ruff", "check", "--no-cache", "."], plugin, env)
    _run([py, "-m", "ruff", "format", "--no-cache", "--check", "."], plugin, env)
    _run([py, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")], plugin, env)


def test_nexus_plugin_new_is_a_cli_command(tmp_path: Path) -> None:
    """``nexus plugin new NAME`` through the real CLI writes the distribution."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "nexus_core", "plugin", "new", "clidemo", "--dest", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "pyproject.toml").is_file()
