"""The control channel between the command-line tool and the running daemon.

The daemon listens on a unix stream socket at a fixed place inside the archive
directory, ``ARCHIVE/.control.sock``, so that a tool given only the archive
directory finds it. The file is not part of the archive format (verifiers never
read it, docs/FORMAT.md section 3). It is created mode 0660: the daemon's user
and the members of its group can connect (and so have their reads recorded);
anyone else cannot connect, and the tool says that their read was not recorded.

Protocol: one connection per request; the client sends one JSON object on one
line (at most :data:`MAX_REQUEST` bytes), the daemon answers with one JSON
object on one line and closes. Every answer has ``ok``; a failed one has
``error``. The peer's pid, uid and gid are taken from the socket itself
(``SO_PEERCRED``), never from the request.

* ``{"op": "rotate"}``: the daemon's main loop rotates the open segment exactly
  as on SIGUSR1; the answer comes after the rotation, with the closed and the
  new segment and the closing checkpoint's epoch. A sealed ``control.rotate``
  event names who asked.
* ``{"op": "reload"}``: the daemon's main loop re-reads its configuration file
  exactly as on SIGHUP; the answer comes once the new config runs (``ok``, with
  a ``message``) or was rejected (``error`` says why: the file's own message,
  a setting that needs a restart, a source that cannot start).
* ``{"op": "access", "command": "verify"|"show"|"prove", "args": {...}}``: an
  ``archive.read`` event is sealed with the command, its arguments (from a
  fixed list per command: modes, flags, filters, never key material or file
  contents) and the peer; the answer comes once it is queued for sealing.

The client side (:func:`request`) is used by :mod:`auditd_py.cli`; the server
side (:class:`ControlServer` with a :class:`Controller`) by the daemon.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import selectors
import shlex
import socket
import stat
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from auditd_py import events as ev
from auditd_py.errors import AuditdError, ControlError

if TYPE_CHECKING:
    from auditd_py.metalog import MetaLog

SOCKET_NAME: Final = ".control.sock"
SOCKET_MODE: Final = 0o660
MAX_REQUEST: Final = 64 * 1024
"""Bytes in a request line (and in an answer line, on the client side)."""
IO_TIMEOUT: Final = 2.0
"""Seconds the daemon waits for a request line, or to send its answer."""
ROTATE_TIMEOUT: Final = 60.0
"""Seconds a rotate or reload request waits for the main loop, then answered with an error."""
_DONE: Final = {"rotate": "rotated", "reload": "reloaded"}
MAX_CONNECTIONS: Final = 16
"""Requests served at once; more are answered ``busy`` at once."""
MAX_ARG_CHARS: Final = 1024

# Why a client's request did not get an answer (ControlError.reason).
ABSENT: Final = "absent"
"""No socket file: no daemon runs for this archive (or it runs with another version)."""
REFUSED: Final = "refused"
"""A socket file nobody listens on (a daemon killed without cleaning up)."""
DENIED: Final = "denied"
"""Not allowed to connect (neither the daemon's user nor in its group)."""
TIMEOUT: Final = "timeout"
REJECTED: Final = "rejected"
"""The daemon answered with an error."""

COMMANDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "verify": {
        "mode": ("key", "public-key"),
        "anchor": bool,
        "require_sealed": bool,
        "json": bool,
    },
    "show": {
        "meta": bool,
        "all": bool,
        "json": bool,
        "since": str,
        "until": str,
        "source": str,
        "grep": str,
        "output": str,
        "priority": str,
        "seq": str,
        "match": str,
        "lines": str,
        "reverse": bool,
        "follow": bool,
    },
    "prove": {"seq": int},
}
"""The commands whose reads are recorded and the arguments recorded for each:
a type, or a tuple of the allowed values. ``None`` is allowed for every argument."""


class BadRequest(ControlError):
    """A request the daemon does not accept; its message is sent back as the error."""


def socket_path(archive: Path | str) -> Path:
    """Where the daemon of the archive ``archive`` listens."""
    return Path(archive) / SOCKET_NAME


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A path to bind or connect to: ``path`` itself, or, when it is longer than
    a ``sockaddr_un`` holds, the same file through ``/proc/self/fd`` of its directory."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# ---------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as the kernel says (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str | None:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return None

    def describe(self) -> str:
        name = self.user
        if name is None:
            return f"uid {self.uid} (pid {self.pid})"
        return f"{name} (uid {self.uid}, pid {self.pid})"

    def fields(self) -> dict[str, Any]:
        return {"pid": self.pid, "uid": self.uid, "gid": self.gid, "user": self.user}


def peer_of(conn: socket.socket) -> Peer:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    command: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    """Argument names the daemon does not record (a newer tool's, say)."""


def parse_request(line: bytes) -> Request:
    """One request line → :class:`Request`; :class:`BadRequest` says what is wrong."""
    line = line.rstrip(b"\r\n")
    if len(line) > MAX_REQUEST:
        raise BadRequest(f"request too large (over {MAX_REQUEST} bytes)")
    if not line.strip():
        raise BadRequest("empty request")
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("request is not a JSON object")
    op = doc.get("op")
    if op in ("rotate", "reload"):
        _only(doc, {"op"})
        return Request(op)
    if op == "access":
        _only(doc, {"op", "command", "args"})
        command = doc.get("command")
        if not isinstance(command, str) or command not in COMMANDS:
            raise BadRequest(
                f"access: command must be one of {', '.join(sorted(COMMANDS))}, not {command!r}"
            )
        args = doc.get("args", {})
        if not isinstance(args, dict):
            raise BadRequest("access: args must be a JSON object")
        kept, ignored = _check_args(command, args)
        return Request("access", command, kept, ignored)
    if not isinstance(op, str):
        raise BadRequest('request has no "op" string')
    raise BadRequest(f"unknown op {op[:64]!r} (known: access, reload, rotate)")


def _only(doc: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(k[:64] for k in doc if k not in allowed)
    if extra:
        raise BadRequest(f"{doc['op']}: unexpected field(s) {', '.join(extra)}")


def _check_args(command: str, args: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    spec = COMMANDS[command]
    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for k, v in args.items():
        want = spec.get(k)
        if want is None:
            if len(ignored) < 16:
                ignored.append(k[:64])
            continue
        if v is None:
            kept[k] = None
        elif isinstance(want, tuple):
            if v not in want:
                raise BadRequest(f"{command}: {k} must be one of {', '.join(want)}")
            kept[k] = v
        elif want is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise BadRequest(f"{command}: {k} must be an integer")
        elif want is not int and not isinstance(v, want):
            raise BadRequest(f"{command}: {k} must be a {want.__name__}")
        elif isinstance(v, str) and len(v) > MAX_ARG_CHARS:
            raise BadRequest(f"{command}: {k} is longer than {MAX_ARG_CHARS} characters")
        else:
            kept[k] = v
    return kept, tuple(ignored)


def describe(command: str, args: Mapping[str, Any]) -> str:
    """A request as the command line it stands for: ``verify --public-key --anchor``."""
    parts = [command]
    for k, v in args.items():
        if v is None or v is False:
            continue
        if k == "mode":
            parts.append(f"--{v}")
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(flag if v is True else f"{flag} {shlex.quote(str(v))}")
    return " ".join(parts)


def _read_line(conn: socket.socket, limit: int) -> bytes:
    """Bytes up to the first newline (or the end of the stream), at most ``limit`` + 1."""
    buf = bytearray()
    while b"\n" not in buf and len(buf) <= limit:
        chunk = conn.recv(min(65536, limit + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    end = buf.find(b"\n")
    return bytes(buf[: end + 1] if end >= 0 else buf)


def _line(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps(doc) + b"\n"


# ---------------------------------------------------------------- the client side


def request(archive: Path | str, payload: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the daemon of ``archive`` and return its (ok) answer.

    Raises :class:`ControlError` with ``reason`` :data:`ABSENT` when no daemon
    runs for the archive, and :data:`REFUSED`, :data:`DENIED`, :data:`TIMEOUT`
    or :data:`REJECTED` (the daemon's own error) otherwise.
    """
    path = socket_path(archive)
    where = str(path)
    try:
        with (
            _address(path) as addr,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s,
        ):
            s.settimeout(timeout)
            s.connect(addr)
            s.sendall(_line(payload))
            raw = _read_line(s, MAX_REQUEST)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ControlError("no daemon is listening", reason=ABSENT, file=where) from exc
    except ConnectionRefusedError as exc:
        raise ControlError(
            "nothing listens on this socket (a daemon that did not stop cleanly?)",
            reason=REFUSED,
            file=where,
        ) from exc
    except PermissionError as exc:
        if not os.access(path.parent, os.X_OK):  # not even the archive: nothing will be read
            raise ControlError("the archive is closed to this user", reason=ABSENT) from exc
        raise ControlError(
            "permission denied: only the daemon's user and group may connect",
            reason=DENIED,
            file=where,
        ) from exc
    except TimeoutError as exc:
        raise ControlError(
            f"the daemon did not answer within {timeout:g}s", reason=TIMEOUT, file=where
        ) from exc
    except OSError as exc:
        raise ControlError(
            f"cannot talk to the daemon: {exc.strerror or exc}", reason=REFUSED, file=where
        ) from exc
    if not raw.endswith(b"\n"):
        raise ControlError("the daemon closed the connection without an answer", file=where)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"the daemon's answer is not JSON: {exc}", file=where) from exc
    if not isinstance(doc, dict):
        raise ControlError("the daemon's answer is not a JSON object", file=where)
    if doc.get("ok") is not True:
        raise ControlError(f"the daemon refused: {doc.get('error', 'no reason given')}", file=where)
    return doc


# ---------------------------------------------------------------- the daemon side


class Rotated(NamedTuple):
    """What a rotation did."""

    closed: str | None
    segment: str | None
    checkpoint: int | None


class Reloaded(NamedTuple):
    """What a reload did: ``ok`` when the new config runs (all its sources started)."""

    ok: bool
    message: str


@dataclass(slots=True, eq=False)
class _Pending:
    """A request the main loop runs (``rotate`` or ``reload``), and its answer."""

    op: str
    peer: Peer
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


class Controller:
    """What the daemon does for each request.

    Socket threads call :meth:`handle`; rotations and reloads are queued for the
    main loop, which runs them with :meth:`run_pending`, so that a rotation asked
    for here is the same as one asked for by SIGUSR1, and a reload the same as
    one asked for by SIGHUP.
    """

    def __init__(self, meta: MetaLog, wake: threading.Event) -> None:
        self.meta = meta
        self._wake = wake
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._closed: str | None = None

    # called from socket threads

    def handle(self, req: Request, peer: Peer) -> dict[str, Any]:
        if req.op == "access":
            return self._access(req, peer)
        assert req.op in ("rotate", "reload")
        return self._queue(_Pending(req.op, peer))

    def _access(self, req: Request, peer: Peer) -> dict[str, Any]:
        assert req.command is not None
        what = describe(req.command, req.args)
        extra: dict[str, Any] = {"ignored_args": list(req.ignored)} if req.ignored else {}
        self.meta.event(
            ev.ARCHIVE_READ,
            f"{what} run by {peer.describe()}",
            command=req.command,
            args=req.args,
            **peer.fields(),
            **extra,
        )
        return {"ok": True, "event": ev.ARCHIVE_READ}

    def _queue(self, pending: _Pending) -> dict[str, Any]:
        with self._lock:
            if self._closed is not None:
                return {"ok": False, "error": self._closed}
            self._pending.append(pending)
        self._wake.set()
        if not pending.done.wait(ROTATE_TIMEOUT):
            with self._lock:
                if pending in self._pending:
                    self._pending.remove(pending)
                    done = _DONE[pending.op]
                    return {"ok": False, "error": f"not {done} within {ROTATE_TIMEOUT:g}s"}
            pending.done.wait(ROTATE_TIMEOUT)  # under way: its answer is coming
        return pending.answer or {"ok": False, "error": f"not {_DONE[pending.op]}"}

    # called from the daemon's main loop

    def run_pending(
        self,
        rotate: Callable[[str], Rotated | None],
        reload: Callable[[], Reloaded] | None = None,
    ) -> None:
        """Run the rotations and reloads asked for since the last call, in order."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                pending = self._pending.popleft()
            try:
                if pending.op == "reload":
                    pending.answer = self._reload(pending.peer, reload)
                else:
                    pending.answer = self._rotate(pending.peer, rotate)
            finally:
                pending.done.set()

    def _rotate(self, peer: Peer, rotate: Callable[[str], Rotated | None]) -> dict[str, Any]:
        r = rotate("control")
        if r is None:
            return {"ok": False, "error": "rotation failed; the daemon is stopping (see its log)"}
        self.meta.event(
            ev.CONTROL_ROTATE,
            f"segment {r.closed} closed with checkpoint {r.checkpoint} at the "
            f"request of {peer.describe()}; continuing in {r.segment}",
            prev_segment=r.closed,
            segment=r.segment,
            checkpoint=r.checkpoint,
            **peer.fields(),
        )
        return {"ok": True, "closed": r.closed, "segment": r.segment, "checkpoint": r.checkpoint}

    @staticmethod
    def _reload(peer: Peer, reload: Callable[[], Reloaded] | None) -> dict[str, Any]:
        if reload is None:
            return {"ok": False, "error": "this daemon cannot reload (it runs with --once)"}
        r = reload()
        return {"ok": True, "message": r.message} if r.ok else {"ok": False, "error": r.message}

    def close(self, reason: str = "the daemon is stopping") -> None:
        """Answer every waiting request with ``reason``; refuse new ones."""
        with self._lock:
            self._closed = reason
            left = list(self._pending)
            self._pending.clear()
        for p in left:
            p.answer = {"ok": False, "error": reason}
            p.done.set()


class ControlServer:
    """The listening socket and its threads: one accepting, one per open request."""

    def __init__(
        self,
        path: Path,
        handle: Callable[[Request, Peer], dict[str, Any]],
        on_error: Callable[[str, Peer | None], None] | None = None,
    ) -> None:
        self.path = path
        self._handle = handle
        self._on_error = on_error
        self._sock: socket.socket | None = None
        self._ino: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._thread = threading.Thread(
            target=self._accept_loop, name="auditd-control", daemon=True
        )

    def start(self) -> None:
        """Bind (replacing a stale socket left by a daemon that was killed) and listen.

        The caller holds the archive's writer lock, so no other daemon of this
        archive can be listening here. The socket is bound under a temporary name,
        given its mode, then renamed into place: it is never reachable with
        another mode.
        """
        path = self.path
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        for p in (path, tmp):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if not stat.S_ISSOCK(st.st_mode):
                raise AuditdError("exists and is not a socket; remove it", file=str(p))
            os.unlink(p)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with _address(tmp) as addr:
                sock.bind(addr)
            os.chmod(tmp, SOCKET_MODE)
            os.rename(tmp, path)
            st = os.lstat(path)
            sock.listen(MAX_CONNECTIONS)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise AuditdError(
                f"cannot listen on the control socket: {exc.strerror or exc}", file=str(path)
            ) from exc
        self._sock, self._ino = sock, (st.st_dev, st.st_ino)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end the requests under way, remove the socket file."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            conns = dict(self._conns)
        for conn in conns.values():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in conns:
            t.join(IO_TIMEOUT + 1)
        if self._sock is not None:
            self._sock.close()
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass
            self._sock = None
        self._wake_r.close()
        self._wake_w.close()

    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not any(k.fileobj is sock for k, _ in sel.select()):
                    continue
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                conn.settimeout(IO_TIMEOUT)
                with self._lock:
                    busy = len(self._conns) >= MAX_CONNECTIONS
                    if not busy and not self._stop.is_set():
                        t = threading.Thread(
                            target=self._serve,
                            args=(conn,),
                            name="auditd-control-request",
                            daemon=True,
                        )
                        self._conns[t] = conn
                        t.start()
                        continue
                with conn, contextlib.suppress(OSError):
                    conn.sendall(_line({"ok": False, "error": "busy: try again"}))

    def _serve(self, conn: socket.socket) -> None:
        peer: Peer | None = None
        try:
            with conn:
                try:
                    peer = peer_of(conn)
                    raw = _read_line(conn, MAX_REQUEST)
                    reply = self._handle(parse_request(raw), peer)
                except BadRequest as exc:
                    reply = {"ok": False, "error": exc.message}
                except TimeoutError:
                    reply = {"ok": False, "error": f"no request line within {IO_TIMEOUT:g}s"}
                except OSError as exc:  # the peer went away: nobody to answer
                    self._report(f"reading a request: {exc!r}", peer)
                    return
                except Exception as exc:  # a bug must not take the server down
                    self._report(f"handling a request: {exc!r}", peer)
                    reply = {"ok": False, "error": "internal error (see the daemon's log)"}
                if not reply.get("ok"):
                    self._report(str(reply.get("error")), peer)
                with contextlib.suppress(OSError):
                    conn.sendall(_line(reply))
        finally:
            with self._lock:
                self._conns.pop(threading.current_thread(), None)

    def _report(self, message: str, peer: Peer | None) -> None:
        if self._on_error is not None:
            with contextlib.suppress(Exception):
                self._on_error(message, peer)


@dataclass(slots=True)
class Control:
    """The daemon's control channel: the socket server and what it asks of the daemon."""

    server: ControlServer
    controller: Controller

    @property
    def path(self) -> Path:
        return self.server.path

    def run_pending(
        self,
        rotate: Callable[[str], Rotated | None],
        reload: Callable[[], Reloaded] | None = None,
    ) -> None:
        """From the main loop: the requests asked for (see :meth:`Controller.run_pending`)."""
        self.controller.run_pending(rotate, reload)

    def stop(self) -> None:
        """Answer waiting requests, stop the threads, remove the socket file."""
        self.controller.close()
        self.server.stop()


def serve(archive: Path, meta: MetaLog, wake: threading.Event) -> Control:
    """Start the daemon's control socket for ``archive``; meta-logged as ``control.listening``."""
    controller = Controller(meta, wake)

    def on_error(message: str, peer: Peer | None) -> None:
        who = f" from {peer.describe()}" if peer is not None else ""
        fields = peer.fields() if peer is not None else {}
        meta.log_only(ev.CONTROL_ERROR, f"control request{who}: {message}", error=message, **fields)

    server = ControlServer(socket_path(archive), controller.handle, on_error)
    server.start()
    meta.event(
        ev.CONTROL_LISTENING,
        f"control socket on {server.path} (mode {SOCKET_MODE:04o})",
        path=str(server.path),
        mode=f"{SOCKET_MODE:04o}",
    )
    return Control(server, controller)


__all__ = [
    "ABSENT",
    "DENIED",
    "MAX_REQUEST",
    "REFUSED",
    "REJECTED",
    "SOCKET_NAME",
    "TIMEOUT",
    "BadRequest",
    "Control",
    "ControlError",
    "ControlServer",
    "Controller",
    "Peer",
    "Reloaded",
    "Request",
    "Rotated",
    "parse_request",
    "request",
    "serve",
    "socket_path",
]
