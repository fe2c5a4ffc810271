"""The human lines of ``verify``: the report, or the failure with its code and
what was verified before it."""

from __future__ import annotations

from auditd_py.chain.encoding import format_ts
from auditd_py.chain.verify import Report
from auditd_py.chain.verify_all import Extent
from auditd_py.report.outcome import Finding, Outcome


def fmt_time(ns: int | None) -> str:
    return format_ts(ns).decode() if ns is not None else "-"


def _mode(mode: str) -> str:
    return (
        "verification key: MACs, chain, Merkle roots, signatures"
        if mode == "key"
        else "public key: chain, Merkle roots, signatures"
    )


def intact_lines(label: str, r: Report) -> list[str]:
    """What ``verify`` prints for an intact archive."""
    out = [
        f"{label}: intact ({_mode(r.mode)})",
        f"  {r.records} records ({r.sealed_records} sealed, {r.unsealed_records} after the "
        f"last checkpoint), {r.segments} segments, {r.checkpoints} checkpoints",
        f"  time range {fmt_time(r.first_time)} .. {fmt_time(r.last_time)}",
    ]
    out += [f"  {line}" for line in describe_retention(r)]
    if r.unsealed_records:
        how = "MAC-verified" if r.mode == "key" else "hash-linked only"
        out.append(
            f"  note: the last {r.unsealed_records} record(s) are not yet checkpointed ({how})"
        )
    if r.anchor_epoch is not None:
        out.append(f"  anchor: checkpoint {r.anchor_epoch} matches")
    out += [
        f"  recovered: {rec['bytes']} torn bytes cut from {rec['segment']} at offset "
        f"{rec['offset']} (sealed at seq {rec['seq']}, kept in {rec['kept_in']})"
        for rec in r.recovered
    ]
    out += [f"  warning: {w}" for w in r.warnings]
    return out


def describe_retention(r: Report) -> list[str]:
    """Every deletion since keygen as lines for people (``verify``'s report)."""
    if not r.retention:
        return []
    policies = sorted({str(x["policy"]) for x in r.retention})
    out = [
        f"retention: {len(r.retention)} segment deletion(s) since keygen, by policy "
        f"({', '.join(policies)}); the archive starts at seq {r.first_seq}"
    ]
    for x in r.retention:
        late = "; not yet forwarded then" if x["undelivered"] else ""
        kept = "" if x["in_archive"] else " [record retired, kept in deletions.jsonl]"
        out.append(
            f"  {format_ts(x['time']).decode()} deleted {x['segment']} (seq {x['seq_first']}.."
            f"{x['seq_end'] - 1}, {x['bytes']} bytes of {x['file']}) by {x['policy']}: "
            f"{x['reason']}{late}{kept}"
        )
    return out


def error_line(f: Finding) -> str:
    """One failure on one line, its code first: ``broken_link: segments/…, line 3: …``."""
    where = f.where()
    return f"{f.code}: {where}: {f.message}" if where else f"{f.code}: {f.message}"


def reached_line(r: Extent | None, segments: int, *, went_on: bool = False) -> str:
    """What was verified before the failure (``went_on``: in all, with ``--all``):
    records, segments, epochs, time range."""
    what = "verified, going on after each failure" if went_on else "verified before the failure"
    if r is None or (r.records == 0 and not r.segments):
        return f"  {what}: nothing (it is in the identity or the checkpoints)"
    seqs = f"seq {r.first_seq}..{r.seq_end - 1}" if r.records else "no records"
    return (
        f"  {what}: {r.records} records ({seqs}), "
        f"{len(r.segments)} of {segments} segments, {r.epochs} epochs matched their "
        f"checkpoints, time range {fmt_time(r.first_time)} .. {fmt_time(r.last_time)}"
    )


def failed_lines(o: Outcome) -> list[str]:
    """What ``verify`` prints on stdout for a failed archive (the error goes to stderr)."""
    out = [f"{o.archive}: FAILED ({_mode(o.mode)})"]
    out += [f"  failure {error_line(f)}" for f in o.failures]
    out.append(reached_line(o.reached, len(o.segments), went_on=len(o.failures) > 1))
    return out
