"""``python -m auditd_py`` and the ``auditd-py`` command.

For ``run``, the start-up signal handlers (:mod:`auditd_py.early`) go in before
anything heavy is imported, so that a SIGTERM during start-up is a clean stop.
"""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["run"]:
        from auditd_py import early  # noqa: PLC0415 - first, before the CLI's imports

        early.install()
    from auditd_py.cli import main as cli_main  # noqa: PLC0415

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
