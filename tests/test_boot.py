"""The unit under a real systemd: the README's install guide, run as written, then each promise.

A minimal Debian is booted with systemd as PID 1 (:mod:`tests.container`); the
project's wheelhouse (what ``make wheels`` builds) is bind-mounted into it, and
the README's install block is extracted and run inside as root. The tests then
drive the service only through ``systemctl``, ``journalctl``, ``logger`` and the
CLI inside the container, in this order (they share one booted container).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container import Container, booted

pytestmark = [pytest.mark.integration, pytest.mark.boot]

REPO = Path(__file__).resolve().parent.parent
UNIT = "auditd-py.service"
CONFIG = "/etc/auditd-py/auditd-py.yaml"
ARCHIVE = "/var/lib/auditd-py/archive"
DROPIN = "/etc/systemd/system/auditd-py.service.d"
INSTALL_DIR = "/root/install"
GUIDE = re.compile(r"<!-- install-guide:[^>]*-->\s*```sh\n(.*?)```\s*<!-- /install-guide -->", re.S)
COLLECTOR_PORT = 6601
COLLECTOR_OUT = "/var/lib/collector/received"

# What the later tests run: qa.yaml's sources (files, syslog, journald) plus
# a second file glob and a collector on a loopback address that is not
# "localhost" (127.0.0.2), to exercise the unit's IP policy.
TEST_CONFIG = f"""\
environment: qa
archive:
  path: {ARCHIVE}
  state: /var/lib/auditd-py/state
sealing:
  epoch_interval: 15m
sources:
  - name: app
    type: file
    paths: ["/var/log/app/*.log*"]
  - name: syslog
    type: syslog
    listen:
      - udp://127.0.0.1:5514
      - tcp://127.0.0.1:5514
      - unix:///run/auditd-py/log.sock
  - name: journal
    type: journald
    matches: ["_SYSTEMD_UNIT=app.service"]
forward:
  - name: central
    type: syslog
    target: tcp://127.0.0.2:{COLLECTOR_PORT}
    ack_timeout: 3s
    retry_max: 1s
"""

COLLECTOR = f"""\
import socket, threading
server = socket.create_server(("127.0.0.2", {COLLECTOR_PORT}))
out = open("{COLLECTOR_OUT}", "ab", buffering=0)
lock = threading.Lock()
def take(conn):
    while data := conn.recv(65536):
        with lock:
            out.write(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=take, args=(conn,), daemon=True).start()
"""
COLLECTOR_UNIT = """\
[Unit]
Description=a plain TCP syslog collector for the boot test
[Service]
StateDirectory=collector
ExecStart=/usr/bin/python3 /usr/local/bin/collector.py
"""

APP_UNIT = """\
[Unit]
Description=an application that logs to the journal
[Service]
Type=oneshot
ExecStart=/bin/echo %I
"""


def install_block() -> str:
    m = GUIDE.search((REPO / "README.md").read_text())
    assert m, "README.md has no install-guide block"
    return m.group(1)


def wheelhouse(dest: Path) -> Path:
    """What `make wheels` builds: the project (from its sdist, so that nothing stale in
    a build/ directory gets in) and its dependencies as wheels."""
    dist = dest.parent / "dist"
    build = [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)]
    subprocess.run(build, check=True, timeout=600, capture_output=True)
    (wheel,) = dist.glob("auditd_py-*.whl")  # only now that it is built
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), str(wheel)]
    subprocess.run(pip, check=True, timeout=600, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    base = tmp_path_factory.mktemp("boot")
    wheels = wheelhouse(base / "wheels")
    name = f"auditd-boot-{uuid.uuid4().hex[:8]}"
    with booted(name, {wheels: f"{INSTALL_DIR}/wheels"}, base / "console.log") as c:
        p = c.sh(f"cd {INSTALL_DIR} && set -euo pipefail\n{install_block()}", timeout=300)
        assert p.stdout.strip().splitlines()[-1] == "active", p.stdout
        yield c


# ---------------------------------------------------------------- helpers


def main_pid(c: Container) -> int:
    return int(c.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip())


def prop(c: Container, name: str) -> str:
    return c.sh(f"systemctl show -p {name} --value {UNIT}").stdout.strip()


def journal(c: Container, *match: str) -> list[dict[str, str]]:
    out = c.sh(f"journalctl --no-pager -o json {' '.join(match)}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def sealed(c: Container, token: str, *, source: str, timeout: float = 30.0) -> str:
    """Wait until a record of ``source`` holding ``token`` is in the archive."""
    p = c.wait_for(
        f"auditd-py show {ARCHIVE} --source {source} --grep {token} | grep -F {token}", timeout
    )
    return p.stdout


def restart(c: Container) -> int:
    c.sh(f"systemctl restart {UNIT}")
    return main_pid(c)


def token() -> str:
    return f"boot-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- the install and start


def test_install_guide_runs_the_service_as_its_user(box: Container) -> None:
    c = box
    assert prop(c, "ActiveState") == "active"
    assert prop(c, "Type") == "notify"
    assert prop(c, "FragmentPath") == f"/etc/systemd/system/{UNIT}"
    pid = main_pid(c)
    assert c.sh(f"ps -o user= -p {pid}").stdout.strip() == "auditd-py"
    # The config is readable by the service user (ExecStartPre= proved it too),
    # and by nobody else.
    assert c.sh(f"stat -c '%U:%G %a' {CONFIG}").stdout.strip() == "root:auditd-py 640"
    denied = c.sh(f"runuser -u nobody -- cat {CONFIG}", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert "auditd-py 0.1" in c.sh("auditd-py --version").stdout


def test_start_returns_only_after_ready(box: Container) -> None:
    c = box
    c.sh(f"systemctl stop {UNIT}")
    tok = token()
    # The syslog TCP listener must accept at once when `systemctl start` returns.
    c.sh(f"systemctl start {UNIT} && logger -T -n 127.0.0.1 -P 5514 --socket-errors=on {tok}")
    sealed(c, tok, source="syslog")
    inv = prop(c, "InvocationID")
    entries = journal(c, f"_SYSTEMD_INVOCATION_ID={inv}", "+", f"INVOCATION_ID={inv}")
    started = [e for e in entries if e.get("JOB_TYPE") == "start" and e.get("JOB_RESULT")]
    assert started, "systemd logged no start job for this invocation"
    t_started = int(started[0]["__MONOTONIC_TIMESTAMP"])
    opened = [e for e in entries if '"source.added"' in e.get("MESSAGE", "")]
    assert len(opened) == 3, [e.get("MESSAGE") for e in entries]
    assert all(int(e["__MONOTONIC_TIMESTAMP"]) < t_started for e in opened)


# ---------------------------------------------------------------- the sources


def test_logger_reaches_the_syslog_source(box: Container) -> None:
    c = box
    unix, udp, tcp = token(), token(), token()
    c.sh(f"logger -u /run/auditd-py/log.sock --socket-errors=on -t boot {unix}")
    c.sh(f"logger -d -n 127.0.0.1 -P 5514 -t boot {udp}")
    c.sh(f"logger -T -n 127.0.0.1 -P 5514 --socket-errors=on -t boot {tcp}")
    for tok in (unix, udp, tcp):
        sealed(c, tok, source="syslog")
    rec = json.loads(
        c.sh(f"auditd-py show {ARCHIVE} --json --source syslog --grep {tcp}").stdout.splitlines()[0]
    )
    assert rec["attrs"]["syslog"]["app"] == "boot"


def test_journald_source_reads_the_containers_journal(box: Container) -> None:
    c = box
    c.sh(f"cat > /etc/systemd/system/app@.service <<'EOF'\n{APP_UNIT}EOF\nsystemctl daemon-reload")
    tok = token()
    # qa.yaml matches _SYSTEMD_UNIT=app.service: an instance name does not match,
    # so the same text from app@ must not be sealed while app.service's is.
    c.sh(f"systemctl start app@{tok}x.service")
    c.sh(
        f"cp /etc/systemd/system/app@.service /etc/systemd/system/app.service && "
        f"sed -i 's/%I/{tok}/' /etc/systemd/system/app.service && "
        "systemctl daemon-reload && systemctl start app.service"
    )
    out = sealed(c, tok, source="journal")
    assert f"{tok}x" not in out


def test_file_source_reads_var_log(box: Container) -> None:
    c = box
    tok = token()
    c.sh(f"mkdir -p /var/log/app && echo {tok} >> /var/log/app/boot.log")
    sealed(c, tok, source="app")


# ---------------------------------------------------------------- the sandbox


def test_segments_are_append_only_then_immutable(box: Container) -> None:
    c = box
    out = c.sh(f"auditd-py rotate --config {CONFIG}").stdout
    closed = re.search(r"closed segments/(\S+)", out)
    now = re.search(r"now writing segments/(\S+)", out)
    assert closed and now, out
    seg = f"{ARCHIVE}/segments"
    c.wait_for(f"lsattr -d {seg}/{now.group(1)} | cut -d' ' -f1 | grep -q a")
    # The closed segment is compressed in the background; the .zst is immutable too.
    zst = f"{seg}/{closed.group(1)}.zst"
    c.wait_for(f"lsattr -d {zst} | cut -d' ' -f1 | grep -q i")
    # The service user owns the file but lacks the capability: it cannot undo it.
    trunc = c.sh(f"runuser -u auditd-py -- truncate -s 0 {zst}", check=False)
    assert trunc.returncode != 0 and "Operation not permitted" in trunc.stderr


def test_protect_system_keeps_the_daemon_inside_its_directories(box: Container) -> None:
    c = box
    pid = main_pid(c)
    # In the daemon's own mount namespace even root (no permission check stands
    # in the way) gets EROFS outside the unit's directories ...
    mnt = f"nsenter -t {pid} -m"
    for path in ("/etc/auditd-py/probe", "/usr/probe", "/opt/auditd-py/probe", "/var/log/probe"):
        p = c.sh(f"{mnt} touch {path}", check=False)
        assert p.returncode != 0 and "Read-only file system" in p.stderr, (path, p.stderr)
    # ... while the service user writes its state directory.
    user = "setpriv --reuid auditd-py --regid auditd-py --clear-groups"
    c.sh(f"{mnt} {user} touch /var/lib/auditd-py/probe && rm /var/lib/auditd-py/probe")
    assert c.sh(f"{mnt} ls -A /root /home").stdout.split() == ["/home:", "/root:"]
    # The archive outside the unit's directories: the daemon cannot start ...
    c.sh(f"systemctl stop {UNIT} && cp {CONFIG} /root/config.saved")
    c.sh(
        "mkdir -p /srv && auditd-py keygen --archive /srv/archive --state /srv/archive-state "
        "--verify-key /root/srv-verify.key --public-key /root/srv-public.key && "
        "chown -R auditd-py:auditd-py /srv/archive /srv/archive-state && "
        f"sed -i 's|{ARCHIVE}|/srv/archive|; s|/var/lib/auditd-py/state|/srv/archive-state|' "
        f"{CONFIG}"
    )
    failed = c.sh(f"systemctl start {UNIT}", check=False)
    assert failed.returncode != 0
    assert "Read-only file system" in c.sh(f"journalctl --no-pager -o cat -u {UNIT} -n 30").stdout
    # ... until a drop-in names it, as the unit file says.
    c.sh(
        f"systemctl reset-failed {UNIT}; mkdir -p {DROPIN} && printf "
        f"'[Service]\\nReadWritePaths=/srv/archive /srv/archive-state\\n' > {DROPIN}/srv.conf && "
        f"systemctl daemon-reload && systemctl start {UNIT}"
    )
    c.sh(
        f"systemctl stop {UNIT} && rm {DROPIN}/srv.conf && cp /root/config.saved {CONFIG} && "
        f"systemctl daemon-reload && systemctl start {UNIT}"
    )


# ---------------------------------------------------------------- reload


def test_reload_rejects_a_broken_config_and_applies_a_good_one(box: Container) -> None:
    c = box
    pid = main_pid(c)
    c.sh(f"cp {CONFIG} /root/config.good")
    # Not YAML the schema accepts: the reload fails, says why, the daemon runs on.
    c.sh(f"sed -i 's/type: journald/type: nosuch/' {CONFIG} && grep -q nosuch {CONFIG}")
    bad = c.sh(f"systemctl reload {UNIT}", check=False)
    assert bad.returncode != 0
    log = c.sh(f"journalctl --no-pager -o cat -u {UNIT} -n 20").stdout
    assert "auditd-py.yaml" in log and "nosuch" in log, log
    assert prop(c, "ActiveState") == "active" and main_pid(c) == pid
    # Valid YAML, but a change only a restart can make: rejected by the daemon.
    c.sh(
        f"cp /root/config.good {CONFIG} && sed -i 's/epoch_interval: 15m/epoch_interval: 5m/' "
        f"{CONFIG}"
    )
    rejected = c.sh(f"systemctl reload {UNIT}", check=False)
    assert rejected.returncode != 0
    log = c.sh(f"journalctl --no-pager -o cat -u {UNIT} -n 20").stdout
    assert "sealing settings cannot change on reload" in log, log
    assert main_pid(c) == pid
    # A good one: a new file glob is read after `systemctl reload` returns.
    c.sh(
        f"cp /root/config.good {CONFIG} && "
        f'sed -i \'s|"/var/log/app/\\*.log\\*"|"/var/log/app/*.log*", "/var/log/app2/*.log"|\' '
        f"{CONFIG} && grep -q app2 {CONFIG}"
    )
    tok = token()
    c.sh(f"mkdir -p /var/log/app2 && echo {tok} > /var/log/app2/new.log")
    c.sh(f"systemctl reload {UNIT}")
    assert main_pid(c) == pid
    sealed(c, tok, source="app")
    assert "reloaded" in c.sh(f"journalctl --no-pager -o cat -u {UNIT} -n 20").stdout


# ---------------------------------------------------------------- forwarding and the IP policy


def test_forwarding_works_under_the_units_ip_policy(box: Container) -> None:
    c = box
    c.sh(
        f"cat > /usr/local/bin/collector.py <<'EOF'\n{COLLECTOR}EOF\n"
        f"cat > /etc/systemd/system/collector.service <<'EOF'\n{COLLECTOR_UNIT}EOF\n"
        "systemctl daemon-reload && systemctl start collector.service"
    )
    c.wait_for(f"bash -c 'echo > /dev/tcp/127.0.0.2/{COLLECTOR_PORT}'")
    c.sh(f"cat > {CONFIG} <<'EOF'\n{TEST_CONFIG}EOF\n")
    restart(c)
    tok = token()
    c.sh(f"logger -u /run/auditd-py/log.sock -t boot {tok}")
    c.wait_for(f"grep -qF {tok} {COLLECTOR_OUT}")
    # A drop-in that pins the peers (as the unit file shows) is enforced: the
    # collector at 127.0.0.2 is unreachable (its SYN dropped), the failure is
    # logged and sealed, and what is sealed meanwhile waits ...
    c.sh(
        f"mkdir -p {DROPIN} && printf '[Service]\\nIPAddressDeny=any\\n"
        f"IPAddressAllow=127.0.0.1\\n' > {DROPIN}/pin.conf && systemctl daemon-reload"
    )
    restart(c)
    held = token()
    c.sh(f"logger -u /run/auditd-py/log.sock -t boot {held}")
    sealed(c, held, source="syslog")
    c.wait_for(f"journalctl --no-pager -o cat -u {UNIT} -n 40 | grep -q forward.failed", 30)
    assert c.sh(f"grep -cF {held} {COLLECTOR_OUT}", check=False).stdout.strip() == "0"
    # ... to be delivered once the policy allows the collector again.
    c.sh(f"rm {DROPIN}/pin.conf && systemctl daemon-reload")
    restart(c)
    c.wait_for(f"grep -qF {held} {COLLECTOR_OUT}")


# ---------------------------------------------------------------- watchdog and stop


def test_watchdog_restarts_a_hung_daemon(box: Container) -> None:
    """A daemon that stops pinging (here: stopped with SIGSTOP) is aborted and restarted.

    That the ping stops when only the seal loop hangs is shown in-process
    (tests/test_observe.py); here the unit's WatchdogSec=/Restart= do their part.
    """
    c = box
    c.sh(
        f"mkdir -p {DROPIN} && printf '[Service]\\nWatchdogSec=4s\\nRestartSec=1s\\n"
        f"TimeoutAbortSec=3s\\n' > {DROPIN}/watchdog.conf && systemctl daemon-reload"
    )
    pid = restart(c)
    restarts = int(prop(c, "NRestarts"))
    c.sh(f"kill -STOP {pid}")
    c.wait_for(f"journalctl --no-pager -u {UNIT} -n 50 | grep -q 'Watchdog timeout'", 30)
    c.wait_for(
        f'[ "$(systemctl show -p NRestarts --value {UNIT})" -gt {restarts} ] && '
        f"systemctl is-active {UNIT}",
        30,
    )
    assert main_pid(c) != pid
    c.sh(f"rm {DROPIN}/watchdog.conf && systemctl daemon-reload")
    restart(c)
    tok = token()
    c.sh(f"logger -u /run/auditd-py/log.sock -t boot {tok}")
    sealed(c, tok, source="syslog")


def test_journal_priorities_follow_the_event_severity(box: Container) -> None:
    c = box
    warn = c.sh(f"journalctl --no-pager -o cat -u {UNIT} -p warning").stdout
    assert '"forward.failed"' in warn, warn
    assert '"source.added"' not in warn
    info = c.sh(f"journalctl --no-pager -o cat -u {UNIT} -p info").stdout
    assert '"source.added"' in info


def test_stop_ends_with_a_checkpoint_and_exit_0(box: Container) -> None:
    c = box
    c.sh(f"systemctl stop {UNIT}")
    assert prop(c, "ExecMainStatus") == "0"
    assert prop(c, "Result") == "success"
    log = c.sh(f"journalctl --no-pager -o cat -u {UNIT} -n 30").stdout
    assert '"daemon.stopped"' in log, log
    for key in ("--key /root/verify.key", "--public-key /root/public.key"):
        p = c.sh(f"auditd-py verify {ARCHIVE} {key} --require-sealed", check=False)
        assert p.returncode == 0, p.stdout + p.stderr
