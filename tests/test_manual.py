"""Shell completion and the manual page: generated from the parser, shipped, and working
in a real bash, zsh and man."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from auditd_py import manual

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "generated"


@pytest.mark.parametrize("rel", sorted(manual.FILES))
def test_the_shipped_files_are_what_the_parser_gives(rel: str) -> None:
    """After a change to the CLI: `make shell-files`."""
    shipped = (GENERATED / rel).read_text()
    assert shipped == manual.render(manual.FILES[rel]), f"{rel} is stale: run make shell-files"


def bash_complete(*words: str) -> list[str]:
    """What bash offers after ``words`` (the last one being completed)."""
    script = (
        f"source {GENERATED / 'completion/auditd-py.bash'}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}\n'
        '_shtab_auditd_py "$1" "${@: -1}" "${@: -2:1}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "-c", script, "bash", *words],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.integration
def test_bash_completes_commands_options_and_choices() -> None:
    assert bash_complete("auditd-py", "sh") == ["show"]
    assert set(bash_complete("auditd-py", "")) >= {"show", "verify", "status", "seal"}
    assert {"--follow", "--lines", "--since", "--no-pager"} <= set(
        bash_complete("auditd-py", "show", "--")
    )
    assert bash_complete("auditd-py", "show", "-o", "short-") == [
        "short-iso",
        "short-precise",
        "short-unix",
    ]
    assert bash_complete("auditd-py", "run", "--log-format", "j") == ["json"]


@pytest.mark.integration
def test_zsh_loads_the_completion(tmp_path: Path) -> None:
    (tmp_path / "fpath").mkdir()
    (tmp_path / "fpath/_auditd-py").write_text((GENERATED / "completion/_auditd-py").read_text())
    script = (
        f"fpath=({tmp_path / 'fpath'} $fpath); autoload -Uz compinit; "
        f"compinit -u -d {tmp_path / 'zcompdump'}; "
        "print -r -- ${_comps[auditd-py]}"
    )
    r = subprocess.run(
        ["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert r.returncode == 0 and r.stdout.strip() == "_auditd-py", r.stdout + r.stderr
    syntax = subprocess.run(["zsh", "-n", str(GENERATED / "completion/_auditd-py")], check=False)
    assert syntax.returncode == 0


@pytest.mark.integration
def test_the_manual_page_renders_cleanly() -> None:
    page = GENERATED / "man/auditd-py.1"
    conv = subprocess.run(["preconv", str(page)], capture_output=True, check=True, timeout=30)
    r = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"],
        input=conv.stdout,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    shown = subprocess.run(
        ["man", "-l", str(page)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "MANPAGER": "cat"},
    )
    text = shown.stdout
    assert shown.returncode == 0 and "AUDITD-PY(1)" in text, shown.stderr
    for needle in ("auditd-py show", "--follow", "--since", "auditd-py status", "verify"):
        assert needle in text, needle
