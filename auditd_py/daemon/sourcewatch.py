"""The main loop's watch on source threads: a stuck one is sealed once (``source.error``).

``/health`` says 503 from the source's own ``healthy()`` as soon as its heartbeat
(:mod:`auditd_py.sources.heartbeat`) is too old; this tells the archive, once
per stuck spell, since the stuck thread cannot tell anything itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from auditd_py.contracts import Source
from auditd_py.daemon.narrator import Narrator
from auditd_py.sources.heartbeat import Beating


class SourceWatch:
    def __init__(self, say: Narrator) -> None:
        self.say = say
        self.stuck: set[str] = set()

    def check(self, sources: Iterable[Source]) -> None:
        """Once per main-loop turn: seal each source thread that became stuck."""
        for src in sources:
            if not isinstance(src, Beating):
                continue
            age = src.heartbeat.stuck_for()
            if age is None:
                self.stuck.discard(src.name)
            elif src.name not in self.stuck:
                self.stuck.add(src.name)
                self.say.source_stuck(src.name, age)
