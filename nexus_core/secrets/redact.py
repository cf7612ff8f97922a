"""Redaction: every secret value this process has seen becomes ``***`` wherever text leaves it.

Values are registered once (by the secret resolver, by the sudo password handling) in the
process-wide :data:`REDACTOR`; then the event bus, the state store, the run logs, the logs,
the failure reports and the standard streams pass their text through :func:`redact`. With
nothing registered (a run without secrets) every call returns its argument untouched, at the
cost of one attribute test.

A value of several lines is also registered line by line (lines of 4 characters or more), so
that a certificate printed by a host line by line is hidden too. Output from hosts is
redacted as whole lines (after :class:`nexus_core.executors.lines.LineSplitter` has joined the
pieces of a line that came in separate reads), so a value split across two reads is caught.
The forms a value takes in commands and messages are registered too (see :func:`forms`):
without its surrounding blanks, and escaped for single shell quotes, JSON and ``repr``, and
each of those escaped again inside a JSON string.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Mapping
from typing import Any, TypeVar

MASK = "***"
#: Lines of a multi-line value shorter than this are not registered on their own (a lone
#: ``-----`` or ``}`` would hide half of every output).
MIN_LINE = 4

T = TypeVar("T")


class Redactor:
    """The set of values to hide, and one compiled pattern that finds any of them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Hide ``value`` from now on (empty and whitespace-only values are ignored)."""
        if not isinstance(value, str) or not value.strip():
            return
        found = forms(value)
        with self._lock:
            if found <= self._values:
                return
            self._values |= found
            # Longest first: a value that contains another is hidden whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def clear(self) -> None:
        """Forget every value (tests; a long-lived embedding between runs)."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    def text(self, text: str) -> str:
        """``text`` with every registered value replaced by ``***``."""
        pattern = self._pattern
        if pattern is None or not isinstance(text, str):
            return text
        return pattern.sub(MASK, text)

    def cut_end(self, text: str) -> str:
        """``text`` (the kept front of an output line cut at its length cap) with a trailing
        beginning of a registered value replaced by ``***``: the line's redaction never sees
        the rest of that value, which the cut dropped (a value across the cap showed its first
        characters)."""
        if self._pattern is None or not text:
            return text
        longest = 0
        for value in tuple(self._values):
            for size in range(min(len(value) - 1, len(text)), longest, -1):
                if text.endswith(value[:size]):
                    longest = size
                    break
        return text[: len(text) - longest] + MASK if longest else text

    def data(self, value: T) -> T:
        """``value`` (strings, lists, tuples, dicts, frozen dataclasses of them) with every value hidden."""
        if self._pattern is None:
            return value
        return _walk(value, self.text, 0)  # type: ignore[no-any-return]


def forms(value: str) -> set[str]:
    """Every text ``value`` may show up as: itself, without surrounding blanks, line by line,
    and escaped the usual ways (in single shell quotes as :func:`shlex.quote` writes them,
    in a JSON string, in a Python ``repr``).
    """
    bare = {value}
    if value.strip() != value and len(value.strip()) >= MIN_LINE:
        bare.add(value.strip())  # `echo $PW` drops the blanks around a value
    if "\n" in value or "\r" in value:
        bare |= {line.strip() for line in re.split(r"\r?\n|\r", value) if len(line.strip()) >= MIN_LINE}
    found = set(bare)
    for text in bare:
        found.add(text.replace("'", "'\"'\"'"))  # inside shlex.quote(...) of the value or of a longer text
        found.add(json.dumps(text)[1:-1])
        found.add(json.dumps(text, ensure_ascii=False)[1:-1])
        found.add(repr(text)[1:-1])
    # ... and any of those inside a JSON string: an exception's message (a repr of the value)
    # in a --format json error, a shell-quoted command in a JSON event.
    for text in list(found - bare):
        found.add(json.dumps(text)[1:-1])
        found.add(json.dumps(text, ensure_ascii=False)[1:-1])
    return {f for f in found if f.strip()}


def _walk(value: Any, text: Any, depth: int) -> Any:
    if depth > 50:
        return value
    if isinstance(value, str):
        return text(value)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        items = [_walk(v, text, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        out = {k: _walk(v, text, depth + 1) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, Mapping):
        return {k: _walk(v, text, depth + 1) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            old = getattr(value, f.name)
            new = _walk(old, text, depth + 1)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, BaseException):
        return value
    return value


#: The process's redactor: every secret value this process resolved or was given.
REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with every secret value this process knows replaced by ``***``."""
    return REDACTOR.text(text)


def redact_data(value: T) -> T:
    """Like :func:`redact`, through strings inside lists, tuples, dicts and dataclasses."""
    return REDACTOR.data(value)


def register(value: str) -> None:
    """Hide ``value`` everywhere from now on (see :class:`Redactor`)."""
    REDACTOR.add(value)
