"""The base of nexus-tailscale's small records: equality, hash and a repr over ``__slots__``.

What the frozen dataclasses these classes replaced gave, written once: a dataclass compiles
generated methods at import (docs/decisions.md, "Tailscale discovery of 1,000 devices").
"""

from __future__ import annotations

from typing import Any


class Plain:
    """Equality, hash and repr over ``__slots__``; subclasses set their fields in ``__init__``."""

    __slots__ = ()

    def _fields(self) -> tuple[Any, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and type(other) is type(self) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({shown})"
