"""The forward targets of a running daemon: built from the config, started, drained, stopped."""

from __future__ import annotations

from auditd_py.clock import Clock
from auditd_py.config import Config, SyslogForward
from auditd_py.contracts import Forwarder, Meta
from auditd_py.daemon.narrator import Narrator
from auditd_py.forward.base import ArchiveInfo
from auditd_py.forward.runner import Runner
from auditd_py.forward.syslog import SyslogForwarder
from auditd_py.store.layout import Layout
from auditd_py.store.writer import ArchiveWriter

COMPRESS_GRACE_NS = 60 * 10**9
"""How long the S3 forwarder waits for a closed segment's compressed file (~4x smaller)."""
FORWARD_DRAIN_S = 5.0
"""At shutdown, how long forwarders may take to send the last records."""


class Forwarding:
    """One :class:`~auditd_py.forward.runner.Runner` thread per configured target."""

    def __init__(self, meta: Meta, say: Narrator, clock: Clock) -> None:
        self.meta = meta
        self.say = say
        self.clock = clock
        self.runners: list[Runner] = []

    def start(self, cfg: Config, layout: Layout, w: ArchiveWriter) -> None:
        info = ArchiveInfo(
            w.identity.archive, w.identity.host, cfg.environment, layout.read_identity()
        )
        for fc in cfg.forward:
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

                grace = COMPRESS_GRACE_NS if cfg.segments.compress != "none" else 0
                fwd = S3Forwarder(
                    fc, layout, info, layout.state, self.clock, self.meta, compress_grace_ns=grace
                )
            runner = Runner(fwd, self.meta, retry_max_s=fc.retry_max / 1e9)
            self.runners.append(runner)
            runner.start()
            self.say.forward_started(fc.name, fc.type)

    def floor(self) -> int | None:
        """The lowest seq some forwarder has not delivered: retention keeps it."""
        floors = [f for r in self.runners if (f := r.fwd.floor()) is not None]
        return min(floors) if floors else None

    def drain_and_stop(self, grace: float = FORWARD_DRAIN_S) -> None:
        """Let each forwarder send what the final checkpoint sealed, then stop it.

        What is not acknowledged within ``grace`` (a collector that is down) is
        sent by the next start, from the persisted cursor.
        """
        deadline = self.clock.monotonic() + grace
        for r in self.runners:
            r.drain(max(0.0, deadline - self.clock.monotonic()))
        self.stop()

    def stop(self) -> None:
        for r in self.runners:
            r.stop()
