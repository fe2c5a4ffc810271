"""Append-only open segments and immutable closed ones (chattr +a / +i), for real.

These tests run as root on a file system with inode flags (ext4 here; tmpfs on
recent kernels too): the flags are really set, and processes without
CAP_LINUX_IMMUTABLE (the service user, root with the capability dropped) really
fail to truncate, rewrite, rename or delete the segments. Every temp dir is
released by the fixtures (``tests/conftest.py`` for ``tmp_path``), or it could
not be deleted afterwards.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auditd_py import events as ev
from auditd_py.chain.encoding import Fields
from auditd_py.config import load_text
from auditd_py.errors import ArchiveError, ConfigError
from auditd_py.store import immutable
from auditd_py.store.compress import compress_segment, finish_pending
from auditd_py.store.immutable import (
    FS_APPEND_FL,
    FS_IMMUTABLE_FL,
    OFF,
    Worm,
    append_only,
    get_flags,
    probe,
    release,
)
from auditd_py.store.reader import iter_records
from auditd_py.store.writer import ArchiveWriter
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Notify, show, verify_both, wait_for
from tests.support.worm import flags, release_tree

CLI = [sys.executable, "-m", "auditd_py.cli"]
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
NO_CAP = ["setpriv", "--bounding-set=-linux_immutable", "--inh-caps=-all"]
"""Root, but without CAP_LINUX_IMMUTABLE (nor a way to regain it at exec)."""
SERVICE_USER = [*AS_NOBODY, "--inh-caps=+linux_immutable", "--ambient-caps=+linux_immutable"]
"""What the systemd unit does: an unprivileged user with the one ambient capability."""

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv (util-linux) to set and drop CAP_LINUX_IMMUTABLE",
)
pytestmark = needs_root


def worm_here(tmp_path: Path) -> Worm:
    w = Worm.detect(tmp_path)
    if not w.enabled:
        pytest.skip(f"inode flags unavailable in {tmp_path}: {w.reason}")
    return w


def attempt(prefix: list[str], path: Path) -> dict[str, str]:
    """What a process run with ``prefix`` gets when it tries to change ``path``.

    Every attempt is one the flags must stop: rewrite in place, truncate, open
    with O_TRUNC (``> file``), rename, unlink, and clearing the flags themselves.
    """
    code = textwrap.dedent(
        """
        import errno, fcntl, json, os, struct, sys
        from auditd_py.store import immutable as im
        p = sys.argv[1]
        def tryit(fn):
            try:
                fn()
                return "ok"
            except OSError as exc:
                return errno.errorcode[exc.errno]
        def clear():
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                fcntl.ioctl(fd, im.FS_IOC_SETFLAGS, struct.pack("i", 0))
            finally:
                os.close(fd)
        def rewrite():
            fd = os.open(p, os.O_WRONLY)
            os.close(fd)
        def append():
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)
            os.close(fd)
        print(json.dumps({
            "rewrite": tryit(rewrite),
            "truncate": tryit(lambda: os.truncate(p, 0)),
            "o_trunc": tryit(lambda: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))),
            "rename": tryit(lambda: os.rename(p, p + ".moved")),
            "unlink": tryit(lambda: os.unlink(p)),
            "chattr": tryit(clear),
            "append": tryit(append),
            # the permission bits allow writing (access(2) would say no: it sees +i)
            "w_ok": os.getuid() == 0
            or (os.stat(p).st_uid == os.getuid() and bool(os.stat(p).st_mode & 0o200)),
        }))
        """
    )
    r = subprocess.run(
        [*prefix, sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result: dict[str, str] = json.loads(r.stdout)
    return result


REFUSED = {"rewrite", "truncate", "o_trunc", "rename", "unlink", "chattr"}


def assert_protected(prefix: list[str], path: Path, *, appendable: bool) -> None:
    got = attempt(prefix, path)
    assert got["w_ok"], f"{path} is not writable by this user: the test would prove nothing"
    assert {k: got[k] for k in REFUSED} == dict.fromkeys(REFUSED, "EPERM"), got
    assert got["append"] == ("ok" if appendable else "EPERM"), got
    assert path.exists()


# ---------------------------------------------------------------- the ioctl helpers


def test_flags_set_and_cleared_by_read_modify_write(tmp_path: Path) -> None:
    worm_here(tmp_path)
    p = tmp_path / "f"
    p.write_bytes(b"one\n")
    other = (get_flags(p) or 0) & ~(FS_APPEND_FL | FS_IMMUTABLE_FL)  # e.g. ext4's extents flag

    append_only(p)
    assert flags(p) == "a" and lsattr(p).count("a") == 1
    with open(p, "ab") as fh:  # appending still works
        fh.write(b"two\n")
    refused: list[Callable[[], object]] = [
        lambda: os.close(os.open(p, os.O_RDWR)),
        lambda: os.truncate(p, 0),
        p.unlink,
    ]
    for fn in refused:
        with pytest.raises(PermissionError):
            fn()  # even for root: the flag, not the permission bits, refuses

    immutable.immutable(p)  # -a +i in one step
    assert flags(p) == "i" and "i" in lsattr(p) and "a" not in lsattr(p)
    with pytest.raises(PermissionError):
        os.close(os.open(p, os.O_WRONLY | os.O_APPEND))
    assert p.read_bytes() == b"one\ntwo\n"
    assert (get_flags(p) or 0) & ~(FS_APPEND_FL | FS_IMMUTABLE_FL) == other

    release(p)
    assert flags(p) == "" and (get_flags(p) or 0) == other
    release(p)  # nothing set: no-op
    p.unlink()
    release(p)  # gone: no-op


def lsattr(p: Path) -> str:
    """The flag letters as e2fsprogs' lsattr prints them (an independent reader)."""
    out = subprocess.run(["lsattr", "-d", str(p)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def test_errors_name_the_file_and_links_are_not_followed(tmp_path: Path) -> None:
    worm_here(tmp_path)
    missing = tmp_path / "missing"
    with pytest.raises(ArchiveError) as e:
        append_only(missing)
    assert e.value.where["file"] == str(missing)
    target = tmp_path / "target"
    target.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ArchiveError) as e:
        immutable.immutable(link)  # O_NOFOLLOW: never the file a link points to
    assert e.value.where["file"] == str(link)
    assert flags(target) == ""


def test_probe_on_ext4_and_tmpfs_leaves_nothing_behind(tmp_path: Path) -> None:
    assert probe(tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    shm = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else None
    if shm is not None:
        try:
            assert probe(shm) is None  # tmpfs keeps inode flags on this kernel (5.x+)
            assert list(shm.iterdir()) == []
        finally:
            release_tree(shm)
            shutil.rmtree(shm)
    # a scratch file left +a by a crash in the middle of a probe is cleaned up
    stale = tmp_path / f"{immutable.PROBE_PREFIX}123-dead"
    stale.write_bytes(b"")
    append_only(stale)
    assert probe(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_probe_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "cannot create a scratch file" in str(probe(tmp_path / "nope"))

    # without the capability (a real process, root with the capability dropped)
    code = (
        "import sys, pathlib; from auditd_py.store.immutable import probe; "
        "print(probe(pathlib.Path(sys.argv[1])))"
    )
    out = subprocess.run(
        [*NO_CAP, sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.strip()
    assert out == "no CAP_LINUX_IMMUTABLE"
    assert list(tmp_path.iterdir()) == []

    # file systems without inode flags answer the ioctl with ENOTTY or EOPNOTSUPP
    for code_, name in ((errno.ENOTTY, "ENOTTY"), (errno.EOPNOTSUPP, "EOPNOTSUPP")):

        def unsupported(*_a: object, _c: int = code_) -> bytes:
            raise OSError(_c, os.strerror(_c))

        monkeypatch.setattr(fcntl, "ioctl", unsupported)  # as immutable.py calls it
        assert probe(tmp_path) == f"file system does not support inode flags ({name})"
        assert list(tmp_path.iterdir()) == []
        w = Worm.detect(tmp_path)
        assert not w.enabled and w.reason == f"file system does not support inode flags ({name})"
        f = tmp_path / "f"
        f.write_bytes(b"")
        release(f)  # unsupported: a no-op, not an error
        with pytest.raises(ArchiveError, match="does not support inode flags"):
            append_only(f)
        f.unlink()


def test_worm_off_sets_nothing_but_still_releases(tmp_path: Path) -> None:
    worm_here(tmp_path)
    off = Worm.detect(tmp_path, "off")
    assert not off.enabled and off.reason == "segments.immutable is off"
    assert not OFF.enabled
    p = tmp_path / "f"
    p.write_bytes(b"")
    off.append_only(p)
    off.immutable(p)
    assert flags(p) == ""
    append_only(p)  # left by an earlier run that had the capability
    off.release(p)
    assert flags(p) == ""


def test_config_knob() -> None:
    assert load_text("archive: {path: /a}\n").segments.immutable == "auto"
    assert load_text("archive: {path: /a}\nsegments: {immutable: off}\n").segments.immutable == (
        "off"
    )
    with pytest.raises(ConfigError, match="immutable"):
        load_text("archive: {path: /a}\nsegments: {immutable: always}\n")
    assert {ev.WORM_ENABLED, ev.WORM_UNAVAILABLE, ev.WORM_DISABLED} <= ev.CATALOGUE


# ---------------------------------------------------------------- the writer and the compressor


def seal_some(w: ArchiveWriter, arc: Arc, n: int, tag: str) -> None:
    for i in range(n):
        arc.clock.advance(0.001)
        w.append(Fields(arc.clock.now_ns(), "test", f"{tag} {i}".encode()))


def seg_flags(arc: Arc) -> dict[str, str]:
    return {p.name: flags(p) for p in sorted(arc.layout.segments.iterdir())}


def test_writer_open_segment_append_only_closed_ones_immutable(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    worm = worm_here(arc.layout.segments)
    w = ArchiveWriter.open(arc.layout, arc.clock, worm=worm)
    s0 = w.segment
    assert seg_flags(arc) == {s0: "a"}  # before a byte of it is written
    seal_some(w, arc, 20, "a")
    w.flush()
    w.rotate_segment("test")
    s1 = w.segment
    assert seg_flags(arc) == {s0: "i", s1: "a"}
    seal_some(w, arc, 20, "b")
    w.close()
    assert seg_flags(arc) == {s0: "i", s1: "i"}
    for key in (True, False):
        arc.verify(key=key, require_sealed=True)

    # a writer without the flags (the CLI's `seal`) continues the same archive
    arc.seal([b"by the CLI"])
    names = arc.layout.segment_names()
    assert seg_flags(arc)[names[-1]] == ""
    # and the next flagged writer seals that one too
    w = ArchiveWriter.open(arc.layout, arc.clock, worm=worm)
    assert seg_flags(arc) == {s0: "i", s1: "i", names[-1]: "i", w.segment: "a"}
    w.close()
    arc.verify(require_sealed=True)


def test_writer_recovers_a_torn_append_only_segment(tmp_path: Path) -> None:
    """A crash mid-line: the tail is cut (the flag lifted for that) and the segment sealed +i."""
    arc = Arc(tmp_path)
    worm = worm_here(arc.layout.segments)
    w = ArchiveWriter.open(arc.layout, arc.clock, worm=worm)
    seal_some(w, arc, 10, "x")
    w.flush()
    torn = arc.layout.segments / str(w.segment)
    w.abandon()  # as a crash would: the segment stays +a
    assert flags(torn) == "a"
    with open(torn, "ab") as fh:
        fh.write(b'{"seq":11,"epoch":0,"ti')  # half a line
    size = torn.stat().st_size
    w = ArchiveWriter.open(arc.layout, arc.clock, worm=worm)
    assert flags(torn) == "i" and torn.stat().st_size < size
    assert flags(arc.layout.segments / str(w.segment)) == "a"
    seal_some(w, arc, 3, "after")
    w.close()
    events = [o.get("event") for _, o in iter_records(arc.layout)]
    assert "recovery.torn_tail" in events
    assert list(arc.layout.quarantine.iterdir())
    r = arc.verify(require_sealed=True)
    assert r.recovered


def test_writer_deletes_an_empty_append_only_segment_left_by_a_crash(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    worm = worm_here(arc.layout.segments)
    arc.seal([b"one", b"two"])
    empty = arc.layout.segments / "seg-0000000001.jsonl"
    empty.write_bytes(b"")
    append_only(empty)  # created and flagged, then the crash, before the header
    w = ArchiveWriter.open(arc.layout, arc.clock, worm=worm)
    assert not empty.exists()
    assert w.segment == "seg-0000000002.jsonl"
    w.close()
    arc.verify(require_sealed=True)


@pytest.mark.parametrize("step", ["tmp", "rename", "lost_flag", "done"])
def test_compression_of_immutable_segments_and_crashes(tmp_path: Path, step: str) -> None:
    arc = Arc(tmp_path)
    worm = worm_here(arc.layout.segments)
    w = ArchiveWriter.open(arc.layout, arc.clock, worm=worm)
    seal_some(w, arc, 50, "c")
    w.rotate_segment("test")
    closed = arc.layout.segment_names()[0]
    plain = arc.layout.segments / closed
    zst = arc.layout.segments / (closed + ".zst")
    assert flags(plain) == "i"
    crash_after = {"tmp": "tmp", "rename": "rename", "lost_flag": "rename"}.get(step)
    c = compress_segment(arc.layout, closed, "zstd", crash_after=crash_after, worm=worm)
    if step == "done":
        assert not plain.exists() and flags(zst) == "i" and c.file == zst.name
    elif step == "tmp":
        assert flags(plain) == "i" and not zst.exists()
    elif step == "rename":  # both files, both immutable: the hardest leftover
        assert flags(plain) == "i" and flags(zst) == "i"
    else:  # "lost_flag": the plain file's flag was cleared, then the crash before unlink
        release(plain)
        assert flags(plain) == "" and flags(zst) == "i"
    todo = finish_pending(arc.layout, w.segment, worm)
    assert todo == ([] if step == "done" else [closed])
    for n in todo:
        assert flags(arc.layout.segments / n) == "i"  # (again) immutable until compressed
        assert not zst.exists()
        compress_segment(arc.layout, n, "zstd", worm=worm)
    assert seg_flags(arc) == {zst.name: "i", str(w.segment): "a"}
    seal_some(w, arc, 5, "d")
    w.close()
    for key in (True, False):
        arc.verify(key=key, require_sealed=True)


# ---------------------------------------------------------------- the daemon


class Launched:
    """``auditd-py run`` under a privilege prefix, reporting over a real NOTIFY_SOCKET."""

    def __init__(self, where: Path, config: Path, prefix: list[str]) -> None:
        self.where = where
        self.notify = Notify(where / f"notify-{time.monotonic_ns()}.sock")
        self.notify.path.chmod(0o777)  # the service user must be able to send to it
        self.stderr_path = where / "daemon.stderr"
        self.stderr = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(
            [*prefix, *CLI, "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify.path)},
            cwd=Path(__file__).resolve().parents[1],
        )

    def ready(self) -> None:
        assert self.notify.wait_for("READY=1", 30), self.stderr_path.read_text()[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.notify.close()
        self.stderr.close()
        return code


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory the service user (nobody) can reach; its flags are released at the end."""
    d = Path(tempfile.mkdtemp(prefix="auditd-worm-"))
    d.chmod(0o755)
    yield d
    release_tree(d)
    shutil.rmtree(d)


@pytest.fixture
def launched() -> Iterator[list[Launched]]:
    """Daemons started by a test; any left running are killed at teardown."""
    procs: list[Launched] = []
    yield procs
    for d in procs:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)


def daemon_config(arc: Arc, logs: Path, path: Path, immutable: str | None = None) -> Path:
    segments = {"max_bytes": "64KiB", "compress": "zstd"}
    if immutable is not None:
        segments["immutable"] = immutable
    doc = configs.daemon(
        arc, segments=segments, sources=[configs.file_source(logs, poll_interval="50ms")]
    )
    return configs.write(path, doc)


def write_lines(logs: Path, start: int, n: int) -> None:
    with (logs / "app.log").open("ab") as fh:
        fh.write(b"".join(b"line %06d %s\n" % (i, b"x" * 120) for i in range(start, start + n)))


def sealed_count(arc: Arc) -> Callable[[], int]:
    return lambda: sum(1 for r in show(arc) if r["source"] == "app")


def meta(arc: Arc, event: str) -> list[dict[str, object]]:
    return [r for r in show(arc, "--meta") if r["event"] == event]


def open_segment(arc: Arc) -> Path:
    return arc.layout.segments / arc.layout.segment_names()[-1]


@pytest.mark.integration
def test_service_user_daemon_flags_segments_and_others_cannot_change_them(
    public_tmp: Path, launched: list[Launched]
) -> None:
    """As the unit runs it: user nobody with only CAP_LINUX_IMMUTABLE (ambient).

    A second process of the same user without the capability (it owns the files
    and may write them), and root without the capability, cannot truncate,
    rewrite, rename or delete the open segment (appending is what +a allows) nor
    a closed or compressed one; rotation and compression still work, and the
    archive verifies.
    """
    arc = Arc(public_tmp, random=None)
    logs = public_tmp / "logs"
    logs.mkdir()
    for p in [arc.root, *arc.root.rglob("*")]:
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
    cfg = daemon_config(arc, logs, public_tmp / "d.yaml")
    d = Launched(public_tmp, cfg, SERVICE_USER)
    launched.append(d)
    d.ready()
    write_lines(logs, 0, 100)
    assert wait_for(lambda: sealed_count(arc)() == 100)

    seg = open_segment(arc)
    assert seg.stat().st_uid == NOBODY
    assert flags(seg) == "a" and lsattr(seg).count("a") == 1
    assert_protected([*AS_NOBODY, "--inh-caps=-all"], seg, appendable=True)
    assert_protected(NO_CAP, seg, appendable=True)

    # rotation (SIGUSR1) and compression: the closed segment ends up +i, as .zst
    write_lines(logs, 100, 400)  # ~60 KiB more: the size limit rotates too
    d.proc.send_signal(signal.SIGUSR1)

    def compressed() -> bool:
        return sealed_count(arc)() == 500 and bool(list(arc.layout.segments.glob("*.zst")))

    assert wait_for(compressed), sorted(p.name for p in arc.layout.segments.iterdir())
    assert wait_for(lambda: len(list(arc.layout.segments.glob("*.jsonl"))) == 1)
    zst = sorted(arc.layout.segments.glob("*.zst"))
    assert zst and all(flags(z) == "i" for z in zst)
    assert_protected([*AS_NOBODY, "--inh-caps=-all"], zst[0], appendable=False)
    assert_protected(NO_CAP, zst[0], appendable=False)
    assert flags(open_segment(arc)) == "a"

    assert d.stop() == 0, d.stderr_path.read_text()[-3000:]
    got = {p.name: flags(p) for p in arc.layout.segments.iterdir()}
    assert all(f == "i" for f in got.values()), got
    (enabled,) = meta(arc, ev.WORM_ENABLED)
    assert enabled["attrs"] == {"directory": str(arc.layout.segments)}
    assert meta(arc, ev.SEGMENT_COMPRESSED)
    assert not meta(arc, ev.ERROR)
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_daemon_without_the_capability_seals_and_says_so(
    tmp_path: Path, launched: list[Launched]
) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml")
    d = Launched(tmp_path, cfg, NO_CAP)
    launched.append(d)
    d.ready()
    write_lines(logs, 0, 50)
    assert wait_for(lambda: sealed_count(arc)() == 50)
    assert flags(open_segment(arc)) == ""
    assert d.stop() == 0, d.stderr_path.read_text()[-3000:]
    assert all(flags(p) == "" for p in arc.layout.segments.iterdir())
    (notice,) = meta(arc, ev.WORM_UNAVAILABLE)
    assert notice["attrs"] == {
        "directory": str(arc.layout.segments),
        "reason": "no CAP_LINUX_IMMUTABLE",
    }
    assert "no CAP_LINUX_IMMUTABLE" in str(notice["message"])
    assert not meta(arc, ev.WORM_ENABLED) and not meta(arc, ev.ERROR)
    assert '"level": "info"' in d.stderr_path.read_text().split(ev.WORM_UNAVAILABLE)[1][:300]
    verify_both(arc, "--require-sealed")

    # segments.immutable: off: no flags even with the capability, and a notice of that
    off = daemon_config(arc, logs, tmp_path / "off.yaml", immutable="off")
    write_lines(logs, 50, 10)
    subprocess.run([*CLI, "run", "--config", str(off), "--once"], check=True, capture_output=True)
    assert sealed_count(arc)() == 60
    assert all(flags(p) == "" for p in arc.layout.segments.iterdir())
    assert len(meta(arc, ev.WORM_DISABLED)) == 1
    verify_both(arc, "--require-sealed")


@pytest.mark.integration
def test_kill9_and_restart_with_a_torn_append_only_segment(
    tmp_path: Path, launched: list[Launched]
) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml")
    d = Launched(tmp_path, cfg, [])
    launched.append(d)
    d.ready()
    write_lines(logs, 0, 200)
    assert wait_for(lambda: sealed_count(arc)() == 200)
    torn = open_segment(arc)
    d.stop(signal.SIGKILL)
    assert flags(torn) == "a"  # the crash left it append-only
    with open(torn, "ab") as fh:  # and a write torn in the middle of a line
        fh.write(b'{"seq":999999,"epoch":0,"time":17')
    write_lines(logs, 200, 100)

    d = Launched(tmp_path, cfg, [])
    launched.append(d)
    d.ready()
    assert wait_for(lambda: sealed_count(arc)() == 300)
    # cut (its flag lifted for that), then closed for good, and compressed (+i as well)

    def torn_flags() -> str:
        try:
            return flags(arc.layout.segment_path(torn.name))
        except FileNotFoundError:  # the plain file, unlinked by the compressor just now
            return "?"

    assert wait_for(lambda: torn_flags() == "i")
    assert flags(open_segment(arc)) == "a"
    assert d.stop() == 0, d.stderr_path.read_text()[-3000:]
    (rec,) = [r for r in show(arc, "--meta") if r["event"] == "recovery.torn_tail"]
    assert rec["attrs"]["segment"] == torn.name  # type: ignore[index]
    msgs = [r["message"] for r in show(arc) if r["source"] == "app"]
    assert msgs == [f"line {i:06d} {'x' * 120}" for i in range(300)]
    got = {p.name: flags(p) for p in arc.layout.segments.iterdir()}
    assert all(f == "i" for f in got.values()), got
    verify_both(arc, "--require-sealed")
