"""Duration values: ``"500ms"``, ``"5s"``, ``"1m"``, ``"1h"``, or int milliseconds.

Invariant: every duration in actord (config, cancel deadlines, CLI options) is parsed here,
to float seconds in ``0..MAX_DURATION``, and a bad one raises ``ValueError`` with a message
naming the value. The bound (7 days) keeps absurd values (``99999999999999999999``, ``inf``,
``nan``) from reaching timers, where they overflow or never fire.
"""

from __future__ import annotations

import math
import re

from actord.errors import InvalidError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
#: the longest duration accepted anywhere: 7 days, in seconds
MAX_DURATION = 7 * 24 * 3600.0


def parse_duration(value: object) -> float:
    """Seconds for a duration string or a number of milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: negative")
        if value > MAX_DURATION * 1000:  # before float(): a huge int overflows it
            return check_seconds(math.inf, value)
        return check_seconds(float(value) / 1000.0, value)
    if isinstance(value, str):
        m = _RE.match(value)
        if m:
            return check_seconds(float(m[1]) * _UNITS[m[2]], value)
    raise ValueError(f"bad duration {value!r} (use e.g. \"500ms\", \"5s\", \"1m\" or int ms)")


def check_seconds(seconds: float, shown: object = None) -> float:
    """``seconds`` when it is a finite number in ``0..MAX_DURATION``; else ``ValueError``."""
    if not (isinstance(seconds, int | float) and not isinstance(seconds, bool)
            and math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION):
        text = repr(seconds if shown is None else shown)
        text = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"bad duration {text}: must be 0..{MAX_DURATION:.0f}s (7 days)")
    return float(seconds)


def cancel_deadline(value: object, now: float) -> float | None:
    """The absolute time (``now`` + the duration) a CANCEL's ``deadline`` names, None for
    none; INVALID (not ``ValueError``) for a bad one: it comes from a caller."""
    if value is None:
        return None
    try:
        return now + parse_duration(value)
    except ValueError as e:
        raise InvalidError(str(e)) from None
