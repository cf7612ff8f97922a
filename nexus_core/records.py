"""Small immutable records: the cheap form of a frozen dataclass, for types every start builds.

A frozen dataclass gets ``__init__``, ``__eq__``, ``__hash__``, ``__repr__``, ``__setattr__``
and ``__delattr__`` generated as source and compiled when its module is imported: about
3 M instructions per class in CPython 3.11, paid at every start of ``nexus`` (see
docs/decisions.md, "Start-up"). A :class:`Record` writes its ``__init__`` by hand and
inherits the rest, written once here, over the fields its ``__slots__`` names (in the order
of ``__init__``'s parameters): equality and hash as a dataclass's (same class, equal
fields), its ``repr``, immutability (:class:`dataclasses.FrozenInstanceError`), and copy and
pickle support. Used for pure records only: code that needs ``dataclasses.replace``,
``fields`` or ``asdict`` keeps a dataclass.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any


class Record:
    """Base of a small immutable record whose fields are its ``__slots__``.

    A subclass lists its fields in ``__slots__`` (one level: records do not inherit fields)
    and sets them in ``__init__`` with :meth:`_init`, in the same order::

        class Location(Record):
            __slots__ = ("path", "line")
            path: str
            line: int

            def __init__(self, path: str, line: int = 0) -> None:
                self._init(path, line)
    """

    __slots__: tuple[str, ...] = ()

    def _init(self, *values: Any) -> None:
        """Set the fields, in ``__slots__`` order (only from ``__init__``: records are immutable)."""
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._values())
