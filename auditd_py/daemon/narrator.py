"""One place that words the daemon's meta-log: each event's message and fields.

Every part of the daemon (supervisor, disk ladder, sources, forwarding, the seal
loop's events) says what happened through a :class:`Narrator` method; the
wording lives here, the names in :mod:`auditd_py.events`, and
:class:`~auditd_py.metalog.MetaLog` logs and seals them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from auditd_py import events as ev
from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.contracts import Meta
from auditd_py.store.compress import Compressed
from auditd_py.store.retention import Blocked


class _Log(Meta, Protocol):
    """:class:`Meta` that can also log without sealing (what the writer seals itself)."""

    def log_only(self, name: str, message: str, **fields: Any) -> None: ...


class Narrator:
    """The daemon's words for what it does (the class is long because the catalogue is)."""

    def __init__(self, meta: _Log) -> None:
        self.meta = meta

    # ------------------------------------------------------------ lifecycle

    def started(self, *, once: bool, environment: str, archive: str, pid: int) -> None:
        mode = "once" if once else "daemon"
        self.meta.event(
            ev.DAEMON_STARTED,
            f"auditd-py started ({mode}) for {environment}",
            pid=pid,
            environment=environment,
            archive=archive,
            mode=mode,
        )

    def config_loaded(self, path: str, digest: str, sources: list[str]) -> None:
        self.meta.event(
            ev.CONFIG_LOADED,
            f"configuration {path} loaded",
            path=path,
            config_hash=digest,
            sources=sources,
        )

    def ready(self) -> None:
        self.meta.event(ev.DAEMON_READY, "all sources open; sealing")

    def stopping(self, signals: list[int]) -> None:
        self.meta.event(ev.DAEMON_STOPPING, "stopping: sealing what was read", signals=signals)

    def stopped(self, sealed: int) -> None:
        self.meta.event(ev.DAEMON_STOPPED, "stopped", sealed=sealed)

    def worm(self, *, enabled: bool, setting: str, reason: str | None, directory: str) -> None:
        """Whether segments are append-only/immutable this run (a notice, never an error)."""
        if enabled:
            self.meta.event(
                ev.WORM_ENABLED,
                f"segments in {directory} are append-only while open and immutable once closed",
                directory=directory,
            )
        elif setting == "off":
            self.meta.event(
                ev.WORM_DISABLED,
                "segments are not made append-only/immutable (segments.immutable: off)",
                directory=directory,
            )
        else:
            self.meta.event(
                ev.WORM_UNAVAILABLE,
                f"segments cannot be made append-only/immutable: {reason}; "
                "sealing without inode flags",
                directory=directory,
                reason=reason,
            )

    def listening(self, url: str) -> None:
        self.meta.event(ev.METRICS_LISTENING, f"metrics and health on {url}", url=url)

    def error(self, message: str, **fields: Any) -> None:
        self.meta.event(ev.ERROR, message, **fields)

    # ------------------------------------------------------------ the archive

    def rotated(self, prev: str, segment: str, reason: str, epoch: int) -> None:
        self.meta.log_only(  # the writer seals segment.rotated itself
            ev.SEGMENT_ROTATED,
            f"segment {prev} closed ({reason}) with checkpoint {epoch}; continuing in {segment}",
            prev_segment=prev,
            segment=segment,
            checkpoint=epoch,
            reason=reason,
        )

    def compressed(self, c: Compressed) -> None:
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

    def compress_failed(self, name: str, exc: BaseException) -> None:
        self.error(f"compressing {name} failed (kept uncompressed): {exc!r}", segment=name)

    def checkpointed(self, cp: Checkpoint) -> None:
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

    def retired(self, info: dict[str, object]) -> None:
        self.meta.log_only(  # the writer sealed retention.deleted itself
            ev.RETENTION_DELETED,
            f"segment {info['segment']} deleted by retention ({info['policy']}: "
            f"{info['reason']}); seq {info['seq_first']}..{int(str(info['seq_end'])) - 1}",
            **info,
        )

    def retention_blocked(self, b: Blocked) -> None:
        self.meta.event(
            ev.RETENTION_BLOCKED,
            f"retention ({b.policy}) keeps {b.name} for now: {b.reason}",
            segment=b.name,
            policy=b.policy,
            reason=b.reason,
        )

    def clock_jump(self, skew_ns: int) -> None:
        self.meta.event(
            ev.CLOCK_JUMP,
            f"the wall clock jumped {'back' if skew_ns < 0 else 'forward'} by "
            f"{abs(skew_ns) / 1e9:.3f}s; sealing goes on (record times are as the clock says)",
            jump_ns=skew_ns,
        )

    def verify_passed(self, seq_first: int, seq_end: int, segments: int) -> None:
        self.meta.event(
            ev.VERIFY_PASSED,
            f"self-check: the {segments} closed segments verify (public key): records "
            f"{seq_first}..{seq_end - 1}",
            seq_first=seq_first,
            seq_end=seq_end,
            segments=segments,
        )

    def verify_failed(self, failure: dict[str, Any], verified: dict[str, Any]) -> None:
        """A closed segment no longer verifies: ``failure`` as ``verify --json`` lists it."""
        where = ", ".join(
            f"{k} {failure[k]}" if k != "file" else str(failure[k])
            for k in ("file", "line", "seq")
            if failure.get(k) is not None
        )
        self.meta.event(
            ev.VERIFY_FAILED,
            f"self-check FAILED: {failure.get('code')} at {where or 'the archive'}: "
            f"{failure.get('message')}; records {verified.get('first_seq', 0)}.."
            f"{int(verified.get('seq_end') or 0) - 1} verified before it",
            code=failure.get("code"),
            file=failure.get("file"),
            line=failure.get("line"),
            seq=failure.get("seq"),
            seq_first=verified.get("first_seq"),
            seq_end=verified.get("seq_end"),
            reason=failure.get("message"),
        )

    def verify_inconclusive(self, why: str) -> None:
        self.meta.log_only(  # not sealed: retried at the next interval
            ev.ERROR, f"self-check could not run to a verdict (retried): {why}", reason=why
        )

    def sealer_stalled(self, age: float, threshold: float) -> None:
        self.meta.event(
            ev.SEALER_STALLED,
            f"sealer has made no progress for {age:.1f}s; withholding the watchdog ping",
            threshold_ms=int(threshold * 1000),
        )

    def sealer_resumed(self, stalled: float) -> None:
        self.meta.event(
            ev.SEALER_RESUMED,
            f"sealer resumed after {stalled:.1f}s",
            stalled_ms=int(stalled * 1000),
        )

    # ------------------------------------------------------------ sources and reloads

    def source_added(self, name: str, kind: str, *, restarted: bool = False) -> None:
        if restarted:
            what, event = "restarted with its new settings", ev.SOURCE_RESTARTED
        else:
            what, event = "started", ev.SOURCE_ADDED
        self.meta.event(event, f"source {name} ({kind}) {what}", source=name, type=kind)

    def source_removed(self, name: str, kind: str) -> None:
        self.meta.event(
            ev.SOURCE_REMOVED,
            f"source {name} ({kind}) stopped: removed from the configuration",
            source=name,
            type=kind,
        )

    def source_cannot_start(self, name: str, kind: str, reason: str) -> None:
        self.meta.event(
            ev.SOURCE_ERROR, f"source {name} ({kind}) cannot start: {reason}", source=name
        )

    def source_stuck(self, name: str, seconds: float) -> None:
        self.meta.event(
            ev.SOURCE_ERROR,
            f"source {name}: its thread has made no progress for {seconds:.0f}s (stuck); "
            "/health reports it until it moves again",
            source=name,
            stuck_seconds=round(seconds, 1),
        )

    def source_stop_failed(self, name: str, exc: BaseException) -> None:
        self.meta.event(ev.SOURCE_ERROR, f"stopping {name}: {exc}", source=name)

    def config_rejected(self, path: str, reason: str) -> str:
        message = f"configuration {path} rejected; the running configuration stays: {reason}"
        self.meta.event(ev.CONFIG_REJECTED, message, path=path, error=reason)
        return message

    def config_reloaded(
        self, path: str, digest: str, sources: list[str], **changes: Sequence[str]
    ) -> None:
        self.meta.event(
            ev.CONFIG_LOADED,
            f"configuration {path} reloaded",
            path=path,
            config_hash=digest,
            sources=sources,
            **{k: list(v) for k, v in changes.items()},
        )

    # ------------------------------------------------------------ forwarding

    def forward_started(self, name: str, kind: str) -> None:
        self.meta.event(
            ev.FORWARD_STARTED, f"forwarding to {name} ({kind})", target=name, kind=kind
        )

    # ------------------------------------------------------------ disk pressure

    def disk_ok(self, seconds: float) -> None:
        self.meta.event(
            ev.DISK_OK,
            f"writes succeed again after {seconds:.1f}s; everything held in memory is sealed",
            held_ms=int(seconds * 1000),
        )

    def disk_level(self, name: str, text: str, action: str | None, facts: dict[str, int]) -> None:
        suffix = f"; action {action}" if action else ""
        self.meta.event(
            name,
            f"{text}: {facts['free']} of {facts['total']} bytes free{suffix}",
            action=action,
            **facts,
        )

    def disk_eased(self, level: str | None, facts: dict[str, int]) -> None:
        if level is None:
            message = f"disk space is back: {facts['free']} bytes free"
        else:
            message = f"disk level eased to {level}: {facts['free']} bytes free"
        self.meta.event(ev.DISK_OK, message, **facts)

    def disk_action(self, message: str, action: str, **fields: Any) -> None:
        self.meta.event(ev.DISK_ACTION, message, action=action, **fields)

    def disk_command_exited(self, argv: list[str], status: int) -> None:
        self.meta.event(
            ev.DISK_ACTION,
            f"disk action command {argv[0]} exited {status}",
            argv=argv,
            status=status,
        )

    def stopped_disk_full(self, held: int, file: object) -> None:
        self.meta.log_only(
            ev.DISK_FULL,
            f"stopped with {held} bytes of sealed records unwritten (disk full): "
            "file and journald sources read them again on the next start; syslog "
            "records among them are lost",
            unwritten=held,
            file=file,
        )
