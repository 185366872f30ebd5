"""Sentence and token vectors from any BERT-family encoder, streamed to .npy, .parquet or .jsonl; nearest neighbours."""
