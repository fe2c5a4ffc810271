"""Types of the compiled per-record loop (auditd_py/chain/_fast.c)."""

sodium_version: str

def seal(
    bodies: list[bytes], seq: int, link: bytes, mac: bytes, key: bytes, stack: list[bytes], /
) -> tuple[bytes, bytes, bytes]: ...
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
