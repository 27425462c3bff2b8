"""Stand-in servers for tests and benchmarks (the fake remote AI API).

They are web servers themselves, so they may use starlette.
"""
