"""The log panel: a window on a list of lines that draws only the rows on screen (as Toolong does).

The model keeps every line once, plus one list per task, per host and per task/host of the
same lines (references, see :class:`~nexus_core.tui.model.LineIndex`). Showing another
selection hands this view another list: nothing is copied, formatted or measured, so
switching from all tasks to one task is instant whatever the number of lines. A line is
formatted only when its row is painted (:meth:`LogView.render_line`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from nexus_core.tui.model import LogLine

_KIND_STYLES = {
    "cmd": RichStyle(bold=True),
    "err": RichStyle(color="yellow"),
    "fail": RichStyle(color="red", bold=True),
    "ok": RichStyle(color="green"),
    "note": RichStyle(color="bright_black", italic=True),
}


class LogView(ScrollView, can_focus=True):
    """The lines of one selection, drawn lazily; follows the end while ``auto_scroll`` is on.

    ``limit`` freezes the view at that many lines (pause): lines added later are counted
    (:attr:`held`), not shown, until it is lifted.
    """

    DEFAULT_CSS = """
    LogView { background: $surface; color: $text; overflow: auto auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source: Sequence[LogLine] = ()
        self.fmt: Callable[[LogLine], str] = lambda line: line.text
        self.auto_scroll = True
        self.limit: int | None = None
        self._widest = 0
        self._styles: dict[str, RichStyle] = {}

    # --- what is shown -------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        """Lines in the view (up to the pause, when paused)."""
        n = len(self.source)
        return n if self.limit is None else min(n, self.limit)

    @property
    def held(self) -> int:
        """Lines added since the pause (not shown)."""
        return 0 if self.limit is None else max(0, len(self.source) - self.limit)

    def shown(self) -> Sequence[LogLine]:
        """The lines in the view (a slice only when paused)."""
        return self.source if self.limit is None else self.source[: self.limit]

    @property
    def lines(self) -> list[str]:
        """Every line of the view, formatted (for searches and tests; the screen never needs it)."""
        return [self.fmt(line) for line in self.shown()]

    def show(self, source: Sequence[LogLine], fmt: Callable[[LogLine], str]) -> None:
        """Show ``source`` (a list the model keeps growing), each line written by ``fmt``."""
        self.source, self.fmt, self._widest = source, fmt, 0
        self.sync()
        if self.auto_scroll:
            self.scroll_end(animate=False)
        else:
            self.scroll_home(animate=False)

    def pause(self, paused: bool) -> None:
        """Freeze the view at its current lines, or let it grow again."""
        self.limit = len(self.source) if paused else None
        self.sync()

    def sync(self) -> None:
        """Take in lines added to the source (cheap: a size and a repaint of what is on screen)."""
        width = max(self._widest, self.scrollable_content_region.width)
        self.virtual_size = Size(width, self.line_count)
        if self.auto_scroll and self.limit is None:
            self.scroll_end(animate=False)
        self.refresh()

    # --- drawing -------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """Row ``y`` of the screen: the line under it, cropped to the view (formatted only now)."""
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self._styles.get("")
        if base is None:  # the widget's style, once per theme (it walks the ancestors' styles)
            base = self._styles[""] = self.rich_style
        if index >= self.line_count:
            # styled, as every segment must be: NO_COLOR's filter reads each segment's style
            return Strip.blank(width, base)
        line = self.source[index]
        text = self.fmt(line)
        if len(text) > self._widest:
            self._widest = len(text)
            self.call_later(self._grow_width)
        style = self._styles.get(line.kind)
        if style is None:
            style = self._styles[line.kind] = base + _KIND_STYLES[line.kind] if line.kind in _KIND_STYLES else base
        strip = Strip([Segment(text, style)], len(text))
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _grow_width(self) -> None:
        if self._widest > self.virtual_size.width:
            self.virtual_size = Size(self._widest, self.line_count)

    def clear(self) -> None:
        """Show nothing."""
        self.show((), self.fmt)

    def notify_style_update(self) -> None:
        """Repaint when the theme changes."""
        super().notify_style_update()
        self._styles.clear()
        self.refresh()

    def __rich_repr__(self) -> Any:
        yield "lines", self.line_count
