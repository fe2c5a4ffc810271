"""The daemon's lifecycle: open, start sources, run until told, drain, close.

Signal handlers only set flags; the main loop acts on them. Readiness is
reported (``READY=1``) only once every source is open and the archive is
writable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from auditd_py import metalog as ev
from auditd_py.clock import Clock, SystemClock
from auditd_py.config import Config, FileSource, JournaldSource, Loaded, SyslogSource
from auditd_py.errors import AuditdError, ConfigError
from auditd_py.metalog import MetaLog
from auditd_py.pipeline import BatchQueue, Sealer
from auditd_py.sources.base import Source
from auditd_py.store.layout import Layout
from auditd_py.store.writer import ArchiveWriter, EpochPolicy


def build_source(cfg: FileSource | SyslogSource | JournaldSource, clock: Clock) -> Source:
    """One source object per configured source (modules imported on demand)."""
    if isinstance(cfg, FileSource):
        from auditd_py.sources.file import FileTailer  # noqa: PLC0415

        return FileTailer(cfg, clock)
    if isinstance(cfg, SyslogSource):
        from auditd_py.sources.syslog import SyslogServer  # noqa: PLC0415

        return SyslogServer(cfg, clock)
    from auditd_py.sources.journald import JournalSource  # noqa: PLC0415

    return JournalSource(cfg, clock)


def notify(state: str) -> bool:
    """sd_notify(3) over $NOTIFY_SOCKET; False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
    except OSError:
        return False
    return True


@dataclass
class Flags:
    stop: bool = False
    reload: bool = False
    rotate: bool = False
    signals: list[int] = field(default_factory=list)


class Daemon:
    """``auditd-py run``."""

    def __init__(
        self,
        loaded: Loaded,
        *,
        clock: Clock | None = None,
        once: bool = False,
        notify_fn: Callable[[str], bool] = notify,
    ) -> None:
        self.loaded = loaded
        self.cfg: Config = loaded.config
        self.clock = clock or SystemClock()
        self.once = once
        self.notify = notify_fn
        self.flags = Flags()
        self.meta = MetaLog()
        self.queue = BatchQueue(self.cfg.sealing.queue_records)
        self.sources: list[Source] = []
        self.writer: ArchiveWriter | None = None
        self.sealer: Sealer | None = None
        self._failed: BaseException | None = None
        self._wake = threading.Event()

    # ------------------------------------------------------------ signals

    def install_signals(self) -> None:
        def on(signum: int, frame: FrameType | None) -> None:
            self.flags.signals.append(signum)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.flags.stop = True
            elif signum == signal.SIGHUP:
                self.flags.reload = True
            elif signum == signal.SIGUSR1:
                self.flags.rotate = True
            self._wake.set()

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(s, on)

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        cfg = self.cfg
        layout = Layout.at(cfg.archive.path, cfg.archive.state)
        policy = EpochPolicy(cfg.sealing.epoch_interval, cfg.sealing.epoch_records)
        self.writer = ArchiveWriter.open(layout, self.clock, policy)
        self.meta.event(
            ev.DAEMON_STARTED,
            f"auditd-py started ({'once' if self.once else 'daemon'}) for {cfg.environment}",
            pid=os.getpid(),
            environment=cfg.environment,
            archive=str(layout.root),
            mode="once" if self.once else "daemon",
        )
        self.meta.event(
            ev.CONFIG_LOADED,
            f"configuration {self.loaded.path} loaded",
            path=self.loaded.path,
            config_hash=self.loaded.digest,
            sources=[s.name for s in cfg.sources],
        )
        self.meta.attach(self.queue)
        self.sealer = Sealer(
            self.writer,
            self.queue,
            commit_interval_ns=cfg.sealing.commit_interval,
            on_error=self._sealer_failed,
        )
        self.sealer.start()
        positions = dict(self.writer.positions)
        for sc in cfg.sources:
            if self.once and isinstance(sc, SyslogSource):
                continue  # network sources are not started by --once
            src = build_source(sc, self.clock)
            src.start(self.queue, self.meta, positions)
            self.sources.append(src)
            self.meta.event(
                ev.SOURCE_ADDED,
                f"source {sc.name} ({sc.type}) started",
                source=sc.name,
                type=sc.type,
            )

    def _sealer_failed(self, exc: BaseException) -> None:
        self._failed = exc
        self.flags.stop = True
        self._wake.set()

    def run(self) -> int:
        """Open, run until stopped (or drained with --once), close. Returns exit code."""
        try:
            self.open()
        except BaseException:
            self._abort()
            raise
        if self.once:
            for s in self.sources:
                s.drain()
        else:
            self.notify("READY=1\nSTATUS=sealing")
            self.meta.event(ev.DAEMON_READY, "all sources open; sealing")
            while not self.flags.stop:
                self._wake.wait(1.0)
                self._wake.clear()
                if self.flags.reload:
                    self.flags.reload = False
                    self.meta.event(
                        ev.CONFIG_REJECTED,
                        "reload requested (SIGHUP) but live reload is not supported yet; "
                        "restart to apply a new configuration",
                    )
                if self.flags.rotate:
                    self.flags.rotate = False
                self._check_health()
            self.notify("STOPPING=1")
        return self.shutdown()

    def _check_health(self) -> None:
        if self.sealer is not None:
            self.notify(f"WATCHDOG=1\nSTATUS=sealed {self.sealer.stats.sealed} records")

    def shutdown(self) -> int:
        """Stop reading, seal what was read, checkpoint, close."""
        if self._failed is None:
            self.meta.event(
                ev.DAEMON_STOPPING, "stopping: sealing what was read", signals=self.flags.signals
            )
        for s in self.sources:
            try:
                s.stop()
            except Exception as exc:  # stop the others regardless
                self.meta.event(ev.SOURCE_ERROR, f"stopping {s.name}: {exc}", source=s.name)
        if self._failed is None:
            self.meta.event(ev.DAEMON_STOPPED, "stopped", sealed=self._sealed())
        self.meta.detach()
        if self.sealer is not None:
            self.sealer.stop()
        w = self.writer
        if w is None:
            return 1
        if self._failed is not None or (self.sealer is not None and self.sealer.error):
            w.abandon()  # the next start recovers and re-reads what was not sealed
            err = self._failed or (self.sealer.error if self.sealer else None)
            if isinstance(err, AuditdError):
                raise err
            raise RuntimeError(f"sealer failed: {err!r}") from err
        w.close()
        return 0

    def _sealed(self) -> int:
        return self.sealer.stats.sealed if self.sealer is not None else 0

    def _abort(self) -> None:
        for s in self.sources:
            with contextlib.suppress(Exception):  # best effort while failing to start
                s.stop()
        if self.sealer is not None:
            self.sealer.stop()
        if self.writer is not None:
            self.writer.abandon()


def check_config(loaded: Loaded) -> list[str]:
    """Problems a schema cannot see: sources that overlap, paths that cannot work."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for s in loaded.config.sources:
        if isinstance(s, FileSource):
            for p in s.paths:
                norm = os.path.normpath(p)
                if norm in seen and seen[norm] != s.name:
                    problems.append(
                        f"{loaded.path}: sources {seen[norm]!r} and {s.name!r} both read {p!r}; "
                        "a file must belong to one source"
                    )
                seen[norm] = s.name
    listen: dict[str, str] = {}
    for s in loaded.config.sources:
        if isinstance(s, SyslogSource):
            for url in s.listen:
                if url in listen:
                    problems.append(
                        f"{loaded.path}: sources {listen[url]!r} and {s.name!r} "
                        f"both listen on {url}"
                    )
                listen[url] = s.name
    return problems


def effective(loaded: Loaded) -> dict[str, Any]:
    """The effective configuration, as plain data (for ``config check``)."""
    return loaded.config.model_dump(mode="json")


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


__all__ = ["ConfigError", "Daemon", "check_config", "effective", "notify"]
