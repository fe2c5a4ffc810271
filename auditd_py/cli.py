"""Command-line interface: the only module that prints to the user and exits.

Exit codes: 0 success (archive intact), 1 integrity failure (``status``: the
daemon reports itself unhealthy), 2 usage or I/O error (``status``: no daemon
answers), 3 (``run``) a disk action halted the daemon, or it stopped on a full
disk with sealed records it could not write. Every AuditdError becomes one
line on stderr (or a JSON report).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import orjson

from auditd_py import __version__, control, early, seal_input
from auditd_py.chain import speedups
from auditd_py.chain.encoding import Fields, format_ts, loads_strict
from auditd_py.chain.format import NS
from auditd_py.chain.keys import PublicKey, VerifyKey
from auditd_py.clock import SystemClock
from auditd_py.errors import AuditdError, ConfigError, UsageError
from auditd_py.report import jsonout, outcome, summary
from auditd_py.show.options import add_show_options, prepare_argv
from auditd_py.store.layout import Layout, read_public, read_secret
from auditd_py.store.parallel import default_jobs
from auditd_py.store.reader import (
    LocalArchive,
    archive_bytes,
    build_proof,
    check_proof,
    latest_checkpoint,
)
from auditd_py.store.verification import MaxAge, VerifyPolicy
from auditd_py.store.writer import ArchiveWriter, EpochPolicy, create_archive
from auditd_py.units import DurationError, parse_duration


def duration_arg(text: str) -> int:
    """A duration option (:func:`~auditd_py.units.parse_duration`) → ns, or a UsageError."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        if exc.malformed:
            raise UsageError(f"invalid duration {text!r} (use e.g. 30s, 15m, 1h)") from exc
        raise UsageError(f"duration must be positive: {text!r}") from exc


# ---------------------------------------------------------------- keygen / seal


def cmd_keygen(a: argparse.Namespace) -> int:
    layout = Layout.at(a.archive, a.state)
    ident = create_archive(
        layout, Path(a.verify_key), Path(a.public_key), host=a.host, now_ns=time.time_ns()
    )
    print(f"created archive {ident.archive} in {layout.root}")
    print(f"  sealing state:    {layout.state} (keep on this host)")
    print(f"  verification key: {a.verify_key} (secret: move it off this host)")
    print(f"  public key:       {a.public_key} (give to auditors)")
    return 0


def _inputs(files: Sequence[str]) -> Iterator[tuple[str, IO[bytes]]]:
    """(source name, binary stream) for each input; file names need not be UTF-8."""
    for name in files or ["-"]:
        if name == "-":
            yield "stdin", sys.stdin.buffer
            continue
        try:
            f = open(name, "rb", buffering=1 << 20)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot read input: {exc.strerror}", file=name) from exc
        with f:
            yield os.fsencode(name).decode("utf-8", "replace"), f


def cmd_seal(a: argparse.Namespace) -> int:
    source = seal_input.source_name(a.source)
    layout = Layout.at(a.archive, a.state)
    for name in a.files:
        if name != "-" and not os.access(name, os.R_OK):
            reason = "not found" if not os.path.exists(name) else "not readable"
            raise UsageError(f"cannot read input: {reason}", file=name)
    policy = EpochPolicy(duration_arg(a.epoch_interval), a.epoch_records)
    clock = SystemClock()
    w = ArchiveWriter.open(layout, clock, policy)
    count = 0
    first = w.sealer.seq
    try:
        now = time.time_ns  # the clock, bound once: read for every line
        for name, fh in _inputs(a.files):
            src = source or name
            batch: list[Fields] = []
            for f in seal_input.records(fh, src, now):
                batch.append(f)
                if len(batch) == 4096:
                    count += w.append_many(batch)
                    batch = []
            count += w.append_many(batch)
        last = w.sealer.seq - 1
    except KeyboardInterrupt:
        w.close()  # what was read is sealed and checkpointed
        raise
    except BaseException:
        w.abandon()  # the next writer recovers what was written; nothing is lost
        raise
    cp = w.close()
    span = f": seq {first}..{last}" if count else ""
    print(f"sealed {count} line(s) into segments/{w.segment}{span}", file=sys.stderr)
    print(
        f"closed with checkpoint {cp.epoch} ({len(w.checkpoints_written)} epoch(s) ended)",
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------- verify


def _fmt_time(ns: int | None) -> str:
    return format_ts(ns).decode() if ns is not None else "-"


def _load_keys(a: argparse.Namespace) -> tuple[bytes, bytes | None, str]:
    if bool(a.key) == bool(a.public_key):
        raise UsageError("give exactly one of --key FILE or --public-key FILE")
    if a.key:
        vk = VerifyKey.from_bytes(read_secret(Path(a.key)), file=a.key)
        return vk.public_key, vk.mac_key, vk.archive
    pk = PublicKey.from_bytes(read_public(Path(a.public_key)), file=a.public_key)
    return pk.public_key, None, pk.archive


def _progress(layout: Layout, enabled: bool) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    # Imported only when a bar is shown: rich costs ~100 ms of start-up.
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
    )

    total = archive_bytes(layout)
    if total < 64 << 20:
        return None, None
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=None,
    )
    task = bar.add_task("verifying", total=total)
    done = [0, 0]

    def tick(n: int) -> None:
        if n < 0:  # a segment finished
            done[0] += done[1]
            done[1] = 0
        else:
            done[1] = n
        bar.update(task, completed=done[0] + done[1])

    return bar, tick


ACCESS_TIMEOUT = 1.0
"""Seconds ``verify``, ``show`` and ``prove`` wait for the daemon to record their read."""


def _record_read(archive: str, command: str, args: dict[str, Any]) -> None:
    """Tell the archive's daemon, if one runs, that ``command`` reads the archive.

    The daemon seals it as an ``archive.read`` meta record. Best effort: with no
    daemon nothing happens; a daemon that cannot be told (no permission on its
    socket, no answer) costs one line on stderr, and the command carries on.
    """
    try:
        control.request(archive, {"op": "access", "command": command, "args": args}, ACCESS_TIMEOUT)
    except control.ControlError as exc:
        if exc.reason != control.ABSENT:
            print(f"auditd-py: warning: this read was not recorded: {exc}", file=sys.stderr)


def _s3_client(a: argparse.Namespace) -> Any:
    """An S3 client from --s3-endpoint/--s3-region/--s3-ca and the AWS environment."""
    from auditd_py.store.s3 import S3Options, make_client  # noqa: PLC0415 - S3 commands only

    return make_client(
        S3Options(
            endpoint=a.s3_endpoint,
            region=a.s3_region,
            ca=Path(a.s3_ca) if a.s3_ca else None,
        )
    )


def cmd_verify_s3(a: argparse.Namespace) -> int:
    """``verify s3://bucket/prefix/env/host/archive-id``: straight from the bucket, streaming."""
    from auditd_py.store.fleet import verify_bucket  # noqa: PLC0415
    from auditd_py.store.s3 import parse_url  # noqa: PLC0415

    url = a.archive
    try:
        if a.anchor_from or a.all:
            raise UsageError(f"--{'anchor-from' if a.anchor_from else 'all'} needs a DIR")
        loc = parse_url(url)
        public_key, mac_key, _ = _load_keys(a)
        try:
            anchor = Path(a.anchor).read_bytes() if a.anchor else None
        except OSError as exc:
            raise UsageError(f"cannot read anchor: {exc.strerror}", file=a.anchor) from exc
        res = verify_bucket(
            _s3_client(a),
            loc,
            public_key=public_key,
            mac_key=mac_key,
            anchor=anchor,
            require_sealed=a.require_sealed,
            max_age=_max_age(a),
        )
    except AuditdError as exc:
        if a.json:
            print(orjson.dumps({"ok": False, "archive_url": url, **exc.diagnostics()}).decode())
        raise
    if a.json:
        print(orjson.dumps({"ok": True, "archive_url": url, **res.as_dict()}).decode())
        return 0
    print("\n".join(summary.intact_lines(url, res.report)))
    if res.pending_checkpoints:
        print(
            f"  pending: {res.pending_records} checkpointed record(s) are in segments the host "
            f"has not uploaded yet (awaited since {_fmt_time(res.pending_since)})"
        )
    return 0


def _max_age(a: argparse.Namespace) -> MaxAge | None:
    return MaxAge(duration_arg(a.max_age), time.time_ns()) if a.max_age else None


def cmd_verify(a: argparse.Namespace) -> int:
    if a.archive.startswith("s3://"):
        if a.junit or a.report:
            raise UsageError("--junit and --report write reports of a DIR, not of a bucket")
        return cmd_verify_s3(a)
    layout = Layout.at(a.archive)
    bar = None
    try:
        public_key, mac_key, _ = _load_keys(a)
        _record_read(
            a.archive,
            "verify",
            {
                "mode": "key" if mac_key is not None else "public-key",
                "anchor": bool(a.anchor or a.anchor_from),
                "require_sealed": a.require_sealed,
                "json": a.json,
            },
        )
        try:
            anchor = Path(a.anchor).read_bytes() if a.anchor else None
        except OSError as exc:
            raise UsageError(f"cannot read anchor: {exc.strerror}", file=a.anchor) from exc
        if a.anchor_from:
            from auditd_py.store.s3 import bucket_anchor, parse_url  # noqa: PLC0415

            if anchor is not None:
                raise UsageError("give --anchor FILE or --anchor-from s3://…, not both")
            anchor = bucket_anchor(_s3_client(a), parse_url(a.anchor_from), layout)
        bar, tick = _progress(layout, sys.stderr.isatty() and not a.json)
        if bar is not None:
            bar.start()
        policy = VerifyPolicy(public_key, mac_key, anchor, a.require_sealed, _max_age(a))
        result = outcome.run(
            str(layout.root), LocalArchive(layout), policy, tick, jobs=a.jobs, keep_going=a.all
        )
    except AuditdError as exc:
        if a.json:  # the report on stdout, the one-line reason on stderr as always
            doc = jsonout.error_document("archive_dir", str(layout.root), exc.diagnostics())
            print(orjson.dumps(doc).decode())
        raise
    finally:
        if bar is not None:
            bar.stop()
    if a.junit or a.report:
        from auditd_py.report.write import write_reports  # noqa: PLC0415 - only for them

        write_reports(result, LocalArchive(layout), junit=a.junit, html_file=a.report)
    if a.json:
        print(orjson.dumps(jsonout.document(result)).decode())
    elif result.report is not None and result.ok:
        print("\n".join(summary.intact_lines(str(layout.root), result.report)))
    else:
        print("\n".join(summary.failed_lines(result)))
    if not result.ok:  # one line each (several with --all), in the order found
        for f in result.failures[:-1]:
            print(f"auditd-py: integrity failure: {summary.error_line(f)}", file=sys.stderr)
        _die(1, f"integrity failure: {summary.error_line(result.failures[-1])}")
    return 0


def cmd_fleet_verify(a: argparse.Namespace) -> int:
    from auditd_py.store.fleet import KeyRing, fleet_verify  # noqa: PLC0415
    from auditd_py.store.s3 import parse_url  # noqa: PLC0415

    env = parse_url(a.location)
    max_age = duration_arg(a.max_age)
    keys = KeyRing(Path(a.public_key_dir))
    now = time.time_ns()
    failed = total = 0
    lines = fleet_verify(_s3_client(a), env, keys, now_ns=now, max_age_ns=max_age, jobs=a.jobs)
    for line in lines:
        total += 1
        failed += not line.ok
        if a.json:
            print(orjson.dumps(line.as_dict()).decode(), flush=True)
            continue
        if line.last_checkpoint is not None:
            age = max(0, now - line.last_checkpoint) // NS
            last = f"last checkpoint {_fmt_time(line.last_checkpoint)} ({_age(age)} ago)"
        else:
            last = "no checkpoint"
        records = f"{line.records} records" if line.records is not None else "- records"
        pending = f", {line.pending_records} pending upload" if line.pending_records else ""
        detail = f": {line.detail}" if line.detail else ""
        status = line.status.upper()
        print(f"{line.host} {line.archive} {status} {records}{pending}, {last}{detail}", flush=True)
    if total == 0:
        raise UsageError(f"no archive under {env.url} (expected <host>/<archive-id>/ below it)")
    print(f"{total} archive(s), {total - failed} ok, {failed} not ok", file=sys.stderr)
    return 1 if failed else 0


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


# ---------------------------------------------------------------- head / show / prove


def cmd_head(a: argparse.Namespace) -> int:
    _, line = latest_checkpoint(Layout.at(a.archive))
    sys.stdout.buffer.write(line if line.endswith(b"\n") else line + b"\n")
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from auditd_py.show import command  # noqa: PLC0415 - only this command needs it

    terminal = sys.stdout.isatty()
    req = command.request_from(a, time.time_ns(), terminal)
    _record_read(a.archive, "show", command.access_args(a))
    return command.run(Layout.at(a.archive), req, sys.stdout.buffer, os.environ)


def cmd_prove(a: argparse.Namespace) -> int:
    _record_read(a.archive, "prove", {"seq": a.seq})
    proof = build_proof(Layout.at(a.archive), a.seq)
    sys.stdout.buffer.write(orjson.dumps(proof, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def cmd_collect(a: argparse.Namespace) -> int:
    from auditd_py.forward.collect import collect  # noqa: PLC0415

    out = Path(a.out)
    got = collect([Path(f) for f in a.files], out)
    if not got:
        raise UsageError("no auditd-py messages ([auditd@32473 …]) in the given files")
    for arc, c in sorted(got.items()):
        seqs = sorted(c.records)
        info = {
            "archive": arc,
            "dir": str(out / arc),
            "records": len(seqs),
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
            "checkpoints": len(c.checkpoints),
            "duplicates_dropped": c.duplicates,
        }
        if a.json:
            print(orjson.dumps(info).decode())
        else:
            span = f"seq {info['first_seq']}..{info['last_seq']}" if seqs else "no records"
            print(
                f"{out / arc}: {len(seqs)} records ({span}), {len(c.checkpoints)} checkpoints, "
                f"{c.duplicates} duplicate(s) dropped; now: auditd-py verify {out / arc} "
                "--public-key FILE"
            )
    return 0


def cmd_check_proof(a: argparse.Namespace) -> int:
    pk = PublicKey.from_bytes(read_public(Path(a.public_key)), file=a.public_key)
    try:
        raw = sys.stdin.buffer.read() if a.proof == "-" else Path(a.proof).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read proof: {exc.strerror}", file=a.proof) from exc
    try:
        proof = loads_strict(raw)  # FORMAT.md 1: no duplicate keys either
    except ValueError as exc:
        raise UsageError(f"proof is not JSON: {exc}", file=a.proof) from exc
    if not isinstance(proof, dict):
        raise UsageError("proof is not a JSON object", file=a.proof)
    res = check_proof(proof, pk.public_key)
    rec = res["record"]
    print(
        f"proof OK: seq {res['seq']} ({rec.get('ts')} {rec.get('source')}) is in the tree of "
        f"{res['tree_size']} records signed by checkpoint {res['epoch']}"
    )
    return 0


# ---------------------------------------------------------------- daemon


def cmd_run(a: argparse.Namespace) -> int:
    from auditd_py import config, metalog  # noqa: PLC0415 - daemon-only imports
    from auditd_py.daemon.supervisor import Daemon  # noqa: PLC0415

    loaded = config.load(a.config)
    problems = config.check_config(loaded)
    if problems:
        raise ConfigError("\n".join(problems))
    metalog.configure(level=metalog.LOG_LEVELS[a.log_level], fmt=a.log_format)
    d = Daemon(loaded, once=a.once)
    if not a.once:
        d.install_signals()
    return d.run()


def cmd_rotate(a: argparse.Namespace) -> int:
    if bool(a.archive) == bool(a.config):
        raise UsageError("give the archive DIR or --config FILE (its archive.path), one of them")
    if not a.timeout > 0:
        raise UsageError(f"--timeout must be positive, not {a.timeout:g}")
    if a.config:
        from auditd_py import config  # noqa: PLC0415 - only this command needs it

        archive = str(config.load(a.config).config.archive.path)
    else:
        archive = a.archive
    try:
        r = control.request(archive, {"op": "rotate"}, a.timeout)
    except control.ControlError as exc:
        if exc.reason != control.ABSENT:
            raise
        raise control.ControlError(
            f"no daemon is running for the archive {archive} (it would listen on "
            f"{control.socket_path(archive)}); nothing was rotated",
            reason=exc.reason,
        ) from exc
    print(
        f"closed segments/{r.get('closed')} with checkpoint {r.get('checkpoint')}; "
        f"now writing segments/{r.get('segment')}"
    )
    return 0


def cmd_reload(a: argparse.Namespace) -> int:
    """Reload the running daemon's config and wait for the outcome (systemd's ExecReload=)."""
    from auditd_py import config  # noqa: PLC0415 - only this command needs it

    if not a.timeout > 0:
        raise UsageError(f"--timeout must be positive, not {a.timeout:g}")
    # The new file is checked here first, so that a broken one fails the reload
    # with its own message (file:line: key) even before the daemon is asked.
    archive = str(config.load(a.config).config.archive.path)
    try:
        r = control.request(archive, {"op": "reload"}, a.timeout)
    except control.ControlError as exc:
        if exc.reason == control.REJECTED:  # the daemon runs on, with the old config
            print(f"auditd-py: reload failed: {exc.message}", file=sys.stderr)
            return 1
        if exc.reason != control.ABSENT:
            raise
        raise control.ControlError(
            f"no daemon is running for the archive {archive} (it would listen on "
            f"{control.socket_path(archive)}); nothing was reloaded",
            reason=exc.reason,
        ) from exc
    print(r.get("message", "reloaded"))
    return 0


def cmd_install_unit(a: argparse.Namespace) -> int:
    from auditd_py import install  # noqa: PLC0415 - only this command needs it

    share = install.share_dir()
    if a.print_share:
        print(share)
        return 0
    root = Path(a.root)
    for target, what in install.install_unit(root, share, force=a.force):
        print(f"{what}: {target}")
    if a.root == "/":
        print(
            "next: systemd-sysusers auditd-py.conf && systemd-tmpfiles --create auditd-py.conf"
            " && systemctl daemon-reload"
        )
    return 0


_DURATIONS = frozenset(
    {
        "epoch_interval",
        "commit_interval",
        "partial_line_timeout",
        "poll_interval",
        "max_age",
        "check_interval",
        "ack_timeout",
        "retry_max",
        "retain_for",
    }
)
_SECRETS = frozenset({"secret_access_key"})


def _human(obj: Any) -> Any:
    if isinstance(obj, dict) and set(obj) == {"bytes", "percent"}:  # a config.Space
        return f"{obj['percent']:g}%" if obj["percent"] is not None else obj["bytes"]
    if isinstance(obj, dict):
        return {
            k: (
                "(set, not shown)"
                if k in _SECRETS and v is not None
                else f"{v / 1e9:.12g}s"
                if k in _DURATIONS and isinstance(v, int)
                else _human(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_human(x) for x in obj]
    return obj


def cmd_config_check(a: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from auditd_py import config  # noqa: PLC0415
    from auditd_py.config import check_config, effective  # noqa: PLC0415

    loaded = config.load(a.file)
    problems = check_config(loaded)
    if problems:
        raise ConfigError("\n".join(problems))
    print(f"# {a.file}: valid (hash {loaded.digest[:16]})")
    if a.quiet:
        return 0
    print(yaml.safe_dump(_human(effective(loaded)), sort_keys=False), end="")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    from auditd_py import config  # noqa: PLC0415 - only this command needs them
    from auditd_py.daemon import observe, statusview  # noqa: PLC0415
    from auditd_py.daemon.status import Snapshot  # noqa: PLC0415

    if a.config and a.url:
        raise UsageError("give --config FILE or --url URL, not both")
    if a.config:
        loaded = config.load(a.config)
        if loaded.config.metrics is None:
            raise UsageError(
                f"{a.config} has no metrics: section; the daemon serves its status there"
            )
        url = observe.url_for(loaded.config.metrics.listen)
    else:
        url = a.url or observe.url_for("127.0.0.1:9464")
    terminal = sys.stdout.isatty()
    color = statusview.use_color(terminal, os.environ) and not a.json
    if a.watch is not None:
        if not a.watch > 0:
            raise UsageError(f"--watch must be a positive number of seconds, not {a.watch:g}")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the watch
            statusview.watch(
                functools.partial(observe.fetch_health, url, a.timeout),
                url,
                sys.stdout,
                interval=a.watch,
                color=color,
                clear=terminal,
                sleep=time.sleep,
            )
        return 0
    code, doc = observe.fetch_health(url, a.timeout)
    snap = Snapshot.from_doc(doc)
    healthy = code == 200 and snap.status == "ok"
    if a.json:
        print(orjson.dumps({"url": url, "http_status": code, **doc}).decode())
        return 0 if healthy else 1
    print("\n".join(statusview.render(snap, url, healthy, color)))
    return 0 if healthy else 1


# ---------------------------------------------------------------- parser


def _s3_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "S3", "credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, …)"
    )
    g.add_argument("--s3-endpoint", metavar="URL", help="an S3-compatible server (default AWS)")
    g.add_argument("--s3-region", default="us-east-1", metavar="REGION")
    g.add_argument("--s3-ca", metavar="FILE", help="CA bundle for the endpoint's certificate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="auditd-py",
        description="Tamper-evident log archive with forward-secure sealing and offline verify.",
    )
    version = f"auditd-py {__version__} (chain loop: {speedups.describe()})"
    p.add_argument("--version", action="version", version=version)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _archive_commands(sub)
    _read_commands(sub)
    _fleet_commands(sub)
    _daemon_commands(sub)
    _control_commands(sub)
    return p


def _archive_commands(sub: Any) -> None:
    """keygen, seal, verify."""
    k = sub.add_parser("keygen", help="create an archive, its sealing state and keys")
    k.add_argument("--archive", required=True, metavar="DIR")
    k.add_argument("--verify-key", required=True, metavar="FILE", help="secret verification key")
    k.add_argument("--public-key", required=True, metavar="FILE", help="public key for auditors")
    k.add_argument("--state", metavar="DIR", help="sealing state (default DIR/.state)")
    k.add_argument("--host", metavar="NAME", help="host name recorded in the archive")
    k.set_defaults(func=cmd_keygen)

    s = sub.add_parser("seal", help="seal lines from files or stdin into a new segment")
    s.add_argument("--archive", required=True, metavar="DIR")
    s.add_argument("--state", metavar="DIR")
    s.add_argument("--epoch-interval", default="15m", metavar="DURATION")
    s.add_argument("--epoch-records", type=int, metavar="N")
    s.add_argument("--source", metavar="NAME", help="source name (default: file name or stdin)")
    s.add_argument("files", nargs="*", metavar="FILE")
    s.set_defaults(func=cmd_seal)

    v = sub.add_parser("verify", help="verify an archive offline (a directory or in S3)")
    v.add_argument(
        "archive",
        metavar="DIR|s3://BUCKET/PREFIX/ENV/HOST/ARCHIVE-ID",
        help="an archive directory, or a forwarded archive in a bucket (read in place)",
    )
    v.add_argument("--key", metavar="FILE", help="secret verification key (checks every MAC)")
    v.add_argument("--public-key", metavar="FILE", help="public key (auditor mode)")
    v.add_argument("--anchor", metavar="FILE", help="a checkpoint saved earlier with `head`")
    v.add_argument(
        "--anchor-from",
        metavar="s3://…",
        help="the forwarded copy of this archive: its checkpoints must be the local ones "
        "(byte for byte) and the latest is the anchor",
    )
    v.add_argument(
        "--require-sealed", action="store_true", help="fail on records after the last checkpoint"
    )
    v.add_argument("--json", action="store_true", help="print one JSON report (versioned)")
    v.add_argument("--junit", metavar="FILE", help="also write JUnit XML for CI")
    v.add_argument("--report", metavar="FILE.html", help="also write an HTML timeline")
    _jobs_option(v, "segments of a local archive")
    v.add_argument("--max-age", metavar="DURATION", help="fail if the last checkpoint is older")
    v.add_argument("--all", action="store_true", help="go on after a failure; list each one")
    _s3_options(v)
    v.set_defaults(func=cmd_verify)


def _jobs_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        metavar="N",
        help=f"verify {what} in N processes at once (default: the number of cores)",
    )


def _read_commands(sub: Any) -> None:
    """head, show, prove, check-proof, collect."""
    hd = sub.add_parser("head", help="print the latest signed checkpoint (save it as an anchor)")
    hd.add_argument("archive", metavar="DIR")
    hd.set_defaults(func=cmd_head)

    sh = sub.add_parser(
        "show",
        help="print records, like journalctl",
        description="Prints the archive's data records (--meta: the daemon's own, --all: "
        "both), oldest first, through a pager on a terminal. MATCHES are FIELD=VALUE "
        "(host, app, pid, unit, priority, source, or any stored field); the same field "
        "twice matches either value.",
    )
    add_show_options(sh)
    sh.set_defaults(func=cmd_show)

    pr = sub.add_parser("prove", help="print an inclusion proof of one record")
    pr.add_argument("archive", metavar="DIR")
    pr.add_argument("--seq", type=int, required=True)
    pr.set_defaults(func=cmd_prove)

    cp = sub.add_parser("check-proof", help="check an inclusion proof offline")
    cp.add_argument("proof", metavar="FILE")
    cp.add_argument("--public-key", required=True, metavar="FILE")
    cp.set_defaults(func=cmd_check_proof)

    co = sub.add_parser(
        "collect",
        help="rebuild archives from a syslog collector's files (then verify them)",
    )
    co.add_argument("files", nargs="+", metavar="FILE")
    co.add_argument("--out", required=True, metavar="DIR", help="one archive per id under DIR")
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_collect)


def _fleet_commands(sub: Any) -> None:
    """fleet verify."""
    fl = sub.add_parser("fleet", help="check every host's forwarded archive in a bucket")
    flsub = fl.add_subparsers(dest="fleet_command", required=True, metavar="SUBCOMMAND")
    fv = flsub.add_parser(
        "verify",
        help="verify every archive under s3://BUCKET/PREFIX/ENV, one line per host",
        description="Verifies (public-key mode) every archive under "
        "s3://BUCKET/PREFIX/ENV/<host>/<archive-id>/ and prints one line per archive: "
        "host, archive id, status, records, last checkpoint. Exits 1 if any archive fails, "
        "has no public key, cannot be read, or has not checkpointed within --max-age.",
    )
    fv.add_argument("location", metavar="s3://BUCKET/PREFIX/ENV")
    fv.add_argument(
        "--public-key-dir",
        required=True,
        metavar="DIR",
        help="public key files: <archive-id>.key, or any name (matched by the archive id "
        "inside, or by the archive's public key)",
    )
    fv.add_argument(
        "--max-age",
        default="1h",
        metavar="DURATION",
        help="an archive whose latest checkpoint in the bucket is older is stale (default 1h)",
    )
    fv.add_argument("--json", action="store_true", help="one JSON object per archive")
    _jobs_option(fv, "hosts")
    _s3_options(fv)
    fv.set_defaults(func=cmd_fleet_verify)


def _daemon_commands(sub: Any) -> None:
    """run, status, rotate."""
    r = sub.add_parser("run", help="run the daemon: tail files, receive syslog, read journald")
    r.add_argument("--config", required=True, metavar="FILE")
    r.add_argument(
        "--once", action="store_true", help="drain file and journald sources, seal, exit"
    )
    r.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="the daemon's own log on stderr: readable lines on a terminal, JSON otherwise "
        "(auto, the default), or always one of them",
    )
    r.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the least severe event written to stderr (every event is sealed regardless)",
    )
    r.set_defaults(func=cmd_run)

    st = sub.add_parser(
        "status",
        help="ask a running daemon how it is (its metrics endpoint's /health)",
        description="Prints the running daemon's sources, rates, last checkpoint and disk "
        "space, read from the /health endpoint of its metrics: section. Exits 0 if it is "
        "healthy, 1 if it says it is not, 2 if it cannot be reached.",
    )
    where = st.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="the daemon's config (metrics.listen)")
    where.add_argument("--url", metavar="URL", help="default http://127.0.0.1:9464")
    st.add_argument("--json", action="store_true", help="print the document as one JSON line")
    st.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
    st.add_argument(
        "-w",
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        metavar="SECONDS",
        help="show it again every SECONDS (default 2) until Ctrl-C, like watch(1)",
    )
    st.set_defaults(func=cmd_status)

    ro = sub.add_parser(
        "rotate",
        help="ask the running daemon to close its segment and start a new one",
        description="Asks the daemon running for the archive (over DIR/.control.sock) to end "
        "the epoch with a checkpoint and continue in a new segment, as SIGUSR1 does, and "
        "prints the segments. Exits 2 if no daemon answers.",
    )
    ro.add_argument("archive", nargs="?", metavar="DIR", help="the archive directory")
    ro.add_argument("--config", metavar="FILE", help="the daemon's config (archive.path)")
    ro.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    ro.set_defaults(func=cmd_rotate)


def _control_commands(sub: Any) -> None:
    """reload, install-unit, config check."""
    rl = sub.add_parser(
        "reload",
        help="make the running daemon re-read its config, and wait for the outcome",
        description="Checks FILE, then asks the daemon running for its archive (over "
        "ARCHIVE/.control.sock) to reload it, as SIGHUP does, and waits for the result. "
        "Exits 0 when the new config is running, 1 when the daemon kept the old one (the "
        "reason is printed), 2 if no daemon answers. The unit's ExecReload=, so that "
        "`systemctl reload` fails visibly on a bad config.",
    )
    rl.add_argument("--config", required=True, metavar="FILE", help="the daemon's config")
    rl.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
    rl.set_defaults(func=cmd_reload)

    iu = sub.add_parser(
        "install-unit",
        help="install the systemd unit, sysusers.d and tmpfiles.d files shipped with the package",
        description="Copies auditd-py.service to ROOT/etc/systemd/system/ and the sysusers.d "
        "and tmpfiles.d snippets to ROOT/etc/sysusers.d/ and ROOT/etc/tmpfiles.d/ (mode "
        "0644). A file that exists with other contents is an error unless --force. The "
        "example configs and the docs are in the directory --print-share prints.",
    )
    iu.add_argument("--root", default="/", metavar="DIR", help="install below DIR (default /)")
    iu.add_argument("--force", action="store_true", help="replace files that differ")
    iu.add_argument(
        "--print-share",
        action="store_true",
        help="print the directory holding systemd/ and config/ and exit",
    )
    iu.set_defaults(func=cmd_install_unit)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    cc = csub.add_parser("check", help="validate a config file and print the effective config")
    cc.add_argument("file", metavar="FILE")
    cc.add_argument(
        "-q", "--quiet", action="store_true", help="print one line, not the effective config"
    )
    cc.set_defaults(func=cmd_config_check)


def _die(code: int, message: str) -> NoReturn:
    print(f"auditd-py: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(argv) if argv is not None else sys.argv[1:]
    if raw[:1] == ["run"]:
        early.install()  # before the daemon's heavy imports: SIGTERM stops it cleanly
    if raw[:1] == ["show"]:
        raw = prepare_argv(raw)
    parser = build_parser()
    args = parser.parse_args(raw)
    try:
        code: int = args.func(args)
    except AuditdError as exc:
        kind = "integrity failure" if exc.exit_code == 1 else "error"
        what = f"{exc.where['what']}: " if exc.exit_code == 1 and "what" in exc.where else ""
        _die(exc.exit_code, f"{kind}: {what}{exc}")
    except KeyboardInterrupt:
        _die(130, "interrupted")
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
