"""A reload as a pure plan: what changes, what a reload cannot change, what to (re)start.

The supervisor carries the plan out (stop, wait for the barrier, start); this
module only compares two configurations.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from auditd_py.config import Config


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Source names by what a reload does to them, in configuration order."""

    removed: tuple[str, ...]
    added: tuple[str, ...]
    changed: tuple[str, ...]
    """Configured before and after, with other settings: restarted."""
    retried: tuple[str, ...]
    """Unchanged, but not running (they could not start last time): tried again."""
    refused: tuple[str, ...]
    """Why the new configuration cannot be applied without a restart (empty: it can)."""

    @property
    def to_stop(self) -> tuple[str, ...]:
        return self.removed + self.changed

    @property
    def to_start(self) -> tuple[str, ...]:
        return self.changed + self.added + self.retried


def plan(old: Config, new: Config, failed: Collection[str] = ()) -> ReloadPlan:
    """Compare the running configuration with the new one (``failed``: sources not running)."""
    before = {s.name: s for s in old.sources}
    after = {s.name: s for s in new.sources}
    changed = tuple(n for n in after if n in before and after[n] != before[n])
    return ReloadPlan(
        removed=tuple(n for n in before if n not in after),
        added=tuple(n for n in after if n not in before),
        changed=changed,
        retried=tuple(n for n in after if n in before and n not in changed and n in failed),
        refused=tuple(fixed_changes(old, new)),
    )


def fixed_changes(old: Config, new: Config) -> list[str]:
    """Settings a reload cannot apply (a restart can), each as a reason."""
    out = []
    if old.archive.path != new.archive.path:
        out.append(
            f"archive.path cannot change on reload ({old.archive.path} → {new.archive.path}); "
            "restart the daemon to use another archive"
        )
    if old.archive.state != new.archive.state:
        out.append(
            f"archive.state cannot change on reload ({old.archive.state} → {new.archive.state}); "
            "restart the daemon"
        )
    if old.sealing != new.sealing:
        keys = [
            k
            for k in type(old.sealing).model_fields
            if getattr(old.sealing, k) != getattr(new.sealing, k)
        ]
        names = ", ".join(f"sealing.{k}" for k in keys)
        out.append(f"sealing settings cannot change on reload ({names}); restart the daemon")
    if old.segments != new.segments:
        out.append("segments settings cannot change on reload; restart the daemon")
    if old.metrics != new.metrics:
        out.append("metrics cannot change on reload; restart the daemon")
    if old.retention != new.retention:
        out.append("retention settings cannot change on reload; restart the daemon")
    if old.disk != new.disk:
        out.append("disk settings cannot change on reload; restart the daemon")
    if old.forward != new.forward:
        out.append("forward targets cannot change on reload; restart the daemon")
    if old.self_check != new.self_check:
        out.append("self_check settings cannot change on reload; restart the daemon")
    return out
