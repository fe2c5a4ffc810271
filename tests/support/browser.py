"""A real headless Chromium (Debian's ``chromium``) that loads a page and reports
its DOM and console errors, started and stopped by the test."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "chromium"
_CONSOLE = re.compile(r":(?:INFO|WARNING|ERROR):CONSOLE[:(]\d+\)?\] (.*)")


@dataclass(frozen=True, slots=True)
class Rendered:
    dom: str
    console: list[str]
    """Every message the page wrote to the console (errors, CSP refusals, …)."""
    elements: list[tuple[str, dict[str, str]]]
    """(tag, attributes) of every element of the rendered DOM, in order."""

    def with_class(self, cls: str) -> list[dict[str, str]]:
        """Elements of class ``cls``, except a legend's swatches (class ``key``)."""
        return [
            a
            for _, a in self.elements
            if cls in (c := a.get("class", "").split()) and "key" not in c
        ]

    def by_id(self, ident: str) -> tuple[str, dict[str, str]] | None:
        return next(((t, a) for t, a in self.elements if a.get("id") == ident), None)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append((tag, {k: v or "" for k, v in attrs}))


def render(page: Path, profile: Path, timeout: float = 90) -> Rendered:
    """Load ``page`` (a file) in headless Chromium; its DOM after load and its console."""
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its helper processes in one group, ended below
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    dom = out.decode()
    console = [m.group(1) for m in _CONSOLE.finditer(err.decode(errors="replace"))]
    parser = _Elements()
    parser.feed(dom)
    return Rendered(dom, console, parser.out)
