"""Metrics, logs and per-request traces. A leaf: it imports nothing else of the service."""
