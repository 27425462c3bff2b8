"""Text generation: a continuous-batching scheduler per causal LM, decoding on the model's own thread."""
