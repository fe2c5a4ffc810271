"""``auditd-py install-unit``: put the shipped systemd files where systemd reads them.

A wheel carries the unit, the sysusers.d and tmpfiles.d snippets, the example
configs and the docs as data files under ``<prefix>/share/auditd-py/`` and
``<prefix>/share/doc/auditd-py/`` (``<prefix>`` is the venv, e.g.
``/opt/auditd-py``). This module finds them (or, in a source checkout, the
repository's own ``systemd/`` and ``config/``) and copies the three systemd
files to the administrator's directories under ``/etc``, never over a file
that differs unless asked to.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from auditd_py.errors import UsageError

SHARE_NAME: Final = "auditd-py"
UNIT_NAME: Final = "auditd-py.service"


@dataclass(frozen=True, slots=True)
class Placement:
    """One shipped file and where it is installed (relative to the target root)."""

    source: str
    target: str


PLACEMENTS: Final = (
    Placement(f"systemd/{UNIT_NAME}", f"etc/systemd/system/{UNIT_NAME}"),
    Placement("systemd/auditd-py.sysusers.conf", "etc/sysusers.d/auditd-py.conf"),
    Placement("systemd/auditd-py.tmpfiles.conf", "etc/tmpfiles.d/auditd-py.conf"),
)


def share_dir(prefix: Path | None = None) -> Path:
    """Where the shipped files are: the install's ``share/auditd-py``, else the checkout."""
    candidates = [Path(prefix or sys.prefix) / "share" / SHARE_NAME]
    checkout = Path(__file__).resolve().parent.parent  # an editable install or a source tree
    candidates.append(checkout)
    for c in candidates:
        if (c / "systemd" / UNIT_NAME).is_file():
            return c
    raise UsageError(
        "the shipped systemd files are not installed (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); install auditd-py from its wheel or run from a source checkout"
    )


def install_unit(root: Path, share: Path, *, force: bool = False) -> list[tuple[Path, str]]:
    """Copy the unit and the two snippets below ``root``; each target with what happened.

    A target that already holds the same bytes is left alone; one that differs is
    an error unless ``force`` (a local edit belongs in a drop-in, not the file).
    """
    plan: list[tuple[Path, bytes, str]] = []
    for p in PLACEMENTS:
        data = (share / p.source).read_bytes()
        target = root / p.target
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise UsageError(f"{target} exists and is not a regular file; not touching it")
        if target.is_file():
            if target.read_bytes() == data:
                plan.append((target, data, "unchanged"))
                continue
            if not force:
                raise UsageError(
                    f"{target} differs from the shipped {p.source}; local changes go into a "
                    "drop-in (systemctl edit auditd-py); --force replaces it"
                )
            plan.append((target, data, "replaced"))
        else:
            plan.append((target, data, "installed"))
    for target, data, what in plan:
        if what == "unchanged":
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # whatever the umask: systemd warns about unreadable units
        os.replace(tmp, target)
    return [(t, what) for t, _, what in plan]
