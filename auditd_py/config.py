"""YAML configuration → validated, frozen settings.

Unknown keys are errors (typos are caught), every error names its YAML line and
key, and ``${VAR}`` / ``${VAR:-default}`` are expanded from the environment in
string values. Validation is pydantic's; this module adds the YAML positions,
the environment expansion and the duration/size syntax.
"""

from __future__ import annotations

import grp
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from auditd_py.chain.format import NS
from auditd_py.errors import ConfigError
from auditd_py.units import parse_duration

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "k": 1024,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def group_id(name: str) -> int:
    """The id of group ``name`` (a name, or a number); ValueError if there is none."""
    try:
        return grp.getgrnam(name).gr_gid if not name.isdigit() else grp.getgrgid(int(name)).gr_gid
    except KeyError:
        raise ValueError(f"no group {name!r} on this host") from None


def parse_size(value: Any) -> int:
    """``1MiB``, ``64KiB``, ``10MB`` or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64KiB or 1MiB")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.fullmatch(str(value))
        if not m:
            raise ValueError(f"invalid size {value!r} (use e.g. 64KiB, 1MiB)")
        n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    if n <= 0:
        raise ValueError("size must be positive")
    return n


Duration = Annotated[int, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
MAX_PIECE_BYTES = 1024 * 1024
"""The most a source puts in one record's message: records stay far below the
format's longest line (docs/FORMAT.md 3.1) even with every byte escaped."""


@dataclass(frozen=True, slots=True)
class Space:
    """An amount of disk space: bytes, or a percentage of the file system's size."""

    bytes: int | None = None
    percent: float | None = None

    def of(self, total: int) -> int:
        """In bytes, for a file system of ``total`` bytes."""
        if self.bytes is not None:
            return self.bytes
        assert self.percent is not None
        return int(total * self.percent / 100)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else f"{self.bytes} bytes"


def parse_space(value: Any) -> Space:
    """``10%`` of the file system, or a size (``512MiB``)."""
    if isinstance(value, Space):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"invalid percentage {value!r} (use e.g. 10%)") from None
        if not 0 < pct < 100:
            raise ValueError(f"percentage {value!r} must be between 0% and 100%")
        return Space(percent=pct)
    return Space(bytes=parse_size(value))


SpaceLimit = Annotated[Space, BeforeValidator(parse_space)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ArchiveSettings(_Model):
    path: Path
    state: Path | None = None
    group: str | None = None
    """The group that may read the archive (directories 2750, files 0640); a name or id."""

    @field_validator("group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is not None:
            group_id(v)
        return v


class SealingSettings(_Model):
    epoch_interval: Duration = 15 * 60 * NS
    epoch_records: int | None = Field(default=None, gt=0)
    commit_interval: Duration = 50 * 10**6
    """Group commit: sealed records are fsynced at least this often."""
    queue_records: int = Field(default=20_000, gt=0)
    queue_bytes: Size = 32 * 1024 * 1024
    """The queue's bound in bytes of messages: long lines wait for room, never pile up."""


class SegmentSettings(_Model):
    """When the open segment is closed and a new one started, and how closed ones are kept."""

    max_bytes: Size = 64 * 1024**2
    max_age: Duration = 3600 * NS
    max_epochs: int | None = Field(default=None, gt=0)
    compress: Literal["zstd", "gzip", "none"] = "zstd"
    immutable: Annotated[
        Literal["auto", "off"], BeforeValidator(lambda v: "off" if v is False else v)
    ] = "auto"
    """chattr +a on the open segment and +i on closed ones, where the daemon may (auto).
    YAML reads a bare ``off`` as false, which means ``off`` here too."""


class RetentionSettings(_Model):
    """When closed segments are deleted (oldest first, each deletion sealed).

    Every limit is off unless set; with none set nothing is ever deleted.
    """

    max_age: Duration | None = None
    max_total_bytes: Size | None = None
    max_segments: int | None = Field(default=None, ge=1)
    min_free: SpaceLimit | None = None
    keep_forever: bool = False
    check_interval: Duration = 60 * NS

    @model_validator(mode="after")
    def _forever(self) -> RetentionSettings:
        if self.keep_forever:
            set_ = [
                k
                for k in ("max_age", "max_total_bytes", "max_segments", "min_free")
                if getattr(self, k) is not None
            ]
            if set_:
                raise ValueError(
                    f"keep_forever: true contradicts {', '.join(set_)}: remove one or the other"
                )
        return self


DiskAction = Literal["rotate", "suspend", "halt", "exec"]


class DiskSettings(_Model):
    """auditd's ladder: warn at space_left, act at admin_space_left, and on a full disk."""

    space_left: SpaceLimit = Space(percent=5.0)
    admin_space_left: SpaceLimit = Space(percent=2.0)
    admin_space_left_action: DiskAction = "suspend"
    disk_full_action: DiskAction = "suspend"
    exec: list[str] | None = Field(default=None, min_length=1)
    """Command and arguments for the ``exec`` action (no shell)."""
    check_interval: Duration = 5 * NS

    @model_validator(mode="after")
    def _consistent(self) -> DiskSettings:
        uses_exec = "exec" in (self.admin_space_left_action, self.disk_full_action)
        if uses_exec and not self.exec:
            raise ValueError("the exec action needs disk.exec: [command, args...]")
        a, b = self.space_left, self.admin_space_left
        if (a.bytes is not None and b.bytes is not None and b.bytes > a.bytes) or (
            a.percent is not None and b.percent is not None and b.percent > a.percent
        ):
            raise ValueError(
                f"admin_space_left ({b}) must not be more than space_left ({a}): "
                "the warning comes first"
            )
        return self


class SelfCheckSettings(_Model):
    """The daemon re-verifies its closed segments in the background (public-key mode).

    Every ``interval`` a low-priority process (nice 19, at most ``cpu_share`` of a
    core, at most ``max_memory`` of address space) verifies every closed segment;
    the result is sealed (``verify.passed``/``verify.failed``) and shown in
    ``/health`` (503 on a failure), ``/metrics`` and ``auditd-py status``.
    """

    enabled: bool = True
    interval: Duration = 5 * 60 * NS
    cpu_share: float = Field(default=0.25, gt=0, le=1)
    max_memory: Size = 1024 * 1024 * 1024
    timeout: Duration | None = None
    """A check still running after this is ended and retried (default: the interval,
    at least a minute)."""


class FileSource(_Model):
    name: str
    type: Literal["file"]
    paths: list[str] = Field(min_length=1)
    exclude: list[str] = []
    max_line_bytes: Size = Field(default=1024 * 1024, le=MAX_PIECE_BYTES)
    partial_line_timeout: Duration = 5 * NS
    poll_interval: Duration = NS
    read_from: Literal["beginning", "end"] = "beginning"
    fingerprint_bytes: int = Field(default=256, ge=16, le=65536)
    follow_symlinks: bool = False
    max_open_files: int = Field(default=1024, ge=16)
    """Descriptors held at most: files read to their end are closed past it, and
    opened again (by identity) when they change."""
    """Read through symlinked directories the globs meet (never to outside their root)."""


class TLSSettings(_Model):
    cert: Path
    key: Path
    ca: Path | None = None
    client_auth: Literal["none", "optional", "required"] = "none"

    @model_validator(mode="after")
    def _ca(self) -> TLSSettings:
        if self.client_auth != "none" and self.ca is None:
            raise ValueError("client_auth optional/required needs tls.ca to check clients")
        return self


class SyslogSource(_Model):
    name: str
    type: Literal["syslog"]
    listen: list[str] = Field(min_length=1)
    tls: TLSSettings | None = None
    max_message_bytes: Size = Field(default=64 * 1024, le=MAX_PIECE_BYTES)
    max_connections: int = Field(default=1024, gt=0)
    framing: Literal["auto", "octet-counting", "lf", "nul"] = "auto"
    """Stream framing (tcp, tls, unix-stream); docs/SYSLOG.md, "Framing"."""
    partial_timeout: Duration = NS
    """An unfinished stream frame is sealed (``partial``) after this long idle."""
    frame_timeout: Duration = 10 * NS
    """… or this long after it began, however slowly its bytes trickle in."""
    idle_timeout: Duration | None = None
    """A stream connection silent this long is closed (None: never)."""

    @field_validator("listen")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.fullmatch(r"(udp|tcp|tls|unix|unix-stream)://.+", url):
                raise ValueError(
                    f"invalid listen address {url!r}: use udp://HOST:PORT, tcp://HOST:PORT, "
                    "tls://HOST:PORT, unix:///PATH (datagram) or unix-stream:///PATH"
                )
        return v

    @model_validator(mode="after")
    def _tls(self) -> SyslogSource:
        if any(u.startswith("tls://") for u in self.listen) and self.tls is None:
            raise ValueError("tls:// listeners need a tls: section (cert, key)")
        return self


class JournaldSource(_Model):
    name: str
    type: Literal["journald"]
    directory: Path | None = None
    matches: list[str] = []
    read_from: Literal["beginning", "end"] = "beginning"

    @field_validator("matches")
    @classmethod
    def _matches(cls, v: list[str]) -> list[str]:
        for m in v:
            if m != "+" and not re.fullmatch(r"[A-Z0-9_]+=.*", m, flags=re.S):
                raise ValueError(f"invalid journal match {m!r}: use FIELD=value or +")
        return v


Source = Annotated[FileSource | SyslogSource | JournaldSource, Field(discriminator="type")]


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]]+):(\d{1,5})", listen)
    if not m:
        raise ValueError(f"invalid listen address {listen!r}: use HOST:PORT or [V6ADDR]:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port} in {listen!r}")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class MetricsSettings(_Model):
    """The Prometheus ``/metrics`` and ``/health`` endpoint (off unless configured)."""

    allow_remote: bool = False
    """Serve on a non-loopback address (declared first: ``listen`` is checked against it)."""
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str, info: ValidationInfo) -> str:
        host, _ = split_listen(v)
        if not info.data.get("allow_remote", False) and not is_loopback(host):
            raise ValueError(
                f"{v!r} is not a loopback address; metrics and health are "
                "unauthenticated: set allow_remote: true to serve them beyond this host"
            )
        return v


class ForwardTLS(_Model):
    """Client side TLS to a collector (RFC 5425): the server is always verified."""

    ca: Path | None = None
    """CA bundle for the server's certificate (default: the system's)."""
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None
    """Name to check the server's certificate against (default: the target's host)."""

    @model_validator(mode="after")
    def _pair(self) -> ForwardTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        return self


class SyslogForward(_Model):
    """Each sealed record, checkpoint and the identity to a syslog collector."""

    name: str
    type: Literal["syslog"]
    target: str
    """``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (RFC 5424, RFC 6587 octet counting)."""
    tls: ForwardTLS | None = None
    batch_records: int = Field(default=2000, gt=0)
    ack_timeout: Duration = 30 * NS
    """How long the collector may take to acknowledge a batch at the TCP level."""
    retry_max: Duration = 30 * NS
    """The cap of the exponential backoff between attempts."""

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if not re.fullmatch(r"(tcp|tls)://.+", v):
            raise ValueError(f"invalid target {v!r}: use tcp://HOST:PORT or tls://HOST:PORT")
        split_listen(v.split("://", 1)[1])
        return v

    @model_validator(mode="after")
    def _tls(self) -> SyslogForward:
        if self.target.startswith("tls://") and self.tls is None:
            raise ValueError("a tls:// target needs a tls: section (at least ca)")
        return self


class S3Forward(_Model):
    """Closed segments and every checkpoint to S3 with Object Lock (COMPLIANCE)."""

    name: str
    type: Literal["s3"]
    bucket: str = Field(min_length=3)
    prefix: str = "auditd-py"
    endpoint: str | None = None
    """``http(s)://HOST:PORT`` of an S3-compatible server (default: AWS)."""
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    """Default: the usual AWS environment and files (boto3's chain)."""
    retain_for: Duration = 365 * 86400 * NS
    """Object Lock retain-until = upload time + this (COMPLIANCE mode)."""
    ca: Path | None = None
    retry_max: Duration = 60 * NS


Forward = Annotated[SyslogForward | S3Forward, Field(discriminator="type")]


class Config(_Model):
    environment: str = "default"
    archive: ArchiveSettings
    sealing: SealingSettings = SealingSettings()
    segments: SegmentSettings = SegmentSettings()
    retention: RetentionSettings = RetentionSettings()
    disk: DiskSettings = DiskSettings()
    sources: list[Source] = []
    forward: list[Forward] = []
    metrics: MetricsSettings | None = None
    self_check: SelfCheckSettings = SelfCheckSettings()

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: set[str] = set()
        for s in self.sources:
            if s.name in seen:
                raise ValueError(f"two sources are named {s.name!r}")
            if s.name == "auditd-py":
                raise ValueError("source name 'auditd-py' is reserved for the daemon's own log")
            seen.add(s.name)
        names = [f.name for f in self.forward]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two forward targets are named {dup[0]!r}")
        if self.retention.keep_forever and "rotate" in (
            self.disk.admin_space_left_action,
            self.disk.disk_full_action,
        ):
            raise ValueError(
                "disk action 'rotate' deletes the oldest segments, but retention.keep_forever "
                "is true: use suspend, halt or exec"
            )
        return self


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    path: str
    digest: str
    """BLAKE2b-256 of the file's bytes, for the meta-log."""


# ---------------------------------------------------------------- YAML with positions


def _expand(value: str, path: str, line: int, errors: list[str], env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        errors.append(
            f"{path}:{line}: environment variable ${{{name}}} is not set and has no default"
        )
        return ""

    return _ENV.sub(sub, value)


def _to_python(
    node: yaml.Node,
    loc: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    errors: list[str],
    file: str,
    env: Mapping[str, str],
) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = k.value
            if key in out:
                errors.append(f"{file}:{k.start_mark.line + 1}: duplicate key {key!r}")
            lines[(*loc, key)] = k.start_mark.line + 1
            out[key] = _to_python(v, (*loc, key), lines, errors, file, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(v, (*loc, i), lines, errors, file, env) for i, v in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    value = yaml.SafeLoader(node.value).construct_object(node)
    if isinstance(value, str):
        return _expand(value, file, node.start_mark.line + 1, errors, env)
    return value


def _line_of(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds the discriminator tag ("file", "syslog", ...) to union locations
    out = []
    for i, part in enumerate(loc):
        if (
            i > 0
            and loc[i - 1] != "sources"
            and isinstance(loc[i - 1], int)
            and part
            in (
                "file",
                "syslog",
                "journald",
            )
        ):
            continue
        out.append(part)
    return tuple(out)


MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file longer than this is refused unread (a config is a few KiB)."""
MAX_DEPTH = 32
"""The deepest nesting of mappings and sequences a configuration may have."""
MAX_NODES = 100_000
"""The most values a configuration may hold once its aliases are expanded."""
_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)


class _Loader(yaml.SafeLoader):
    """SafeLoader bounded against bombs: no alias to a node that contains it, at most
    :data:`MAX_NODES` values once aliases are expanded, nesting at most
    :data:`MAX_DEPTH` deep, and only the plain YAML types (no tag that names code)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._open: set[str] = set()
        self._weight: dict[str, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark, anchor = event.start_mark, event.anchor
        if isinstance(event, yaml.AliasEvent):
            if anchor in self._open:
                raise _refused(f"alias *{anchor} inside the value it names (recursive)", mark)
            self._values += self._weight.get(anchor, 1)
        elif self._depth >= MAX_DEPTH:
            raise _refused(f"nested deeper than {MAX_DEPTH} levels", mark)
        if self._values > MAX_NODES:
            raise _refused(f"more than {MAX_NODES} values once aliases are expanded", mark)
        if isinstance(event, yaml.AliasEvent):
            alias = super().compose_node(parent, index)
            assert alias is not None  # the anchored node
            return alias
        before = self._values
        self._values += 1
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        if anchor is not None:
            self._weight[anchor] = self._values - before
        if node is None or node.tag not in _TAGS:
            raise _refused(f"tag {getattr(node, 'tag', None)!r} is not accepted", mark)
        return node


def _refused(problem: str, mark: Any) -> yaml.YAMLError:
    return yaml.composer.ComposerError(None, None, problem, mark)


def load_text(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else file
        raise ConfigError(
            f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}", file=file
        ) from exc
    if root is None:
        raise ConfigError(f"{file}: the configuration is empty", file=file)
    lines: dict[tuple[Any, ...], int] = {}
    errors: list[str] = []
    data = _to_python(root, (), lines, errors, file, env)
    if not isinstance(data, dict):
        errors.append(f"{file}:1: the configuration must be a mapping")
    if errors:
        raise ConfigError("\n".join(errors), errors=errors)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for e in exc.errors():
            loc = _clean_loc(tuple(e["loc"]))
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(loc, lines)
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown key (typo?)"
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            msgs.append(f"{file}:{line}: {key}: {msg}")
        raise ConfigError("\n".join(msgs), errors=msgs) from exc


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Loaded:
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration: {exc.strerror}", file=str(p)) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"configuration is longer than {MAX_CONFIG_BYTES} bytes; refused unread", file=str(p)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration is not UTF-8 (byte {exc.start})", file=str(p)) from exc
    cfg = load_text(text, str(p), env)
    return Loaded(cfg, str(p), hashlib.blake2b(raw, digest_size=32).hexdigest())


def check_config(loaded: Loaded) -> list[str]:
    """Problems a schema cannot see: sources that overlap, paths that cannot work."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for s in loaded.config.sources:
        if isinstance(s, FileSource):
            for p in s.paths:
                norm = os.path.normpath(p)
                if norm in seen and seen[norm] != s.name:
                    problems.append(
                        f"{loaded.path}: sources {seen[norm]!r} and {s.name!r} both read {p!r}; "
                        "a file must belong to one source"
                    )
                seen[norm] = s.name
    listen: dict[str, str] = {}
    for s in loaded.config.sources:
        if isinstance(s, SyslogSource):
            for url in s.listen:
                if url in listen:
                    problems.append(
                        f"{loaded.path}: sources {listen[url]!r} and {s.name!r} "
                        f"both listen on {url}"
                    )
                listen[url] = s.name
    return problems


def effective(loaded: Loaded) -> dict[str, Any]:
    """The effective configuration, as plain data (for ``config check``)."""
    return loaded.config.model_dump(mode="json")
