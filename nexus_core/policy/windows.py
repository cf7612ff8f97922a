"""Change windows: named weekly periods (days, hours, time zone) outside which tasks are refused.

``ChangeWindow("production", days=["tue", "thu"], hours="10-16", timezone="America/New_York")``
is open on Tuesdays and Thursdays from 10:00 to 16:00 New York time (the end hour excluded).
An end before the start crosses midnight: ``days=["sat"], hours="22-4"`` is open from
Saturday 22:00 to Sunday 04:00.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Day names (and their three-letter forms) -> Monday=0 ... Sunday=6.
DAYS = {
    name: i
    for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
    for name in (full, full[:3])
}
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

#: The variable an injected clock is read from, in tests only (see :func:`now`).
CLOCK_VARIABLE = "NEXUS_TEST_NOW"


class WindowError(ValueError):
    """A change window's value is wrong: the message says what, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class ChangeWindow:
    """A named weekly window: ``days`` (0=Monday), hours ``start`` <= h < ``end`` in ``timezone``.

    ``end`` < ``start``: the window opens on each of its days at ``start`` and closes the next
    day at ``end``.
    """

    name: str
    days: tuple[int, ...]
    start: int
    end: int
    timezone: str

    @classmethod
    def parse(cls, name: str, days: Any = None, hours: Any = None, timezone: Any = "UTC") -> ChangeWindow:
        """Build a window from the nexusfile's or policy's values; :class:`WindowError` when wrong."""
        if not isinstance(name, str) or not name.strip():
            raise WindowError(f"a change window needs a name, not {name!r}", 'change_window("production", ...)')
        return cls(name, _days(name, days), *_hours(name, hours), _zone(name, timezone))

    def zone(self) -> dt.tzinfo:
        """The window's time zone."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def is_open(self, when: dt.datetime) -> bool:
        """True when ``when`` (aware) falls inside the window."""
        local = when.astimezone(self.zone())
        day, hour = local.weekday(), local.hour
        if self.start < self.end:
            return day in self.days and self.start <= hour < self.end
        return (day in self.days and hour >= self.start) or ((day - 1) % 7 in self.days and hour < self.end)

    def next_start(self, when: dt.datetime) -> dt.datetime:
        """The next moment the window opens after ``when`` (in the window's time zone)."""
        local = when.astimezone(self.zone())
        for offset in range(0, 8):
            day = (local + dt.timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            opens = dt.datetime(day.year, day.month, day.day, self.start, tzinfo=self.zone())
            if opens > local:
                return opens
        raise AssertionError("a window with at least one day opens within 8 days")  # pragma: no cover

    def describe(self) -> str:
        """``Tue, Thu 10:00-16:00 America/New_York``."""
        days = ", ".join(_DAY_NAMES[d] for d in self.days)
        overnight = " (to the next day)" if self.end < self.start else ""
        return f"{days} {self.start:02d}:00-{self.end:02d}:00{overnight} {self.timezone}"


def _days(name: str, value: Any) -> tuple[int, ...]:
    if value is None:
        return tuple(range(7))
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise WindowError(
            f"change window {name!r}: days must be a list of day names, not {value!r}",
            'days=["mon", "tue", "wed", "thu", "fri"]',
        )
    out: list[int] = []
    for item in items:
        day = DAYS.get(item.strip().lower()) if isinstance(item, str) else None
        if day is None:
            from nexus_core.options import suggest

            close = suggest(str(item).lower(), list(DAYS))
            extra = f"; did you mean {close!r}?" if close else ""
            raise WindowError(
                f"change window {name!r}: unknown day {item!r}{extra}", "days are monday..sunday or mon..sun"
            )
        if day not in out:
            out.append(day)
    return tuple(sorted(out))


def _hours(name: str, value: Any) -> tuple[int, int]:
    hint = 'hours="10-16" (10:00 to 16:00) or hours=(10, 16); 0-24 is the whole day; "22-4" ends at 04:00 the next day'
    if value is None:
        return 0, 24
    pair: Sequence[Any]
    if isinstance(value, str):
        pair = value.replace("..", "-").split("-")
    elif isinstance(value, range):
        pair = (value.start, value.stop)
    elif isinstance(value, (list, tuple)):
        pair = value
    else:
        raise WindowError(f'change window {name!r}: hours must be a range like "10-16", not {value!r}', hint)
    try:
        start, end = (int(str(p).strip()) for p in pair)
    except ValueError:
        raise WindowError(f"change window {name!r}: hours must be two whole hours, not {value!r}", hint) from None
    if end == 0 and start > 0:
        end = 24  # "22-0": until midnight
    if not (0 <= start <= 23 and 0 <= end <= 24 and start != end):
        raise WindowError(
            f"change window {name!r}: hours {value!r} must be two different hours, the start 0-23 and the end 0-24",
            hint,
        )
    return start, end


def _zone(name: str, value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not value:
        raise WindowError(
            f"change window {name!r}: timezone must be an IANA name, not {value!r}", 'timezone="Europe/Berlin" or "UTC"'
        )
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(
            f"change window {name!r}: unknown timezone {value!r}",
            'use an IANA name such as "America/New_York", "Europe/Berlin" or "UTC"',
        ) from None
    return value


def now(clock_allowed: bool = False) -> dt.datetime:
    """The current time (aware, UTC); :data:`CLOCK_VARIABLE` replaces it when ``clock_allowed``.

    The injected clock is for tests: it is honoured only when no system policy is in force or
    the policy allows it (``[testing] clock_override = true``), so a user cannot move a
    root-owned policy's windows by setting a variable. A value that is not a time is a
    :class:`WindowError`.
    """
    text = os.environ.get(CLOCK_VARIABLE) if clock_allowed else None
    if text:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                when = dt.datetime.fromtimestamp(float(text), dt.UTC)
            except (ValueError, OverflowError, OSError):
                raise WindowError(
                    f"{CLOCK_VARIABLE}={text!r} is not a time",
                    f"give ISO 8601 ({CLOCK_VARIABLE}=2026-12-02T16:00:00+00:00) or seconds since the epoch, "
                    f"or unset {CLOCK_VARIABLE}",
                ) from None
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)
