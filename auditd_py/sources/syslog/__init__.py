"""The syslog source: UDP, TCP, TLS (RFC 5425), unix datagram and unix stream.

One asyncio event loop runs in the server's own thread and serves every
listener of the source. Frames are parsed by :mod:`auditd_py.sources.syslog_parse`
and put into the sink in batches: everything read in one loop iteration goes
out together (at most :data:`~auditd_py.sources.syslog.intake.BATCH` records per put).

Back-pressure: when the sink is full, every stream connection stops reading
until the backlog is accepted, so the kernel's TCP window pushes back on the
senders and nothing is lost. Datagrams cannot be pushed back: they are dropped
and counted (``SYSLOG_DROPPED``), and the kernel's own drop counter for UDP is
read (``SO_RXQ_OVFL`` and ``/proc/self/net/udp``) into :meth:`SyslogServer.stats`.

Meta events (parse errors, drops, connection limit, TLS failures) are rate
limited to one per second per listener and kind, each carrying the ``count``
of occurrences it stands for.

Modules:

* :mod:`~auditd_py.sources.syslog.server`: :class:`SyslogServer`, the Source:
  the listeners, the event loop thread, start and stop;
* :mod:`~auditd_py.sources.syslog.listener`: binding the sockets, TLS context,
  unix socket files, the kernel's UDP drop counter;
* :mod:`~auditd_py.sources.syslog.stream`: one stream connection (admission,
  peer, TLS handshake, RFC 6587 framing);
* :mod:`~auditd_py.sources.syslog.datagram`: reading udp and unix datagrams;
* :mod:`~auditd_py.sources.syslog.intake`: batching into the sink,
  back-pressure and the counters;
* :mod:`~auditd_py.sources.syslog.limits`, :mod:`~auditd_py.sources.syslog.peer`:
  rate-limited meta events; peer attributes.
"""

from __future__ import annotations

from auditd_py.sources.syslog.intake import COUNTERS
from auditd_py.sources.syslog.server import SyslogServer

__all__ = ["COUNTERS", "SyslogServer"]
