"""The running sources: build, start, stop and count them, across reloads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from auditd_py.clock import Clock
from auditd_py.config import FileSource, JournaldSource, SyslogSource
from auditd_py.contracts import Meta, Sink, Source
from auditd_py.daemon.narrator import Narrator
from auditd_py.errors import AuditdError

SourceSettings = FileSource | SyslogSource | JournaldSource


def build_source(cfg: SourceSettings, clock: Clock) -> Source:
    """One source object per configured source (modules imported on demand)."""
    if isinstance(cfg, FileSource):
        from auditd_py.sources.file import FileTailer  # noqa: PLC0415

        return FileTailer(cfg, clock)
    if isinstance(cfg, SyslogSource):
        from auditd_py.sources.syslog import SyslogServer  # noqa: PLC0415

        return SyslogServer(cfg, clock)
    from auditd_py.sources.journald import JournalSource  # noqa: PLC0415

    return JournalSource(cfg, clock)


def source_counters(src: Source) -> tuple[int, int]:
    """(parse errors, records dropped, the kernel's drops included) from ``src.stats()``."""
    try:
        s = src.stats()
    except Exception:  # a scrape or a reload must not fail because a source cannot count
        return 0, 0
    return int(s.get("parse_errors", 0)), int(s.get("dropped", 0)) + int(s.get("kernel_drops", 0))


class SourceSet:
    """Running sources in configuration order, the ones that could not start, and the
    counters of instances a reload stopped (so totals survive reloads)."""

    def __init__(self, sink: Sink, meta: Meta, say: Narrator, clock: Clock) -> None:
        self.sink = sink
        self.meta = meta
        self.say = say
        self.clock = clock
        self.running: list[Source] = []
        self.failed: dict[str, str] = {}
        """Configured sources that could not start, with the reason."""
        self.retired: dict[str, dict[str, int]] = {}
        """Counters (parse errors, drops) of source instances stopped by reloads."""

    def find(self, name: str) -> Source | None:
        return next((s for s in self.running if s.name == name), None)

    def start_all(
        self, configured: Iterable[SourceSettings], positions: Mapping[str, Any], *, once: bool
    ) -> None:
        """At start-up: every source, or an error (the daemon does not start)."""
        for sc in configured:
            if once and isinstance(sc, SyslogSource):
                continue  # network sources are not started by --once
            src = build_source(sc, self.clock)
            src.start(self.sink, self.meta, positions)
            self.running.append(src)
            self.say.source_added(sc.name, sc.type)

    def start_one(
        self, sc: SourceSettings, positions: Mapping[str, Any], *, restarted: bool
    ) -> bool:
        """On reload: start ``sc``; a failure is recorded and told, never raised."""
        fresh: Source | None = None
        try:
            fresh = build_source(sc, self.clock)
            fresh.start(self.sink, self.meta, positions)
        except Exception as exc:
            if fresh is not None:
                with contextlib.suppress(Exception):  # release what it opened
                    fresh.stop()
            reason = str(exc) if isinstance(exc, AuditdError) else f"{exc!r}"
            self.failed[sc.name] = reason
            self.say.source_cannot_start(sc.name, sc.type, reason)
            return False
        self.failed.pop(sc.name, None)
        self.running.append(fresh)
        self.say.source_added(sc.name, sc.type, restarted=restarted)
        return True

    def retire(self, name: str) -> bool:
        """Stop the running instance of ``name`` and keep its counts; False if none ran."""
        self.failed.pop(name, None)
        src = self.find(name)
        if src is None:
            return False
        self.running.remove(src)
        self._stop(src)
        parse_errors, dropped = source_counters(src)
        acc = self.retired.setdefault(src.name, {"parse_errors": 0, "dropped": 0})
        acc["parse_errors"] += parse_errors
        acc["dropped"] += dropped
        return True

    def stop_all(self, *, quiet: bool = False) -> None:
        """Stop every source (their complete lines go to the queue); errors are told."""
        for s in self.running:
            if quiet:
                with contextlib.suppress(Exception):  # best effort while failing to start
                    s.stop()
            else:
                self._stop(s)

    def _stop(self, src: Source) -> None:
        try:
            src.stop()
        except Exception as exc:  # stop the others regardless
            self.say.source_stop_failed(src.name, exc)
