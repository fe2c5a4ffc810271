"""The pure sealing and verification core.

Everything under ``auditd_py.chain`` takes bytes and state and returns bytes and
state: no file system, no clock, no logging. ``docs/FORMAT.md`` specifies what
these functions compute, and ``tests/vectors/`` pins their outputs.
"""
