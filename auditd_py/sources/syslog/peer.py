"""Who sent it: the ``peer`` attributes of an inet or unix-socket sender."""

from __future__ import annotations

import struct
from typing import Any, Final

UCRED: Final = struct.Struct("3i")
"""``struct ucred`` (pid, uid, gid), as SO_PEERCRED and SCM_CREDENTIALS give it."""


def inet_peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr) if addr else ""


def cred_attrs(pid: int, uid: int, gid: int, base: dict[str, Any]) -> None:
    base["peer"] = f"pid={pid} uid={uid} gid={gid}"
    base["cred"] = {"pid": pid, "uid": uid, "gid": gid}
