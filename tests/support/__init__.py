"""What the tests share: harnesses, builders and checks, never tests themselves.

* :mod:`tests.support.archive`: archives built with a manual clock (:class:`Arc`).
* :mod:`tests.support.cli`: the command-line tool in-process or as a subprocess,
  and the attack catalogue's archive handle (:class:`Archive`).
* :mod:`tests.support.configs`: the daemon's YAML configuration, built as data.
* :mod:`tests.support.daemon`: the daemon as a subprocess (:class:`Daemon`), its
  ``NOTIFY_SOCKET`` (:class:`Notify`), ``show``/``verify`` through the CLI.
* :mod:`tests.support.files`: the file source's sandbox, writers and logrotate.
* :mod:`tests.support.journal`: a journal written by ``systemd-journal-remote``.
* :mod:`tests.support.leaks`: the per-test check for leaked threads, fds and processes.
* :mod:`tests.support.syslog`: logger, rsyslogd and openssl, a test PKI, syslog lines.
* :mod:`tests.support.weed`: a real S3 server (SeaweedFS ``weed mini``).
* :mod:`tests.support.worm`: inode flags (append-only, immutable).
* :mod:`tests.support.wait`: polling for a condition instead of sleeping.

Rule: test modules import from here (and from :mod:`tests.container`,
:mod:`tests.independent_verifier`), never from one another.
"""
