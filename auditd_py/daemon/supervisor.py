"""The daemon's lifecycle: open, start sources, run until told, drain, close.

Signal handlers only set flags (:mod:`auditd_py.daemon.signals`); the main loop,
which wakes once a second (or at once when asked), acts on them: stop, reload
(:mod:`~auditd_py.daemon.reload`), rotate; it also runs the requests of the
control socket (``auditd-py rotate``/``reload``), the disk ladder
(:mod:`~auditd_py.daemon.disk`), the clock-jump check and the watchdog
(:mod:`~auditd_py.daemon.health`).

systemd is told ``READY=1`` only once every source is open and the archive is
writable, ``RELOADING=1``/``READY=1`` around a SIGHUP reload, ``STOPPING=1`` at
the end, a one-line ``STATUS=`` every tick, and ``WATCHDOG=1`` only while the
seal loop itself is making progress.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from auditd_py import control
from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.clock import Clock, SystemClock
from auditd_py.config import Config, Loaded, group_id
from auditd_py.contracts import Source
from auditd_py.daemon import disk, limits, signals
from auditd_py.daemon.disk import DiskLadder
from auditd_py.daemon.forwarding import Forwarding
from auditd_py.daemon.health import Health
from auditd_py.daemon.narrator import Narrator
from auditd_py.daemon.queue import BatchQueue
from auditd_py.daemon.rates import Rates
from auditd_py.daemon.reloader import Reloader
from auditd_py.daemon.sealloop import RotationPolicy, SealLoop
from auditd_py.daemon.selfcheck import SelfCheck
from auditd_py.daemon.snapshot import snapshot
from auditd_py.daemon.sourceset import SourceSet
from auditd_py.daemon.sourcewatch import SourceWatch
from auditd_py.daemon.status import ReloadStatus, SelfCheckStatus
from auditd_py.daemon.systemd import DEFAULT_WATCHDOG_S, notify, watchdog_seconds
from auditd_py.errors import AuditdError, DiskFullError, SealLoopError
from auditd_py.forward.runner import Runner
from auditd_py.metalog import MetaLog
from auditd_py.store.compress import Compressor, finish_pending
from auditd_py.store.immutable import Worm
from auditd_py.store.layout import Layout, secure_dirs
from auditd_py.store.reserve import Reserve
from auditd_py.store.retention import Blocked, Retainer, RetentionPolicy, free_space
from auditd_py.store.writer import ArchiveWriter, EpochPolicy

CLOCK_JUMP_NS = 2 * 10**9
"""A wall-clock step (either way) beyond the monotonic clock's that is meta-logged."""


class _LoopEvents:
    """What the seal loop tells (from its thread), turned into words and actions."""

    def __init__(self, d: Daemon) -> None:
        self.d = d

    def failed(self, exc: BaseException) -> None:
        self.d.fail(exc)

    def committed(self) -> None:
        """Read the disk where writes happen: a worse level is acted on at once."""
        ladder = self.d.ladder
        if ladder is not None and ladder.worse():
            ladder.check_now()
            self.d.wake.set()

    def rotated(self, prev: str, reason: str, epoch: int) -> None:
        w = self.d.writer
        assert w is not None and w.segment is not None
        self.d.say.rotated(prev, w.segment, reason, epoch)
        if self.d.compressor is not None:
            self.d.compressor.submit(prev)

    def checkpointed(self, cp: Checkpoint) -> None:
        self.d.say.checkpointed(cp)

    def retired(self, info: dict[str, object]) -> None:
        self.d.say.retired(info)

    def retention_blocked(self, blocked: Blocked) -> None:
        self.d.say.retention_blocked(blocked)

    def disk_full(self, exc: DiskFullError) -> None:
        """A write was refused: the main loop reads the disk at once."""
        if self.d.ladder is not None:
            self.d.ladder.check_now()
        self.d.wake.set()

    def disk_ok(self, seconds: float) -> None:
        self.d.say.disk_ok(seconds)
        if self.d.ladder is not None:
            self.d.ladder.check_now()
        self.d.wake.set()


class Daemon:
    """``auditd-py run``: owns the parts below and the main loop that drives them."""

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
        self.flags = signals.Flags()
        self.wake = threading.Event()
        self.meta = MetaLog()
        self.say = Narrator(self.meta)
        sealing = self.cfg.sealing
        self.queue = BatchQueue(sealing.queue_records, self.clock, sealing.queue_bytes)
        self.sourceset = SourceSet(self.queue, self.meta, self.say, self.clock)
        self.forwarding = Forwarding(self.meta, self.say, self.clock)
        self.writer: ArchiveWriter | None = None
        self.sealer: SealLoop | None = None
        self.compressor: Compressor | None = None
        self.ladder: DiskLadder | None = None
        self.server: Any = None
        self.selfcheck: SelfCheck | None = None
        self.control: control.Control | None = None
        """The control socket (``auditd-py rotate``/``reload``, recorded reads); not --once."""
        self.started = self.clock.monotonic()
        self.stopping = False
        wd = watchdog_seconds(env)
        self.watchdog_usec = int(wd * 1e6) if wd is not None else None
        self.watchdog_s = wd / 2 if wd is not None else DEFAULT_WATCHDOG_S
        """The seal loop's heartbeat must be younger than this for WATCHDOG=1 and /health."""
        self.tick = min(1.0, self.watchdog_s / 2)
        self.health = Health(self.notify, self.say, self.clock, stall_after=self.watchdog_s)
        self.watch = SourceWatch(self.say)
        self.reloader = Reloader(self)
        self.failure: BaseException | None = None
        self._clock_ref = (self.clock.now_ns(), self.clock.monotonic())

    # ------------------------------------------------------------ views for status

    @property
    def sources(self) -> list[Source]:
        return self.sourceset.running

    @property
    def failed_sources(self) -> dict[str, str]:
        return self.sourceset.failed

    @property
    def retired(self) -> dict[str, dict[str, int]]:
        return self.sourceset.retired

    @property
    def forwarders(self) -> list[Runner]:
        return self.forwarding.runners

    @property
    def disk(self) -> disk.Reading | None:
        return self.ladder.reading if self.ladder is not None else None

    @property
    def rates(self) -> Rates:
        return self.health.rates

    @property
    def self_check(self) -> SelfCheckStatus | None:
        return self.selfcheck.status if self.selfcheck is not None else None

    @property
    def reload_status(self) -> ReloadStatus:
        return self.reloader.status

    def install_signals(self) -> None:
        signals.install(self.flags, self.wake)

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        cfg = self.cfg
        layout = Layout.at(cfg.archive.path, cfg.archive.state)
        limits.raise_nofile()  # thousands of watched files: the hard limit, not 1,024
        group = cfg.archive.group
        secure_dirs(layout, group_id(group) if group is not None else None)
        policy = EpochPolicy(cfg.sealing.epoch_interval, cfg.sealing.epoch_records)
        worm = Worm.detect(layout.segments, cfg.segments.immutable)  # never an error
        self.writer = w = ArchiveWriter.open(layout, self.clock, policy, worm=worm)
        self.say.started(
            once=self.once, environment=cfg.environment, archive=str(layout.root), pid=os.getpid()
        )
        self.say.config_loaded(self.loaded.path, self.loaded.digest, [s.name for s in cfg.sources])
        self.say.worm(
            enabled=worm.enabled,
            setting=cfg.segments.immutable,
            reason=worm.reason,
            directory=str(layout.segments),
        )
        self.meta.attach(self.queue)
        # an interrupted compression: before the seal loop runs (it may rotate at once)
        closed = finish_pending(layout, w.segment, worm)
        reserve = Reserve(layout.root)
        reserve.ensure(free_space(layout.root)[0])
        self.sealer = self._seal_loop(layout, reserve)
        self.ladder = DiskLadder(
            cfg.disk, cfg.archive.path, self.sealer, self.say, self.clock, reserve
        )
        self.sealer.start()
        if not self.once:
            self.forwarding.start(cfg, layout, w)
        if cfg.segments.compress != "none":
            self.compressor = Compressor(
                layout,
                cfg.segments.compress,
                self.say.compressed,
                self.say.compress_failed,
                worm,
                gate=self.sealer.io_gate,  # its syncs and deletions stay out of rotations
            )
            self.compressor.start()
            for name in closed:
                self.compressor.submit(name)
        self.sourceset.start_all(cfg.sources, dict(w.positions), once=self.once)
        if cfg.self_check.enabled and not self.once:
            self.selfcheck = SelfCheck(
                layout.root, cfg.self_check, lambda: w.segment, self.say, self.clock
            )
            self.selfcheck.start()
        if cfg.metrics is not None and not self.once:
            from auditd_py.daemon import observe  # noqa: PLC0415

            self.server = observe.serve(lambda: snapshot(self), cfg.metrics.listen)
            self.say.listening(self.server.url)
        if not self.once:  # last: nothing after it can fail and leave it running
            self.control = control.serve(layout.root, self.meta, self.wake)

    def _seal_loop(self, layout: Layout, reserve: Reserve) -> SealLoop:
        assert self.writer is not None
        seg, ret = self.cfg.segments, self.cfg.retention
        return SealLoop(
            self.writer,
            self.queue,
            _LoopEvents(self),
            commit_interval_ns=self.cfg.sealing.commit_interval,
            rotation=RotationPolicy(seg.max_bytes, seg.max_age, seg.max_epochs),
            retainer=Retainer(
                layout,
                RetentionPolicy(
                    ret.max_age, ret.max_total_bytes, ret.max_segments, None, ret.keep_forever
                ),
                min_free=ret.min_free.of if ret.min_free is not None else None,
                busy=lambda name: self.compressor is not None and not self.compressor.release(name),
                floor=self.forwarding.floor,
            ),
            retention_interval_ns=ret.check_interval,
            reserve=reserve,
            clock=self.clock,
        )

    def fail(self, exc: BaseException) -> None:
        """The seal loop (or a rotation) failed: the writer is unusable; stop."""
        self.failure = exc
        self.flags.stop = True
        self.wake.set()

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
            return self.shutdown()
        assert self.sealer is not None
        self.health.sample(self.sealer)
        self.notify(f"READY=1\nSTATUS={self.status_line()}")
        self.say.ready()
        while not self.flags.stop:
            self.wake.wait(self.tick)
            self.wake.clear()
            self.turn()
        self.stopping = True
        self.notify("STOPPING=1\nSTATUS=stopping: sealing what was read")
        return self.shutdown()

    def turn(self) -> None:
        """One turn of the main loop: what signals and the control socket asked, then checks."""
        if self.flags.reload and not self.flags.stop:
            self.flags.reload = False
            self.reloader.reload()
        if self.flags.rotate and not self.flags.stop:
            self.flags.rotate = False
            self.rotate()
        if self.control is not None and not self.flags.stop:
            self.control.run_pending(self.rotate, lambda: self.reloader.reload(notify=False))
        self.check()

    def check(self) -> None:
        """The disk ladder, the wall clock and the seal loop's heartbeat."""
        if self.ladder is not None and not self.once and self.ladder.check():
            self.flags.stop = True
        self._check_clock()
        self.watch.check(self.sources)
        if self.sealer is not None:
            self.health.tick(self.sealer, self.status_line())

    def status_line(self) -> str:
        """systemd's STATUS= line (from a snapshot that skips listing the segment files)."""
        return snapshot(self, archive=False).status_line()

    def _check_clock(self) -> None:
        """Meta-log the wall clock jumping (backwards, or forward beyond the tick)."""
        wall, mono = self.clock.now_ns(), self.clock.monotonic()
        w0, m0 = self._clock_ref
        self._clock_ref = (wall, mono)
        skew = (wall - w0) - int((mono - m0) * 1e9)
        if abs(skew) >= CLOCK_JUMP_NS:
            self.say.clock_jump(skew)

    def rotate(self, reason: str = "SIGUSR1") -> control.Rotated | None:
        """End the epoch and continue in a new segment (None if the writer failed)."""
        sealer, w = self.sealer, self.writer
        if sealer is None or w is None:
            return None
        try:
            with sealer.lock:
                prev = w.segment
                sealer.rotate(reason)  # told and compressed by _LoopEvents.rotated
                return control.Rotated(prev, w.segment, sealer.stats.last_checkpoint_epoch)
        except BaseException as exc:  # the writer is unusable: stop as for a loop failure
            self.fail(exc)
            return None

    # ------------------------------------------------------------ stopping

    def shutdown(self) -> int:
        """Stop reading, seal what was read, checkpoint, close."""
        self.stopping = True
        self._stop_services()
        if self.failure is None:
            self.say.stopping(self.flags.signals)
        self.sourceset.stop_all()
        if self.failure is None:
            self.say.stopped(self.sealer.stats.sealed if self.sealer is not None else 0)
        self.meta.detach()
        if self.sealer is not None:
            self.sealer.stop()
        w = self.writer
        if w is None:
            return 1
        err = self.failure or (self.sealer.error if self.sealer is not None else None)
        if err is not None:
            self.forwarding.stop()
            w.abandon()  # the next start recovers and re-reads what was not sealed
            if isinstance(err, AuditdError):
                raise err
            raise SealLoopError(f"sealer failed: {err!r}") from err
        if self.ladder is not None:
            self.ladder.runner.stop()
        try:
            w.close()
            self.forwarding.drain_and_stop()
        except DiskFullError as exc:
            held = w.unwritten
            w.abandon()  # as a crash: file and journald sources re-read what was not written
            self.say.stopped_disk_full(held, exc.where.get("file"))
            return disk.EXIT_UNWRITTEN
        halted = self.ladder is not None and self.ladder.halted is not None
        return disk.EXIT_HALTED if halted else 0

    def _stop_services(self) -> None:
        if self.control is not None:
            self.control.stop()  # a request still waiting is answered "stopping"
        if self.server is not None:
            self.server.stop()
        if self.compressor is not None:
            self.compressor.stop()  # one under way is abandoned; the next start redoes it
        if self.selfcheck is not None:
            self.selfcheck.stop()  # a check under way is ended: it only reads

    def _abort(self) -> None:
        """Failing to start: release everything, best effort."""
        with contextlib.suppress(Exception):  # already failing: the original error is raised
            self._stop_services()
        self.sourceset.stop_all(quiet=True)
        self.forwarding.stop()
        if self.sealer is not None:
            self.sealer.stop()
        if self.writer is not None:
            self.writer.abandon()
