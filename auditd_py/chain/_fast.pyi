"""Types of the compiled per-record loop (auditd_py/chain/_fast.c)."""

from collections.abc import Callable

from auditd_py.chain.encoding import Fields

sodium_version: str

def seal(
    bodies: list[bytes], seq: int, link: bytes, mac: bytes, key: bytes, stack: list[bytes], /
) -> tuple[bytes, bytes, bytes]: ...
def seal_fields(
    batch: list[Fields],
    start: int,
    deadline: int,
    stop: int,
    seq: int,
    epoch: int,
    link: bytes,
    mac: bytes,
    key: bytes,
    stack: list[bytes],
    encode: Callable[[int, int, Fields], bytes],
    /,
) -> tuple[bytes, int, bytes, bytes]: ...
def verify_run(
    lines: list[bytes],
    start: int,
    seq: int,
    epoch: int,
    link: bytes,
    mac: bytes,
    key: bytes | None,
    stack: list[bytes],
    boundary: int,
    /,
) -> tuple[int, int, bytes, bytes, int]: ...
