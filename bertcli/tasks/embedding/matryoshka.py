"""Rotations that put what a Matryoshka prefix can hold into the leading dimensions of a trained encoder.

An orthogonal rotation leaves every full-size cosine as it was, so it changes only what the prefixes hold. Two are fitted on
the trained model's vectors of the training pairs: the principal axes (largest variance first), and those axes
refined by gradient descent on the Matryoshka ranking loss at the smaller sizes while staying orthogonal. The one that
retrieves best at the smaller sizes on validation is kept, or none when the trained cut is best.
"""

from __future__ import annotations

import numpy as np

from bertcli.config.embedding import REFINE_EPOCHS, REFINE_LR
from bertcli.inference.scores import unit_rows


def principal_axes(vectors: np.ndarray) -> np.ndarray:
    """The columns are the principal axes of the unit vectors, largest eigenvalue first."""
    unit = unit_rows(vectors.astype(np.float64))
    values, axes = np.linalg.eigh(unit.T @ unit)
    return axes[:, np.argsort(-values, kind="stable")].astype(np.float32)


def refined(
    queries: np.ndarray, positives: np.ndarray, start: np.ndarray, sizes: list[int], scale: float, batch_size: int,
    seed: int,
) -> np.ndarray:  # fmt: skip
    """`start` refined to rank each query's positive first among the batch's positives at every size in `sizes`
    (the training loss, on frozen vectors), kept orthogonal by parametrization. A few passes: the map has dim²
    weights for a few thousand pairs, and more passes overfit them (measured on the docstrings set)."""
    import torch

    from bertcli.tasks.embedding.contrastive import ranking_loss

    dim = start.shape[0]
    generator = torch.Generator().manual_seed(seed)
    rotate = torch.nn.Linear(dim, dim, bias=False)
    with torch.no_grad():
        rotate.weight.copy_(torch.eye(dim))
    rotate = torch.nn.utils.parametrizations.orthogonal(rotate)
    optimizer = torch.optim.Adam(rotate.parameters(), lr=REFINE_LR)
    loss = ranking_loss(scale, False, sizes)
    q, p = (torch.from_numpy(unit_rows(v @ start).astype(np.float32)) for v in (queries, positives))
    with torch.enable_grad():  # the caller may be evaluating under no_grad
        for _ in range(REFINE_EPOCHS):
            order = torch.randperm(len(q), generator=generator)
            for batch in order.split(batch_size):
                if len(batch) < 2:
                    continue
                value = loss(rotate(q[batch]), rotate(p[batch]))
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
    with torch.no_grad():
        return (start @ rotate.weight.T.double().numpy()).astype(np.float32)


def distinct_pairs(queries: list[list[int]], documents: list[list[int]]) -> list[int]:
    """The indices of the pairs whose query and document both appear for the first time: in a batch drawn from them,
    no repeated text is scored as another pair's negative (the training sampler's rule, for the refinement)."""
    seen: set[tuple[str, tuple[int, ...]]] = set()
    kept = []
    for i, (query, document) in enumerate(zip(queries, documents)):
        keys = {("query", tuple(query)), ("document", tuple(document))}
        if seen.isdisjoint(keys):
            seen |= keys
            kept.append(i)
    return kept


def prefix_ndcg(queries: np.ndarray, documents: np.ndarray, sizes: list[int]) -> float:
    """Mean NDCG@10 over `sizes` of each query retrieving its own document (row i) among all the documents."""
    from bertcli.reports.retrieval import validation_metrics

    return float(
        np.mean([validation_metrics(unit_rows(queries[:, :k]), unit_rows(documents[:, :k]))["ndcg@10"] for k in sizes])
    )
