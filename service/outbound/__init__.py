"""Outbound calls to remote AI APIs: protocols and retries, pooled transport, asyncio network backend, SSRF guard."""
