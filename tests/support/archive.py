"""Helpers shared by the unit and property tests: build archives with a manual clock."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from auditd_py.chain.encoding import Fields
from auditd_py.chain.keys import PublicKey, VerifyKey
from auditd_py.chain.verify import Report
from auditd_py.clock import ManualClock
from auditd_py.store.layout import Layout
from auditd_py.store.reader import verify_archive
from auditd_py.store.writer import ArchiveWriter, EpochPolicy, create_archive

SEED = bytes(range(64))


class Arc:
    """An archive under a tmp dir, with its keys and a manual clock."""

    def __init__(self, root: Path, *, random: bytes | None = SEED) -> None:
        self.root = root
        self.layout = Layout.at(root / "archive")
        self.vk_path = root / "verify.key"
        self.pk_path = root / "public.key"
        self.clock = ManualClock()
        create_archive(
            self.layout,
            self.vk_path,
            self.pk_path,
            host="test",
            now_ns=self.clock.now_ns(),
            random=random,
        )
        self.vk = VerifyKey.from_bytes(self.vk_path.read_bytes())
        self.pk = PublicKey.from_bytes(self.pk_path.read_bytes())

    def writer(self, policy: EpochPolicy | None = None) -> ArchiveWriter:
        return ArchiveWriter.open(self.layout, self.clock, policy)

    def seal(
        self,
        messages: Iterable[bytes],
        *,
        max_records: int | None = None,
        source: str = "test",
        step: float = 0.001,
    ) -> list[int]:
        w = self.writer(EpochPolicy(max_records=max_records))
        seqs = []
        for m in messages:
            self.clock.advance(step)
            seqs.append(w.append(Fields(self.clock.now_ns(), source, m)))
        w.close()
        return seqs

    def verify(self, *, key: bool = True, **kw: object) -> Report:
        return verify_archive(
            self.layout,
            public_key=self.pk.public_key,
            mac_key=self.vk.mac_key if key else None,
            **kw,  # type: ignore[arg-type]
        )

    def segment_paths(self) -> list[Path]:
        return [self.layout.segments / n for n in self.layout.segment_names()]
