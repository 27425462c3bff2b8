"""HTTP stacks that only the benchmarks use: the httpx2 client with sharded pools (``transport.py``) on an asyncio
network backend (``aionet.py``), the server's outbound path before it moved to aiohttp (``service/outbound/aio.py``).

``python -m service.bench.pools`` measures sharded pools against one plain pool with them; the server never
imports this package.
"""
