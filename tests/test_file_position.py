"""The file source's sealed position: versioned, and sealed byte for byte as before."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from auditd_py import events as ev
from auditd_py.record import Fields, Position
from auditd_py.sources.file import lines
from auditd_py.sources.file.position import FilePosition, PositionVersionError, Sealed
from auditd_py.sources.file.tracked import Tracked
from tests.support.files import file_settings, key_of, manual_tailer

V1 = [
    {"k": "s:1:2", "off": 10, "fp": "0011223344556677", "fpn": 16},
    {"k": "s:1:2", "off": 10, "fp": "0011223344556677", "fpn": 16, "cut": 1},
    {"k": "s:1:2", "off": 10, "fp": "0011223344556677", "fpn": 16, "tail": "0a"},
]


@pytest.mark.parametrize("pos", V1)
def test_v1_positions_are_sealed_as_before(pos: dict[str, object]) -> None:
    p = FilePosition.from_pos(pos)
    assert p.version == 1  # no "v": version 1
    assert orjson.dumps(p.to_pos()) == orjson.dumps(pos)


def test_a_newer_version_is_refused() -> None:
    with pytest.raises(PositionVersionError):
        FilePosition.from_pos({**V1[0], "v": 2})


def test_bytes_before_the_offset() -> None:
    rec = Position(V1[0], b"last line")
    assert Sealed.of(rec).before == b"last line\n"
    assert Sealed.of(Position(V1[1], b"piece")).before == b"piece"
    assert Sealed.of(Position(V1[2], b"ignored")).before == b"\n"
    assert Sealed.of(Position({**V1[0], "off": 3}, b"last line")).before == b"ne\n"
    assert Sealed.of(Position({**V1[0], "off": 0}, b"last line")).before == b""


def test_every_record_attrs_as_orjson_writes_them() -> None:
    t = Tracked("s:1:2", "/var/log/a\u00e9.log", 1, 2, -1, 0, "0011223344556677", 16)
    batch: list[Fields] = []
    data = b"one\n" + b"x" * 25 + b"\ntwo\n" + b"y" * 25
    assert lines.split(t, data, batch, "s", 10, 1) == 3
    batch.append(lines.partial(t, "s", 1))
    for f in batch:
        attrs = f.attrs if f.raw_attrs is None else orjson.loads(f.raw_attrs)
        if f.raw_attrs is not None:
            assert f.raw_attrs == orjson.dumps(attrs)
        assert attrs is not None
        pos = attrs["pos"]
        assert orjson.dumps(FilePosition.from_pos(pos).to_pos()) == orjson.dumps(pos)
    x, y = b"x" * 10, b"y" * 10
    assert [f.message for f in batch] == [b"one", x, x, x[:5], b"two", y, y, y[:5]]
    assert t.off == len(data)


def test_a_position_of_a_newer_version_is_meta_logged_and_ignored(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\n")
    st = os.stat(log)
    key = key_of(log)
    pos = {"v": 2, "k": key, "off": 4, "fp": "x", "fpn": 8}
    t, c = manual_tailer(file_settings([tmp_path / "*.log"]), {key: Position(pos, b"one")})
    t.drain()
    t.stop()
    assert [f["forget"] for f in c.named(ev.FILE_POSITION_INVALID)] == [key]
    assert [r.message for r in c.records()] == [b"one", b"two"]
    assert key.endswith(f":{st.st_dev}:{st.st_ino}")
