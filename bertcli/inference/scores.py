"""Logits to scores, and vectors to unit rows whose dot product is the cosine: once for every task and backend."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def unit_rows(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Rows (the last axis) cut to their leading `dim` dimensions (a Matryoshka prefix) and scaled to unit length.
    float64 stays float64 for fitting; anything else becomes float32, the dtype every index and route serves."""
    vectors = np.asarray(vectors)
    if vectors.dtype != np.float64:
        vectors = vectors.astype(np.float32, copy=False)
    if dim is not None:
        vectors = vectors[..., :dim]
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))
