"""Syslog parsers and RFC 6587 framing: unit tests and hypothesis properties."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditd_py.errors import ConfigError
from auditd_py.sources.syslog_parse import (
    Frame,
    Framer,
    ListenAddress,
    datagram_frames,
    frame_fields,
    parse_listen_url,
    parse_syslog,
)

# ---------------------------------------------------------------- RFC 5424


def test_logger_rfc5424_with_structured_data() -> None:
    frame = (
        b'<13>1 2026-11-26T05:07:39.820249+00:00 vm mytag - MID [timeQuality tzKnown="1" '
        b'isSynced="0"][ex@32473 a="b\\"c"] gr\xc3\xbc\xc3\x9fe'
    )
    p = parse_syslog(frame)
    assert p.error is None
    assert p.message == "grüße".encode()
    assert p.syslog == {
        "format": "rfc5424",
        "pri": 13,
        "facility": 1,
        "severity": 5,
        "version": 1,
        "timestamp": "2026-11-26T05:07:39.820249+00:00",
        "hostname": "vm",
        "app": "mytag",
        "msgid": "MID",
        "sd": {"timeQuality": {"tzKnown": "1", "isSynced": "0"}, "ex@32473": {"a": 'b"c'}},
    }


def test_rfc5424_nil_values_are_omitted_and_no_msg() -> None:
    p = parse_syslog(b"<0>1 - - - - - -")
    assert p.error is None
    assert p.message == b""
    assert p.syslog == {
        "format": "rfc5424",
        "pri": 0,
        "facility": 0,
        "severity": 0,
        "version": 1,
        "timestamp_inferred": True,
    }


def test_rfc5424_bom_and_trailing_newline_are_not_message() -> None:
    p = parse_syslog(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - "
        b"\xef\xbb\xbfAn application event\n"
    )
    assert p.error is None
    assert p.message == b"An application event"
    assert p.syslog is not None
    assert (p.syslog["facility"], p.syslog["severity"]) == (20, 5)
    assert "procid" not in p.syslog


def test_rfc5424_sd_escapes_repeats_and_literal_backslash() -> None:
    p = parse_syslog(
        b'<13>1 - h a p m [id@1 x="q\\"b\\\\s\\]e" y="c\\d" x="2" z="]"][id@1 w="v"] m'
    )
    assert p.error is None
    assert p.syslog is not None
    assert p.syslog["sd"] == {"id@1": {"x": ['q"b\\s]e', "2"], "y": "c\\d", "z": "]", "w": "v"}}
    assert p.message == b"m"


def test_rfc5424_non_utf8_msg_is_kept_as_bytes() -> None:
    p = parse_syslog(b"<13>1 - - - - - - \xff\xfe\x00x")
    assert p.error is None
    assert p.message == b"\xff\xfe\x00x"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"<13>1 yesterday h a p m - x", "bad TIMESTAMP"),
        (b"<13>1 - h\xc3\xa9 a p m - x", "bad HOSTNAME"),
        (b"<13>1 - h a p", "ends after PROCID"),
    ],
)
def test_parse_errors_name_the_reason(frame: bytes, reason: str) -> None:
    p = parse_syslog(frame)
    assert p.syslog is None
    assert p.error is not None
    assert reason in p.error
    assert p.message == frame


@pytest.mark.parametrize(
    ("frame", "reason", "message"),
    [
        (b'<13>1 - h a p m [id x="1"', "unterminated", b'[id x="1"'),
        (b'<13>1 - h a p m [id x="\xff"] m', "not UTF-8", b'[id x="\xff"] m'),
        (b"<13>1 - h a p m [=x] m", "bad SD-ID", b"[=x] m"),
        (b"<13>1 - h a p m [id x=1] m", "expected '=\"'", b"[id x=1] m"),
        (b"<13>1 - h a p m -x", "expected SP after", b"-x"),
        (b"<13>1 - h a p m x", "expected '-' or '['", b"x"),
    ],
)
def test_bad_structured_data_keeps_the_header(frame: bytes, reason: str, message: bytes) -> None:
    p = parse_syslog(frame)
    assert p.error is None
    assert p.syslog is not None
    assert (p.syslog["pri"], p.syslog["hostname"], p.syslog["app"]) == (13, "h", "a")
    assert reason in p.syslog["sd_invalid"]
    assert "sd" not in p.syslog
    assert p.message == message


@pytest.mark.parametrize("frame", [b"hello", b"", b"<192>1 - - - - - - x", b"<999>Nov 26 h t: x"])
def test_no_valid_pri_is_pri_13_with_the_frame_as_content(frame: bytes) -> None:
    # RFC 3164 section 4.3.3
    p = parse_syslog(frame)
    assert p.error is None
    assert p.syslog == {
        "format": "rfc3164",
        "pri": 13,
        "facility": 1,
        "severity": 5,
        "pri_inferred": True,
        "timestamp_inferred": True,
    }
    assert p.message == frame


# ---------------------------------------------------------------- RFC 3164


@pytest.mark.parametrize(
    ("frame", "fields", "message"),
    [
        (  # logger --rfc3164
            b"<13>Nov 26 05:07:39 vm mytag: rfc3164 msg",
            {"timestamp": "Nov 26 05:07:39", "hostname": "vm", "app": "mytag"},
            b"rfc3164 msg",
        ),
        (  # glibc syslog() / logger -u: no HOSTNAME
            b"<13>Nov 26 05:07:39 root: unix default",
            {"timestamp": "Nov 26 05:07:39", "app": "root"},
            b"unix default",
        ),
        (  # with PID, space-padded day
            b"<38>Feb  5 17:32:18 10.0.0.99 sshd[8024]: Accepted publickey",
            {
                "timestamp": "Feb  5 17:32:18",
                "hostname": "10.0.0.99",
                "app": "sshd",
                "procid": "8024",
            },
            b"Accepted publickey",
        ),
        (  # rsyslog RSYSLOG_ForwardFormat: RFC 3339 timestamp
            b"<30>2026-11-26T05:07:39.123456+01:00 host systemd[1]: Started x.\n",
            {
                "timestamp": "2026-11-26T05:07:39.123456+01:00",
                "timestamp_lenient": True,
                "hostname": "host",
                "app": "systemd",
                "procid": "1",
            },
            b"Started x.",
        ),
        (  # IPv6 literal hostname, no tag
            b"<13>Nov 26 05:07:39 fe80::1 hello world",
            {"timestamp": "Nov 26 05:07:39", "hostname": "fe80::1"},
            b"hello world",
        ),
        (  # Python's SysLogHandler: no header, NUL terminator
            b"<14>myapp: something happened\x00",
            {"app": "myapp", "timestamp_inferred": True},
            b"something happened",
        ),
        (b"<14>just text", {"timestamp_inferred": True}, b"just text"),
        (b"<14>", {"timestamp_inferred": True}, b""),
    ],
)
def test_rfc3164(frame: bytes, fields: dict[str, Any], message: bytes) -> None:
    p = parse_syslog(frame)
    assert p.error is None
    assert p.syslog is not None
    pri = p.syslog["pri"]
    assert p.syslog == {
        "format": "rfc3164",
        "pri": pri,
        "facility": pri >> 3,
        "severity": pri & 7,
        **fields,
    }
    assert p.message == message


# ---------------------------------------------------------------- records


def test_frame_fields_parsed_record_keeps_raw_frame() -> None:
    frame = b"<13>1 - h app - - - caf\xc3\xa9"
    rec, err = frame_fields(
        Frame(frame), time_ns=5, source="sys", base={"transport": "tcp", "peer": "1.2.3.4:5"}
    )
    assert err is None
    assert rec.time_ns == 5
    assert rec.source == "sys"
    assert rec.message == "café".encode()
    assert rec.attrs is not None
    assert rec.attrs["raw"] == frame.decode()
    assert rec.attrs["transport"] == "tcp"
    assert rec.attrs["peer"] == "1.2.3.4:5"
    assert rec.attrs["syslog"]["hostname"] == "h"


def test_frame_fields_invalid_utf8_raw_goes_to_base64() -> None:
    frame = b"<13>1 - - - - - - \xff"
    rec, _ = frame_fields(Frame(frame), time_ns=1, source="s", base={})
    assert rec.attrs is not None
    assert "raw" not in rec.attrs
    assert base64.b64decode(rec.attrs["raw_b64"]) == frame
    assert rec.message == b"\xff"


def test_frame_fields_parse_error_is_sealed_raw() -> None:
    rec, err = frame_fields(Frame(b"<13>1 - h\xff a - - - x"), time_ns=1, source="s", base={})
    assert err is not None
    assert rec.message == b"<13>1 - h\xff a - - - x"
    assert rec.attrs == {
        "parse_error": err,
        "raw_b64": base64.b64encode(b"<13>1 - h\xff a - - - x").decode(),
    }


def test_frame_fields_without_pri_is_inferred_and_raw() -> None:
    rec, err = frame_fields(Frame(b"\x00junk\xff"), time_ns=1, source="s", base={"peer": "p"})
    assert err is None
    assert rec.message == b"\x00junk\xff"
    assert rec.attrs is not None
    assert rec.attrs["syslog"]["pri_inferred"] is True
    assert rec.attrs["raw_b64"] == base64.b64encode(b"\x00junk\xff").decode()


def test_frame_fields_flags() -> None:
    rec, err = frame_fields(
        Frame(b"12345", error="octet count 99 exceeds", oversize=77), time_ns=1, source="s", base={}
    )
    assert err == "octet count 99 exceeds"
    assert rec.attrs == {"parse_error": err, "oversize": 77, "raw": "12345"}
    rec, err = frame_fields(Frame(b"<13>x", continuation=True), time_ns=1, source="s", base={})
    assert err is None
    assert rec.message == b"<13>x"
    assert rec.attrs == {"continuation": True}
    rec, _ = frame_fields(
        Frame(b"<13>x", truncated=True, octet_count=9), time_ns=1, source="s", base={}
    )
    assert rec.attrs is not None
    assert rec.attrs["truncated"] is True
    assert rec.attrs["octet_count"] == 9


def test_datagram_frames_oversize() -> None:
    frames = datagram_frames(b"a" * 25, 10, truncated=True)
    assert [f.data for f in frames] == [b"a" * 10, b"a" * 10, b"a" * 5]
    assert frames[0].oversize == 25
    assert [f.continuation for f in frames] == [False, True, True]
    assert frames[-1].truncated


# ---------------------------------------------------------------- framing


def _feed_all(framer: Framer, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for c in chunks:
        out.extend(framer.feed(c))
    out.extend(framer.eof())
    return out


def test_framing_mixed_octet_counted_and_lf() -> None:
    f = Framer(1000)
    frames = _feed_all(f, [b"5 hello<13>a\r\n\n3 x\ny<14>b\n", b"7 ab"])
    assert [x.data for x in frames] == [b"hello", b"<13>a", b"x\ny", b"<14>b", b"ab"]
    assert [x.truncated for x in frames] == [False] * 4 + [True]
    assert frames[-1].octet_count == 7


def test_framing_digit_start_without_space_is_lf_framed() -> None:
    frames = _feed_all(Framer(1000), [b"12abc\n0 zero\n", b"1", b"2", b"3"])
    assert [(x.data, x.error, x.truncated) for x in frames] == [
        (b"12abc", None, False),
        (b"0 zero", None, False),
        (b"123", None, True),
    ]


def test_octet_count_over_the_maximum_is_consumed_exactly() -> None:
    # issue 15: an honest count above max_message_bytes used to be taken for a lie,
    # and the following octet-counted frames were swallowed into continuations
    body = b"<13>1 - h app - - - " + b"z" * 230
    frames = _feed_all(Framer(100), [b"%d %s3 abc4 defg" % (len(body), body)])
    assert [(f.data, f.oversize, f.continuation) for f in frames] == [
        (body[:100], len(body), False),
        (body[100:200], None, True),
        (body[200:], None, True),
        (b"abc", None, False),
        (b"defg", None, False),
    ]
    assert not any(f.error or f.truncated for f in frames)


def test_octet_count_pieces_stream_as_they_arrive() -> None:
    f = Framer(10)
    assert [x.data for x in f.feed(b"35 " + b"a" * 9)] == []
    assert [(x.data, x.oversize) for x in f.feed(b"a" * 12)] == [(b"a" * 10, 35), (b"a" * 10, None)]
    assert f.pending() == 1  # never more than one piece is held
    frames = f.eof()
    assert [(x.data, x.continuation, x.truncated) for x in frames] == [(b"a", True, True)]


def test_long_digit_runs_are_no_octet_count() -> None:
    frames = _feed_all(Framer(100), [b"12345678901 x\n", b"1" * 25 + b" y\n", b"1234567890"])
    assert [(x.data, x.error) for x in frames] == [
        (b"12345678901 x", None),
        (b"1" * 25 + b" y", None),
        (b"1234567890", None),
    ]


def test_framing_override() -> None:
    stream = [b"5 hello<13>a\x00b\n<13>c\x00"]
    assert [x.data for x in _feed_all(Framer(100, framing="lf"), stream)] == [
        b"5 hello<13>a\x00b",
        b"<13>c\x00",
    ]
    assert [x.data for x in _feed_all(Framer(100, framing="nul"), stream)] == [
        b"5 hello<13>a",
        b"b\n<13>c",
    ]
    frames = _feed_all(Framer(100, framing="octet-counting"), [b"5 hello<13>x\n3 abc"])
    assert [(x.data, x.error is not None) for x in frames] == [
        (b"hello", False),
        (b"<13>x", True),
        (b"abc", False),
    ]


def test_idle_seals_a_partial_frame_and_the_rest_continues_it() -> None:
    f = Framer(100)
    assert f.feed(b"<13>one\n<13>tw") == [Frame(b"<13>one")]
    assert f.idle() == [Frame(b"<13>tw", partial=True)]
    assert f.idle() == []
    assert _feed_all(f, [b"o\n<13>three\n"]) == [
        Frame(b"o", continuation=True),
        Frame(b"<13>three"),
    ]
    f = Framer(100)
    assert f.feed(b"9 <13>abc") == []
    assert f.idle() == [Frame(b"<13>abc", partial=True, octet_count=9)]
    assert _feed_all(f, [b"de3 xyz"]) == [Frame(b"de", continuation=True), Frame(b"xyz")]


def test_oversize_lf_frame_in_one_read_has_its_exact_length() -> None:
    frames = _feed_all(Framer(10), [b"a" * 21 + b"\r\nnext\n"])
    assert [x.data for x in frames] == [b"a" * 10, b"a" * 10, b"a", b"next"]
    assert frames[0].oversize == 21
    assert not frames[0].oversize_at_least
    assert [x.continuation for x in frames] == [False, True, True, False]


def test_oversize_lf_frame_is_never_held_whole() -> None:
    # issue 14: a long line is sealed in pieces as it streams
    f = Framer(10)
    frames = f.feed(b"x" * 23)
    assert [x.data for x in frames] == [b"x" * 10, b"x" * 10]
    assert frames[0].oversize == 23
    assert frames[0].oversize_at_least
    assert frames[1].continuation
    assert f.pending() == 3
    for _ in range(100):
        assert all(x.continuation for x in f.feed(b"y" * 7))
        assert f.pending() < 10
    frames = f.feed(b"yy\nz\n")
    assert [(x.data, x.continuation) for x in frames][-1] == (b"z", False)
    frames = _feed_all(Framer(10), [b"q" * 50])
    assert b"".join(x.data for x in frames) == b"q" * 50
    assert frames[-1].truncated


def test_the_first_trailer_decides_per_connection() -> None:
    # Python's SysLogHandler over TCP ends each message with NUL, no LF (RFC 6587
    # section 3.4.2): then LF is content (a traceback stays one record)
    frames = _feed_all(Framer(100), [b"<11>a: one\x00<11>b: tw", b"o\n  line 2\x00<11>c\x00"])
    assert [x.data for x in frames] == [b"<11>a: one", b"<11>b: two\n  line 2", b"<11>c"]
    frames = _feed_all(Framer(100), [b"<13>a\r\n<13>b\x00c\n"])
    assert [x.data for x in frames] == [b"<13>a", b"<13>b\x00c"]


# ---------------------------------------------------------------- listen URLs


@pytest.mark.parametrize(
    ("url", "addr"),
    [
        ("udp://127.0.0.1:514", ListenAddress("udp", host="127.0.0.1", port=514)),
        ("tcp://[::1]:0", ListenAddress("tcp", host="::1", port=0)),
        ("tls://localhost:6514", ListenAddress("tls", host="localhost", port=6514)),
        ("unix:///dev/log", ListenAddress("unix", path="/dev/log")),
        ("unix-stream:///run/x.sock", ListenAddress("unix-stream", path="/run/x.sock")),
    ],
)
def test_listen_urls(url: str, addr: ListenAddress) -> None:
    assert parse_listen_url(url) == addr
    assert addr.url() == url


@pytest.mark.parametrize(
    "url", ["udp://host", "tcp://:514", "tcp://h:99999", "unix://relative", "sctp://h:1", "x"]
)
def test_bad_listen_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_listen_url(url)


# ---------------------------------------------------------------- properties

_PRINT = st.characters(min_codepoint=33, max_codepoint=126)
_SDNAME_CH = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='="]')


def _token(max_size: int) -> st.SearchStrategy[str | None]:
    return st.none() | st.text(_PRINT, min_size=1, max_size=max_size).filter(lambda s: s != "-")


_timestamps = st.none() | st.builds(
    lambda y, mo, d, h, mi, s, frac, tz: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "") + tz
    ),
    st.integers(0, 9999),
    st.integers(1, 12),
    st.integers(1, 31),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 60),
    st.none() | st.text("0123456789", min_size=1, max_size=6),
    st.sampled_from(["Z", "+00:00", "-05:30", "+14:00"]),
)
_sd = st.none() | st.lists(
    st.tuples(
        st.text(_SDNAME_CH, min_size=1, max_size=32),
        st.lists(
            st.tuples(st.text(_SDNAME_CH, min_size=1, max_size=32), st.text(max_size=20)),
            max_size=4,
        ),
    ),
    min_size=1,
    max_size=4,
)


def _escape(v: str) -> bytes:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]").encode()


@settings(max_examples=300, deadline=None)
@given(
    pri=st.integers(0, 191),
    version=st.integers(1, 999),
    ts=_timestamps,
    host=_token(255),
    app=_token(48),
    procid=_token(128),
    msgid=_token(32),
    sd=_sd,
    msg=st.none() | st.binary(max_size=200),
    bom=st.booleans(),
)
def test_rfc5424_round_trip(
    pri: int,
    version: int,
    ts: str | None,
    host: str | None,
    app: str | None,
    procid: str | None,
    msgid: str | None,
    sd: list[tuple[str, list[tuple[str, str]]]] | None,
    msg: bytes | None,
    bom: bool,
) -> None:
    def nil(v: str | None) -> bytes:
        return b"-" if v is None else v.encode()

    sd_bytes = b"-"
    expected_sd: dict[str, dict[str, Any]] = {}
    if sd is not None:
        sd_bytes = b""
        for sdid, params in sd:
            sd_bytes += b"[" + sdid.encode()
            into = expected_sd.setdefault(sdid, {})
            for name, value in params:
                sd_bytes += b" " + name.encode() + b'="' + _escape(value) + b'"'
                if name not in into:
                    into[name] = value
                elif isinstance(into[name], list):
                    into[name].append(value)
                else:
                    into[name] = [into[name], value]
            sd_bytes += b"]"
    frame = b"<%d>%d %s %s %s %s %s %s" % (
        pri, version, nil(ts), nil(host), nil(app), nil(procid), nil(msgid), sd_bytes,
    )  # fmt: skip
    if msg is not None:
        frame += b" " + (b"\xef\xbb\xbf" if bom else b"") + msg
    p = parse_syslog(frame)
    assert p.error is None, p.error
    expected: dict[str, Any] = {
        "format": "rfc5424",
        "pri": pri,
        "facility": pri // 8,
        "severity": pri % 8,
        "version": version,
    }
    optional: tuple[tuple[str, str | None], ...] = (
        ("timestamp", ts),
        ("hostname", host),
        ("app", app),
        ("procid", procid),
        ("msgid", msgid),
    )
    for key, v in optional:
        if v is not None:
            expected[key] = v
    if ts is None:
        expected["timestamp_inferred"] = True
    if sd is not None:
        expected["sd"] = expected_sd
    assert p.syslog == expected
    body = msg or b""
    if not bom and body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    for end in (b"\r\n", b"\n", b"\x00"):
        if body.endswith(end):
            body = body[: -len(end)]
            break
    assert p.message == body
    # the record is JSON-encodable, without floats, and keeps the frame
    rec, _ = frame_fields(Frame(frame), time_ns=1, source="s", base={})
    assert rec.attrs is not None
    orjson.dumps(rec.attrs)
    raw = rec.attrs.get("raw")
    assert (raw.encode() if raw is not None else base64.b64decode(rec.attrs["raw_b64"])) == frame


_lf_frame = st.binary(min_size=1, max_size=60).filter(
    lambda b: (
        b"\n" not in b
        and b"\x00" not in b
        and not b.endswith(b"\r")
        and not (b[:1].isdigit() and b[:1] != b"0")
    )
)
_counted_frame = st.binary(min_size=0, max_size=60)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.tuples(st.booleans(), st.binary(max_size=60)), max_size=20),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    trailer=st.sampled_from([b"\n", b"\r\n", b"\x00"]),
    data=st.data(),
)
def test_framing_any_split_yields_the_same_frames(
    frames: list[tuple[bool, bytes]], cuts: list[int], trailer: bytes, data: st.DataObject
) -> None:
    stream = b""
    expected: list[bytes] = []
    for counted, _ in frames:
        if counted:
            body = data.draw(_counted_frame)
            stream += b"%d %s" % (len(body), body) if body else b""
        else:
            body = data.draw(_lf_frame)
            stream += body + trailer
        if body:
            expected.append(body)
    got = _feed_all(Framer(100), _chunked(stream, cuts))
    assert [f.data for f in got] == expected
    assert not any(f.error or f.truncated or f.continuation for f in got)


@settings(max_examples=300, deadline=None)
@given(stream=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_framing_arbitrary_bytes_split_invariant_and_bounded(
    stream: bytes, cuts: list[int]
) -> None:
    whole = _feed_all(Framer(32), [stream])
    split = _feed_all(Framer(32), _chunked(stream, cuts))

    def seen(fs: list[Frame]) -> list[tuple[Any, ...]]:
        # an oversize frame's length is exact only if its end came in the same read
        return [(f.data, f.error, f.truncated, f.continuation, f.oversize is None) for f in fs]

    assert seen(split) == seen(whole)
    # nothing invented: every frame is a piece of the input, within the maximum size
    for f in whole:
        assert len(f.data) <= 32
        assert f.data in stream
    # and nothing lost: frame bytes + framing overhead account for the whole stream
    assert sum(len(f.data) for f in whole) <= len(stream)
    if b"\n" not in stream and b"\x00" not in stream and not stream[:1].isdigit():
        assert b"".join(f.data for f in whole) == stream


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(_lf_frame, max_size=12),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    idles=st.lists(st.booleans(), min_size=1, max_size=30),
    mx=st.integers(min_value=8, max_value=100),
)
def test_idle_sealing_never_loses_nor_invents_a_byte(
    frames: list[bytes], cuts: list[int], idles: list[bool], mx: int
) -> None:
    stream = b"".join(f + b"\n" for f in frames)
    framer = Framer(mx)
    out: list[Frame] = []
    for i, chunk in enumerate(_chunked(stream, cuts)):
        out.extend(framer.feed(chunk))
        if idles[i % len(idles)]:
            out.extend(framer.idle())
    out.extend(framer.eof())
    rebuilt: list[bytes] = []
    for f in out:
        assert len(f.data) <= mx
        if f.continuation:
            rebuilt[-1] += f.data
        else:
            rebuilt.append(f.data)
    assert rebuilt == frames


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=1, max_size=90), max_size=8),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    idles=st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_octet_counts_survive_idle_and_oversize(
    bodies: list[bytes], cuts: list[int], idles: list[bool]
) -> None:
    stream = b"".join(b"%d %s" % (len(b), b) for b in bodies)
    framer = Framer(30)  # bodies up to three times the maximum
    out: list[Frame] = []
    for i, chunk in enumerate(_chunked(stream, cuts)):
        out.extend(framer.feed(chunk))
        if idles[i % len(idles)]:
            out.extend(framer.idle())
    assert framer.pending() < 30
    out.extend(framer.eof())
    rebuilt: list[bytes] = []
    for f in out:
        assert len(f.data) <= 30
        assert not f.error and not f.truncated
        if f.continuation:
            rebuilt[-1] += f.data
        else:
            rebuilt.append(f.data)
    assert rebuilt == bodies
