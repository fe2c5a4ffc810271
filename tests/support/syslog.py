"""Syslog peers for the tests: the tools (logger, rsyslogd, openssl), a test PKI,
free ports, and a realistic syslog line."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

LOGGER = shutil.which("logger")
RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None
)
OPENSSL = shutil.which("openssl")
needs_logger = pytest.mark.skipif(LOGGER is None, reason="util-linux logger not installed")
needs_rsyslog = pytest.mark.skipif(RSYSLOGD is None, reason="rsyslog not installed")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")


def free_port(kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    """A loopback port that was free for ``kind`` a moment ago."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def syslog_line(i: int) -> bytes:
    """Line ``i`` of an nginx access log relayed by syslog (varied, compressible)."""
    return (
        b"<30>Nov 26 10:00:%02d web-%d nginx[%d]: 10.0.%d.%d - - "
        b'"GET /api/v1/items?page=%d HTTP/1.1" 200 %d "-" "Mozilla/5.0"'
        % (i % 60, i % 4, 1000 + i % 50, i % 255, i % 7, i, i * 37 % 90000)
    )


def make_pki(d: Path) -> dict[str, Path]:
    """In ``d``: a CA, a server cert for localhost/127.0.0.1, a client cert, and a
    client cert from another CA; the files by name (``ca``, ``server.key``, …)."""
    assert OPENSSL is not None

    def run(*args: str) -> None:
        assert OPENSSL is not None
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, cwd=d, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "evil-ca"):
        run(
            "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN={ca}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        "client": "subjectAltName=DNS:client.test\nextendedKeyUsage=clientAuth\n",
        "evil": "subjectAltName=DNS:evil.test\nextendedKeyUsage=clientAuth\n",
    }
    for i, (name, ext) in enumerate(exts.items()):
        ca = "evil-ca" if name == "evil" else "ca"
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        cn = "localhost" if name == "server" else f"{name}.test"
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-set_serial", str(1000 + i), "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext",
        )  # fmt: skip
    return {p.stem if p.suffix == ".pem" else p.name: p for p in d.iterdir()}
