"""The control channel: ``auditd-py rotate`` and recorded reads, over ``ARCHIVE/.control.sock``.

The protocol and the server are tested in process (request parsing, errors,
clean stop, stale sockets, long paths, who may connect); the rest against a
real daemon subprocess, as an operator would use it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from auditd_py import config, control, events
from auditd_py.control import (
    ABSENT,
    DENIED,
    MAX_REQUEST,
    REFUSED,
    REJECTED,
    TIMEOUT,
    BadRequest,
    ControlError,
    Controller,
    ControlServer,
    Peer,
    Reloaded,
    Request,
    Rotated,
    parse_request,
    socket_path,
)
from auditd_py.daemon.supervisor import Daemon as InProcessDaemon
from auditd_py.errors import AuditdError
from tests.support import configs
from tests.support.archive import Arc
from tests.support.daemon import CLI, Daemon, show, verify_both, wait_for
from tests.support.wait import wait_until

integration = pytest.mark.integration


# ---------------------------------------------------------------- request parsing


def test_parse_valid_requests() -> None:
    assert parse_request(b'{"op":"rotate"}\n') == Request("rotate")
    assert parse_request(b'{"op":"reload"}') == Request("reload")
    req = parse_request(
        b'{"op":"access","command":"verify","args":{"mode":"public-key","anchor":true,'
        b'"require_sealed":false,"json":null}}\r\n'
    )
    assert req.op == "access" and req.command == "verify" and req.ignored == ()
    assert req.args == {"mode": "public-key", "anchor": True, "require_sealed": False, "json": None}
    req = parse_request(b'{"op":"access","command":"show","args":{"meta":true,"grep":"a b"}}')
    assert req.args == {"meta": True, "grep": "a b"}
    assert parse_request(b'{"op":"access","command":"prove","args":{"seq":7}}').args == {"seq": 7}
    assert parse_request(b'{"op":"access","command":"prove"}').args == {}


def test_unknown_arguments_are_not_recorded_but_named() -> None:
    req = parse_request(
        b'{"op":"access","command":"prove","args":{"seq":1,"key":"c2VjcmV0","new_flag":true}}'
    )
    assert req.args == {"seq": 1} and req.ignored == ("key", "new_flag")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"", "empty request"),
        (b"\n", "empty request"),
        (b"not json\n", "not JSON"),
        (b"\xff\xfe{}\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"command":"verify"}\n', 'no "op"'),
        (b'{"op":7}\n', 'no "op"'),
        (b'{"op":"reboot"}\n', "unknown op 'reboot'"),
        (b'{"op":"rotate","segment":"x"}\n', "unexpected field(s) segment"),
        (b'{"op":"access"}\n', "command must be one of prove, show, verify"),
        (b'{"op":"access","command":"head"}\n', "not 'head'"),
        (b'{"op":"access","command":"show","args":[]}\n', "args must be a JSON object"),
        (b'{"op":"access","command":"prove","args":{"seq":"1"}}', "seq must be an integer"),
        (b'{"op":"access","command":"prove","args":{"seq":true}}', "seq must be an integer"),
        (b'{"op":"access","command":"show","args":{"meta":1}}', "meta must be a bool"),
        (b'{"op":"access","command":"verify","args":{"mode":"x"}}', "mode must be one of"),
        (b'{"op":"access","command":"show","args":{"grep":"' + b"a" * 2000 + b'"}}', "longer"),
        (b'{"op":"rotate","pad":"' + b"x" * MAX_REQUEST + b'"}', "too large"),
    ],
)
def test_parse_bad_requests(line: bytes, error: str) -> None:
    with pytest.raises(BadRequest) as ei:
        parse_request(line)
    assert error in ei.value.message
    assert isinstance(ei.value, AuditdError)


def test_describe_reads_like_the_command_line() -> None:
    assert control.describe("verify", {"mode": "key", "anchor": False}) == "verify --key"
    assert (
        control.describe("verify", {"mode": "public-key", "require_sealed": True, "json": None})
        == "verify --public-key --require-sealed"
    )
    assert control.describe("show", {"meta": True, "grep": "a b"}) == "show --meta --grep 'a b'"
    assert control.describe("prove", {"seq": 3}) == "prove --seq 3"


# ---------------------------------------------------------------- the server in process


def _control_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("auditd-control")]


def ask(path: Path, data: bytes, *, half_close: bool = True) -> dict[str, Any]:
    """Send raw bytes to a control socket and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    doc = orjson.loads(buf)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def echo_server(tmp_path: Path) -> Iterator[tuple[ControlServer, list[tuple[Request, Peer]]]]:
    seen: list[tuple[Request, Peer]] = []
    errors: list[str] = []

    def handle(req: Request, peer: Peer) -> dict[str, Any]:
        seen.append((req, peer))
        if req.command == "prove" and req.args.get("seq") == 13:
            raise RuntimeError("a bug")
        return {"ok": True, "op": req.op}

    srv = ControlServer(socket_path(tmp_path), handle, lambda m, _p: errors.append(m))
    srv.start()
    try:
        yield srv, seen
    finally:
        srv.stop()


def test_server_answers_errors_and_keeps_serving(
    echo_server: tuple[ControlServer, list[tuple[Request, Peer]]],
) -> None:
    srv, seen = echo_server
    path = srv.path
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    bad = [
        b"garbage\n",
        b'{"op":"nope"}\n',
        b"",
        b'{"op":"rotate"' + b" " * (MAX_REQUEST + 10) + b"}\n",
        b'{"op":"access","command":"prove","args":{"seq":13}}\n',  # the handler raises
    ]
    for data in bad:
        doc = ask(path, data)
        assert doc["ok"] is False and doc["error"], data[:40]
    assert "internal error" in ask(path, bad[-1])["error"]
    assert "too large" in ask(path, bad[3])["error"]
    doc = ask(path, b'{"op":"rotate"}\n')
    assert doc == {"ok": True, "op": "rotate"}
    req, peer = seen[-1]
    assert req.op == "rotate"
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.getuid(), os.getgid())
    # the client side, against the same server
    assert control.request(path.parent, {"op": "rotate"}, 5) == {"ok": True, "op": "rotate"}
    with pytest.raises(ControlError) as ei:
        control.request(path.parent, {"op": "nope"}, 5)
    assert ei.value.reason == REJECTED and "unknown op" in str(ei.value)


def test_a_slow_client_does_not_hold_up_the_others(
    echo_server: tuple[ControlServer, list[tuple[Request, Peer]]],
) -> None:
    srv, _ = echo_server
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(str(srv.path))
        idle.sendall(b'{"op":')  # and nothing more
        t0 = time.monotonic()
        assert control.request(srv.path.parent, {"op": "rotate"}, 5)["ok"] is True
        assert time.monotonic() - t0 < 1
        idle.settimeout(10)
        answer = idle.recv(4096)  # the server gives up on it after IO_TIMEOUT
    assert b"no request line" in answer


def test_server_stops_cleanly_and_removes_its_socket(tmp_path: Path) -> None:
    before = _control_threads()
    srv = ControlServer(socket_path(tmp_path), lambda r, p: {"ok": True})
    srv.start()
    assert _control_threads() != before
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hanging:
        hanging.connect(str(srv.path))  # a request under way when stop comes
        assert wait_until(lambda: "auditd-control-request" in _control_threads(), 5)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 2
    assert not srv.path.exists()
    assert _control_threads() == before
    srv.stop()  # twice is harmless


def test_stale_socket_is_replaced_and_other_files_are_not(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # what a daemon killed with SIGKILL leaves
    with pytest.raises(ControlError) as ei:
        control.request(tmp_path, {"op": "rotate"}, 1)
    assert ei.value.reason == REFUSED
    srv = ControlServer(path, lambda r, p: {"ok": True})
    srv.start()
    try:
        assert control.request(tmp_path, {"op": "rotate"}, 5) == {"ok": True}
    finally:
        srv.stop()
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(AuditdError, match="not a socket"):
        ControlServer(path, lambda r, p: {"ok": True}).start()
    assert path.read_text() == "not a socket"


def test_a_long_archive_path_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(socket_path(deep))) > 108  # more than a sockaddr_un holds
    srv = ControlServer(socket_path(deep), lambda r, p: {"ok": True, "peer": p.pid})
    srv.start()
    try:
        assert socket_path(deep).exists()
        assert control.request(deep, {"op": "rotate"}, 5) == {"ok": True, "peer": os.getpid()}
    finally:
        srv.stop()
    assert not socket_path(deep).exists()


def test_client_reasons(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as ei:
        control.request(tmp_path / "nope", {"op": "rotate"}, 1)
    assert ei.value.reason == ABSENT
    with pytest.raises(ControlError) as ei:
        control.request(tmp_path, {"op": "rotate"}, 1)
    assert ei.value.reason == ABSENT and "no daemon is listening" in str(ei.value)
    # listening but never answering
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(socket_path(tmp_path)))
        mute.listen(4)
        with pytest.raises(ControlError) as ei:
            control.request(tmp_path, {"op": "rotate"}, 0.3)
        assert ei.value.reason == TIMEOUT


def _request_as(uid: int, gid: int, archive: Path) -> str:
    """control.request from a child process running as uid:gid: "ok" or the reason."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                control.request(archive, {"op": "rotate"}, 5)
                out = "ok"
            except ControlError as exc:
                out = exc.reason
            os.write(w, out.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out


def test_only_the_daemons_user_and_group_may_connect() -> None:
    """Mode 0660: the group gets in (and is recorded), others get "permission denied"."""
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        root = Path(d)
        root.chmod(0o755)
        srv = ControlServer(socket_path(root), lambda r, p: {"ok": True, "uid": p.uid})
        srv.start()
        try:
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                other_gid = nobody.pw_gid if nobody.pw_gid != os.getgid() else 65533
                assert _request_as(nobody.pw_uid, other_gid, root) == DENIED
                assert _request_as(nobody.pw_uid, os.getgid(), root) == "ok"  # the group
            else:  # not root: take our own permission away
                srv.path.chmod(0)
                with pytest.raises(ControlError) as ei:
                    control.request(root, {"op": "rotate"}, 5)
                assert ei.value.reason == DENIED and "permission denied" in str(ei.value)
        finally:
            srv.stop()


# ---------------------------------------------------------------- the controller


class FakeMeta:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.logged: list[tuple[str, str, dict[str, Any]]] = []

    def event(self, name: str, message: str, **fields: Any) -> None:
        assert name in events.CATALOGUE
        self.events.append((name, message, fields))

    def log_only(self, name: str, message: str, **fields: Any) -> None:
        assert name in events.CATALOGUE
        self.logged.append((name, message, fields))


def test_controller_runs_rotations_on_the_main_loop_and_records_reads() -> None:
    meta = FakeMeta()
    wake = threading.Event()
    ctl = Controller(meta, wake)  # type: ignore[arg-type]
    peer = Peer(pid=4242, uid=os.getuid(), gid=os.getgid())
    answers: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: answers.append(ctl.handle(Request("rotate"), peer)))
    t.start()
    assert wake.wait(5)
    ran: list[str] = []

    def rotate(reason: str) -> Rotated:
        ran.append(threading.current_thread().name)
        assert reason == "control"
        return Rotated("seg-0000000000.jsonl", "seg-0000000001.jsonl", 3)

    while t.is_alive():
        ctl.run_pending(rotate)
        t.join(0.05)
    assert ran == [threading.current_thread().name]  # on the caller's (main loop's) thread
    assert answers == [
        {
            "ok": True,
            "closed": "seg-0000000000.jsonl",
            "segment": "seg-0000000001.jsonl",
            "checkpoint": 3,
        }
    ]
    (name, message, fields) = meta.events[-1]
    assert name == events.CONTROL_ROTATE and "pid 4242" in message and fields["pid"] == 4242

    doc = ctl.handle(Request("access", "show", {"meta": True}, ("new",)), peer)
    assert doc == {"ok": True, "event": "archive.read"}
    (name, message, fields) = meta.events[-1]
    assert name == events.ARCHIVE_READ and message.startswith("show --meta run by ")
    assert fields["command"] == "show" and fields["args"] == {"meta": True}
    assert fields["ignored_args"] == ["new"] and fields["uid"] == os.getuid()

    # a rotation that fails, then one still waiting when the daemon stops
    t = threading.Thread(target=lambda: answers.append(ctl.handle(Request("rotate"), peer)))
    t.start()
    while t.is_alive():
        ctl.run_pending(lambda _r: None)
        t.join(0.05)
    assert answers[-1]["ok"] is False and "rotation failed" in answers[-1]["error"]
    wake.clear()
    t = threading.Thread(target=lambda: answers.append(ctl.handle(Request("rotate"), peer)))
    t.start()
    assert wake.wait(5)
    ctl.close()
    t.join(5)
    assert answers[-1] == {"ok": False, "error": "the daemon is stopping"}
    assert ctl.handle(Request("rotate"), peer) == {"ok": False, "error": "the daemon is stopping"}


def test_controller_runs_reloads_on_the_main_loop() -> None:
    ctl = Controller(FakeMeta(), threading.Event())  # type: ignore[arg-type]
    peer = Peer(pid=1, uid=os.getuid(), gid=os.getgid())
    verdicts = [Reloaded(True, "configuration x reloaded"), Reloaded(False, "x rejected: y")]
    answers: list[dict[str, Any]] = []
    for _ in verdicts:
        t = threading.Thread(target=lambda: answers.append(ctl.handle(Request("reload"), peer)))
        t.start()
        while t.is_alive():
            ctl.run_pending(lambda _r: None, lambda: verdicts[len(answers)])
            t.join(0.05)
    assert answers == [
        {"ok": True, "message": "configuration x reloaded"},
        {"ok": False, "error": "x rejected: y"},
    ]
    t = threading.Thread(target=lambda: answers.append(ctl.handle(Request("reload"), peer)))
    t.start()
    while t.is_alive():
        ctl.run_pending(lambda _r: None)  # a --once daemon has no reload
        t.join(0.05)
    assert answers[-1]["ok"] is False and "--once" in answers[-1]["error"]


# ---------------------------------------------------------------- a real daemon


def daemon_config(arc: Arc, logs: Path, path: Path) -> Path:
    doc = configs.daemon(
        arc, epoch_interval="1m", segments={"compress": "zstd"}, sources=[configs.file_source(logs)]
    )
    return configs.write(path, doc)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Arc, Path, Path, Daemon]]:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml")
    d = Daemon(tmp_path, cfg)
    try:
        d.ready()
        yield arc, logs, cfg, d
    finally:
        if d.proc.poll() is None:
            d.stop()


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )


def meta(arc: Arc, event: str) -> list[dict[str, Any]]:
    return [r for r in show(arc, "--meta") if r["event"] == event]


@integration
def test_rotate_command_makes_a_new_segment(
    running: tuple[Arc, Path, Path, Daemon], tmp_path: Path
) -> None:
    arc, logs, cfg, d = running
    sock = socket_path(arc.layout.root)
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o660
    (logs / "app.log").write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
    assert wait_for(lambda: len([r for r in show(arc) if r["source"] == "app"]) == 100)

    r = cli("rotate", arc.layout.root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("closed segments/seg-0000000000.jsonl with checkpoint ")
    assert r.stdout.rstrip().endswith("now writing segments/seg-0000000001.jsonl")
    assert arc.layout.segment_names()[-1] == "seg-0000000001.jsonl"
    with (logs / "app.log").open("ab") as fh:
        fh.write(b"after %d\n" % 1)
    r = cli("rotate", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert "now writing segments/seg-0000000002.jsonl" in r.stdout
    r = cli("rotate", arc.layout.root, "--config", cfg)
    assert r.returncode == 2 and "one of them" in r.stderr

    assert d.stop() == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]
    assert not sock.exists()
    rotated = [r for r in meta(arc, "segment.rotated") if r["attrs"]["reason"] == "control"]
    assert [r["attrs"]["prev_segment"] for r in rotated] == [
        "seg-0000000000.jsonl",
        "seg-0000000001.jsonl",
    ]
    asked = meta(arc, "control.rotate")
    assert len(asked) == 2 and all(r["attrs"]["uid"] == os.getuid() for r in asked)
    assert [r["message"] for r in show(arc) if r["source"] == "app"][-1] == "after 1"
    verify_both(arc, "--require-sealed")


@integration
def test_reload_command_waits_for_the_daemons_verdict(
    running: tuple[Arc, Path, Path, Daemon], tmp_path: Path
) -> None:
    """`auditd-py reload` (the unit's ExecReload=): 0 applied, 1 rejected, 2 unparsable."""
    arc, logs, cfg, d = running
    good = cfg.read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "new.log").write_bytes(b"from the reloaded glob\n")
    doc = yaml.safe_load(good)
    assert doc["sources"][0]["paths"] == [f"{logs}/*.log"]
    doc["sources"][0]["paths"].append(f"{other}/*.log")
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("reload", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert "reloaded" in r.stdout and "changed ['app']" in r.stdout
    assert wait_for(lambda: "from the reloaded glob" in [x["message"] for x in show(arc)])

    cfg.write_text(good.replace("epoch_interval: 1m", "epoch_interval: 2m"))
    r = cli("reload", "--config", cfg)
    assert r.returncode == 1
    assert "sealing settings cannot change on reload" in r.stderr

    cfg.write_text(good + "no_such_key: 1\n")
    r = cli("reload", "--config", cfg)
    assert r.returncode == 2 and "no_such_key" in r.stderr
    assert d.proc.poll() is None, "a rejected reload must not stop the daemon"
    rejected = meta(arc, "config.rejected")
    assert len(rejected) == 1  # the unparsable file never reached the daemon
    assert d.stop() == 0
    cfg.with_name("d2.yaml").write_text(good)
    r = cli("reload", "--config", cfg.with_name("d2.yaml"))
    assert r.returncode == 2 and "no daemon is running" in r.stderr


@integration
def test_reads_while_the_daemon_runs_are_sealed(
    running: tuple[Arc, Path, Path, Daemon], tmp_path: Path
) -> None:
    arc, logs, _, d = running
    (logs / "app.log").write_bytes(b"".join(b"line %d\n" % i for i in range(10)))
    root = arc.layout.root
    assert wait_for(lambda: len([r for r in show(arc) if r["source"] == "app"]) == 10)
    assert cli("rotate", root).returncode == 0  # a checkpoint, for prove
    runs = [
        ("verify", "--key", arc.vk_path),
        ("verify", "--public-key", arc.pk_path, "--json"),
        ("show", "--meta"),
        ("show", "--source", "app", "--grep", "line [0-9]"),
        ("prove", "--seq", "1"),
    ]
    for args in runs:
        r = cli(args[0], root, *args[1:])
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
    assert d.stop() == 0, (tmp_path / "daemon.stderr").read_text()[-2000:]

    reads = meta(arc, "archive.read")
    by_cmd = [(r["attrs"]["command"], r["attrs"]["args"]) for r in reads]
    verify_key = {"mode": "key", "anchor": False, "require_sealed": False, "json": False}
    verify_pub = {"mode": "public-key", "anchor": False, "require_sealed": False, "json": True}
    show_meta: dict[str, Any] = {"meta": True, "all": False, "json": False}
    show_meta |= {"since": None, "until": None, "source": None, "grep": None}
    show_grep = {**show_meta, "meta": False, "source": "app", "grep": "line [0-9]"}
    show_json = {**show_meta, "meta": False, "json": True}
    wanted = [
        ("verify", verify_key),
        ("verify", verify_pub),
        ("show", show_meta),
        ("show", show_grep),
        ("prove", {"seq": 1}),
    ]
    ours = [x for x in by_cmd if x != ("show", show_json)]  # show() polls above: --json
    assert ours == wanted, by_cmd
    me = pwd.getpwuid(os.getuid()).pw_name
    for rec in reads:
        a = rec["attrs"]
        assert a["uid"] == os.getuid() and a["gid"] == os.getgid() and a["user"] == me
        assert isinstance(a["pid"], int) and a["pid"] not in (d.proc.pid, os.getpid())
    messages = [r["message"] for r in reads if r["attrs"]["command"] == "verify"]
    assert messages[0].startswith("verify --key run by ")
    # no key material in what was sealed: the secret MAC key's bytes appear nowhere
    everything = cli("show", root, "--all", "--json").stdout
    assert arc.vk.mac_key.hex() not in everything
    assert arc.vk_path.read_text().strip() not in everything
    # `show --meta` (people's format) lists them too
    out = cli("show", root, "--meta").stdout
    assert "auditd-py: verify --public-key --json run by " in out
    assert "auditd-py: prove --seq 1 run by " in out
    verify_both(arc, "--require-sealed")


@integration
def test_rotate_without_a_daemon_and_reads_with_a_dead_one(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    arc.seal([b"one", b"two"])
    root = arc.layout.root
    r = cli("rotate", root)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "no daemon is running for the archive" in r.stderr and "nothing was rotated" in r.stderr
    r = cli("show", root)  # no daemon: nothing to record, nothing said
    assert r.returncode == 0 and r.stderr == ""

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path(root)))
    stale.close()  # a daemon killed with SIGKILL leaves its socket
    r = cli("rotate", root)
    assert r.returncode == 2 and "nothing listens on this socket" in r.stderr
    for args in (("show",), ("prove", "--seq", "0"), ("verify", "--public-key", arc.pk_path)):
        r = cli(args[0], root, *args[1:])
        assert r.returncode == 0, r.stderr
        assert r.stderr.startswith("auditd-py: warning: this read was not recorded: ")
        assert r.stderr.count("\n") == 1
    del arc


@integration
def test_malformed_requests_do_not_disturb_the_daemon(
    running: tuple[Arc, Path, Path, Daemon], tmp_path: Path
) -> None:
    arc, _, _, d = running
    sock = socket_path(arc.layout.root)
    for data, error in [
        (b"{not json\n", "not JSON"),
        (b'{"op":"shutdown"}\n', "unknown op"),
        (b"x" * (MAX_REQUEST + 100), "too large"),
        (b"", "empty request"),
        (b'{"op":"access","command":"verify","args":{"mode":"all"}}\n', "mode must be"),
    ]:
        doc = ask(sock, data)
        assert doc["ok"] is False and error in doc["error"], (data[:30], doc)
    assert d.proc.poll() is None
    r = cli("rotate", arc.layout.root)
    assert r.returncode == 0, r.stderr
    assert d.stop() == 0
    assert not sock.exists()
    logged = (tmp_path / "daemon.stderr").read_text()
    assert logged.count('"event": "control.error"') == 5
    assert not meta(arc, "control.error")  # logged, not sealed
    verify_both(arc, "--require-sealed")


@integration
def test_a_killed_daemons_socket_is_replaced_on_start(
    running: tuple[Arc, Path, Path, Daemon], tmp_path: Path
) -> None:
    arc, _, cfg, d = running
    sock = socket_path(arc.layout.root)
    d.stop(signal.SIGKILL)
    assert stat.S_ISSOCK(sock.lstat().st_mode)  # left behind
    r = cli("rotate", arc.layout.root)
    assert r.returncode == 2 and "nothing listens" in r.stderr
    d2 = Daemon(tmp_path, cfg)
    try:
        d2.ready()
        r = cli("rotate", arc.layout.root)
        assert r.returncode == 0, r.stderr
    finally:
        assert d2.stop() == 0
    assert not sock.exists()
    verify_both(arc)


@integration
def test_no_control_socket_with_once(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b"one\n")
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml")
    r = cli("run", "--config", cfg, "--once")
    assert r.returncode == 0, r.stderr
    assert "control.listening" not in r.stderr
    assert not socket_path(arc.layout.root).exists()


def test_in_process_daemon_leaves_no_threads(tmp_path: Path) -> None:
    arc = Arc(tmp_path, random=None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = daemon_config(arc, logs, tmp_path / "d.yaml")
    before = _control_threads()
    dm = InProcessDaemon(config.load(cfg), notify_fn=lambda _s: False, env={})
    t = threading.Thread(target=dm.run, name="test-daemon")
    t.start()
    try:
        assert wait_for(lambda: socket_path(arc.layout.root).exists(), 20)
        doc = control.request(arc.layout.root, {"op": "rotate"}, 30)
        assert doc["ok"] is True and doc["segment"] == "seg-0000000001.jsonl"
        assert _control_threads() != before
    finally:
        dm.flags.stop = True
        dm.wake.set()
        t.join(30)
    assert not t.is_alive()
    assert _control_threads() == before
    assert not socket_path(arc.layout.root).exists()
    arc.verify(require_sealed=True)
