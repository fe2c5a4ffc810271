"""Shell completion (bash, zsh) and the manual page, generated from the CLI's parser.

The generated files are kept in the source tree under ``generated/`` and installed
with the package (``pyproject.toml`` data-files: bash-completion's and zsh's
directories, ``share/man/man1``); ``make shell-files`` writes them again after
the parser changes, and tests/test_manual.py fails while they differ from
what the parser gives. Generating needs shtab and argparse-manpage (the test
extra); installing and running auditd-py does not.

    python -m auditd_py.manual generated/
"""

from __future__ import annotations

import sys
from pathlib import Path

from auditd_py.cli import build_parser

FILES = {
    "completion/auditd-py.bash": "bash",
    "completion/_auditd-py": "zsh",
    "man/auditd-py.1": "man",
}
"""Where each file is written below the destination, and what it is."""
MANUAL_DATE = "2026-12-04"
"""The date on the manual page (fixed, so that the file is reproducible)."""


def completion(shell: str) -> str:
    import shtab  # noqa: PLC0415 - only to generate the files

    text: str = shtab.complete(build_parser(), shell=shell)
    return text


def manpage() -> str:
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]  # noqa: PLC0415

    from auditd_py import __version__  # noqa: PLC0415

    data = {
        "project_name": "auditd-py",
        "version": __version__,
        "date": MANUAL_DATE,
        "manual_title": "auditd-py manual",
        "description": "tamper-evident log archive with forward-secure sealing",
    }
    return str(Manpage(build_parser(), _data=data)) + "\n"


def render(kind: str) -> str:
    return manpage() if kind == "man" else completion(kind)


def write(dest: Path) -> list[Path]:
    """Write every file below ``dest``; the paths written."""
    out = []
    for rel, kind in FILES.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(kind))
        out.append(path)
    return out


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "generated"))
