"""Waiting for something observable instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(pred: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Whether ``pred()`` becomes true within ``timeout`` seconds (polled every ``step``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
