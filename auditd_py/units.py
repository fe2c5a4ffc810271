"""Durations as a person writes them, in the configuration and on the command line.

Light on purpose (the CLI imports it, and must not pay for the configuration's
pydantic): the one parser behind both ``config`` and ``cli``.
"""

from __future__ import annotations

import re
from typing import Any

from auditd_py.chain.format import NS

_DUR = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_DUR_UNITS = {"ms": 10**6, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS}


class DurationError(ValueError):
    """Not a duration (``malformed``), or not a positive one."""

    def __init__(self, message: str, *, malformed: bool) -> None:
        super().__init__(message)
        self.malformed = malformed


def parse_duration(value: Any) -> int:
    """``15m``, ``1h``, ``30s``, ``500ms``, ``2d`` or a number of seconds → ns."""
    if isinstance(value, bool):
        raise DurationError("expected a duration such as 30s, 15m or 1h", malformed=True)
    if isinstance(value, int | float):
        ns = int(value * NS)
    else:
        m = _DUR.fullmatch(str(value))
        if not m:
            raise DurationError(
                f"invalid duration {value!r} (use e.g. 500ms, 30s, 15m, 1h)", malformed=True
            )
        ns = int(float(m.group(1)) * _DUR_UNITS[m.group(2) or "s"])
    if ns <= 0:
        raise DurationError("duration must be positive", malformed=False)
    return ns
