"""Benchmarks, run as scripts (``python benchmarks/bench_seal_verify.py``)."""
