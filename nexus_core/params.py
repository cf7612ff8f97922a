"""Task parameters: a task function's parameters are its arguments, given as ``key=value`` words.

``def deploy(version: str, canary: bool = False)`` is run as ``nexus run deploy version=1.2
canary=true`` (or ``--param version=1.2``). Types come from the annotations (``str``,
``int``, ``float``, ``bool``; none means ``str``, or the default's type); defaults are
honoured. A word containing ``=`` is an argument, never a task name: task names are
Python identifiers, which cannot contain ``=``.

An argument goes to every task of the run that declares a parameter of that name (tasks
pulled in as dependencies included), as Make's ``VAR=value`` reaches every rule.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nexus_core.options import safe_repr
from nexus_core.records import Record

#: Annotation (object or string form under ``from __future__ import annotations``) -> type.
TYPES: dict[Any, type] = {
    str: str, int: int, float: float, bool: bool,
    "str": str, "int": int, "float": float, "bool": bool,
}  # fmt: skip
TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool"}
TRUE = frozenset({"true", "yes", "1", "on", "y"})
FALSE = frozenset({"false", "no", "0", "off", "n"})
_NOTHING: Any = inspect.Parameter.empty


class ParamError(ValueError):
    """A value that does not fit a parameter's type; the message says what was expected."""


class Param(Record):
    """One parameter of a task: name, type, and its default when it has one."""

    __slots__ = ("name", "type", "required", "default")
    name: str
    type: type
    required: bool
    default: Any

    def __init__(self, name: str, type: builtins.type, required: bool, default: Any = None) -> None:
        self._init(name, type, required, default)

    def describe(self) -> str:
        """``version: str`` or ``canary: bool = False`` (as in the function's signature)."""
        text = f"{self.name}: {TYPE_NAMES[self.type]}"
        return text if self.required else f"{text} = {self.default!r}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {
            "name": self.name,
            "type": TYPE_NAMES[self.type],
            "required": self.required,
            "default": None if self.required else self.default,
        }


#: task_params' answers by function: planning asks twice per task, and inspect.signature
#: costs more than the rest of a one-command task's plan.
_PARAMS: dict[Any, tuple[tuple[Param, ...], tuple[str, ...]]] = {}


def task_params(fn: Any) -> tuple[list[Param], list[str]]:
    """The parameters of a task function, and why any of them cannot be given from the CLI."""
    try:
        found = _PARAMS.get(fn)
    except TypeError:  # not hashable: not cached
        found = None
    if found is None:
        params, problems = _task_params(fn)
        found = (tuple(params), tuple(problems))
        try:
            _PARAMS[fn] = found
        except TypeError:
            pass
    return list(found[0]), list(found[1])


def _task_params(fn: Any) -> tuple[list[Param], list[str]]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], []
    params: list[Param] = []
    problems: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind is p.VAR_POSITIONAL else "**"
            problems.append(f"parameter {star}{p.name} is not supported: name each parameter")
            continue
        if p.kind is p.POSITIONAL_ONLY:
            problems.append(f"parameter {p.name!r} is positional-only: remove the '/' after it")
            continue
        typ = _type_of(p)
        if typ is None:
            shown = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", p.annotation)
            problems.append(f"parameter {p.name!r} has type {safe_repr(shown)}; use str, int, float or bool")
            continue
        required = p.default is _NOTHING
        params.append(Param(p.name, typ, required, None if required else p.default))
    return params, problems


def _type_of(p: inspect.Parameter) -> type | None:
    ann = p.annotation
    if ann is _NOTHING:
        if p.default is not _NOTHING and type(p.default) in TYPE_NAMES:
            return type(p.default)
        return str
    try:
        return TYPES.get(ann)
    except TypeError:  # an unhashable annotation
        return None


def convert(value: str, typ: type) -> Any:
    """``value`` (a CLI word) as ``typ``; raise :class:`ParamError` saying what was expected."""
    if typ is bool:
        low = value.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise ParamError(f"expected true/false (yes/no, 1/0), not {value!r}")
    if typ is int:
        try:
            return int(value.strip().replace("_", ""))
        except ValueError:
            raise ParamError(f"expected an integer, not {value!r}") from None
    if typ is float:
        try:
            number = float(value.strip())
        except ValueError:
            raise ParamError(f"expected a number, not {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ParamError(f"expected a finite number, not {value!r}")
        return number
    return value


def split_words(words: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``nexus run`` words into task names and ``key=value`` arguments (later wins)."""
    tasks: list[str] = []
    args: dict[str, str] = {}
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            args[key.strip()] = value
        else:
            tasks.append(word)
    return tasks, args


def bad_keys(args: Mapping[str, str]) -> list[str]:
    """Argument names that cannot be parameter names (empty, not an identifier)."""
    return [k for k in args if not k.isidentifier()]


def bind(task: str, params: Sequence[Param], args: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[Param, str]]]:
    """The keyword arguments for ``task`` from ``args``, and every problem (missing, mistyped)
    with the parameter it is about."""
    kwargs: dict[str, Any] = {}
    problems: list[tuple[Param, str]] = []
    for p in params:
        if p.name in args:
            try:
                kwargs[p.name] = convert(args[p.name], p.type)
            except ParamError as exc:
                problems.append((p, f"task {task!r}: parameter {p.name!r} ({TYPE_NAMES[p.type]}): {exc}"))
        elif p.required:
            problems.append((p, f"task {task!r} needs parameter {p.name!r} ({TYPE_NAMES[p.type]})"))
    return kwargs, problems


def signature_text(name: str, params: Sequence[Param]) -> str:
    """``deploy(version: str, canary: bool = False)``, or just the name without parameters."""
    return f"{name}({', '.join(p.describe() for p in params)})" if params else name
