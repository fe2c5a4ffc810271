"""The daemon's YAML configuration, built as data (one builder, no copied YAML).

    from tests.support import configs

    doc = configs.daemon(arc, sources=[configs.file_source(logs)], segments={"max_bytes": "64KiB"})
    configs.write(tmp_path / "d.yaml", doc)

Values are written as the strings a person would type (``"1s"``, ``"64KiB"``);
sections not named are left to the daemon's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.archive import Arc

Doc = dict[str, Any]


def daemon(
    arc: Arc | Path,
    *,
    environment: str | None = "test",
    epoch_interval: str | None = "1h",
    commit_interval: str | None = "20ms",
    sources: Sequence[Mapping[str, Any]] = (),
    forward: Sequence[Mapping[str, Any]] = (),
    **sections: Any,
) -> Doc:
    """A configuration for the archive of ``arc`` (or at the path ``arc``).

    ``sections`` are further top-level sections (``segments``, ``disk``,
    ``retention``, ``metrics``, ``control``, …), each a mapping.
    """
    doc: Doc = {}
    if environment is not None:
        doc["environment"] = environment
    doc["archive"] = {"path": str(arc.layout.root if isinstance(arc, Arc) else arc)}
    sealing = {"epoch_interval": epoch_interval, "commit_interval": commit_interval}
    if any(v is not None for v in sealing.values()):
        doc["sealing"] = {k: v for k, v in sealing.items() if v is not None}
    doc.update({k: dict(v) for k, v in sections.items()})
    if sources:
        doc["sources"] = [dict(s) for s in sources]
    if forward:
        doc["forward"] = [dict(f) for f in forward]
    return doc


def write(path: Path, doc: Mapping[str, Any]) -> Path:
    """``doc`` as YAML at ``path``; returns ``path``."""
    path.write_text(yaml.safe_dump(dict(doc), sort_keys=False))
    return path


def file_source(
    logs: Path,
    pattern: str = "*.log",
    *,
    name: str = "app",
    poll_interval: str = "100ms",
    **settings: Any,
) -> Doc:
    """A ``type: file`` source tailing ``logs/pattern``."""
    return {
        "name": name,
        "type": "file",
        "paths": [f"{logs}/{pattern}"],
        "poll_interval": poll_interval,
        **settings,
    }


def syslog_source(*listen: str, name: str = "syslog", **settings: Any) -> Doc:
    """A ``type: syslog`` source listening on the URLs ``listen``."""
    return {"name": name, "type": "syslog", "listen": list(listen), **settings}


def journald_source(directory: Path, *, name: str = "journal", **settings: Any) -> Doc:
    """A ``type: journald`` source reading the journal files in ``directory``."""
    return {"name": name, "type": "journald", "directory": str(directory), **settings}


def syslog_forward(target: str, *, name: str = "central", **settings: Any) -> Doc:
    """A ``type: syslog`` forwarder to ``target``."""
    return {"name": name, "type": "syslog", "target": target, **settings}
