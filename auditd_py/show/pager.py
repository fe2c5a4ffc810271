"""A pager on a terminal, the way journalctl starts one.

``$SYSTEMD_PAGER``, else ``$PAGER``, else ``less``; ``cat`` or an empty value
means none. ``less`` gets ``LESS=FRSXMK`` unless ``$SYSTEMD_LESS`` or ``$LESS``
say otherwise: quit if one screen holds it all (F), pass colours through (R),
chop long lines (S), leave the screen as it was (X), long prompt (M), Ctrl-C
quits (K).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import IO

LESS = "FRSXMK"


def pager_command(env: Mapping[str, str]) -> list[str] | None:
    """The pager to run, or None (none wanted, or none installed)."""
    text = env.get("SYSTEMD_PAGER", env.get("PAGER", "less"))
    argv = shlex.split(text) if text.strip() else []
    if not argv or argv[0] == "cat" or shutil.which(argv[0]) is None:
        return None
    return argv


@contextmanager
def paged(out: IO[bytes], env: Mapping[str, str], enabled: bool) -> Iterator[IO[bytes]]:
    """``out``, or the stdin of a pager writing to the terminal (waited for on exit).

    A pager quit early (``q`` before the end) ends the output quietly.
    """
    argv = pager_command(env) if enabled else None
    if argv is None:
        yield out
        return
    penv = dict(env)
    penv["LESS"] = env.get("SYSTEMD_LESS", env.get("LESS", LESS))
    out.flush()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=penv)  # noqa: S603 - the user's pager
    assert proc.stdin is not None
    try:
        yield proc.stdin
    except BrokenPipeError:
        pass  # the pager quit
    finally:
        with suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()
