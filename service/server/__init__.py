"""Serving processes: uvicorn, worker processes, process-level set-up (signals, garbage-collector tuning)."""
