"""Masked-LM (and next-sentence) pretraining, from scratch or continued, on the shared training loop."""
