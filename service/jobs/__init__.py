"""Jobs: a long text becomes chunks, each chunk meets its target, results stream back.

Pipeline, chunking, text bounds, targets, stream events.
"""
