"""What a verification found, written for people and pipelines.

:mod:`~auditd_py.report.outcome` turns a run of the one verify driver
(:mod:`auditd_py.store.verification`) into an :class:`~auditd_py.report.outcome.Outcome`:
the report or the failures (a list: one today, several with ``--all``) and how
far verification got. The writers render it: :mod:`~auditd_py.report.summary`
(the human lines), :mod:`~auditd_py.report.jsonout` (``--json``, versioned,
docs/VERIFY_OUTPUT.md), :mod:`~auditd_py.report.junit` (``--junit``) and
:mod:`~auditd_py.report.html` (``--report``, over :mod:`~auditd_py.report.timeline`).
Nothing here prints or exits: :mod:`auditd_py.cli` does.
"""
