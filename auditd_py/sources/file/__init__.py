"""The ``type: file`` source, split along its data flow (see :mod:`.tailer`)."""

from auditd_py.sources.file.tailer import FileTailer, _claims, fingerprint

__all__ = ["FileTailer", "_claims", "fingerprint"]
