"""The ``show`` options, journalctl's where it has one (light: the CLI imports it)."""

from __future__ import annotations

import argparse

from auditd_py.show.timespec import join_time_options as _join

FORMATS = (
    "short",
    "short-iso",
    "short-precise",
    "short-unix",
    "cat",
    "json",
    "json-pretty",
    "verbose",
    "export",
    "raw",
)
TIME_OPTIONS = frozenset({"--since", "--until", "-S", "-U"})
VALUE_OPTIONS = TIME_OPTIONS | {
    "-n", "--lines", "-o", "--output", "--source", "-p", "--priority", "-g", "--grep", "--seq",
}  # fmt: skip


def prepare_argv(argv: list[str]) -> list[str]:
    """``show``'s arguments as argparse can take them, in whatever order they came.

    ``--since -1h`` becomes ``--since=-1h`` (argparse would take ``-1h`` for an
    option), and the positionals (DIR and the ``FIELD=VALUE`` matches) move to
    the end, after ``--``: argparse takes positionals in one run only, and
    journalctl allows matches anywhere.
    """
    argv = _join(argv, TIME_OPTIONS)
    options: list[str] = []
    positionals: list[str] = []
    it = iter(argv[1:])
    for arg in it:
        if arg == "--":
            positionals += it
        elif arg.startswith("-") and len(arg) > 1:
            options.append(arg)
            if arg in VALUE_OPTIONS:
                options += [v for v in (next(it, None),) if v is not None]
        else:
            positionals.append(arg)
    # DIR first: the first positional that is not FIELD=VALUE (a field has no "/")
    dirs = [p for p in positionals if "=" not in p.split("/", 1)[0]]
    if dirs:
        positionals.remove(dirs[0])
        positionals.insert(0, dirs[0])
    return [*argv[:1], *options, "--", *positionals]


def add_show_options(sh: argparse.ArgumentParser) -> None:
    sh.add_argument("archive", metavar="DIR")
    sh.add_argument("matches", nargs="*", metavar="FIELD=VALUE", help="field matches")
    sh.add_argument(
        "-f", "--follow", action="store_true", help="then print new records as they are sealed"
    )
    sh.add_argument(
        "-n", "--lines", metavar="N", help="the last N records (with -f: 10 unless given)"
    )
    sh.add_argument("-r", "--reverse", action="store_true", help="newest first")
    sh.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="short",
        metavar="FORMAT",
        help=f"one of {', '.join(FORMATS)} (default short)",
    )
    sh.add_argument("--json", action="store_true", help="the same as -o json")
    sh.add_argument(
        "-S",
        "--since",
        metavar="TIME",
        help='e.g. yesterday, today, -1h, "1 hour ago", "2026-12-04 10:00", @SECONDS',
    )
    sh.add_argument("-U", "--until", metavar="TIME", help="as --since")
    sh.add_argument(
        "--source", action="append", metavar="NAME", help="only this source (repeatable)"
    )
    sh.add_argument(
        "-p",
        "--priority",
        metavar="PRIO",
        help="emerg..debug or 0-7: this one and more severe, or a range FROM..TO",
    )
    sh.add_argument(
        "-g",
        "--grep",
        metavar="REGEX",
        help="messages matching REGEX (case-insensitive unless it has upper case)",
    )
    sh.add_argument(
        "--case-sensitive",
        nargs="?",
        const="yes",
        metavar="BOOL",
        help="make --grep case-sensitive (or not: --case-sensitive=no)",
    )
    sh.add_argument("--seq", metavar="A..B", help="records with seq A to B (A.., or one seq)")
    sh.add_argument("--utc", action="store_true", help="times in UTC, shown and parsed")
    sh.add_argument("--no-pager", action="store_true", help="do not pipe into a pager")
    sh.add_argument(
        "--show-seal", action="store_true", help="print each record's seq, epoch, link and MAC"
    )
    sh.add_argument("--meta", action="store_true", help="only the daemon's own records")
    sh.add_argument("--all", action="store_true", help="data and meta records")
