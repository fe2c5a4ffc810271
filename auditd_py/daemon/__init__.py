"""``auditd-py run``: the parts of the running daemon, along the path of a line.

* :mod:`~auditd_py.daemon.supervisor`: the lifecycle and the main loop (``Daemon``);
* :mod:`~auditd_py.daemon.sourceset`: build, start, stop and count the sources;
* :mod:`~auditd_py.daemon.queue`: the bounded queue between sources and seal loop;
* :mod:`~auditd_py.daemon.sealloop`: queue → archive (group commits, rotation, retention);
* :mod:`~auditd_py.daemon.forwarding`: the forward targets;
* :mod:`~auditd_py.daemon.reload` (a pure plan) and :mod:`~auditd_py.daemon.reloader`;
* :mod:`~auditd_py.daemon.disk`: the disk-pressure ladder;
* :mod:`~auditd_py.daemon.health`, :mod:`~auditd_py.daemon.rates`,
  :mod:`~auditd_py.daemon.systemd`, :mod:`~auditd_py.daemon.signals`,
  :mod:`~auditd_py.daemon.observe` (metrics and /health);
* :mod:`~auditd_py.daemon.narrator`: the words of every meta-log event.

Importing this package imports none of them (``auditd-py run`` catches signals
before its heavy imports).
"""
