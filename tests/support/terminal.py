"""The real command-line tool on a pseudo-terminal, as a person at a terminal runs it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
from collections.abc import Callable

from tests.support.daemon import CLI


def on_terminal(
    *args: str,
    env: dict[str, str] | None = None,
    interrupt_when: Callable[[bytes], bool] | None = None,
) -> tuple[int, bytes]:
    """Run ``auditd-py ARGS`` with a terminal as stdin, stdout and controlling terminal;
    (exit code, what the terminal showed). ``interrupt_when(shown)`` true: Ctrl-C (SIGINT)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    # setsid --ctty: the terminal is the controlling one, as in a login (less reads keys there)
    proc = subprocess.Popen(
        ["setsid", "--ctty", *CLI, *args], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm", **(env or {})},
    )  # fmt: skip
    os.close(slave)
    out = bytearray()
    interrupted = False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
            if interrupt_when is not None and not interrupted and interrupt_when(bytes(out)):
                proc.send_signal(signal.SIGINT)
                interrupted = True
    finally:
        os.close(master)
        if proc.poll() is None and interrupt_when is not None and not interrupted:
            proc.kill()
        code = proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()
    return code, bytes(out)
