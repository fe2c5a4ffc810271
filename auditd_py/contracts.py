"""The contracts between the parts of the daemon: small protocols and the meta item.

A leaf module: it imports nothing of the package but the record types, so a
source or a forwarder depends on these shapes, never on the pipeline, the
store or the meta-log that implement them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from auditd_py.record import Fields, Position

__all__ = ["Fields", "Forwarder", "Meta", "MetaItem", "Position", "Sink", "Source"]


@dataclass(frozen=True, slots=True)
class MetaItem:
    """A meta-log event to seal in order with the data."""

    event: str
    message: str
    attrs: dict[str, Any]


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
        """Log ``name`` (from :mod:`auditd_py.events`) and seal it."""
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

    def stats(self) -> Mapping[str, int]:
        """Counters for status and metrics (``parse_errors``, ``dropped``, …; may be empty)."""
        ...


class Forwarder(Protocol):
    """One destination. :meth:`step` does one unit of work; the runner loops it."""

    name: str
    kind: str

    def step(self) -> int:
        """Send what is ready; return how many items were acknowledged (0: idle).

        Raises :class:`~auditd_py.errors.ForwardError` when the peer fails;
        nothing acknowledged is lost, nothing unacknowledged is counted, the
        cursor stays where it was.
        """
        ...

    def floor(self) -> int | None:
        """The lowest seq not yet acknowledged (retention keeps it), None: no limit."""
        ...

    def lag(self) -> dict[str, int]:
        """How far behind: ``records`` (and ``segments``/``checkpoints`` where it applies)."""
        ...

    def close(self) -> None: ...
