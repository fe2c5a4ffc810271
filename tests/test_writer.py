"""The writer: epochs, key erasure, crash recovery, locking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from auditd_py.chain.checkpoint import Checkpoint
from auditd_py.chain.encoding import Fields
from auditd_py.chain.format import NS
from auditd_py.chain.keys import evolve_mac_key
from auditd_py.errors import ArchiveLockedError, IntegrityError, StateError
from auditd_py.store import state as state_mod
from auditd_py.store.reader import iter_records
from auditd_py.store.state import SLOT, StateFile
from auditd_py.store.writer import EpochPolicy
from tests.support.archive import Arc


def data_messages(arc: Arc) -> list[bytes]:
    return [
        obj["message"].encode() for _, obj in iter_records(arc.layout) if obj["source"] == "test"
    ]


def test_epochs_end_on_interval_and_count_and_may_be_empty(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer(EpochPolicy(interval_ns=60 * NS, max_records=5))
    for i in range(12):
        arc.clock.advance(1)
        w.append(Fields(arc.clock.now_ns(), "test", b"m%d" % i))
    arc.clock.advance(61)
    assert w.maybe_end_epoch() is not None  # by time, with records
    arc.clock.advance(61)
    empty = w.maybe_end_epoch()  # by time, nothing sealed in between
    assert empty is not None and empty.records == 0 and empty.reason == "interval"
    w.close()
    reasons = [cp.reason for cp in w.checkpoints_written]
    assert "records" in reasons and reasons[-1] == "close"
    for key in (True, False):
        r = arc.verify(key=key)
        assert r.records == 13 and r.unsealed_records == 0
        assert r.checkpoints == len(w.checkpoints_written) + 1  # and keygen's genesis


def test_old_keys_are_erased_from_the_state_file(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    mac0 = arc.vk.mac_key.hex().encode()
    mac1 = evolve_mac_key(arc.vk.mac_key).hex().encode()
    raw0 = (arc.layout.state / "sealing.state").read_bytes()
    # keygen signed the genesis checkpoint with epoch 0's keys and never stored them
    assert mac0 not in raw0 and mac1 in raw0
    arc.seal([b"a", b"b"])
    raw1 = (arc.layout.state / "sealing.state").read_bytes()
    assert len(raw1) == 2 * SLOT  # overwritten in place, never grown or recreated
    assert mac0 not in raw1 and mac1 not in raw1
    sf, st = StateFile.open(arc.layout.state)
    sf.release()
    assert st.sealer.epoch == 2 and st.sealer.mac_key != arc.vk.mac_key


def test_second_writer_is_refused(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer()
    with pytest.raises(ArchiveLockedError):
        arc.writer()
    w.close()
    arc.writer().close()  # released


def test_crash_before_checkpoint_rolls_forward(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    arc.seal([b"a", b"b"])
    w = arc.writer()
    for m in (b"c", b"d", b"e"):
        w.append(Fields(arc.clock.now_ns(), "test", m))
    w.flush()
    w.abandon()  # as if killed: no checkpoint, state not saved
    r = arc.verify()
    assert r.unsealed_records == 4  # header + c, d, e: MAC-checked but not signed yet
    with pytest.raises(IntegrityError):
        arc.verify(require_sealed=True)
    arc.seal([b"f"])
    r = arc.verify()
    assert r.unsealed_records == 0
    assert data_messages(arc) == [b"a", b"b", b"c", b"d", b"e", b"f"]


def test_torn_tail_is_cut_quarantined_and_sealed(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    arc.seal([b"a"])
    w = arc.writer()
    w.append(Fields(arc.clock.now_ns(), "test", b"b"))
    w.flush()
    w.abandon()
    seg = arc.segment_paths()[-1]
    size = seg.stat().st_size
    with seg.open("ab") as fh:
        fh.write(b'{"seq":99,"epoch":1,"time":12')  # a write cut short by a crash
    r = arc.verify()
    assert any("torn last line" in x for x in r.warnings)
    arc.seal([b"c"])
    assert seg.stat().st_size == size
    for key in (True, False):
        r = arc.verify(key=key)
        assert len(r.recovered) == 1
        assert r.recovered[0]["offset"] == size and r.recovered[0]["bytes"] == 29
    q = arc.layout.quarantine / f"{seg.name}.{size}.tail"
    assert q.read_bytes() == b'{"seq":99,"epoch":1,"time":12'
    assert data_messages(arc) == [b"a", b"b", b"c"]


def test_torn_tail_record_cannot_hide_a_truncation(tmp_path: Path) -> None:
    """Cutting sealed records and then letting the writer 'recover' still fails verify."""
    arc = Arc(tmp_path)
    arc.seal([b"a", b"b", b"c"])
    seg = arc.segment_paths()[-1]
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])
    with pytest.raises(StateError):
        arc.writer()  # the state knows more bytes were sealed than are there


def test_crash_after_checkpoint_before_key_evolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc = Arc(tmp_path)
    w = arc.writer()
    w.append(Fields(arc.clock.now_ns(), "test", b"a"))

    def crash(self: StateFile, st: object) -> None:
        raise OSError("simulated power loss")

    monkeypatch.setattr(StateFile, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        w.close()
    monkeypatch.undo()
    if w._fd is not None:  # the crashed process's descriptor goes with it (close() kept it)
        os.close(w._fd)
        w._fd = None
    assert arc.layout.checkpoint(1).exists()
    sf, st = StateFile.open(arc.layout.state)  # lock was released by close's finally
    sf.release()
    assert st.sealer.epoch == 1  # keys not yet evolved
    arc.seal([b"b"])  # finishes epoch 1 from its checkpoint, then continues in epoch 2
    r = arc.verify()
    assert r.checkpoints == 3 and r.unsealed_records == 0
    assert data_messages(arc) == [b"a", b"b"]


def test_state_slot_interrupted_save_picks_newest_and_wipes_oldest(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    arc.seal([b"a"])
    path = arc.layout.state / "sealing.state"
    sf, st = StateFile.open(arc.layout.state)
    # re-create the moment between "new slot written" and "old slot wiped"
    old_slot = 1 - sf._slot
    newer = state_mod._slot(sf._counter - 1, state_mod._encode(st))
    os.pwrite(sf._fd or -1, newer, old_slot * SLOT)
    sf.release()
    raw = path.read_bytes()
    assert raw[old_slot * SLOT : old_slot * SLOT + 8] == state_mod.MAGIC
    sf2, st2 = StateFile.open(arc.layout.state)
    sf2.release()
    assert st2.sealer.epoch == st.sealer.epoch
    raw = path.read_bytes()
    assert raw[old_slot * SLOT : (old_slot + 1) * SLOT] == bytes(SLOT)


def _rewrite_state(arc: Arc, payload: bytes) -> None:
    """Put ``payload`` into the state file as the newest slot (as an older version saved it)."""
    sf, _ = StateFile.open(arc.layout.state)
    try:
        os.pwrite(sf._fd or -1, state_mod._slot(sf._counter + 1, payload), (1 - sf._slot) * SLOT)
    finally:
        sf.release()


def test_old_format_state_file_still_loads(tmp_path: Path) -> None:
    """A state file from before the typed writer state: ``extra`` an untyped object whose
    keys came in the order the writer happened to set them (or no ``extra`` at all)."""
    arc = Arc(tmp_path)
    arc.seal([b"a", b"b"])
    sf, st = StateFile.open(arc.layout.state)
    sf.release()
    new = orjson.loads(state_mod._encode(st))
    extra = new["extra"]
    assert list(extra) == ["last_segment_no", "segment", "offset", "positions"]
    # as written by the writer of an archive created before last_segment_no existed
    old = {**new, "extra": {k: extra[k] for k in ("segment", "offset", "positions")}}
    old["extra"]["last_segment_no"] = extra["last_segment_no"]
    _rewrite_state(arc, orjson.dumps(old))
    sf, loaded = StateFile.open(arc.layout.state)
    sf.release()
    assert loaded == st
    assert state_mod._encode(loaded) == state_mod._encode(st)  # saved in the current order
    arc.seal([b"c"])  # the writer opens it, rolls forward from its offset, and continues
    assert data_messages(arc) == [b"a", b"b", b"c"]
    assert arc.verify().unsealed_records == 0

    sf, st = StateFile.open(arc.layout.state)
    sf.release()
    bare = {k: v for k, v in orjson.loads(state_mod._encode(st)).items() if k != "extra"}
    _rewrite_state(arc, orjson.dumps(bare))  # the very first format: no extra at all
    sf, loaded = StateFile.open(arc.layout.state)
    sf.release()
    assert loaded.sealer == st.sealer and loaded.writer == state_mod.WriterState()


def test_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    path = arc.layout.state / "sealing.state"
    path.write_bytes(b"\x00" * (2 * SLOT))
    with pytest.raises(StateError, match="corrupt"):
        arc.writer()


def test_loose_state_directory_is_refused(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    arc.layout.state.chmod(0o755)
    with pytest.raises(StateError, match="too open"):
        arc.writer()


@pytest.mark.integration
def test_sigkill_during_seal_loses_nothing_written(tmp_path: Path) -> None:
    """SIGKILL mid-seal: the next seal recovers, and the archive verifies."""
    arc = Arc(tmp_path, random=None)
    exe = [sys.executable, "-m", "auditd_py.cli"]
    proc = subprocess.Popen(
        [*exe, "seal", "--archive", str(arc.layout.root), "--epoch-records", "20000"],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    n = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        proc.stdin.write(b"".join(b"line %08d\n" % (n + i) for i in range(1000)))
        n += 1000
    proc.stdin.flush()
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(
        [*exe, "seal", "--archive", str(arc.layout.root)],
        input=b"after\n",
        check=True,
        stderr=subprocess.DEVNULL,
    )
    for flag in ("--key", "--public-key"):
        key = arc.vk_path if flag == "--key" else arc.pk_path
        out = subprocess.run(
            [*exe, "verify", str(arc.layout.root), flag, str(key), "--json"],
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert orjson.loads(out.stdout)["unsealed_records"] == 0
    got = [obj["message"] for _, obj in iter_records(arc.layout) if obj["source"] == "stdin"]
    assert got[-1] == "after"
    nums = [int(m.split()[1]) for m in got[:-1]]
    assert nums == list(range(len(nums)))  # a prefix of the input, in order, no duplicates
    assert len(nums) > 0


def test_checkpoint_lines_parse_back(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    arc.seal([b"a"], max_records=1)
    for name, line in arc.layout.checkpoint_files():
        cp = Checkpoint.from_line(line, file=name)
        assert cp.line + b"\n" == line
