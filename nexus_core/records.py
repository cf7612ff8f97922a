"""Small immutable records: the cheap form of a frozen dataclass, for types every start builds.

A frozen dataclass gets ``__init__``, ``__eq__``, ``__hash__``, ``__repr__``, ``__setattr__``
and ``__delattr__`` generated as source and compiled when its module is imported: about
3 M instructions per class in CPython 3.11, paid at every start of ``nexus`` (see
docs/decisions.md, "Start-up"). A :class:`Record` writes its ``__init__`` by hand and
inherits the rest, written once here, over the fields its ``__slots__`` names (in the order
of ``__init__``'s parameters): equality and hash as a dataclass's (same class, equal
fields), its ``repr``, immutability (:class:`dataclasses.FrozenInstanceError`), and copy and
pickle support. Used for pure records only: code that needs ``dataclasses.replace``,
``fields`` or ``asdict`` keeps a dataclass; :func:`init_on_first_use` then spares it the
compiling of ``__init__`` until the class is first instantiated.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, field
from typing import Any, TypeVar, dataclass_transform

_T = TypeVar("_T")


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


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen_dataclass(cls: type[_T]) -> type[_T]:
    """``@dataclass(frozen=True)`` with two of its six generated methods not compiled when the
    class is defined: ``__init__`` is compiled when ``cls`` is first instantiated
    (:func:`init_on_first_use`; never, for the model's types a plain run does not create:
    file transfers, host groups) and ``__repr__`` is :func:`dataclass_repr`, written once.
    """
    if not cls.__doc__:  # dataclasses writes the docstring from __init__'s signature
        return dataclasses.dataclass(frozen=True)(cls)
    made = dataclasses.dataclass(frozen=True, init=False, repr=False)(cls)
    made.__init__ = init_on_first_use(made)  # type: ignore[method-assign]
    if "__repr__" not in cls.__dict__:
        made.__repr__ = dataclass_repr  # type: ignore[method-assign]
    return made


@reprlib.recursive_repr()
def dataclass_repr(self: Any) -> str:
    """The ``repr`` dataclasses generates (``Name(field=value, ...)`` over the fields shown,
    ``...`` for a value that contains itself), for any dataclass instance."""
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
    return f"{self.__class__.__qualname__}({shown})"


def init_on_first_use(cls: type) -> Callable[..., None]:
    """An ``__init__`` for the frozen dataclass ``cls`` (declared with ``init=False``) that
    compiles, on its first call, the ``__init__`` dataclasses would have generated, puts it
    on ``cls`` and calls it.

    A run instantiates a few of the event classes it defines: the others never pay for
    their ``__init__`` being generated as source and compiled (about 1.3 M instructions
    each on CPython 3.11). A field without a default after one with a default is refused
    here, at the class's definition, as ``dataclasses`` refuses it.
    """
    seen_default = False
    for f in dataclasses.fields(cls):
        if f.init and not f.kw_only:
            if f.default is not MISSING or f.default_factory is not MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _frozen_init(cls)
        setattr(cls, "__init__", init)  # noqa: B010 - mypy: no assignment to a method
        init(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _frozen_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` of the frozen dataclass ``cls``, as ``dataclasses`` writes it: each
    field set with ``object.__setattr__`` in field order, keyword-only fields after ``*``,
    defaults and default factories, then ``__post_init__`` (no ``InitVar`` support)."""
    ns: dict[str, Any] = {"__nexus_set": object.__setattr__, "__nexus_missing": MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not MISSING:
            ns[f"__nexus_factory_{f.name}"] = f.default_factory
            param = f"{f.name}=__nexus_missing"
            made = f"__nexus_factory_{f.name}()"
            value = f"{made} if {f.name} is __nexus_missing else {f.name}" if f.init else made
        elif f.default is not MISSING:
            ns[f"__nexus_default_{f.name}"] = f.default
            param = f"{f.name}=__nexus_default_{f.name}"
            value = f.name if f.init else f"__nexus_default_{f.name}"
        elif f.init:
            param = value = f.name
        else:
            continue  # init=False without a default: left unset, as dataclasses does
        if f.init:
            (keyword if f.kw_only else positional).append(param)
        body.append(f"    __nexus_set(__nexus_self, {f.name!r}, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("    __nexus_self.__post_init__()")
    params = ", ".join(["__nexus_self", *positional, *(["*", *keyword] if keyword else [])])
    exec(f"def __init__({params}):\n" + "\n".join(body or ["    pass"]), ns)  # noqa: S102 - as dataclasses does
    init: Callable[..., None] = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init
