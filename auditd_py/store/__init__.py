"""The archive on disk: layout, sealing state, segment writer and reader."""
