"""Splitting command output into lines in linear time, with a cap on each line's length.

A progress bar written with ``\\r`` is one line of any length (hundreds of MB). Joining each
chunk to the pending part and splitting again costs time in the square of the line's length;
:class:`LineSplitter` only looks at new data, keeps at most :data:`MAX_LINE` characters of a
line (the display, the failure tail and the stored log all get the capped line, marked as
cut), and counts the rest. Public API for executor plugins.
"""

from __future__ import annotations

#: Characters kept of one output line; the rest is counted and dropped.
MAX_LINE = 1 << 20
#: Characters kept of a cut line's last ``\r`` frame (a progress bar's last state).
MAX_FRAME = 4096


class LineSplitter:
    """Turns text chunks into complete lines (without their ``\\n`` and a trailing ``\\r``)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._parts: list[str] = []
        self._size = 0
        self._dropped = 0
        # The end of the dropped characters (at most 2 * MAX_FRAME): a progress bar redrawn
        # past the cap shows its last frame, what follows the last "\r" (see _take).
        self._tail = ""

    def _keep(self, text: str) -> None:
        room = self.max_line - self._size
        if room <= 0:
            self._drop(text)
            return
        if len(text) > room:
            self._drop(text[room:])
            text = text[:room]
        self._parts.append(text)
        self._size += len(text)

    def _drop(self, text: str) -> None:
        self._dropped += len(text)
        self._tail = (self._tail + text[-2 * MAX_FRAME :])[-2 * MAX_FRAME :]

    def _frame(self) -> str:
        """The cut line's last frame: the dropped text after its last ``\\r`` (a trailing one,
        of a ``\\r\\n`` ending, aside), when that is within :data:`MAX_FRAME` characters; else ""."""
        tail = self._tail.removesuffix("\r")
        cr = tail.rfind("\r")
        if cr < 0 or len(tail) - cr - 1 > MAX_FRAME:
            return ""
        return tail[cr + 1 :]

    def _take(self) -> str:
        line = "".join(self._parts)
        if self._dropped:
            from nexus_core.secrets.redact import REDACTOR

            line = REDACTOR.cut_end(line)  # a secret across the cap: its beginning is hidden too
            frame = self._frame()
            shown = f"\r{frame}" if frame else ""  # the display shows what follows the last \r
            line = line.rstrip("\r") + shown + f" [... {self._dropped - len(frame)} more characters not shown]"
        self._parts, self._size, self._dropped, self._tail = [], 0, 0, ""
        return line.removesuffix("\r")

    def feed(self, text: str) -> list[str]:
        """The lines that ``text`` completes (in order)."""
        if "\n" not in text:
            if text:
                self._keep(text)
            return []
        pieces = text.split("\n")
        rest = pieces.pop()
        if self._parts or self._dropped:  # the first piece ends a line begun earlier
            self._keep(pieces[0])
            pieces[0] = self._take()
            start = 1
        else:
            start = 0
        if max(map(len, pieces[start:]), default=0) <= self.max_line:  # the usual case: short lines
            lines = [p.removesuffix("\r") for p in pieces[start:]]
        else:
            lines = []
            for piece in pieces[start:]:
                self._keep(piece)
                lines.append(self._take())
        if start:
            lines.insert(0, pieces[0])
        if rest:
            self._keep(rest)
        return lines

    @property
    def pending(self) -> bool:
        """True when a line without its ``\\n`` is waiting."""
        return bool(self._parts) or self._dropped > 0

    def finish(self) -> list[str]:
        """The last line when the output did not end with a newline (else nothing)."""
        return [self._take()] if self.pending else []
