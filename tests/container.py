"""A real systemd, booted as PID 1 in a container, for the unit's boot test.

The tree is a minimal Debian (``debootstrap --variant=minbase``) made once from
the mirror apt already uses and cached outside the work tree (root-owned, with
device nodes and setuid files: never inside anything that copies or collects
the repository). ``systemd-nspawn --volatile=overlay`` boots it with a tmpfs
over it, so the cached tree stays clean. There is no host systemd or machined
here: nspawn runs with ``--register=no --keep-unit``, and commands reach the
container through ``nsenter`` on its PID 1. ``--system-call-filter=bpf`` is
needed or the unit's ``IPAddressDeny=`` is silently not enforced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

SUITE = "bookworm"
PACKAGES = ("systemd", "dbus", "python3", "python3-venv", "procps", "e2fsprogs")
CACHE = Path(os.environ.get("AUDITD_BOOT_CACHE", "/var/cache/auditd-py-tests"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(Exception):
    """The container could not be built, booted or reached."""


def mirror() -> str:
    """The Debian mirror apt uses here (deb822 sources first, then sources.list)."""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for m in re.finditer(r"^URIs:\s*(\S+)", f.read_text(), re.MULTILINE):
            if "security" not in m.group(1):
                return m.group(1)
    lst = Path("/etc/apt/sources.list")
    if lst.is_file():
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", lst.read_text(), re.M):
            if "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def tree() -> Path:
    """The cached root file system, built on first use (about 50 s, 200 MB)."""
    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-{key}"
    done = root / ".auditd-py-complete"
    if done.exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait and reuse it
        if done.exists():
            return root
        work = CACHE / f".build-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(work),
            mirror(),
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if p.returncode:
            shutil.rmtree(work, ignore_errors=True)
            raise ContainerError(f"debootstrap failed ({p.returncode}): {p.stdout[-2000:]}")
        (work / "etc/machine-id").write_text("")  # a new id at every boot
        for junk in (work / "var/cache/apt/archives").glob("*.deb"):
            junk.unlink()
        shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        work.rename(root)
        done.write_text(" ".join(PACKAGES) + "\n")
    return root


def _ns_leader(nspawn_pid: int) -> int | None:
    """The container's PID 1 as seen here: nspawn's descendant whose NSpid ends in 1."""
    parents: dict[int, int] = {}
    leaders: list[int] = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s*(\d+)", status, re.M)
        nspid = re.search(r"^NSpid:\s*([\d\s]+)$", status, re.M)
        if ppid:
            parents[int(d.name)] = int(ppid.group(1))
        if nspid and nspid.group(1).split()[-1] == "1" and len(nspid.group(1).split()) > 1:
            leaders.append(int(d.name))
    for pid in leaders:
        p = pid
        while p > 1:
            p = parents.get(p, 0)
            if p == nspawn_pid:
                return pid
    return None


class Container:
    """One booted container; :meth:`sh` runs a shell command inside it as root."""

    def __init__(self, name: str, root: Path, binds: Mapping[Path, str], log: Path) -> None:
        self.name = name
        self.log = log
        argv = [
            "systemd-nspawn",
            "-D",
            str(root),
            "--boot",
            "-M",
            name,
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--private-network",
            "--system-call-filter=bpf",
            "--console=read-only",
            *(f"--bind-ro={host}:{inside}" for host, inside in binds.items()),
        ]
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.leader = 0

    def wait_booted(self, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContainerError(f"nspawn exited {self.proc.returncode}: {self.console()}")
            if not self.leader:
                self.leader = _ns_leader(self.proc.pid) or 0
            if self.leader:
                p = self.sh("systemctl is-system-running", check=False, timeout=10)
                state = p.stdout.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.2)
        raise ContainerError(f"not booted after {timeout:g}s (state {state!r}): {self.console()}")

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``bash -c script`` inside the container, as root, with a clean environment."""
        if not self.leader:
            raise ContainerError("the container has not booted")
        argv = [
            "nsenter",
            "-t",
            str(self.leader),
            "-a",
            "env",
            "-i",
            f"PATH={PATH}",
            "LC_ALL=C.UTF-8",
            "SYSTEMD_PAGER=",
            "SYSTEMD_COLORS=0",
            "HOME=/root",
            "bash",
            "-c",
            script,
        ]
        p = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
        if check and p.returncode:
            raise ContainerError(
                f"exit {p.returncode} from: {script}\n--- stdout\n{p.stdout[-4000:]}"
                f"\n--- stderr\n{p.stderr[-4000:]}"
            )
        return p

    def wait_for(self, script: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``script`` until it exits 0 (an observable condition), or fail."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.sh(script, check=False, timeout=timeout)
            if p.returncode == 0:
                return p
            if time.monotonic() > deadline:
                raise ContainerError(
                    f"not true within {timeout:g}s: {script}\n{p.stdout[-2000:]}{p.stderr[-2000:]}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """Power off (SIGTERM to nspawn is a clean shutdown), then make sure it is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


@contextlib.contextmanager
def booted(name: str, binds: Mapping[Path, str], log: Path) -> Iterator[Container]:
    c = Container(name, tree(), binds, log)
    try:
        c.wait_booted()
        yield c
    finally:
        c.stop()
