"""The contracts between sources, the pipeline and the meta-log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from auditd_py.record import Fields, Position

__all__ = ["Fields", "Meta", "Position", "Sink", "Source"]


class Sink(Protocol):
    """Where sources put records: the pipeline's bounded queue."""

    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        """Enqueue a batch. Returns False if ``block`` is False (or ``timeout``
        passes) and the queue is full; a blocking put waits for room (this is how
        file and journald sources pause: they lose nothing by waiting)."""
        ...

    def room(self) -> int:
        """Records that fit right now."""
        ...


class Meta(Protocol):
    """The daemon's own log: structured, and sealed into the same chain."""

    def event(self, name: str, message: str, **fields: Any) -> None:
        """Log ``name`` (from :mod:`auditd_py.metalog`'s catalogue) and seal it."""
        ...


class Source(Protocol):
    """One configured source. Threads are the source's own business."""

    name: str

    def start(self, sink: Sink, meta: Meta, positions: Mapping[str, Position]) -> None:
        """Open everything and start delivering; return once ready (sockets bound,
        files opened), so the daemon can report readiness. ``positions`` holds
        the last sealed position of every key that starts with ``name + ":"``."""
        ...

    def drain(self) -> None:
        """Deliver everything available now, then return (for ``run --once``)."""
        ...

    def stop(self) -> None:
        """Stop reading and release everything; pending complete lines are delivered."""
        ...

    def healthy(self) -> tuple[bool, str]:
        """(ok, reason) for health checks."""
        ...
