"""Helpers for tests/test_file_source.py: real files, real archives, real logrotate.

A :class:`Sandbox` is one work directory holding an archive (made by
``auditd-py keygen``), a ``logs/`` directory and configuration files. The
daemon runs through the command-line tool (in-process or as a subprocess) or,
for live tests, as a :class:`LiveDaemon` in a thread; what it sealed is read
back with ``auditd-py show --json`` and checked with ``auditd-py verify --key``.

:class:`Collector` is a fake Sink and Meta for driving
:class:`~auditd_py.sources.file.FileTailer` directly.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import yaml

from auditd_py import events, metalog
from auditd_py.chain.encoding import record_bytes
from auditd_py.config import FileSource, check_config
from auditd_py.config import load as load_config
from auditd_py.daemon.queue import Barrier
from auditd_py.daemon.supervisor import Daemon
from auditd_py.record import Fields, Position
from auditd_py.sources.file import FileTailer
from auditd_py.store.state import StateFile
from tests.support.cli import CLI_BIN, Archive, Result, keygen, run_cli, run_real
from tests.support.wait import wait_until

LOGROTATE = "/usr/sbin/logrotate"
SOURCE = "app"

__all__ = [
    "CLI_BIN",
    "LOGROTATE",
    "SOURCE",
    "Collector",
    "LiveDaemon",
    "Polls",
    "Rec",
    "Result",
    "Sandbox",
    "Writer",
    "by_key",
    "key_of",
    "logrotate",
    "run_cli",
    "run_real",
    "wait_until",
]


def key_of(path: Path | str, source: str = SOURCE) -> str:
    """The position key the file source uses for the file now at ``path``."""
    st = os.stat(path)
    return f"{source}:{st.st_dev}:{st.st_ino}"


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Rec:
    """One data record, as the file source produced it."""

    source: str
    message: bytes
    path: str
    key: str
    off: int
    partial: bool
    split: bool
    cut: bool

    @classmethod
    def of_json(cls, obj: Mapping[str, Any]) -> Rec:
        """From one ``show --json`` object (the original bytes, losslessly)."""
        return cls.of(obj["source"], record_bytes(dict(obj)), obj.get("attrs") or {})

    @classmethod
    def of_fields(cls, f: Fields) -> Rec:
        attrs = f.attrs or (orjson.loads(f.raw_attrs) if f.raw_attrs else {})
        return cls.of(f.source, f.message, attrs)

    @classmethod
    def of(cls, source: str, message: bytes, attrs: Mapping[str, Any]) -> Rec:
        pos = attrs.get("pos") or {}
        return cls(
            source=source,
            message=message,
            path=str(attrs.get("path", "")),
            key=str(pos.get("k", "")),
            off=int(pos.get("off", -1)),
            partial=attrs.get("partial") == 1,
            split=attrs.get("split") == 1,
            cut=pos.get("cut") == 1,
        )


def by_key(recs: Iterable[Rec]) -> dict[str, list[bytes]]:
    """Messages per file (position key), in the order they were sealed."""
    out: dict[str, list[bytes]] = {}
    for r in recs:
        out.setdefault(r.key, []).append(r.message)
    return out


# ---------------------------------------------------------------- writing logs


class Writer:
    """An application writing a log: keeps its descriptor across rotations,
    and remembers what it wrote to each file (by position key)."""

    def __init__(self, path: Path, source: str = SOURCE) -> None:
        self.path = path
        self.source = source
        self.written: dict[str, list[bytes]] = {}
        self.fd = -1
        self.key = ""
        self.reopen()

    def reopen(self) -> None:
        """Open (create) the file at ``path``, as an app does after SIGHUP."""
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(self.fd)
        self.key = f"{self.source}:{st.st_dev}:{st.st_ino}"
        self.written.setdefault(self.key, [])

    def lines(self, *lines: bytes) -> None:
        """Write complete lines (one write each, as loggers do)."""
        for line in lines:
            os.write(self.fd, line + b"\n")
            self.written[self.key].append(line)

    def partial(self, data: bytes) -> None:
        """Write bytes without a newline (expected to be sealed as one record)."""
        os.write(self.fd, data)
        self.written[self.key].append(data)

    def numbered(self, tag: str, n: int, *, start: int = 0, pad: int = 0) -> list[bytes]:
        lines = [f"{tag} line {i:05d} {'.' * pad}".encode() for i in range(start, start + n)]
        self.lines(*lines)
        return lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def logrotate(work: Path, log: Path, mode: str, *, rotate: int = 3) -> None:
    """Run the real logrotate on ``log``, forced, with its own config and state."""
    assert mode in ("create", "copytruncate"), mode
    conf = work / f"logrotate-{mode}.conf"
    conf.write_text(f"{log} {{\n  rotate {rotate}\n  {mode}\n  missingok\n  nocompress\n}}\n")
    proc = subprocess.run(
        [LOGROTATE, "-f", "-s", str(work / "logrotate.state"), str(conf)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


# ---------------------------------------------------------------- polls of a running tailer


class Polls:
    """Counts the polls a running :class:`FileTailer` completes (its ``_poll`` is
    wrapped), so that a test can wait for the tailer to have looked again instead
    of sleeping for a time in which it probably has."""

    def __init__(self, tailer: FileTailer) -> None:
        self.count = 0
        self._cv = threading.Condition()
        poll = tailer._poll

        def counted() -> bool:
            try:
                return poll()
            finally:
                with self._cv:
                    self.count += 1
                    self._cv.notify_all()

        tailer._poll = counted  # type: ignore[method-assign]

    def wait(self, n: int, timeout: float = 10.0) -> None:
        """Until ``n`` whole polls have run that started after this call (the one
        in progress, if any, does not count)."""
        with self._cv:
            target = self.count + n + 1
            ok = self._cv.wait_for(lambda: self.count >= target, timeout)
        assert ok, f"the tailer completed {self.count - target + n + 1} of {n} polls"


# ---------------------------------------------------------------- the sandbox


@dataclass
class Sandbox:
    """A work directory: ``arc/`` (an archive), ``keys/``, ``logs/``, configs."""

    work: Path
    arc: Archive = field(init=False)

    def __post_init__(self) -> None:
        self.arc = keygen(self.work)
        self.logs.mkdir()

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def log(self, name: str) -> Path:
        return self.logs / name

    def config(
        self, *sources: Mapping[str, Any], name: str = "auditd.yaml", **sealing: Any
    ) -> Path:
        doc: dict[str, Any] = {"archive": {"path": str(self.arc.root)}, "sources": list(sources)}
        if sealing:
            doc["sealing"] = sealing
        path = self.work / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def file_source(self, *patterns: str, name: str = SOURCE, **settings: Any) -> dict[str, Any]:
        """A ``type: file`` source; patterns are relative to ``logs/``."""
        return {
            "name": name,
            "type": "file",
            "paths": [str(self.logs / p) for p in patterns],
            **settings,
        }

    def run_once(self, config: Path) -> Result:
        r = run_cli("run", "--config", config, "--once")
        assert r.code == 0, str(r)
        assert "Traceback" not in r.err, str(r)
        return r

    def show(self, *args: str) -> list[dict[str, Any]]:
        r = run_cli("show", self.arc.root, "--json", *args)
        assert r.code == 0, str(r)
        return [orjson.loads(line) for line in r.out.splitlines()]

    def records(self, source: str | None = SOURCE) -> list[Rec]:
        """Every data record (of ``source``), in archive order."""
        recs = [Rec.of_json(o) for o in self.show()]
        return [r for r in recs if source is None or r.source == source]

    def meta(self, event: str | None = None) -> list[dict[str, Any]]:
        """The daemon's own records (of one ``event``), in archive order."""
        return [o for o in self.show("--meta") if event is None or o.get("event") == event]

    def positions(self) -> set[str]:
        """The keys of the source positions in the sealing state (as a restart sees them)."""
        sf, state = StateFile.open(self.arc.state)
        try:
            return set(state.writer.positions or {})
        finally:
            sf.release()

    def verify(self) -> dict[str, Any]:
        """``verify --key``: the archive must be intact."""
        return self.arc.verify_ok("key")


# ---------------------------------------------------------------- a live daemon


class LiveDaemon:
    """The real :class:`~auditd_py.daemon.supervisor.Daemon` (not ``--once``) in a thread."""

    def __init__(self, config: Path) -> None:
        loaded = load_config(config)
        assert check_config(loaded) == []
        metalog.configure(stream=io.StringIO())
        self.daemon = Daemon(loaded, notify_fn=lambda state: False)
        self.code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-daemon", daemon=True)

    def _run(self) -> None:
        try:
            self.code = self.daemon.run()
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self) -> LiveDaemon:
        self._thread.start()
        ok = wait_until(
            lambda: (
                self.daemon.meta.counts.get(events.DAEMON_READY, 0) > 0
                or not self._thread.is_alive()
            )
        )
        assert ok and self._thread.is_alive(), f"daemon did not start: {self.error!r}"
        self.polls = Polls(self.tailer)
        return self

    @property
    def tailer(self) -> FileTailer:
        src = self.daemon.sources[0]
        assert isinstance(src, FileTailer)
        return src

    def sealed(self, source: str = SOURCE) -> int:
        sealer = self.daemon.sealer
        assert sealer is not None
        return sealer.stats.sealed_by_source.get(source, 0)

    def wait_sealed(self, n: int, source: str = SOURCE, timeout: float = 10.0) -> None:
        """Wait until ``n`` records of ``source`` are sealed (and no more arrive)."""
        assert wait_until(lambda: self.sealed(source) >= n, timeout), (
            f"only {self.sealed(source)} of {n} records sealed"
        )
        self.settle()
        assert self.sealed(source) == n, f"{self.sealed(source)} records sealed, expected {n}"

    def settle(self, polls: int = 2) -> None:
        """Until the tailer has looked at its files ``polls`` more times and
        everything it read by then is sealed (a barrier through the queue)."""
        self.polls.wait(polls)
        barrier = Barrier(threading.Event())
        self.daemon.queue.put_barrier(barrier)
        assert barrier.done.wait(10), "the sealer did not reach the barrier"

    def events(self, name: str) -> int:
        return self.daemon.meta.counts.get(name, 0)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.daemon.flags.stop = True
            self.daemon.wake.set()
            self._thread.join(30)
        assert not self._thread.is_alive(), "daemon did not stop"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None:
            assert self.error is None, repr(self.error)
            assert self.code == 0, self.code


# ---------------------------------------------------------------- FileTailer directly


class Collector:
    """A fake Sink and Meta: collects records and events, with arrival times."""

    def __init__(self) -> None:
        self.fields: list[Fields] = []
        self.arrived: list[float] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.items: list[Fields | tuple[str, str, dict[str, Any]]] = []
        """Records and events in the order they were queued (as the sealer seals them)."""
        self._lock = threading.Lock()

    # Sink
    def put(self, batch: list[Fields], *, block: bool = True, timeout: float | None = None) -> bool:
        now = time.monotonic()
        with self._lock:
            self.fields.extend(batch)
            self.arrived.extend(now for _ in batch)
            self.items.extend(batch)
        return True

    def room(self) -> int:
        return 1 << 30

    # Meta
    def event(self, name: str, message: str, **fields: Any) -> None:
        assert name in events.CATALOGUE, name
        with self._lock:
            self.events.append((name, message, fields))
            self.items.append((name, message, fields))

    # reading
    def records(self) -> list[Rec]:
        with self._lock:
            return [Rec.of_fields(f) for f in self.fields]

    def count(self) -> int:
        with self._lock:
            return len(self.fields)

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [f for n, _, f in self.events if n == name]

    def sealed(self, upto: int | None = None) -> list[Rec]:
        """The records among the first ``upto`` items (what a kill -9 after them left)."""
        with self._lock:
            return [Rec.of_fields(f) for f in self.items[:upto] if isinstance(f, Fields)]

    def positions(
        self, upto: int | None = None, start: Mapping[str, Position] | None = None
    ) -> dict[str, Position]:
        """The positions a restart gets if the first ``upto`` items were sealed
        (on top of ``start``): the last ``attrs.pos`` per key, as the archive
        writer tracks them (a meta record's ``forget`` drops one)."""
        out = dict(start or {})
        with self._lock:
            items = self.items[:upto]
        for item in items:
            if isinstance(item, Fields):
                attrs = item.attrs or (orjson.loads(item.raw_attrs) if item.raw_attrs else {})
                pos = item.pos or attrs.get("pos")
                if isinstance(pos, dict):
                    out[pos["k"]] = Position(pos, item.message[-32:])
                continue
            _, message, fields = item
            if isinstance(fields.get("pos"), dict):
                out[fields["pos"]["k"]] = Position(fields["pos"], message.encode()[-32:])
            elif isinstance(fields.get("forget"), str):
                out.pop(fields["forget"], None)
        return out

    def wait_records(self, n: int, timeout: float = 10.0) -> list[Rec]:
        assert wait_until(lambda: self.count() >= n, timeout), (
            f"{self.count()} of {n} records: {self.records()}"
        )
        return self.records()


def file_settings(paths: Iterable[Path | str], **settings: Any) -> FileSource:
    return FileSource.model_validate(
        {"name": SOURCE, "type": "file", "paths": [str(p) for p in paths], **settings}
    )


class Clock:
    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


def start_tailer(
    settings: FileSource, positions: Mapping[str, Position] | None = None
) -> tuple[FileTailer, Collector]:
    t = FileTailer(settings, Clock())
    c = Collector()
    t.start(c, c, positions or {})
    return t, c


class ManualTailer(FileTailer):
    """A FileTailer that reads only when the test calls :meth:`poll`: no thread
    loop, no inotify, so every interleaving is the one the test writes down."""

    def _watch(self) -> None:
        pass

    def _loop(self) -> None:
        pass

    def poll(self) -> bool:
        with self._lock:
            return self._poll()


def manual_tailer(
    settings: FileSource, positions: Mapping[str, Position] | None = None
) -> tuple[ManualTailer, Collector]:
    t = ManualTailer(settings, Clock())
    c = Collector()
    t.start(c, c, positions or {})
    return t, c
