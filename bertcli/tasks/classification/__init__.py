"""Sequence classification: single-label, multi-label and regression, on single texts or sentence pairs."""

# Tuned on real data with all-MiniLM-L6-v2 (Rotten Tomatoes, bench/classify.py).
DEFAULTS = {"lr": 1e-4, "batch_size": 32}
DEFAULT_METRIC = {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "mse"}
