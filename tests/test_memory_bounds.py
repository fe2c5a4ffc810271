"""Memory bounded by bytes in the daemon core (issue 14, item 1, file side).

The queue counts bytes as well as records, the seal loop takes bounded turns,
and a file of lines far longer than ``max_line_bytes`` is sealed in pieces as
it streams: the daemon's peak RSS stays under the 256 MB goal, and every byte
is sealed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from auditd_py.chain.encoding import Fields
from auditd_py.daemon.queue import TAKE_RECORDS, Barrier, BatchQueue
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Daemon, free_port, get_health, wait_for

GOAL = 256 * 1000 * 1000


def _batch(n: int, size: int) -> list[Fields]:
    return [Fields(0, "app", b"x" * size) for _ in range(n)]


def test_the_queue_is_bounded_in_bytes() -> None:
    q = BatchQueue(capacity=1_000_000, max_bytes=4 << 20)
    assert q.put(_batch(3, 1 << 20), block=False)
    assert not q.put(_batch(2, 1 << 20), block=False)  # 5 MiB > 4 MiB, though 5 records fit
    assert q.put(_batch(1, 512 << 10), block=False)
    assert [len(b) for b in q.get(0)] == [3, 1]
    assert q.put(_batch(2, 1 << 20), block=False)  # room again
    one = _batch(1, 9 << 20)
    assert not q.put(one, block=False)
    q.get(0)
    assert q.put(one, block=False)  # an empty queue takes any batch: no deadlock


def test_the_seal_loop_takes_bounded_turns() -> None:
    q = BatchQueue(capacity=1_000_000)
    for _ in range(10):
        q.put(_batch(3000, 10))
    done = threading.Event()
    q.put_barrier(Barrier(done))
    takes = []
    while True:
        got = [i for b in q.get(0) for i in b]
        if not got:
            break
        takes.append(got)
    sizes = [sum(isinstance(i, Fields) for i in t) for t in takes]
    assert max(sizes) <= TAKE_RECORDS and sum(sizes) == 30_000, sizes
    assert isinstance(takes[-1][-1], Barrier) and q.depth() == 0  # in order, nothing lost


def _hwm(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.integration
def test_a_file_of_long_lines_is_sealed_in_bounded_memory(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    lines, size = 32, 8 << 20  # 256 MiB in lines of 8 MiB, each sealed as 8 pieces
    with (logs / "app.log").open("wb") as fh:
        for _ in range(lines):
            fh.write(b"y" * size + b"\n")
    port = free_port()
    doc = configs.daemon(
        arc,
        sources=[configs.file_source(logs)],
        metrics={"listen": f"127.0.0.1:{port}"},
        segments={"immutable": "off", "compress": "none"},
    )
    d = Daemon(tmp_path, configs.write(tmp_path / "d.yaml", doc))
    peak = 0
    try:
        d.ready()

        def sealed() -> bool:
            nonlocal peak
            peak = max(peak, _hwm(d.proc.pid))
            srcs = {s["name"]: s for s in get_health(port)[1]["sources"]}
            return bool(srcs["app"]["records_sealed"] >= lines * 8)

        assert wait_for(sealed, 120)
        peak = max(peak, _hwm(d.proc.pid))
    finally:
        assert d.stop() == 0
    assert peak < GOAL, f"peak RSS {peak / 1e6:.0f} MB"
    total = sum(p.stat().st_size for p in arc.layout.segments.iterdir())
    assert total > lines * size  # every byte is in the archive
