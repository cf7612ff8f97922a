"""Module attributes imported on first use (PEP 562), for the public modules' lazy exports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(module: str, table: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) and takes ``name`` from it.

    ``namespace`` is the calling module's ``globals()``: the value is kept there, so the next
    access is an ordinary attribute. Unknown names raise ``AttributeError`` as Python's would.
    """

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    return __getattr__
