"""File modes as ``upload()``, ``template()`` and ``secret(to=...)`` take them: an int
(``0o644``) or an octal string (``"644"``), with the mistakes a decimal int makes caught.

Kept apart from the functions that take them (``nexus_core.files`` imports the handlers,
which import the nexusfile API): each caller records the problem :func:`check_mode` returns.
"""

from __future__ import annotations

from typing import Any

from nexus_core.options import safe_repr

__all__ = ["check_mode"]

#: The sticky bit: Linux ignores it on a file, so on an upload it is a mistake (mostly
#: ``mode=644`` written in decimal: 0o1204).
_STICKY = 0o1000


def check_mode(what: str, mode: Any) -> tuple[int | None, tuple[str, str] | None]:
    """``mode=`` as permission bits: an int (``0o644``) or an octal string (``"644"``,
    ``"0644"``, ``"0o644"``). Set-user-ID and set-group-ID (``0o4000``, ``0o2000``) are
    kept; the sticky bit, meaningless on a file, is refused (an int written in decimal,
    ``mode=644``, has it: 0o1204). Returns the bits (None when no mode is given or it is
    wrong) and the problem, ``(message, hint)``, or None."""
    if mode is None:
        return None, None
    value: int | None = None
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and mode.strip() and "_" not in mode:
        try:
            value = int(mode.strip(), 8)
        except ValueError:
            value = None
    if value is not None and value >= 0 and (value > 0o7777 or value & _STICKY):
        why = "has bits beyond 0o7777" if value > 0o7777 else "sets the sticky bit (0o1000), which a file cannot use"
        # an int's digits do not say whether it was written in octal: show it both ways
        shown = f"{value} ({value:#o})" if isinstance(mode, int) else safe_repr(mode)
        return None, (f"{what}(): mode={shown} {why}", _mode_fix(mode, value))
    if isinstance(mode, int) and value is not None and _misread(value):
        meant = int(str(value), 8)
        return None, (
            f"{what}(): mode={value} is the decimal number {value}, mode {value:#o} ({_rwx(value)}), which lets "
            f"{_who_writes(value & ~meant)} write; read as octal it would be 0o{value} ({_rwx(meant)})",
            f"write mode=0o{value} (octal) or mode='{value}'; for {value:#o} write mode={value:#o}",
        )
    if value is None or value < 0:
        return None, (
            f'{what}(): mode must be permission bits like 0o644 or "0644", not {safe_repr(mode)}',
            f'write {what}(..., mode=0o644) or mode="0644"',
        )
    return value, None


def _misread(value: int) -> bool:
    """An int written as an octal mode without ``0o`` (``mode=400``), caught where the
    decimal value grants a write the octal reading does not: 400 is 0o620 (the group may
    write), meant 0o400. Decimal values such as 420 (0o644) grant no such write and stay
    valid; from 512 up the sticky bit already gives the mistake away."""
    digits = str(value)
    if len(digits) != 3 or not set(digits) <= set("01234567") or value > 0o777:
        return False
    return bool(value & 0o022 & ~int(digits, 8))


def _rwx(bits: int) -> str:
    """``0o640`` as ``rw-r-----``."""
    return "".join(c if bits & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


def _who_writes(bits: int) -> str:
    """Who the write bits in ``bits`` are for: "the group", "others" or both."""
    who = [name for bit, name in ((0o020, "the group"), (0o002, "others")) if bits & bit]
    return " and ".join(who)


def _mode_fix(mode: Any, value: int) -> str:
    """The hint for a ``mode`` with bits a file cannot use: an int whose decimal digits read
    as an octal mode was most likely meant in octal (``mode=644`` -> ``0o644``)."""
    digits = str(value)
    if isinstance(mode, int) and len(digits) <= 4 and set(digits) <= set("01234567") and not int(digits, 8) & _STICKY:
        return f"mode={digits} is {value:#o}; write mode=0o{digits} (octal) or mode='{digits}'"
    if value > 0o7777:
        return f"mode={safe_repr(mode)} is {value:#o}; write permission bits in octal: mode=0o644 or mode='644'"
    meant = value & ~_STICKY
    return f"drop the sticky bit: write mode={meant:#o} or mode='{meant:o}'"
