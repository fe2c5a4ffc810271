"""The daemon's lifecycle: open, start sources, run until told, drain, close.

Signal handlers only set flags; the main loop (which wakes once a second) acts
on them:

* SIGTERM/SIGINT: stop reading, seal what was read, checkpoint, exit;
* SIGHUP: re-read the configuration file and apply its source changes (the
  archive, state and sealing settings, and the metrics endpoint, need a
  restart); an invalid file changes nothing and is meta-logged as
  ``config.rejected``;
* SIGUSR1: end the epoch and continue in a new segment.

The control socket (:mod:`auditd_py.control`, ``ARCHIVE/.control.sock``) asks
for the same rotation (``auditd-py rotate``), also run by the main loop, and
seals the reads that ``verify``, ``show`` and ``prove`` announce.

systemd is told ``READY=1`` only once every source is open and the archive is
writable, ``RELOADING=1``/``READY=1`` around a reload, ``STOPPING=1`` at the
end, a one-line ``STATUS=`` every tick, and ``WATCHDOG=1`` only while the
sealing loop itself is making progress: a stuck sealer is restarted by
systemd's watchdog, not kept alive by a healthy main loop.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from auditd_py import config, control, diskwatch, early
from auditd_py import events as ev
from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.clock import Clock, SystemClock
from auditd_py.config import (
    Config,
    FileSource,
    JournaldSource,
    Loaded,
    SyslogForward,
    SyslogSource,
)
from auditd_py.contracts import Forwarder, Source
from auditd_py.errors import AuditdError, ConfigError, DiskFullError
from auditd_py.forward.base import ArchiveInfo
from auditd_py.forward.runner import Runner
from auditd_py.forward.syslog import SyslogForwarder
from auditd_py.metalog import MetaLog
from auditd_py.pipeline import Barrier, BatchQueue, RotationPolicy, Sealer
from auditd_py.store.compress import Compressed, Compressor, finish_pending
from auditd_py.store.immutable import Worm
from auditd_py.store.layout import Layout
from auditd_py.store.reserve import Reserve
from auditd_py.store.retention import Blocked, Retainer, RetentionPolicy, free_space
from auditd_py.store.writer import ArchiveWriter, EpochPolicy

SourceSettings = FileSource | SyslogSource | JournaldSource
COMPRESS_GRACE_NS = 60 * 10**9
"""How long the S3 forwarder waits for a closed segment's compressed file (~4x smaller)."""
FORWARD_DRAIN_S = 5.0
"""At shutdown, how long forwarders may take to send the last records."""
CLOCK_JUMP_NS = 2 * 10**9
"""A wall-clock step (either way) beyond the monotonic clock's that is meta-logged."""
NOTIFY_TIMEOUT = 2.0
DEFAULT_WATCHDOG_S = 10.0
"""How fresh the sealer's heartbeat must be for ``WATCHDOG=1`` without $WATCHDOG_USEC."""


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


def _sd_notify() -> Callable[[str], bool] | None:
    """systemd-python's ``systemd.daemon.notify``, if installed.

    Imported by name: the repository's ``systemd/`` folder of unit files would
    otherwise be taken for the package by mypy.
    """
    try:
        mod: Any = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    fn = getattr(mod, "notify", None)
    return fn if callable(fn) else None


_SD_NOTIFY = _sd_notify()


def notify_socket(state: str) -> bool:
    """sd_notify(3) by hand over $NOTIFY_SOCKET (the fallback); False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(NOTIFY_TIMEOUT)  # a full queue must not hang the main loop forever
            s.sendto(state.encode(), addr)
    except OSError:
        return False
    return True


def notify(state: str) -> bool:
    """sd_notify(3): systemd-python's when importable, else :func:`notify_socket`."""
    if _SD_NOTIFY is not None:
        try:
            return bool(_SD_NOTIFY(state))
        except (OSError, ValueError):
            return False
    return notify_socket(state)


def watchdog_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog period for this process ($WATCHDOG_USEC), or None."""
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were forked or exec'd by it)
    return int(usec) / 1e6


RATE_WINDOW = 10.0
"""Seconds over which records/s are computed (from samples taken by the main loop)."""


class Rates:
    """Records sealed per second over a sliding window, sampled once per main-loop tick."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int, dict[str, int]]] = deque()
        self._lock = threading.Lock()

    def sample(self, now: float, total: int, by_source: dict[str, int]) -> None:
        with self._lock:
            self._samples.append((now, total, dict(by_source)))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()

    def rates(self) -> tuple[float | None, dict[str, float]]:
        """(records/s in all, per source); None before two samples exist."""
        with self._lock:
            if len(self._samples) < 2:
                return None, {}
            (t0, n0, by0), (t1, n1, by1) = self._samples[0], self._samples[-1]
        dt = t1 - t0
        if dt <= 0:
            return None, {}
        return (n1 - n0) / dt, {k: (v - by0.get(k, 0)) / dt for k, v in by1.items()}


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
        env: Mapping[str, str] | None = None,
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
        """Running sources, in configuration order (reloads append)."""
        self.failed_sources: dict[str, str] = {}
        """Configured sources that a reload could not start, with the reason."""
        self.retired: dict[str, dict[str, int]] = {}
        """Counters (parse errors, drops) of source instances stopped by reloads."""
        self.writer: ArchiveWriter | None = None
        self.sealer: Sealer | None = None
        self.compressor: Compressor | None = None
        self.server: Any = None
        self.control: control.Control | None = None
        """The control socket (``auditd-py rotate``, recorded reads); not with --once."""
        self.rates = Rates()
        self.started = time.monotonic()
        self.stopping = False
        wd = watchdog_seconds(env)
        self.watchdog_usec = int(wd * 1e6) if wd is not None else None
        self.watchdog_s = wd / 2 if wd is not None else DEFAULT_WATCHDOG_S
        """The sealer's heartbeat must be younger than this for WATCHDOG=1 and /health."""
        self.tick = min(1.0, self.watchdog_s / 2)
        self._stalled_since: float | None = None
        self._failed: BaseException | None = None
        self._wake = threading.Event()
        self.reserve: Reserve | None = None
        self.disk: diskwatch.Reading | None = None
        self._disk_checked = 0.0
        self._disk_suspended = False
        self._halted: str | None = None
        self._runner = diskwatch.Runner()
        self.forwarders: list[Runner] = []
        self._clock_ref = (time.time_ns(), time.monotonic_ns())

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
        for caught in early.take():  # caught while starting (auditd_py.early)
            on(caught, None)

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        cfg = self.cfg
        layout = Layout.at(cfg.archive.path, cfg.archive.state)
        policy = EpochPolicy(cfg.sealing.epoch_interval, cfg.sealing.epoch_records)
        worm = Worm.detect(layout.segments, cfg.segments.immutable)  # never an error
        self.writer = ArchiveWriter.open(layout, self.clock, policy, worm=worm)
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
        self._worm_event(worm, layout)
        self.meta.attach(self.queue)
        seg = cfg.segments
        # an interrupted compression: before the sealer runs (it may rotate at once)
        closed = finish_pending(layout, self.writer.segment, worm)
        ret = cfg.retention
        min_free = ret.min_free
        self.reserve = Reserve(layout.root)
        self.reserve.ensure(free_space(layout.root)[0])
        self.sealer = Sealer(
            self.writer,
            self.queue,
            commit_interval_ns=cfg.sealing.commit_interval,
            on_error=self._sealer_failed,
            rotation=RotationPolicy(seg.max_bytes, seg.max_age, seg.max_epochs),
            on_rotated=self._rotated,
            retainer=Retainer(
                layout,
                RetentionPolicy(
                    ret.max_age, ret.max_total_bytes, ret.max_segments, None, ret.keep_forever
                ),
                min_free=min_free.of if min_free is not None else None,
                busy=self._compressing,
                floor=self._forward_floor,
            ),
            retention_interval_ns=ret.check_interval,
            on_retired=self._retired,
            on_retention_blocked=self._retention_blocked,
            reserve=self.reserve,
            on_disk_full=self._disk_full,
            on_disk_ok=self._disk_ok,
            on_checkpoint=self._checkpointed,
        )
        self.sealer.start()
        if not self.once:
            self._start_forwarders(layout)
        if seg.compress != "none":
            self.compressor = Compressor(
                layout,
                seg.compress,
                self._compressed,
                self._compress_failed,
                worm,
                gate=self.sealer.io_gate,  # its syncs and deletions stay out of rotations
            )
            self.compressor.start()
            for name in closed:
                self.compressor.submit(name)
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
        if cfg.metrics is not None and not self.once:
            from auditd_py import observe  # noqa: PLC0415

            self.server = observe.serve(self, cfg.metrics.listen)
            self.meta.event(
                ev.METRICS_LISTENING,
                f"metrics and health on {self.server.url}",
                url=self.server.url,
            )
        if not self.once:  # last: nothing after it can fail and leave it running
            self.control = control.serve(layout.root, self.meta, self._wake)

    def _worm_event(self, worm: Worm, layout: Layout) -> None:
        """Whether segments are append-only/immutable this run (a notice, never an error)."""
        where = str(layout.segments)
        if worm.enabled:
            self.meta.event(
                ev.WORM_ENABLED,
                f"segments in {where} are append-only while open and immutable once closed",
                directory=where,
            )
        elif self.cfg.segments.immutable == "off":
            self.meta.event(
                ev.WORM_DISABLED,
                "segments are not made append-only/immutable (segments.immutable: off)",
                directory=where,
            )
        else:
            self.meta.event(
                ev.WORM_UNAVAILABLE,
                f"segments cannot be made append-only/immutable: {worm.reason}; "
                "sealing without inode flags",
                directory=where,
                reason=worm.reason,
            )

    def _rotated(self, prev: str, reason: str, epoch: int) -> None:
        """From the sealer thread, after a rotation: log it, compress the closed segment."""
        w = self.writer
        assert w is not None
        self.meta.log_only(
            ev.SEGMENT_ROTATED,
            f"segment {prev} closed ({reason}) with checkpoint {epoch}; continuing in {w.segment}",
            prev_segment=prev,
            segment=w.segment,
            checkpoint=epoch,
            reason=reason,
        )
        if self.compressor is not None:
            self.compressor.submit(prev)

    def _compressed(self, c: Compressed) -> None:
        self.meta.event(
            ev.SEGMENT_COMPRESSED,
            f"segment {c.segment} compressed ({c.method}): {c.plain_bytes} → "
            f"{c.compressed_bytes} bytes ({100 * c.ratio:.1f}%)",
            segment=c.segment,
            file=c.file,
            method=c.method,
            plain_bytes=c.plain_bytes,
            compressed_bytes=c.compressed_bytes,
            ratio_permille=round(1000 * c.ratio),
            duration_ms=round(c.seconds * 1000),
        )

    def _checkpointed(self, cp: Checkpoint) -> None:
        """From the sealer thread: an epoch ended; sealed in order in the next epoch."""
        self.meta.event(
            ev.CHECKPOINT_WRITTEN,
            f"checkpoint {cp.epoch} ({cp.reason}) seals seq {cp.seq_first}..{cp.seq_end - 1}",
            epoch=cp.epoch,
            reason=cp.reason,
            seq_first=cp.seq_first,
            seq_end=cp.seq_end,
            digest=cp.digest.hex(),
        )
        self.meta.log_only(
            ev.EPOCH_ADVANCED,
            f"epoch {cp.epoch + 1} started; the keys of epoch {cp.epoch} are erased",
            epoch=cp.epoch + 1,
        )

    # ------------------------------------------------------------ forwarding

    def _start_forwarders(self, layout: Layout) -> None:
        w = self.writer
        assert w is not None
        info = ArchiveInfo(
            w.identity.archive, w.identity.host, self.cfg.environment, layout.read_identity()
        )
        for fc in self.cfg.forward:
            fwd: Forwarder
            if isinstance(fc, SyslogForward):
                fwd = SyslogForwarder(
                    fc,
                    layout,
                    info,
                    layout.state,
                    durable=lambda: w.durable,
                    head=lambda: w.sealer.seq,
                    meta=self.meta,
                )
            else:
                from auditd_py.forward.s3 import S3Forwarder  # noqa: PLC0415 - boto3 is heavy

                grace = COMPRESS_GRACE_NS if self.cfg.segments.compress != "none" else 0
                fwd = S3Forwarder(
                    fc, layout, info, layout.state, self.clock, self.meta, compress_grace_ns=grace
                )
            runner = Runner(fwd, self.meta, retry_max_s=fc.retry_max / 1e9)
            self.forwarders.append(runner)
            runner.start()
            self.meta.event(
                ev.FORWARD_STARTED,
                f"forwarding to {fc.name} ({fc.type})",
                target=fc.name,
                kind=fc.type,
            )

    def _stop_forwarders(self, grace: float = FORWARD_DRAIN_S) -> None:
        """Let each forwarder send what the final checkpoint sealed, then stop it.

        What is not acknowledged within ``grace`` (a collector that is down) is
        sent by the next start, from the persisted cursor.
        """
        deadline = time.monotonic() + grace
        for r in self.forwarders:
            r.drain(max(0.0, deadline - time.monotonic()))
        for r in self.forwarders:
            r.stop()

    def _forward_floor(self) -> int | None:
        """The lowest seq some forwarder has not delivered: retention keeps it."""
        floors = [f for r in self.forwarders if (f := r.fwd.floor()) is not None]
        return min(floors) if floors else None

    # ------------------------------------------------------------ retention and disk

    def _compressing(self, name: str) -> bool:
        c = self.compressor
        return c is not None and name in c.pending

    def _retired(self, info: dict[str, object]) -> None:
        """From the sealer thread: the writer sealed ``retention.deleted`` itself."""
        self.meta.log_only(
            ev.RETENTION_DELETED,
            f"segment {info['segment']} deleted by retention ({info['policy']}: "
            f"{info['reason']}); seq {info['seq_first']}..{int(str(info['seq_end'])) - 1}",
            **info,
        )

    def _retention_blocked(self, b: Blocked) -> None:
        self.meta.event(
            ev.RETENTION_BLOCKED,
            f"retention ({b.policy}) keeps {b.name} for now: {b.reason}",
            segment=b.name,
            policy=b.policy,
            reason=b.reason,
        )

    def _disk_full(self, exc: DiskFullError) -> None:
        """From the sealer thread: a write was refused; the main loop acts at once."""
        self._disk_checked = 0.0
        self._wake.set()

    def _disk_ok(self, seconds: float) -> None:
        self.meta.event(
            ev.DISK_OK,
            f"writes succeed again after {seconds:.1f}s; everything held in memory is sealed",
            held_ms=int(seconds * 1000),
        )
        self._disk_checked = 0.0
        self._wake.set()

    def _check_disk(self) -> None:
        """Every ``disk.check_interval``: the level, its event and action (edge-triggered)."""
        sealer, cfg = self.sealer, self.cfg.disk
        if sealer is None or self.once:
            return
        now = time.monotonic()
        for argv, rc in self._runner.reap():
            self.meta.event(
                ev.DISK_ACTION, f"disk action command {argv[0]} exited {rc}", argv=argv, status=rc
            )
        if now - self._disk_checked < cfg.check_interval / 1e9:
            return
        self._disk_checked = now
        refused = sealer.disk_full_since is not None
        r = diskwatch.read(self.cfg.archive.path, cfg, writes_refused=refused)
        old = self.disk.level if self.disk is not None else diskwatch.Level.OK
        self.disk = r
        if r.level != old:
            self._disk_changed(old, r)
        action = diskwatch.action_for(r.level, cfg)
        if action == "rotate":  # keeps deleting the oldest while the level stays bad
            sealer.request_retention(need_free=r.space_left)
        if r.level <= diskwatch.Level.LOW:
            if self._disk_suspended:
                self._disk_suspended = False
                sealer.suspended.clear()
                self.meta.event(
                    ev.DISK_ACTION,
                    f"resumed reading: {r.free} bytes free (admin_space_left {r.admin_space_left})",
                    action="resume",
                    free=r.free,
                )
            if self.reserve is not None:
                self.reserve.ensure(r.free, r.space_left)

    def _disk_changed(self, old: diskwatch.Level, r: diskwatch.Reading) -> None:
        cfg = self.cfg.disk
        L = diskwatch.Level
        facts = {
            "free": r.free,
            "total": r.total,
            "space_left": r.space_left,
            "admin_space_left": r.admin_space_left,
        }
        if r.level == L.OK:
            self.meta.event(ev.DISK_OK, f"disk space is back: {r.free} bytes free", **facts)
            return
        if r.level < old:
            self.meta.event(
                ev.DISK_OK,
                f"disk level eased to {r.level.name.lower()}: {r.free} bytes free",
                **facts,
            )
            return
        action = diskwatch.action_for(r.level, cfg)
        name, text = {
            L.LOW: (ev.DISK_SPACE_LEFT, f"below space_left ({cfg.space_left})"),
            L.ADMIN: (ev.DISK_ADMIN_SPACE_LEFT, f"below admin_space_left ({cfg.admin_space_left})"),
            L.FULL: (ev.DISK_FULL, "the archive's file system is full"),
        }[r.level]
        self.meta.event(
            name,
            f"{text}: {r.free} of {r.total} bytes free" + (f"; action {action}" if action else ""),
            action=action,
            **facts,
        )
        if action == "suspend" and not self._disk_suspended:
            self._disk_suspended = True
            assert self.sealer is not None
            self.sealer.suspended.set()
            self.meta.event(
                ev.DISK_ACTION,
                "suspended reading: sources wait (file and journald lose nothing) until "
                "space is back above admin_space_left",
                action="suspend",
            )
        elif action == "halt":
            self._halted = f"{name}: {text}"
            self.meta.event(ev.DISK_ACTION, f"halting: {text}", action="halt")
            self.flags.stop = True
            self._wake.set()
        elif action == "exec":
            assert cfg.exec is not None
            try:
                child = self._runner.start(
                    list(cfg.exec),
                    {
                        "AUDITD_PY_DISK_LEVEL": r.level.name.lower(),
                        "AUDITD_PY_DISK_FREE": str(r.free),
                        "AUDITD_PY_DISK_TOTAL": str(r.total),
                        "AUDITD_PY_ARCHIVE": str(self.cfg.archive.path),
                    },
                )
            except OSError as exc:
                self.meta.event(
                    ev.ERROR, f"disk action command {cfg.exec[0]} failed to start: {exc}"
                )
            else:
                self.meta.event(
                    ev.DISK_ACTION,
                    f"ran {cfg.exec[0]} (pid {child.pid})",
                    action="exec",
                    argv=list(cfg.exec),
                    pid=child.pid,
                )

    def _check_clock(self) -> None:
        """Meta-log the wall clock jumping (backwards, or forward beyond the tick)."""
        wall, mono = time.time_ns(), time.monotonic_ns()
        w0, m0 = self._clock_ref
        self._clock_ref = (wall, mono)
        skew = (wall - w0) - (mono - m0)
        if abs(skew) >= CLOCK_JUMP_NS:
            self.meta.event(
                ev.CLOCK_JUMP,
                f"the wall clock jumped {'back' if skew < 0 else 'forward'} by "
                f"{abs(skew) / 1e9:.3f}s; sealing goes on (record times are as the clock says)",
                jump_ns=skew,
            )

    def _compress_failed(self, name: str, exc: BaseException) -> None:
        self.meta.event(
            ev.ERROR, f"compressing {name} failed (kept uncompressed): {exc!r}", segment=name
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
            self._sample()
            self.notify(f"READY=1\nSTATUS={self.status_line()}")
            self.meta.event(ev.DAEMON_READY, "all sources open; sealing")
            while not self.flags.stop:
                self._wake.wait(self.tick)
                self._wake.clear()
                if self.flags.reload and not self.flags.stop:
                    self.flags.reload = False
                    self.reload()
                if self.flags.rotate and not self.flags.stop:
                    self.flags.rotate = False
                    self.rotate()
                if self.control is not None and not self.flags.stop:
                    self.control.run_pending(self.rotate, lambda: self.reload(notify=False))
                self._check_disk()
                self._check_clock()
                self._check_health()
            self.stopping = True
            self.notify("STOPPING=1\nSTATUS=stopping: sealing what was read")
        return self.shutdown()

    # ------------------------------------------------------------ status and watchdog

    def _sample(self) -> None:
        if self.sealer is not None:
            st = self.sealer.stats
            self.rates.sample(time.monotonic(), st.sealed, st.sealed_by_source)

    def status_line(self) -> str:
        """One line for systemd's STATUS=: rate, last checkpoint, queue depth."""
        rate, _ = self.rates.rates()
        parts = [f"{rate:.1f} records/s" if rate is not None else "starting"]
        w = self.writer
        if w is not None and w.sealer.epoch > 0:
            age = max(0, self.clock.now_ns() - w.sealer.epoch_start) / 1e9
            parts.append(f"last checkpoint {w.sealer.epoch - 1} {age:.0f}s ago")
        else:
            parts.append("no checkpoint yet")
        parts.append(f"queue {self.queue.depth()}")
        for r in self.forwarders:
            down = r.stats.failing_since
            lag = r.fwd.lag().get("records", 0)
            parts.append(
                f"{r.fwd.name}: lag {lag}"
                + (f", down {time.monotonic() - down:.0f}s" if down is not None else "")
            )
        if self.failed_sources:
            parts.append("not running: " + ", ".join(sorted(self.failed_sources)))
        return ", ".join(parts)

    def _check_health(self) -> None:
        """Every tick: sample rates; WATCHDOG=1 only if the sealing loop is alive."""
        sealer = self.sealer
        if sealer is None:
            return
        self._sample()
        age = time.monotonic() - sealer.heartbeat
        if age < self.watchdog_s:
            if self._stalled_since is not None:
                self.meta.event(
                    ev.SEALER_RESUMED,
                    f"sealer resumed after {time.monotonic() - self._stalled_since:.1f}s",
                    stalled_ms=int((time.monotonic() - self._stalled_since) * 1000),
                )
                self._stalled_since = None
            self.notify(f"WATCHDOG=1\nSTATUS={self.status_line()}")
            return
        if self._stalled_since is None:
            self._stalled_since = sealer.heartbeat
            self.meta.event(
                ev.SEALER_STALLED,
                f"sealer has made no progress for {age:.1f}s; withholding the watchdog ping",
                threshold_ms=int(self.watchdog_s * 1000),
            )
        self.notify(f"STATUS=sealer stalled for {age:.0f}s; {self.status_line()}")

    # ------------------------------------------------------------ SIGUSR1, `auditd-py rotate`

    def rotate(self, reason: str = "SIGUSR1") -> control.Rotated | None:
        """End the epoch and continue in a new segment (None if the writer failed)."""
        sealer, w = self.sealer, self.writer
        if sealer is None or w is None:
            return None
        try:
            with sealer.lock:
                prev = w.segment
                sealer.rotate(reason)  # logged and compressed by _rotated
                return control.Rotated(prev, w.segment, sealer.stats.last_checkpoint_epoch)
        except BaseException as exc:  # the writer is unusable: stop as for a sealer failure
            self._sealer_failed(exc)
            return None

    # ------------------------------------------------------------ SIGHUP

    def reload(self, *, notify: bool = True) -> control.Reloaded:
        """Re-read the config file (SIGHUP, or ``auditd-py reload`` with ``notify=False``).

        ``auditd-py reload`` is the unit's ExecReload=: systemd is already in its
        reloading state until that command exits, so no RELOADING=1/READY=1 is sent.
        """
        if notify:
            self.notify(
                f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}\n"
                "STATUS=reloading the configuration"
            )
        try:
            return self._reload()
        except Exception as exc:  # a bug must not take the running daemon down
            self.meta.event(ev.ERROR, f"reload failed: {exc!r}", path=self.loaded.path)
            return control.Reloaded(False, f"reload failed: {exc!r}")
        finally:
            self.notify(("READY=1\n" if notify else "") + f"STATUS={self.status_line()}")

    def _reject(self, reason: str, path: str) -> control.Reloaded:
        message = f"configuration {path} rejected; the running configuration stays: {reason}"
        self.meta.event(ev.CONFIG_REJECTED, message, path=path, error=reason)
        return control.Reloaded(False, message)

    def _reload(self) -> control.Reloaded:
        path = self.loaded.path
        try:
            new = config.load(path)
            problems = check_config(new)
            if problems:
                raise ConfigError("\n".join(problems))
        except ConfigError as exc:  # its message names the file and line already
            return self._reject(exc.message if exc.message.startswith(path) else str(exc), path)
        fixed = fixed_changes(self.cfg, new.config)
        if fixed:
            return self._reject("; ".join(fixed), path)
        old = {s.name: s for s in self.cfg.sources}
        want = {s.name: s for s in new.config.sources}
        removed = [n for n in old if n not in want]
        added = [n for n in want if n not in old]
        changed = [n for n in want if n in old and want[n] != old[n]]
        retried = [n for n in want if n in old and n not in changed and n in self.failed_sources]
        stopped = False
        for n in removed + changed:
            self.failed_sources.pop(n, None)
            src = next((s for s in self.sources if s.name == n), None)
            if src is None:
                continue
            self.sources.remove(src)
            self._stop_source(src)
            stopped = True
            if n in removed:
                self.meta.event(
                    ev.SOURCE_REMOVED,
                    f"source {n} ({old[n].type}) stopped: removed from the configuration",
                    source=n,
                    type=old[n].type,
                )
        positions = self._positions(wait=stopped)
        if positions is None:  # stopping, or the sealer failed: no new source can start
            return control.Reloaded(False, "the daemon is stopping; nothing was reloaded")
        failed: list[str] = []
        for n in changed + added + retried:
            sc = want[n]
            if self.once and isinstance(sc, SyslogSource):
                continue
            fresh: Source | None = None
            try:
                fresh = build_source(sc, self.clock)
                fresh.start(self.queue, self.meta, positions)
            except Exception as exc:
                if fresh is not None:
                    with contextlib.suppress(Exception):  # release what it opened
                        fresh.stop()
                reason = str(exc) if isinstance(exc, AuditdError) else f"{exc!r}"
                self.failed_sources[n] = reason
                failed.append(n)
                self.meta.event(
                    ev.SOURCE_ERROR, f"source {n} ({sc.type}) cannot start: {reason}", source=n
                )
                continue
            self.failed_sources.pop(n, None)
            self.sources.append(fresh)
            if n in added:
                what, name = "started", ev.SOURCE_ADDED
            else:
                what, name = "restarted with its new settings", ev.SOURCE_RESTARTED
            self.meta.event(name, f"source {n} ({sc.type}) {what}", source=n, type=sc.type)
        self.cfg, self.loaded = new.config, new
        self.meta.event(
            ev.CONFIG_LOADED,
            f"configuration {path} reloaded",
            path=path,
            config_hash=new.digest,
            sources=list(want),
            added=added,
            removed=removed,
            changed=changed,
            retried=retried,
            failed=failed,
        )
        if failed:
            return control.Reloaded(
                False,
                f"configuration {path} applied, but source(s) {', '.join(failed)} cannot start: "
                + "; ".join(f"{n}: {self.failed_sources[n]}" for n in failed),
            )
        return control.Reloaded(
            True,
            f"configuration {path} reloaded (added {added or 'none'}, removed {removed or 'none'},"
            f" changed {changed or 'none'})",
        )

    def _stop_source(self, src: Source) -> None:
        """Stop one source instance (its complete lines go to the queue) and keep its counts."""
        try:
            src.stop()
        except Exception as exc:
            self.meta.event(ev.SOURCE_ERROR, f"stopping {src.name}: {exc}", source=src.name)
        with contextlib.suppress(Exception):
            s = src.stats()
            acc = self.retired.setdefault(src.name, {"parse_errors": 0, "dropped": 0})
            acc["parse_errors"] += int(s.get("parse_errors", 0))
            acc["dropped"] += int(s.get("dropped", 0)) + int(s.get("kernel_drops", 0))

    def _positions(self, *, wait: bool) -> dict[str, Any] | None:
        """The writer's positions, once everything queued so far is sealed (if ``wait``).

        A stopped source's last lines are in the queue; a new instance must start
        from the position after them, or it would read them again.
        """
        sealer, w = self.sealer, self.writer
        assert sealer is not None and w is not None
        if wait:
            barrier = Barrier(threading.Event())
            self.queue.put_barrier(barrier)
            while not barrier.done.wait(self.tick):
                # A stuck sealer also stops the watchdog: systemd restarts us, and
                # the next start resumes every source from its sealed position.
                if self.flags.stop or self._failed is not None or not sealer.alive():
                    return None
                self._check_disk()  # a suspended sealer is resumed from here too
                self._check_health()
        with sealer.lock:
            return dict(w.positions)

    # ------------------------------------------------------------ stopping

    def shutdown(self) -> int:
        """Stop reading, seal what was read, checkpoint, close."""
        self.stopping = True
        if self.control is not None:
            self.control.stop()  # a rotation still asked for is answered "stopping"
        if self.server is not None:
            self.server.stop()
        if self.compressor is not None:
            self.compressor.stop()  # one under way is abandoned; the next start redoes it
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
            for r in self.forwarders:
                r.stop()
            w.abandon()  # the next start recovers and re-reads what was not sealed
            err = self._failed or (self.sealer.error if self.sealer else None)
            if isinstance(err, AuditdError):
                raise err
            raise RuntimeError(f"sealer failed: {err!r}") from err
        self._runner.stop()
        try:
            w.close()
            self._stop_forwarders()
        except DiskFullError as exc:
            held = w.unwritten
            w.abandon()  # as a crash: file and journald sources re-read what was not written
            self.meta.log_only(
                ev.DISK_FULL,
                f"stopped with {held} bytes of sealed records unwritten (disk full): "
                "file and journald sources read them again on the next start",
                unwritten=held,
                file=exc.where.get("file"),
            )
            return diskwatch.EXIT_HALTED
        return diskwatch.EXIT_HALTED if self._halted is not None else 0

    def _sealed(self) -> int:
        return self.sealer.stats.sealed if self.sealer is not None else 0

    def _abort(self) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                self.control.stop()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
        if self.compressor is not None:
            self.compressor.stop()
        for s in self.sources:
            with contextlib.suppress(Exception):  # best effort while failing to start
                s.stop()
        for r in self.forwarders:
            r.stop()
        if self.sealer is not None:
            self.sealer.stop()
        if self.writer is not None:
            self.writer.abandon()


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
    return out


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


__all__ = [
    "ConfigError",
    "Daemon",
    "Rates",
    "check_config",
    "effective",
    "fixed_changes",
    "notify",
    "notify_socket",
    "watchdog_seconds",
]
