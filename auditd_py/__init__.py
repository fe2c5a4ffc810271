"""auditd-py: a tamper-evident log daemon with forward-secure sealing.

The package is laid out along the path a line takes: ``sources`` → ``record`` →
``chain`` (pure sealing and verification core) → ``store`` (segments, state,
checkpoints on disk) → ``forward``; ``cli`` is the only module that prints to
the user and exits.
"""

__version__ = "0.1.0"
