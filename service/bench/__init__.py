"""Benchmarks and the fake remote AI API: ``chunkserve bench`` and ``chunkserve fake-remote``."""
