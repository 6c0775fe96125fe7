"""Durations as the daemon's API writes them.

The API takes durations as Go duration strings ("200ms", "1.5s", "2m").
This package accepts either such a string or a number of seconds wherever
it takes a duration, and always sends strings.
"""

from __future__ import annotations

import re
from typing import Union

from .errors import InvalidInput

__all__ = ["DurationLike", "to_go", "seconds"]

#: A duration as this package takes it: seconds, or a Go duration string.
DurationLike = Union[int, float, str]

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _parse_go(s: str) -> float:
    """Seconds in a Go duration string ("1h2m3.5s", "200ms", "0")."""
    text = s.strip()
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            raise InvalidInput('duration %r: want a number of seconds or a string such as "200ms", "1.5s", "2m"' % s)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise InvalidInput('duration %r: want a number of seconds or a string such as "200ms", "1.5s", "2m"' % s)
    return sign * total


def seconds(value: DurationLike, what: str = "duration") -> float:
    """The duration ``value`` (seconds, or a Go duration string) in seconds.

    Raises InvalidInput for anything else, and for a negative duration.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput("%s %r: want a number of seconds or a string such as \"200ms\"" % (what, value))
    s = _parse_go(value) if isinstance(value, str) else float(value)
    if s != s or s < 0 or s == float("inf"):
        raise InvalidInput("%s %r: want a duration of 0 or more" % (what, value))
    return s


def to_go(value: DurationLike, what: str = "duration") -> str:
    """``value`` as the Go duration string the API takes: 0.2 and "200ms"
    both give "200ms", 90 gives "90s"."""
    ns = round(seconds(value, what) * 1e9)
    if ns == 0:
        return "0s"
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return "%d%s" % (ns // size, unit)
    return "%dns" % ns


def from_wire(value: object) -> float:
    """Seconds in a duration the daemon sent: a Go duration string, or (as
    Go's time.Duration marshals) a number of nanoseconds."""
    if isinstance(value, str):
        return seconds(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1e9
    return 0.0
