"""Token classification (NER): CoNLL/JSONL tags or character spans in, entities with character offsets out."""

# Tuned on WNUT-16 with all-MiniLM-L6-v2: sparse entity tags need a higher rate and more, smaller steps,
# or one epoch at the classification settings ends with entity F1 0.
DEFAULTS = {"lr": 3e-4, "batch_size": 16}
METRICS = ("f1", "precision", "recall", "accuracy", "loss")
