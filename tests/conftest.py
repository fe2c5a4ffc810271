"""Suite-wide rules.

* A skipped test is not a passing test: unless ``AUDITD_ALLOW_SKIP=1``, a skip
  (a missing tool, say) fails the run, so a CI machine without rsyslog or
  journal-remote cannot look green.
* Tests start their own servers and must leave nothing running: a test that
  leaves a thread, an open file descriptor or a child process behind fails
  (after its fixtures' teardown and a grace of up to 2 s), and after the
  session no child process of the test run may remain.
* Temp dirs stay deletable: append-only/immutable flags that daemons set on
  their segments are cleared after each test and at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.support import leaks
from tests.support.syslog import OPENSSL, make_pki
from tests.support.worm import release_tree

ALLOW_SKIP = os.environ.get("AUDITD_ALLOW_SKIP") == "1"
leaks.track_watchdog()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Before the fixtures' teardown: clear chattr +a/+i that a daemon set below tmp_path.

    Tests run as root, so daemons they start make segments append-only/immutable,
    which no one can delete (not even pytest's temp-dir cleanup) until cleared.
    """
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if isinstance(tmp, Path):
        release_tree(tmp)


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Generator[None, None, None]:
    """Fail a test that leaves threads, file descriptors or child processes behind.

    pytest sets up a test's fixtures scope by scope, session first, and among
    the function-scoped ones the autouse fixtures of this (the root) conftest
    first; so the snapshot here is taken after every module- and
    session-scoped fixture the test uses is up (their servers are in the
    baseline, not leaks), and the check after ``yield`` runs after every other
    function-scoped fixture of the test has been torn down.
    """
    before = leaks.snapshot()
    yield
    left = leaks.leaked(before)
    if left:
        leaks.kill_leaked(before)
        pytest.fail(f"{request.node.nodeid} left behind:\n  " + "\n  ".join(left), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _release_inode_flags_at_end(
    tmp_path_factory: pytest.TempPathFactory,
) -> Generator[None, None, None]:
    """The same for every temp dir of the session, after every test and fixture is done.

    Also, first, for the older sessions' dirs that pytest deletes (it keeps the
    last 3), in case one was killed before its own teardown ran.
    """
    base = tmp_path_factory.getbasetemp()
    num = base.name.removeprefix("pytest-")
    if num.isdigit():  # numbered (no --basetemp, which pytest empties itself)
        for d in base.parent.iterdir():
            old = d.name.removeprefix("pytest-")
            if d.name.startswith("garbage-") or (old.isdigit() and int(old) <= int(num) - 3):
                release_tree(d)
    yield
    release_tree(base)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test PKI (:func:`tests.support.syslog.make_pki`), one per module that uses it."""
    if OPENSSL is None:
        pytest.skip("openssl not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and not ALLOW_SKIP:
        rep.outcome = "failed"
        rep.longrepr = (
            f"skipped tests count as failures here (AUDITD_ALLOW_SKIP=1 to allow): {rep.longrepr}"
        )


def _children(pid: int) -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == pid and state != "Z":
            out.append(f"{d.name}: {cmd.strip()}")
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = _children(os.getpid())
    if left:
        print("\nprocesses left running by the tests:\n  " + "\n  ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
