"""Beyond one machine: the unchanged app on Ray Serve replicas, and ``chunkserve run`` on Ray Data.

The only package that imports ray (an optional extra: ``pip install chunkserve[ray]``).
"""
