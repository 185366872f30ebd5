"""Sequence classification: single-label, multi-label and regression, on single texts or sentence pairs."""
