"""Token classification (NER): CoNLL/JSONL tags or character spans in, entities with character offsets out."""

METRICS = ("f1", "precision", "recall", "accuracy", "loss")
