"""Meta-log events the lifecycle adds: checkpoints, epochs, clock jumps."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from auditd_py import config, metalog
from auditd_py.chain.encoding import Fields
from auditd_py.clock import ManualClock
from auditd_py.daemon.supervisor import CLOCK_JUMP_NS, Daemon
from auditd_py.store.writer import EpochPolicy
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import Daemon as DaemonProc
from tests.support.daemon import show, verify_both, wait_for


def test_sealing_survives_the_wall_clock_going_backwards_and_jumping(tmp_path: Path) -> None:
    arc = Arc(tmp_path)
    w = arc.writer(EpochPolicy(interval_ns=60 * 10**9))
    for i in range(10):
        arc.clock.advance(1)
        w.append(Fields(arc.clock.now_ns(), "test", b"before %d" % i))
    arc.clock.advance(-3600)  # an hour back (an NTP step, a VM restored)
    for i in range(10):
        arc.clock.advance(1)
        w.append(Fields(arc.clock.now_ns(), "test", b"after %d" % i))
        w.maybe_end_epoch()
    arc.clock.advance(7200)  # and far forward: the epoch ends at once, once
    w.append(Fields(arc.clock.now_ns(), "test", b"later"))
    w.close()
    for key in (True, False):
        rep = arc.verify(key=key, require_sealed=True)
        assert rep.records == 10 + 10 + 1 + 1  # + the segment header


def test_clock_jump_is_meta_logged(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"archive: {{path: {tmp_path / 'a'}}}\n")
    out = io.StringIO()
    metalog.configure(out)
    clock = ManualClock()
    d = Daemon(config.load(cfg), clock=clock)
    clock.t += 2 * CLOCK_JUMP_NS  # the wall clock moves, the monotonic one does not
    d._check_clock()
    clock.t -= 3 * CLOCK_JUMP_NS
    d._check_clock()
    clock.advance(3600)  # both move alike: no jump
    d._check_clock()
    events = [orjson.loads(x) for x in out.getvalue().splitlines()]
    jumps = [e for e in events if e["event"] == "clock.jump"]
    assert len(jumps) == 2
    assert jumps[0]["jump_ns"] > 0 and "forward" in jumps[0]["message"]
    assert jumps[1]["jump_ns"] < 0 and "back" in jumps[1]["message"]
    assert d.meta.counts["clock.jump"] == 2


@pytest.mark.integration
def test_daemon_seals_checkpoint_events(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    cfg = configs.write(tmp_path / "d.yaml", configs.daemon(arc, epoch_interval="300ms"))
    d = DaemonProc(tmp_path, cfg)
    try:
        d.ready()
        assert wait_for(
            lambda: len(arc.layout.checkpoint_files()) >= 4, 20
        )  # the genesis and 3 epochs
    finally:
        assert d.stop() == 0
    meta = show(arc, "--meta")
    cps = [r for r in meta if r["event"] == "checkpoint.written"]
    assert len(cps) >= 2
    epochs = [r["attrs"]["epoch"] for r in cps]  # type: ignore[index]
    assert epochs == sorted(epochs) and epochs[0] == 1  # epoch 0 is the genesis, signed at keygen
    stderr = (tmp_path / "daemon.stderr").read_text()
    assert '"epoch.advanced"' in stderr
    verify_both(arc, "--require-sealed")
