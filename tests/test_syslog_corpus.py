"""A corpus of odd but real syslog frames: what each must parse to, and why.

Written from the RFCs' own examples and from what common senders document or
are seen to send (docs/SYSLOG.md says which heuristic each case needs). Every
case checks the whole ``syslog`` object (so a flag that appears or vanishes is
a failure) and the message; every record keeps its raw frame.
"""

from __future__ import annotations

import base64
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditd_py.sources.syslog_parse import Frame, frame_fields, parse_syslog


class Case(NamedTuple):
    why: str
    frame: bytes
    fields: dict[str, Any]
    message: bytes


def _pri(pri: int) -> dict[str, Any]:
    return {"pri": pri, "facility": pri >> 3, "severity": pri & 7}


def bsd(pri: int, **fields: Any) -> dict[str, Any]:
    return {"format": "rfc3164", **_pri(pri), **fields}


def ietf(pri: int, **fields: Any) -> dict[str, Any]:
    return {"format": "rfc5424", **_pri(pri), "version": 1, **fields}


RFC5424_SD = {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}}

CORPUS = [
    Case(
        "RFC 3164 5.4 example 1",
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        bsd(34, timestamp="Oct 11 22:14:15", hostname="mymachine", app="su"),
        b"'su root' failed for lonvick on /dev/pts/8",
    ),
    Case(
        "RFC 3164 5.4 example 2 and 4.3.3: no PRI, a relay assumes PRI 13, all is CONTENT",
        b"Use the BFG!",
        bsd(13, pri_inferred=True, timestamp_inferred=True),
        b"Use the BFG!",
    ),
    Case(
        "RFC 3164 5.4 example 3: HOSTNAME and no TAG",
        b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        bsd(13, timestamp="Feb  5 17:32:18", hostname="10.0.0.99"),
        b"Use the BFG!",
    ),
    Case(
        "RFC 3164 5.4 example 4: 'CST' after the time is the HOSTNAME, as the RFC reads it",
        b"<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.",
        bsd(165, timestamp="Aug 24 05:34:00", hostname="CST"),
        b"1987 mymachine myproc[10]: %% It's time to make the do-nuts.",
    ),
    Case(
        "RFC 3164 4.3.3: an unidentifiable PRI is PRI 13 with the whole frame as CONTENT",
        b"<200>Dec  4 13:14:11 vm app: x",
        bsd(13, pri_inferred=True, timestamp_inferred=True),
        b"<200>Dec  4 13:14:11 vm app: x",
    ),
    Case(
        "rsyslog RSYSLOG_TraditionalForwardFormat: %syslogtag:1:32% cut the colon off",
        b"<29>Dec  4 13:14:11 vm tagR[29333] message from a long tag",
        bsd(
            29,
            timestamp="Dec  4 13:14:11",
            hostname="vm",
            app="tagR",
            procid="29333",
            tag_lenient=True,
        ),
        b"message from a long tag",
    ),
    Case(
        "rsyslog RSYSLOG_ForwardFormat: RFC 3339 timestamp inside an RFC 3164 frame",
        b"<30>2026-12-04T13:14:11.123456+01:00 vm app[5]: started",
        bsd(
            30,
            timestamp="2026-12-04T13:14:11.123456+01:00",
            timestamp_lenient=True,
            hostname="vm",
            app="app",
            procid="5",
        ),
        b"started",
    ),
    Case(
        "month in capitals (embedded devices)",
        b"<13>AUG  4 13:14:11 vm app: x",
        bsd(13, timestamp="AUG  4 13:14:11", timestamp_lenient=True, hostname="vm", app="app"),
        b"x",
    ),
    Case(
        "one space before a one-digit day (strftime %b %-d senders)",
        b"<13>Mar 7 13:14:11 vm app: x",
        bsd(13, timestamp="Mar 7 13:14:11", timestamp_lenient=True, hostname="vm", app="app"),
        b"x",
    ),
    Case(
        "a space between PRI and TIMESTAMP",
        b"<13> Dec  4 13:14:11 vm app: x",
        bsd(13, timestamp="Dec  4 13:14:11", timestamp_lenient=True, hostname="vm", app="app"),
        b"x",
    ),
    Case(
        "Cisco IOS: colon after the time, no HOSTNAME, the mnemonic as TAG",
        b"<189>Dec  4 13:14:11: %SYS-5-CONFIG_I: Configured from console by vty0",
        bsd(189, timestamp="Dec  4 13:14:11", timestamp_lenient=True, app="%SYS-5-CONFIG_I"),
        b"Configured from console by vty0",
    ),
    Case(
        "Cisco IOS with 'service timestamps log datetime msec show-timezone year'",
        b"<187>Dec  4 2026 13:14:11.123 UTC: %LINK-3-UPDOWN: Interface Gi0/1, changed state",
        bsd(
            187,
            timestamp="Dec  4 2026 13:14:11.123 UTC",
            timestamp_lenient=True,
            app="%LINK-3-UPDOWN",
        ),
        b"Interface Gi0/1, changed state",
    ),
    Case(
        "Cisco ASA: zero-padded day and a year after it",
        b"<166>Dec 04 2026 13:14:11: %ASA-6-302013: Built outbound TCP connection",
        bsd(166, timestamp="Dec 04 2026 13:14:11", timestamp_lenient=True, app="%ASA-6-302013"),
        b"Built outbound TCP connection",
    ),
    Case(
        "a timestamp in no known form: kept as text, HOSTNAME and TAG still read",
        b"<13>2026/12/04 13:14:11 vm app[7]: x",
        bsd(
            13,
            timestamp="2026/12/04 13:14:11",
            timestamp_unparsed=True,
            hostname="vm",
            app="app",
            procid="7",
        ),
        b"x",
    ),
    Case(
        "ctime-like timestamp with a weekday (some appliances)",
        b"<13>Fri Dec  4 13:14:11 2026 vm app: x",
        bsd(
            13,
            timestamp="Fri Dec  4 13:14:11 2026",
            timestamp_unparsed=True,
            hostname="vm",
            app="app",
        ),
        b"x",
    ),
    Case(
        "Python logging.handlers.SysLogHandler, default format: no header, NUL trailer",
        b"<12>something bad happened\x00",
        bsd(12, timestamp_inferred=True),
        b"something bad happened",
    ),
    Case(
        "Python SysLogHandler with an ident ending in ': '",
        b"<14>myapp: started\x00",
        bsd(14, timestamp_inferred=True, app="myapp"),
        b"started",
    ),
    Case(
        "glibc syslog() to /dev/log: no HOSTNAME",
        b"<13>Dec  4 13:14:11 root: hello",
        bsd(13, timestamp="Dec  4 13:14:11", app="root"),
        b"hello",
    ),
    Case(
        "journald ForwardToSyslog: no HOSTNAME, identifier[pid]",
        b"<30>Dec  4 13:14:11 systemd[1]: Started app.service.",
        bsd(30, timestamp="Dec  4 13:14:11", app="systemd", procid="1"),
        b"Started app.service.",
    ),
    Case(
        "postfix: a TAG with a slash",
        b"<22>Dec  4 13:14:11 mx postfix/smtpd[4711]: connect from unknown[192.0.2.1]",
        bsd(22, timestamp="Dec  4 13:14:11", hostname="mx", app="postfix/smtpd", procid="4711"),
        b"connect from unknown[192.0.2.1]",
    ),
    Case(
        "an IPv6 literal as HOSTNAME",
        b"<13>Dec  4 13:14:11 2001:db8::1 app: x",
        bsd(13, timestamp="Dec  4 13:14:11", hostname="2001:db8::1", app="app"),
        b"x",
    ),
    Case(
        "RFC 5424 6.5 example 1: no STRUCTURED-DATA, BOM before MSG",
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
        ietf(
            34,
            timestamp="2003-10-11T22:14:15.003Z",
            hostname="mymachine.example.com",
            app="su",
            msgid="ID47",
        ),
        b"'su root' failed for lonvick on /dev/pts/8",
    ),
    Case(
        "RFC 5424 6.5 example 2: microseconds and an offset",
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts.",
        ietf(
            165,
            timestamp="2003-08-24T05:14:15.000003-07:00",
            hostname="192.0.2.1",
            app="myproc",
            procid="8710",
        ),
        b"%% It's time to make the do-nuts.",
    ),
    Case(
        "RFC 5424 6.5 example 4: two SD-ELEMENTs and no MSG",
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"]',
        ietf(
            165,
            timestamp="2003-10-11T22:14:15.003Z",
            hostname="mymachine.example.com",
            app="evntslog",
            msgid="ID47",
            sd={**RFC5424_SD, "examplePriority@32473": {"class": "high"}},
        ),
        b"",
    ),
    Case(
        "RFC 5424 6.5 example 3 as wrapped in the RFC: one bad SD element, the header stands",
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] '
        b"An application event log entry...",
        ietf(
            165,
            timestamp="2003-10-11T22:14:15.003Z",
            hostname="mymachine.example.com",
            app="evntslog",
            msgid="ID47",
            sd_invalid="structured data: expected '=\"' after PARAM-NAME",
        ),
        b'[exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] '
        b"An application event log entry...",
    ),
    Case(
        "RFC 5424 without the STRUCTURED-DATA field at all (hand-rolled senders)",
        b"<14>1 2026-12-04T13:14:11Z vm app 42 - hello",
        ietf(
            14,
            timestamp="2026-12-04T13:14:11Z",
            hostname="vm",
            app="app",
            procid="42",
            sd_invalid="structured data: expected '-' or '['",
        ),
        b"hello",
    ),
    Case(
        "util-linux logger --rfc5424: timeQuality SD",
        b'<13>1 2026-12-04T13:14:11.123456+00:00 vm root 99 - [timeQuality tzKnown="1" '
        b'isSynced="0"] hello',
        ietf(
            13,
            timestamp="2026-12-04T13:14:11.123456+00:00",
            hostname="vm",
            app="root",
            procid="99",
            sd={"timeQuality": {"tzKnown": "1", "isSynced": "0"}},
        ),
        b"hello",
    ),
    Case(
        "rsyslog RSYSLOG_SyslogProtocol23Format: LF inside the octet count",
        b"<13>1 2026-12-04T13:14:11.123+00:00 vm app 5 MID - hello\n",
        ietf(
            13,
            timestamp="2026-12-04T13:14:11.123+00:00",
            hostname="vm",
            app="app",
            procid="5",
            msgid="MID",
        ),
        b"hello",
    ),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c.why for c in CORPUS])
def test_corpus(case: Case) -> None:
    p = parse_syslog(case.frame)
    assert p.error is None, case.why
    assert p.syslog == case.fields, case.why
    assert p.message == case.message, case.why
    rec, err = frame_fields(Frame(case.frame), time_ns=1, source="s", base={})
    assert err is None
    assert rec.attrs is not None
    raw = rec.attrs.get("raw")
    kept = raw.encode() if raw is not None else base64.b64decode(rec.attrs["raw_b64"])
    assert kept == case.frame


_FLAGS = ("pri_inferred", "timestamp_inferred", "timestamp_lenient", "timestamp_unparsed",
          "tag_lenient")  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    head=st.sampled_from([b"", b"<13>", b"<13> ", b"<190>1 ", b"<13>Dec  4 ", b"<13>2026-"]),
    body=st.binary(max_size=120),
)
def test_any_frame_parses_to_a_piece_of_itself(head: bytes, body: bytes) -> None:
    """Malformed input never raises; the message is a piece of the frame; flags are
    only ever true; a 3164 result always has a PRI in range."""
    frame = head + body
    p = parse_syslog(frame)
    assert p.message in frame
    if p.syslog is None:
        assert p.error is not None
        assert p.message == frame
        return
    assert 0 <= p.syslog["pri"] <= 191
    for flag in _FLAGS:
        assert p.syslog.get(flag, True) is True
    if p.syslog.get("pri_inferred"):
        assert p.message in (frame, frame[:-1], frame[:-2])
