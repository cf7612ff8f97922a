"""The public plugin API: plugins import only ``nexus_core.plugin`` (and friends), and it is typed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_core import plugin

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SOURCES = sorted(p for p in (ROOT / "plugins").glob("*/*/*.py") if "tests" not in p.parts)


def _core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``nexus_core...`` import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in found if name == "nexus_core" or name.startswith("nexus_core.")]


def test_plugin_sources_are_found():
    # Guards the test below against silently checking nothing.
    assert any(p.name == "plugin.py" and p.parent.name == "nexus_ssh" for p in PLUGIN_SOURCES)


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path):
    private = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in _core_imports(path)
        if name not in plugin.PUBLIC_MODULES
    ]
    assert not private, (
        "plugins import only " + ", ".join(plugin.PUBLIC_MODULES) + "; export what is missing from "
        "nexus_core/plugin.py instead:\n" + "\n".join(private)
    )


def test_every_public_name_is_importable():
    for name in plugin.__all__:
        assert getattr(plugin, name) is not None, name


def test_importing_the_public_module_does_not_import_the_cli():
    code = (
        "import sys, nexus_core.plugin; "
        "bad = [m for m in ('nexus_core.cli', 'rich_click', 'click', 'nexus_core.plan') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hookimpl_keeps_the_function_type_under_mypy(tmp_path):
    """``@hookimpl`` is typed: mypy --strict sees the decorated function's own signature."""
    sample = tmp_path / "sample_plugin.py"
    sample.write_text(
        "from collections.abc import Sequence\n"
        "from nexus_core.plugin import Registration, hookimpl\n\n\n"
        "@hookimpl\n"
        "def nexus_executors() -> Sequence[Registration]:\n"
        '    return [Registration("x", "sample_plugin:X")]\n\n\n'
        "reveal_type(nexus_executors)\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(sample)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert 'Revealed type is "def () -> typing.Sequence[nexus_core.kinds.Registration]"' in out.stdout, out.stdout


def test_the_documented_signatures_hold() -> None:
    """docs/nexusfile.md names host(address, ...), shard_items(seq) and change_window(name, days,
    hours, timezone); run()'s options are typed for editors and are exactly the ones it takes."""
    import inspect
    import typing

    import nexus_core
    from nexus_core.dsl import RunOptions
    from nexus_core.options import RUN_OPTIONS

    assert next(iter(inspect.signature(nexus_core.host).parameters)) == "address"
    assert list(inspect.signature(nexus_core.shard_items).parameters) == ["seq"]
    window = inspect.signature(nexus_core.change_window).parameters
    assert [p.kind for p in window.values()] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 4
    assert list(window) == ["name", "days", "hours", "timezone"]
    assert set(typing.get_type_hints(RunOptions)) == {*RUN_OPTIONS, "notify"}
