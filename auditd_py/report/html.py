"""``verify --report FILE.html``: one self-contained page for an auditor.

Inline CSS and one inline SVG timeline, no script and nothing fetched (the page
says so in its Content-Security-Policy): epochs and their checkpoints, segment
boundaries, retention cuts, recoveries, clock jumps, stale periods, and the
failure, if any, marked where it is. The x axis is the record sequence.
"""

from __future__ import annotations

from html import escape

from auditd_py.report.outcome import Outcome
from auditd_py.report.summary import error_line, fmt_time, intact_lines, reached_line
from auditd_py.report.timeline import Mark, Span, Timeline

WIDTH = 1000
LEFT = 120
RIGHT = 20
LANES = {"epochs": 30, "checkpoints": 62, "segments": 92, "events": 126, "stale": 158}
AXIS = 190
HEIGHT = 230
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d1d1f; }
h1 { font-size: 1.4em; } .ok { color: #1a7f37; } .failed { color: #cf222e; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
svg text { font: 11px sans-serif; fill: #333; }
.epoch { fill: #dbe9ff; stroke: #5b8def; } .epoch.odd { fill: #c4dafc; }
.checkpoint { fill: #5b8def; } .segment { fill: #eee; stroke: #888; }
.segment-boundary { stroke: #444; stroke-dasharray: 3 2; }
.retention, .retention-cut { fill: #8250df; stroke: #8250df; } .recovery { fill: #bf8700; }
.clock-jump { fill: #e16f24; } .stale { fill: #ffd8b5; stroke: #e16f24; }
.unsealed { fill: #f6f8fa; stroke: #999; stroke-dasharray: 2 2; }
.failure { stroke: #cf222e; stroke-width: 3; } .failure-label { fill: #cf222e; font-weight: bold; }
.legend span { display: inline-block; margin-right: 1em; }
"""


class _Axis:
    def __init__(self, t: Timeline) -> None:
        self.start = t.start
        self.span = max(1, t.end - t.start)

    def x(self, seq: int) -> float:
        seq = min(max(seq, self.start), self.start + self.span)
        return round(LEFT + (seq - self.start) / self.span * (WIDTH - LEFT - RIGHT), 2)


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _span(a: _Axis, s: Span, y: int, cls: str, h: int = 22) -> str:
    x0, x1 = a.x(s.start), a.x(s.end)
    times = f" ({fmt_time(s.time_start)} .. {fmt_time(s.time_end)})" if s.time_start else ""
    tip = f"{s.label}: seq {s.start}..{s.end - 1}{times}"
    return (
        f'<rect class="{cls}" x="{x0}" y="{y}" width="{max(1.0, round(x1 - x0, 2))}" '
        f'height="{h}">{_title(tip)}</rect>'
    )


def _mark(a: _Axis, m: Mark, y: int) -> str:
    x = a.x(m.seq)
    tip = _title(f"{m.label} at seq {m.seq}" + (f", {fmt_time(m.time)}" if m.time else ""))
    if m.kind == "checkpoint":
        pts = f"{x},{y} {x + 6},{y + 8} {x},{y + 16} {x - 6},{y + 8}"
        return f'<polygon class="checkpoint" points="{pts}">{tip}</polygon>'
    if m.kind in ("retention", "retention-cut"):
        return f'<rect class="{m.kind}" x="{x - 2}" y="{y - 4}" width="4" height="24">{tip}</rect>'
    return f'<circle class="{m.kind}" cx="{x}" cy="{y + 8}" r="6">{tip}</circle>'


def svg(t: Timeline) -> str:
    """The timeline as an inline SVG element."""
    a = _Axis(t)
    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-label="timeline of the archive">'
    ]
    for lane, y in LANES.items():
        out.append(f'<text x="4" y="{y + 15}">{lane}</text>')
    for i, e in enumerate(t.epochs):
        out.append(_span(a, e, LANES["epochs"], "epoch odd" if i % 2 else "epoch"))
        if a.x(e.end) - a.x(e.start) > 24:
            out.append(f'<text x="{a.x(e.start) + 3}" y="{LANES["epochs"] + 15}">{e.label}</text>')
    for s in t.segments:
        out.append(_span(a, s, LANES["segments"], "segment"))
        if a.x(s.end) - a.x(s.start) > 8 * len(s.label):
            out.append(
                f'<text x="{a.x(s.start) + 3}" y="{LANES["segments"] + 15}">{s.label}</text>'
            )
        x = a.x(s.start)
        out.append(
            f'<line class="segment-boundary" x1="{x}" x2="{x}" y1="{LANES["epochs"] - 6}" '
            f'y2="{AXIS}">{_title(f"segment {s.label} starts at seq {s.start}")}</line>'
        )
    for s in t.stale:
        out.append(_span(a, s, LANES["stale"], s.kind, 18))
    for m in t.marks:
        y = LANES["checkpoints"] if m.kind == "checkpoint" else LANES["events"]
        out.append(_mark(a, m, y))
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{AXIS}" y2="{AXIS}" stroke="#333"/>')
    out.append(f'<text x="{LEFT}" y="{AXIS + 16}">seq {t.start}</text>')
    out.append(f'<text x="{WIDTH - RIGHT - 80}" y="{AXIS + 16}">seq {t.end}</text>')
    for f in t.failures:
        x = a.x(f.seq)
        out.append(
            f'<line class="failure" x1="{x}" x2="{x}" y1="8" y2="{AXIS + 4}">'
            f"{_title(f'{f.label} (seq {f.seq})')}</line>"
        )
        anchor = "end" if x > WIDTH / 2 else "start"
        out.append(
            f'<text class="failure-label" x="{x + (-4 if anchor == "end" else 4)}" y="18" '
            f'text-anchor="{anchor}">{escape(f.label.split(":")[0])} at seq {f.seq}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _rows(t: Timeline) -> str:
    items = [m for m in t.marks if m.kind != "checkpoint"] + list(t.failures)
    rows = "".join(
        f'<tr class="event-{m.kind}"><td>{m.seq}</td><td>{fmt_time(m.time)}</td>'
        f"<td>{escape(m.kind)}</td><td>{escape(m.label)}</td></tr>"
        for m in sorted(items, key=lambda m: m.seq)
    )
    rows += "".join(
        f'<tr class="event-{s.kind}"><td>{s.start}..{s.end - 1}</td>'
        f"<td>{fmt_time(s.time_start)}</td><td>{s.kind}</td><td>{escape(s.label)}</td></tr>"
        for s in t.stale
    )
    return (
        '<table id="events"><tr><th>seq</th><th>time</th><th>kind</th><th>what</th></tr>'
        f"{rows}</table>"
    )


def page(o: Outcome, t: Timeline, *, generated: str) -> str:
    """The whole HTML document."""
    if o.ok and o.report is not None:
        verdict = '<h1 class="ok" id="verdict">intact</h1>'
        lines = intact_lines(o.archive, o.report)
    else:
        verdict = '<h1 class="failed" id="verdict">FAILED</h1>'
        lines = [f"failure {error_line(f)}" for f in o.failures]
        lines.append(reached_line(o.reached, len(o.segments)).strip())
    summary = "".join(f"<li>{escape(x.strip())}</li>" for x in lines)
    failures = "".join(
        f'<li class="failure-item" data-code="{escape(f.code)}">{escape(error_line(f))}</li>'
        for f in o.failures
    )
    legend = "".join(
        f'<span><svg width="12" height="12"><rect class="key {c}" width="12" height="12"/></svg> '
        f"{escape(n)}</span>"
        for c, n in (
            ("epoch", "epoch"),
            ("checkpoint", "checkpoint"),
            ("segment", "segment"),
            ("retention", "retention"),
            ("recovery", "recovery"),
            ("clock-jump", "clock jump"),
            ("stale", "stale period"),
            ("unsealed", "not checkpointed"),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>auditd-py verify: {escape(o.archive)}</title>
<style>{_CSS}</style></head>
<body>
{verdict}
<p>{escape(o.archive)} &middot; {escape(o.mode)} mode &middot; generated {escape(generated)}</p>
<ul id="summary">{summary}</ul>
{f'<ul id="failures">{failures}</ul>' if failures else ""}
<h2>Timeline</h2>
<div class="legend">{legend}</div>
{svg(t)}
<h2>Events</h2>
{_rows(t)}
</body></html>
"""
