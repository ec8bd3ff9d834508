"""Layer 1, the model: loading GPT-2 checkpoints, the per-head weight split, head ids, token batches, errors."""
