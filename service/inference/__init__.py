"""Local inference: one engine per loaded model (its own thread and batcher) and the registry that holds them."""
