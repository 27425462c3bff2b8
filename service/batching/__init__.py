"""Micro-batching: a generic asyncio batcher, its ledger of accepted requests and its policy. No torch, no HTTP."""
