"""Terminal safety: text from hosts never reaches the user's terminal as control sequences.

A command's output, a host's error message or a file name may carry escape sequences: an
OSC that sets the window title or writes a hyperlink, a CSI that clears the screen or moves
the cursor, a bare BEL, an 8-bit C1 control (``0x9b`` is CSI on some terminals) or a
Unicode bidirectional override that reorders what is shown. Nexus shows all of them as
visible text instead (``^[]0;title^G``) in every text output, on a terminal or not: output
saved to a file or piped to ``less -R`` is read on a terminal later.

Two layers:

* :func:`clean` is applied to each piece of foreign text (an output line, a reason, a
  command) before Nexus adds its own colours: every control character becomes visible.
* :func:`terminal_safe` is the net over a whole block that Nexus is about to print: it
  keeps Nexus's own colour codes (SGR: ``ESC [ digits m``) and makes every other escape or
  control character visible, so a piece of text that missed :func:`clean` is still inert.

JSON keeps the text exact but escaped: :func:`json_safe` turns the characters that
``json.dumps(..., ensure_ascii=False)`` leaves raw (DEL, C1, bidi controls) into ``\\uXXXX``.
"""

from __future__ import annotations

import functools
import re

# C0 controls except TAB and LF, DEL, the C1 range, and the Unicode bidirectional controls.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]"
_CONTROL_OR_LF = f"[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f{_BIDI}]"
# In a block about to be printed: any control except TAB/LF, unless it starts an SGR sequence.
_UNSAFE = f"\\x1b(?!\\[[0-9;]*m)|[\\x00-\\x08\\x0b-\\x1a\\x1c-\\x1f\\x7f-\\x9f{_BIDI}]"
_JSON_RAW = f"[\\x7f-\\x9f{_BIDI}]"


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled on first use: each of these classes costs about 3 M instructions
    to compile (a set beyond Latin-1 becomes a bitmap), and a text run uses two of the four."""
    return re.compile(pattern)


def _visible(match: re.Match[str]) -> str:
    """``^[`` for ESC (caret notation for C0 and DEL, as ``cat -v``), ``<U+202E>`` for others."""
    ch = match.group()
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def _last_frame(text: str) -> str:
    """What a terminal would show of a line with carriage returns: its last non-empty frame."""
    frames = [f for f in text.split("\r") if f]
    return frames[-1] if frames else ""


def clean(text: str, *, multiline: bool = False) -> str:
    """``text`` from a host with every control character made visible (TAB kept).

    A carriage return (a progress bar redrawing itself) keeps only the last frame, as the
    terminal would have shown it. ``multiline`` keeps line feeds; otherwise they are shown
    as ``^J`` so that one line of output stays one line.
    """
    if "\r" in text:
        text = "\n".join(_last_frame(line) for line in text.split("\n"))
    pattern = _compiled(_CONTROL if multiline else _CONTROL_OR_LF)
    if pattern.search(text) is None:
        return text
    return pattern.sub(_visible, text)


def brief_command(command: str) -> str:
    """A command as one line of a tree: its first line, and how many more a multi-line
    ``run()`` holds (``echo one … (+2 lines)``; shown whole, its line feeds were ``^J``)."""
    lines = [line for line in command.strip("\n").split("\n") if line.strip()]
    if len(lines) <= 1:
        return clean(command.strip("\n"))
    more = len(lines) - 1
    return f"{clean(lines[0].strip())} … (+{more} line{'s' if more > 1 else ''})"


def command_lines(command: str, suffix: str = "", limit: int = 20) -> list[str]:
    """``Command: ...`` lines of a failure report: a multi-line command one line each, indented
    under ``Command: (N lines)`` (at most ``limit``), instead of one line joined by ``^J``."""
    lines = command.strip("\n").split("\n")
    if len(lines) <= 1:
        return [f"Command: {clean(command.strip(chr(10)))}{suffix}"]
    out = [f"Command: ({len(lines)} lines){suffix}"]
    out += [f"  {clean(line)}" for line in lines[:limit]]
    if len(lines) > limit:
        out.append(f"  ... (+{len(lines) - limit} more lines)")
    return out


def terminal_safe(text: str) -> str:
    """A block about to be printed, with Nexus's colour codes kept and every other control visible."""
    unsafe = _compiled(_UNSAFE)
    if unsafe.search(text) is None:
        return text
    return unsafe.sub(_visible, text)


def json_safe(text: str) -> str:
    """A JSON document (from ``json.dumps``) with DEL, C1 and bidi controls escaped as ``\\uXXXX``.

    ``json.dumps`` already escapes C0 (ESC is ``\\u001b``); with ``ensure_ascii=False`` it
    leaves the rest raw. Raw characters can only be inside JSON strings, so the escape is
    always valid JSON and decodes to the same text.
    """
    raw = _compiled(_JSON_RAW)
    if raw.search(text) is None:
        return text
    return raw.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
