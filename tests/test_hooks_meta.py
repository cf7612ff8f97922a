"""Meta-tests (after datasette's): every hook is documented with its exact signature and tested.

Adding a hook to ``nexus_core/hookspecs.py`` without its row in ``nexus_core/kinds.py``,
without regenerating ``docs/plugins/hooks.md`` (``python docs/gen_hooks.py``), without a
fake implementation in ``tests/plugin_fixtures.py`` or without a test function marked
``@pytest.mark.hook("nexus_...")`` fails here.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import plugin_fixtures
import pytest

import nexus_core.api
from nexus_core import hookspecs
from nexus_core.kinds import KINDS, NAMED
from nexus_core.registry import load_base

ROOT = Path(__file__).resolve().parent.parent
HOOKS_MD = ROOT / "docs" / "plugins" / "hooks.md"
TESTS = Path(__file__).resolve().parent


def _gen_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_hooks", ROOT / "docs" / "gen_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _gen_hooks()
HOOKS = GEN.hookspecs_in_order()
HOOK_NAMES = [h.__name__ for h in HOOKS]


def test_hookspecs_are_found():
    # Guards the two tests below against silently checking nothing.
    assert "nexus_executors" in HOOK_NAMES and len(HOOK_NAMES) >= 5
    declared = {n for n, f in vars(hookspecs).items() if n.startswith("nexus_") and inspect.isfunction(f)}
    assert set(HOOK_NAMES) == declared, "every nexus_* function in hookspecs must be a @hookspec"


@pytest.mark.parametrize("hook", HOOKS, ids=HOOK_NAMES)
def test_hook_is_documented_with_its_exact_signature(hook):
    text = HOOKS_MD.read_text(encoding="utf-8")
    assert f"\n## {hook.__name__}\n" in text, f"{hook.__name__} has no section in {HOOKS_MD}"
    assert f"```python\n{GEN.signature(hook)}\n```" in text, f"{hook.__name__}: documented signature differs"


@pytest.mark.parametrize("hook", HOOKS, ids=HOOK_NAMES)
def test_hook_has_a_docstring_and_a_family(hook):
    assert (hook.__doc__ or "").strip(), f"{hook.__name__} has no docstring"
    assert hook.__name__ in hookspecs.FAMILIES, f"{hook.__name__} is missing from hookspecs.FAMILIES"


def test_hook_reference_is_generated_from_the_current_hookspecs():
    assert HOOKS_MD.read_text(encoding="utf-8") == GEN.render(), (
        "docs/plugins/hooks.md is out of date: run python docs/gen_hooks.py"
    )


def _marked_tests() -> dict[str, list[str]]:
    """Hook name -> the test functions marked ``@pytest.mark.hook("nexus_...")`` for it.

    Read with ``ast`` from every test module (this one excepted), so that a hook counts as
    tested only when a test function says it exercises it, not when its name appears in a
    comment, a string or a helper.
    """
    found: dict[str, list[str]] = {}
    files = [*TESTS.rglob("test_*.py"), *(ROOT / "plugins").glob("*/tests/test_*.py")]
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and isinstance(deco.func, ast.Attribute)
                    and deco.func.attr == "hook"
                    and ast.unparse(deco.func.value) == "pytest.mark"
                ):
                    for arg in deco.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            found.setdefault(arg.value, []).append(f"{path.name}::{node.name}")
    return found


MARKED = _marked_tests()


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_is_exercised_by_a_test(hook):
    assert MARKED.get(hook), f'no test is marked @pytest.mark.hook("{hook}"): add a test that exercises it'


def test_every_hook_marker_names_a_hook():
    unknown = {name: tests for name, tests in MARKED.items() if name not in HOOK_NAMES}
    assert not unknown, f"tests marked for hooks that do not exist: {unknown}"


def test_every_kind_has_a_hook_and_a_fake_plugin_implementation():
    """The kinds table, the hook specifications and the fake plugins of the tests agree."""
    assert {k.hook for k in KINDS} == set(HOOK_NAMES), "every hook is one row of nexus_core.kinds.KINDS"
    source = "\n".join(plugin_fixtures.FEATURES[f] for f in plugin_fixtures.FULL)
    for k in KINDS:
        assert f"def {k.hook}(" in source, f"tests/plugin_fixtures.py has no fake implementation of {k.hook}"
    for k in NAMED:
        base = load_base(k)  # defined in nexus_core.api, or in nexus_core.contracts and loaded by it on first use
        assert base.__module__ == "nexus_core.api" or base.__module__.startswith("nexus_core.contracts."), k.name
        assert getattr(nexus_core.api, base.__name__) is base, f"{k.name}: importable from nexus_core.api"
        assert k.details.keys() <= set(vars(load_base(k))), f"{k.name}: every detail is a base class attribute"
