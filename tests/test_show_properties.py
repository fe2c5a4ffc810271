"""Properties of show's building blocks: reading backwards in blocks, terminal escaping,
time spans."""

from __future__ import annotations

import contextlib
import io

from hypothesis import example, given
from hypothesis import strategies as st

from auditd_py.chain.format import NS
from auditd_py.show.formats import _UNSAFE, escape, escape_json
from auditd_py.show.scan import backward_lines
from auditd_py.show.timespec import parse_span

lines_st = st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b))


@given(lines_st, st.binary(max_size=10).filter(lambda b: b"\n" not in b), st.integers(1, 64))
def test_backward_lines_are_the_lines_reversed(lines: list[bytes], torn: bytes, block: int) -> None:
    data = b"".join(x + b"\n" for x in lines) + torn
    got = list(backward_lines(io.BytesIO(data), block))
    assert got == lines[::-1]  # the torn tail (no newline yet) is not a line


@given(st.text())
def test_escaped_text_has_nothing_a_terminal_acts_on(text: str) -> None:
    out = escape(text)
    assert _UNSAFE.search(out) is None
    assert not any(ord(c) < 0x20 and c != "\t" for c in out)
    if _UNSAFE.search(text) is None:
        assert out == text  # what is safe is left alone


@given(st.text())
def test_escaped_json_stays_json_and_safe(text: str) -> None:
    import orjson

    doc = orjson.dumps({"m": text}).decode()
    safe = escape_json(doc)
    assert orjson.loads(safe) == {"m": text}
    assert not any(0x7F <= ord(c) <= 0x9F for c in safe)


@given(st.integers(0, 10**6), st.sampled_from(["s", "sec", "min", "h", "hours", "d", "w"]))
def test_spans(n: int, unit: str) -> None:
    secs = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hours": 3600, "d": 86400, "w": 604800}
    assert parse_span(f"{n}{unit}") == n * secs[unit] * NS
    assert parse_span(f"{n} {unit} 5s") == (n * secs[unit] + 5) * NS


@given(st.text(max_size=30))
def test_any_text_is_a_time_or_a_usage_error(text: str) -> None:
    from auditd_py.errors import UsageError
    from auditd_py.show.timespec import parse_time

    with contextlib.suppress(UsageError):
        assert isinstance(parse_time(text, 1_764_842_400 * NS, utc=True), int)


@given(
    st.lists(st.integers(0, 60), min_size=0, max_size=60),
    st.integers(0, 70),
    st.integers(1, 200),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b),
)
@example(pads=[15, 15], target=2, window=1, torn=b"")  # a midpoint on a line start
def test_seek_seq_lands_before_the_target_and_near_it(
    pads: list[int], target: int, window: int, torn: bytes
) -> None:
    from auditd_py.show.scan import seek_seq

    lines = [b'{"seq":%d,"epoch":0,"time":5,"m":"%s"}' % (i, b"x" * p) for i, p in enumerate(pads)]
    data = b"".join(x + b"\n" for x in lines) + torn
    starts = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines) + 1)]
    at = seek_seq(io.BytesIO(data), target, window)
    assert at in starts  # a line start
    k = starts.index(at)
    assert all(i < target for i in range(k))  # nothing skipped that it should not
    first = min(target, len(lines))
    assert starts[first] - at <= window + 100  # and close to the target
    rest = list(backward_lines(io.BytesIO(data), 7, starts[first]))
    assert rest == lines[:first][::-1]
