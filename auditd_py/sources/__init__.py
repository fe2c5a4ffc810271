"""Where lines come from: files, syslog, journald, and the daemon's own meta-log.

Every source implements :class:`auditd_py.sources.base.Source` and emits
batches of :class:`auditd_py.record.Fields` into a :class:`Sink`.
"""
