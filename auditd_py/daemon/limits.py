"""Process limits the daemon sets for itself at start."""

from __future__ import annotations

import resource


def raise_nofile() -> tuple[int, int]:
    """Raise the soft limit of open descriptors to the hard limit; (before, after).

    A file source reads thousands of files; the usual soft limit (1,024) would
    make the thousandth open fail with EMFILE while the hard limit allows more.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, hard) or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # not allowed here: keep what we have
        return soft, soft
    return soft, hard
