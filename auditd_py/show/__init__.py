"""``auditd-py show``: reading the archive the way journalctl reads the journal.

``options`` (the arguments) → ``command`` (a :class:`~auditd_py.show.command.Request`
and the run) → ``query`` (what is selected) and ``timespec`` (systemd.time(7)
times) → ``scan`` (forwards or backwards, seeking by segment header and
checkpoint) or ``follow`` (new records, across rotation and compression) →
``entry`` (a record's journald-like fields) → ``formats`` (``-o``, terminal-safe)
→ ``pager``.
"""
