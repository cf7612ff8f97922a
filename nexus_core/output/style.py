"""Terminal capabilities from the environment: colour, animation, symbols."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO

from nexus_core.records import Record


class Style(Record):
    """What the output may use: ANSI colour, a live view, Unicode symbols."""

    __slots__ = ("color", "live", "unicode", "interactive")
    color: bool
    live: bool
    unicode: bool
    interactive: bool

    def __init__(self, color: bool, live: bool, unicode: bool, interactive: bool) -> None:
        self._init(color, live, unicode, interactive)

    @classmethod
    def detect(cls, stream: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> Style:
        """Honour NO_COLOR, FORCE_COLOR, TERM=dumb, CI and NEXUS_NO_EMOJI."""
        environ = os.environ if environ is None else environ
        stream = stream or sys.stdout
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        dumb = environ.get("TERM") == "dumb"
        ci = bool(environ.get("CI"))
        force = environ.get("FORCE_COLOR")
        if environ.get("NO_COLOR"):
            color = False
        elif force not in (None, "", "0"):
            color = True
        else:
            color = tty and not dumb
        return cls(
            color=color,
            live=tty and not dumb and not ci,
            unicode=not environ.get("NEXUS_NO_EMOJI"),
            interactive=tty and not ci and sys.stdin is not None and _isatty(sys.stdin),
        )

    # symbols

    @property
    def ok(self) -> str:
        """Success mark."""
        return "✓" if self.unicode else "[ok]"

    @property
    def fail(self) -> str:
        """Failure mark."""
        return "✗" if self.unicode else "[FAIL]"

    @property
    def skip(self) -> str:
        """Skipped mark."""
        return "○" if self.unicode else "[skip]"

    @property
    def bullet(self) -> str:
        """Task bullet."""
        return "●" if self.unicode else "*"

    @property
    def retry(self) -> str:
        """Retry mark."""
        return "↻" if self.unicode else "[retry]"

    @property
    def warn(self) -> str:
        """Warning mark."""
        return "!" if not self.unicode else "⚠"

    def branch(self, last: bool) -> str:
        """Tree branch for an item (last or not)."""
        if self.unicode:
            return "└─" if last else "├─"
        return "`-" if last else "|-"

    @property
    def pipe(self) -> str:
        """Tree continuation."""
        return "│" if self.unicode else "|"

    def paint(self, text: str, color: str) -> str:
        """Wrap ``text`` in an ANSI colour when colour is on."""
        if not self.color:
            return text
        codes = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1", "cyan": "36"}
        return f"\x1b[{codes[color]}m{text}\x1b[0m"

    def mark(self, status: str) -> str:
        """The coloured mark of a status."""
        if status == "ok":
            return self.paint(self.ok, "green")
        if status == "skipped":
            return self.paint(self.skip, "dim")
        if status == "interrupted":
            return self.paint(self.warn, "yellow")
        return self.paint(self.fail, "red")


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def fmt_duration(seconds: float) -> str:
    """``45ms``, ``12.3s``, ``2m05s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"
