"""Meta-tests (after datasette's): every hook is documented with its exact signature and tested.

Adding a hook to ``nexus_core/hookspecs.py`` without regenerating ``docs/plugins/hooks.md``
(``python docs/gen_hooks.py``) or without a test that names it fails here.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from nexus_core import hookspecs

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


def _test_sources() -> str:
    """Text of every test module except this one (helpers such as plugin_fixtures.py do not count)."""
    files = [p for p in TESTS.rglob("test_*.py") if p.resolve() != Path(__file__).resolve()]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_is_exercised_by_a_test(hook):
    assert re.search(rf"\b{hook}\b", _test_sources()), f"no test module mentions {hook}: add a test that uses it"
