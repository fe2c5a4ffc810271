"""The journald source: entries of the systemd journal → batches of :class:`Fields`.

One thread owns an ``sd_journal`` handle (``systemd.journal.Reader``, on the
local journal or on a directory of journal files) and follows it: it reads
every entry that is available, hands them to the sink in batches with a
*blocking* put (back-pressure: the journal keeps the entries, nothing is lost
by waiting), then sleeps in ``reader.wait()`` until the journal changes. It
reads again after every wait, whatever the wait reported, so a journal whose
change notifications do not work is still polled.

Each entry is kept losslessly (:func:`entry_fields`): the reader's converters
are bypassed, every field arrives as bytes and is stored as text if it is valid
UTF-8 and as ``{"b64": ...}`` otherwise. The entry's cursor is the record's
position (``attrs.pos``, key ``<name>:cursor``); since positions are sealed with
the records, a restart resumes exactly after the last sealed entry. A cursor
that no longer exists (vacuumed, rotated away, another journal) is never passed
over silently: the source logs ``journal.cursor_lost`` with the lost cursor and
the entry it continues from (the oldest one), and delivers from there.

Errors (a missing directory, unreadable journal files, a failing read) are
logged as ``source.error`` and retried with backoff; they never end the thread.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from auditd_py import config
from auditd_py.clock import Clock
from auditd_py.contracts import Meta, Position, Sink
from auditd_py.events import JOURNAL_CURSOR_LOST, SOURCE_ERROR
from auditd_py.record import Fields, pos_key

__all__ = ["JournalSource", "RawEntry", "entry_fields", "field_value"]

JournalValue = str | dict[str, str]
"""One field value as stored: text, or ``{"b64": ...}`` for bytes that are not UTF-8."""

RawEntry = Mapping[str, bytes | Sequence[bytes]]
"""An entry as ``sd_journal`` gives it: field → bytes, or a list for repeated fields."""

_APPEND: Final = 1
_INVALIDATE: Final = 2
_ID128: Final = re.compile(r"[0-9a-f]{32}")


# ---------------------------------------------------------------- conversion (pure)


def field_value(value: bytes) -> JournalValue:
    """A field's bytes as text if they are valid UTF-8, else ``{"b64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def entry_fields(
    source: str, data: RawEntry, realtime_us: int, monotonic_us: int, cursor: str
) -> Fields:
    """One journal entry as a record, losslessly.

    ``message`` is the MESSAGE bytes as they are (the first value if the field
    repeats, ``b""`` if there is none). ``attrs.journal`` holds every other
    field: text as a string, other bytes as ``{"b64": ...}``, repeated fields as
    lists (in the order the journal returns them; a repeated MESSAGE is kept
    there whole), plus the entry's ``__REALTIME_TIMESTAMP`` /
    ``__MONOTONIC_TIMESTAMP`` as integers (microseconds). The cursor is in
    ``attrs.pos.cursor``. ``time_ns`` is the realtime timestamp in nanoseconds.
    A single MESSAGE and the cursor are not stored twice: the record would
    otherwise double in size for message-heavy journals.
    """
    journal: dict[str, JournalValue | list[JournalValue] | int] = {}
    for key, value in data.items():
        if key == "MESSAGE" and isinstance(value, bytes):
            continue  # it is the record's message, byte for byte
        if isinstance(value, bytes):
            try:  # field_value(), inlined: this loop is most of the source's CPU time
                journal[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                journal[key] = {"b64": base64.b64encode(value).decode("ascii")}
        else:
            journal[key] = [field_value(v) for v in value]
    journal["__REALTIME_TIMESTAMP"] = realtime_us
    journal["__MONOTONIC_TIMESTAMP"] = monotonic_us
    msg = data.get("MESSAGE", b"")
    if not isinstance(msg, bytes):
        msg = msg[0] if msg else b""
    return Fields(
        time_ns=realtime_us * 1000,
        source=source,
        message=msg,
        attrs={"journal": journal, "pos": {"k": f"{source}:cursor", "cursor": cursor}},
    )


# ---------------------------------------------------------------- sd_journal, typed


class Journal(Protocol):
    """The ``sd_journal`` calls the source makes (see :class:`SdJournal`)."""

    def add_match(self, match: str) -> None: ...
    def add_disjunction(self) -> None: ...
    def seek_head(self) -> None: ...
    def seek_tail(self) -> None: ...
    def seek_cursor(self, cursor: str) -> None: ...
    def test_cursor(self, cursor: str) -> bool: ...
    def next(self) -> bool: ...
    def previous(self) -> bool: ...
    def cursor(self) -> str: ...
    def realtime_us(self) -> int: ...
    def fields(self, source: str) -> Fields: ...
    def wait(self, timeout: float) -> int: ...
    def process(self) -> int: ...
    def close(self) -> None: ...


class SdJournal:
    """A typed wrapper around ``systemd.journal.Reader`` that reads raw bytes.

    The Reader's converters (UUIDs, datetimes, lossy timedelta) are bypassed by
    calling the C methods that ``Reader.get_next`` itself uses. The data
    threshold is turned off so that large fields are never truncated.
    """

    def __init__(self, directory: Path | None) -> None:
        # systemd-python ships no type information: it is typed here, once. (Imported
        # by name so that mypy never looks for it, and so that the rest of this module
        # works without it.)
        journal: Any = importlib.import_module("systemd.journal")
        r: Any = journal.Reader() if directory is None else journal.Reader(path=str(directory))
        try:
            r.data_threshold = 0
            r.fileno()  # set up inotify now, so no file created from here on is missed
        except BaseException:
            r.close()
            raise
        self._r = r

    def add_match(self, match: str) -> None:
        self._r.add_match(match)

    def add_disjunction(self) -> None:
        self._r.add_disjunction()

    def seek_head(self) -> None:
        self._r.seek_head()

    def seek_tail(self) -> None:
        self._r.seek_tail()

    def seek_cursor(self, cursor: str) -> None:
        self._r.seek_cursor(cursor)

    def test_cursor(self, cursor: str) -> bool:
        return bool(self._r.test_cursor(cursor))

    def next(self) -> bool:
        return bool(self._r._next())

    def previous(self) -> bool:
        return bool(self._r._previous())

    def cursor(self) -> str:
        return str(self._r._get_cursor())

    def realtime_us(self) -> int:
        return int(self._r._get_realtime())

    def fields(self, source: str) -> Fields:
        r = self._r
        return entry_fields(
            source, r._get_all(), r._get_realtime(), r._get_monotonic()[0], r._get_cursor()
        )

    def wait(self, timeout: float) -> int:
        return int(self._r.wait(timeout))

    def process(self) -> int:
        return int(self._r.process())

    def close(self) -> None:
        self._r.close()


def unreadable_files(directory: Path | None) -> list[str]:
    """Journal files we cannot read. ``sd_journal`` skips them without a word,
    which would make a permission problem look like an empty journal."""
    if directory is None:
        try:
            machine = Path("/etc/machine-id").read_text().strip()
        except OSError:
            return []
        dirs = [Path("/run/log/journal") / machine, Path("/var/log/journal") / machine]
    else:
        dirs = [directory]
        with contextlib.suppress(OSError):
            dirs += [p for p in directory.iterdir() if _ID128.fullmatch(p.name) and p.is_dir()]
    bad: list[str] = []
    for d in dirs:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            bad.append(str(d))
            continue
        for n in names:
            if n.endswith((".journal", ".journal~")) and not os.access(d / n, os.R_OK):
                bad.append(str(d / n))
    return bad


# ---------------------------------------------------------------- the source


class _Stopping(Exception):
    """The source was told to stop while a batch waited for room."""


class JournalSource:
    """Implements :class:`auditd_py.sources.base.Source` for ``type: journald``."""

    def __init__(
        self,
        settings: config.JournaldSource,
        clock: Clock,
        *,
        batch_records: int = 512,
        wait_interval: float = 0.2,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        open_journal: Callable[[Path | None], Journal] = SdJournal,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.clock = clock
        self.batch_records = batch_records
        self.wait_interval = wait_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._open_journal = open_journal
        self._key = pos_key(self.name, "cursor")
        self._sink: Sink | None = None
        self._meta: Meta | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._drains: list[threading.Event] = []
        # The cursor to continue after: the last entry delivered to the sink, the
        # sealed position from the archive, or (read_from: end) the entry that was
        # last when we first opened the journal.
        self._anchor: str | None = None
        self._fresh = True  # no position yet: read_from applies
        self._error: str | None = None
        self._reported: str | None = None
        self.delivered = 0
        self.batches = 0
        self.errors = 0
        self.cursors_lost = 0
        self.last_delivery_ns: int | None = None

    # -------------------------------------------------------- Source protocol

    def start(self, sink: Sink, meta: Meta, positions: Mapping[str, Position]) -> None:
        if self._thread is not None:
            raise RuntimeError(f"journald source {self.name!r} was already started")
        self._sink, self._meta = sink, meta
        saved = positions.get(self._key)
        if saved is not None:
            cursor = saved.pos.get("cursor")
            self._anchor = cursor if isinstance(cursor, str) else repr(cursor)
            self._fresh = False
        self._thread = threading.Thread(
            target=self._run, name=f"auditd-journald-{self.name}", daemon=True
        )
        self._thread.start()
        # Ready once the first attempt to open and position the journal is over
        # (a failure is reported and retried in the background).
        self._ready.wait(10.0)

    def drain(self) -> None:
        thread = self._thread
        if thread is None:
            raise RuntimeError(f"journald source {self.name!r} is not started")
        done = threading.Event()
        with self._lock:
            self._drains.append(done)
        while not done.wait(0.05):
            if not thread.is_alive():
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def healthy(self) -> tuple[bool, str]:
        where = str(self.settings.directory) if self.settings.directory else "the local journal"
        thread = self._thread
        if thread is None:
            return False, "not started"
        if not thread.is_alive():
            return (False, "stopped") if self._stop.is_set() else (False, "reader thread ended")
        error = self._error
        if error is not None:
            return False, f"cannot read {where}: {error}"
        return True, f"following {where}, {self.delivered} entries delivered"

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "errors": self.errors,
            "cursors_lost": self.cursors_lost,
        }

    # -------------------------------------------------------- the thread

    def _run(self) -> None:
        j: Journal | None = None
        pending = False
        delay = self.retry_initial
        try:
            while not self._stop.is_set():
                if j is None:
                    try:
                        j, pending = self._open()
                    except Exception as exc:  # reported and retried, never fatal
                        self._fail("open", exc, delay)
                        self._ready.set()
                        self._release(self._take_drains())
                        self._stop.wait(delay)
                        delay = min(delay * 2, self.retry_max)
                        continue
                    self._ready.set()
                drains = self._take_drains()
                try:
                    if drains:
                        j.process()  # notice new files and entries right now
                    self._pump(j, pending)
                    pending = False
                    self._release(drains)
                    self._recovered()
                    delay = self.retry_initial
                    if drains:
                        continue
                    if j.wait(self.wait_interval) == _INVALIDATE:
                        # Files came or went: one we cannot read would be skipped silently.
                        bad = unreadable_files(self.settings.directory)
                        if bad:
                            raise PermissionError(f"journal files not readable: {', '.join(bad)}")
                except _Stopping:
                    break
                except Exception as exc:  # reported; reopened from the last delivered entry
                    self._fail("read", exc, delay)
                    self._release(drains)
                    j.close()
                    j = None
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.retry_max)
        finally:
            if j is not None:
                j.close()
            self._release(self._take_drains())
            self._ready.set()

    def _open(self) -> tuple[Journal, bool]:
        """Open the journal and position it. Returns (journal, pending): pending
        means the journal stands on an entry that is still to be delivered."""
        directory = self.settings.directory
        j = self._open_journal(directory)
        try:
            bad = unreadable_files(directory)
            if bad:
                raise PermissionError(f"journal files not readable: {', '.join(bad)}")
            for m in self.settings.matches:
                if m == "+":
                    j.add_disjunction()
                else:
                    j.add_match(m)
            pending = self._position(j)
        except BaseException:
            j.close()
            raise
        self._fresh = False
        return j, pending

    def _position(self, j: Journal) -> bool:
        cursor = self._anchor
        if cursor is None:
            if self._fresh and self.settings.read_from == "end":
                j.seek_tail()
                if j.previous():  # stand on the last entry; new ones come after it
                    self._anchor = j.cursor()
                    return False
            # read_from: beginning, or an empty journal: everything in it is new. ("end"
            # means the end of the journal as the source first opens it; after
            # seek_tail() on an empty journal, sd_journal_next() would skip the first
            # entry that arrives, hence the head.)
            j.seek_head()
            return False
        reason = None
        try:
            j.seek_cursor(cursor)
            if not j.next():
                reason = "no entry at or after it"
            elif not j.test_cursor(cursor):
                reason = "no such entry"
        except ValueError:
            reason = "not a valid cursor"
        if reason is None:
            return False  # standing on the last delivered entry: continue after it
        j.seek_head()
        pending = j.next()
        cont = j.cursor() if pending else None
        self.cursors_lost += 1
        self._event(
            JOURNAL_CURSOR_LOST,
            f"journal cursor of {self.name!r} is gone ({reason}); continuing from the "
            "oldest entry in the journal: entries between the cursor and it may be lost, "
            "and entries still in the journal are delivered again"
            + ("" if pending else " (the journal is empty)"),
            source=self.name,
            cursor=cursor,
            reason=reason,
            continue_cursor=cont,
            continue_time_us=j.realtime_us() if pending else None,
        )
        self._anchor = None
        return pending

    def _pump(self, j: Journal, pending: bool) -> None:
        """Deliver every entry available now."""
        batch: list[Fields] = []
        n = self.batch_records
        fields = j.fields
        name = self.name
        while True:
            if pending:
                pending = False
            elif not j.next():
                break
            batch.append(fields(name))
            if len(batch) >= n:
                self._deliver(batch)
                batch = []
                if self._stop.is_set():
                    raise _Stopping
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: list[Fields]) -> None:
        sink = self._sink
        assert sink is not None
        deadline: float | None = None
        while not sink.put(batch, block=True, timeout=0.25):
            if self._stop.is_set():
                # Give the pipeline a last moment, then leave the batch to the next
                # run: nothing was sealed, so it is read again after a restart.
                if deadline is None:
                    deadline = time.monotonic() + 0.5
                elif time.monotonic() >= deadline:
                    raise _Stopping
        last = batch[-1].attrs
        assert last is not None
        self._anchor = last["pos"]["cursor"]
        self.delivered += len(batch)
        self.batches += 1
        self.last_delivery_ns = self.clock.now_ns()

    # -------------------------------------------------------- helpers

    def _take_drains(self) -> list[threading.Event]:
        with self._lock:
            drains, self._drains = self._drains, []
        return drains

    @staticmethod
    def _release(drains: list[threading.Event]) -> None:
        for d in drains:
            d.set()

    def _event(self, name: str, message: str, **fields: Any) -> None:
        meta = self._meta
        assert meta is not None
        meta.event(name, message, **fields)

    def _fail(self, stage: str, exc: Exception, retry_in: float) -> None:
        """Log ``source.error`` once per distinct error while it lasts."""
        self.errors += 1
        detail = f"{type(exc).__name__}: {exc}"
        self._error = detail
        if detail == self._reported:
            return
        self._reported = detail
        where = self.settings.directory
        self._event(
            SOURCE_ERROR,
            f"journald source {self.name!r} cannot {stage} "
            f"{where if where else 'the local journal'}: {exc}; retrying",
            source=self.name,
            stage=stage,
            error=detail,
            errno=getattr(exc, "errno", None),
            directory=str(where) if where else None,
            retry_in_ms=int(retry_in * 1000),
        )

    def _recovered(self) -> None:
        self._error = None
        self._reported = None
