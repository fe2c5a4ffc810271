"""The daemon as a subprocess (``auditd-py run``), the way systemd runs it.

:class:`Daemon` starts it with a real ``NOTIFY_SOCKET`` (:class:`Notify`),
waits for ``READY=1`` and stops it with a signal; what it sealed is read back
with ``auditd-py show --json`` (:func:`show`) and checked with both verifiers
(:func:`verify_both`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.support.archive import Arc
from tests.support.syslog import syslog_line
from tests.support.wait import wait_until

CLI = [sys.executable, "-m", "auditd_py"]


def free_port() -> int:
    """A loopback port free for both TCP and UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", port))  # the same number must be free for UDP too
    return port


class Notify:
    """A NOTIFY_SOCKET like systemd's, collecting what the daemon says.

    Read continuously, as systemd does: a unix datagram socket queues only
    ``net.unix.max_dgram_qlen`` (often 10) messages, after which the daemon's
    sd_notify() would block.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, what: str, timeout: float, since: int = 0) -> bool:
        """Whether a message containing ``what`` arrives (from index ``since`` on)."""
        return wait_until(lambda: any(what in m for m in self.messages[since:]), timeout, 0.02)

    def during(self, seconds: float) -> list[str]:
        """The messages that arrive in the next ``seconds``."""
        start = len(self.messages)
        time.sleep(seconds)
        return self.messages[start:]

    def drain(self, timeout: float = 5.0) -> None:
        """Until every message sent before now has been read: a marker sent now
        queues behind them (a datagram socket keeps order), so once it is read,
        so are they."""
        marker = f"test-drain-{time.monotonic_ns()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(marker.encode(), str(self.path))
        assert wait_until(lambda: marker in self.messages, timeout, 0.005), "notify not drained"
        self.messages.remove(marker)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    """``auditd-py run --config CONFIG`` with its own NOTIFY_SOCKET, stderr in ``tmp``."""

    def __init__(self, tmp: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.notify = Notify(tmp / f"notify-{time.monotonic_ns()}.sock")
        self.stderr = (tmp / "daemon.stderr").open("ab")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(env or {})}
        self.proc = subprocess.Popen(
            [*CLI, "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=env,
        )
        self.tmp = tmp

    def ready(self) -> None:
        ok = self.notify.wait_for("READY=1", 20)
        assert ok, (self.tmp / "daemon.stderr").read_text()[-2000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.notify.drain()
        self.notify.close()
        self.stderr.close()
        return code


def show(arc: Arc, *args: str) -> list[dict[str, object]]:
    """``auditd-py show --json ARGS`` of the archive: one object per record."""
    out = subprocess.run(
        [*CLI, "show", str(arc.layout.root), "--json", *args], check=True, capture_output=True
    ).stdout
    return [orjson.loads(x) for x in out.splitlines()]


def verify_both(arc: Arc, *extra: str) -> None:
    """``auditd-py verify`` with the verify key and with the public key: both succeed."""
    for flag, key in (("--key", arc.vk_path), ("--public-key", arc.pk_path)):
        r = subprocess.run(
            [*CLI, "verify", str(arc.layout.root), flag, str(key), *extra],
            capture_output=True,
            check=False,
        )
        assert r.returncode == 0, r.stdout + r.stderr


def wait_for(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    """Whether ``pred()`` becomes true within ``timeout`` (polled every 0.2 s: a
    predicate here usually runs ``auditd-py show``)."""
    return wait_until(pred, timeout, 0.2)


def get_health(port: int) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the daemon's ``/health`` endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return int(r.status), orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def app_messages(arc: Arc) -> list[str]:
    """The sealed messages of source ``app``, in archive order."""
    return [str(r["message"]) for r in show(arc) if r["source"] == "app"]


def assert_suffix_exactly_once(got: list[str], n: int) -> None:
    """Retention removes the oldest lines; what is left is the rest, each once, in order."""
    want = [syslog_line(i).decode() for i in range(n)]
    assert got, "nothing left"
    k = want.index(got[0])
    assert got == want[k:], "lost, duplicated or reordered lines after the retention cut"
