"""Forwarding sealed records off the host (docs/FORWARDING.md).

The archive is the buffer: each forwarder reads the sealed segments itself,
with its own persisted cursor, and advances the cursor only once its peer has
acknowledged what it covers. Nothing is spooled twice and nothing is dropped.
"""
