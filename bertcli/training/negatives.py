"""Hard negatives mined with a first-stage encoder (embedding training: the starting model; rerankers: the retriever):
for each query, candidates it ranks high that are not its positive.

The very top of the ranking and anything scoring within a margin of the positive are skipped: in real data those
are mostly unlabelled positives (near-duplicate documents, paraphrases), and training against them hurts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from bertcli.reports.retrieval import top_k

log = logging.getLogger("bertcli")


@dataclass
class Mined:
    negatives: list[list[int]]  # per query, candidate indices, best first
    skipped_top: int  # candidates passed over for their rank
    skipped_margin: int  # candidates passed over for scoring within the margin of the positive
    short: int  # queries that got fewer than asked for
    positive_score: float  # mean cosine of the queries' positives
    negative_score: float  # mean cosine of the mined negatives

    def describe(self, k: int, source: str = "the starting model") -> str:
        return (
            f"mined {sum(map(len, self.negatives))} hard negatives ({k} per query) with {source}: mean cosine "
            f"{self.negative_score:.3f} against {self.positive_score:.3f} for the positives; passed over "
            f"{self.skipped_top} top-ranked and {self.skipped_margin} within the margin of the positive"
            + (f"; {self.short} queries got fewer" if self.short else "")
        )


def mine(
    queries: np.ndarray, candidates: np.ndarray, positives: Sequence[int], k: int, skip: int, margin: float,
    known: Sequence[Collection[int]] | None = None,
) -> Mined:  # fmt: skip
    """`k` negatives per query among `candidates` (unit vectors; query i's positive is candidates[positives[i]]):
    the best-ranked ones after the `skip` highest-ranked non-positives, leaving out any scoring above the positive's
    score minus `margin`, and `known[i]`: the query's other positives."""
    depth = min(len(candidates), skip + k + 64 + max(map(len, known or [()]), default=0))
    indices, scores = top_k(queries, candidates, depth)
    negatives, top_skips, margin_skips, short, chosen_scores = [], 0, 0, 0, []
    positive_scores = np.einsum("ij,ij->i", queries, candidates[np.asarray(positives)])
    for row, (ranked, ranked_scores) in enumerate(zip(indices, scores)):
        picked, passed = [], 0
        ceiling = positive_scores[row] - margin
        for index, score in zip(ranked, ranked_scores):
            if len(picked) == k:
                break
            if index == positives[row] or (known is not None and index in known[row]):
                continue
            if passed < skip:
                passed += 1
                continue
            if score > ceiling:
                margin_skips += 1
                continue
            picked.append(int(index))
            chosen_scores.append(float(score))
        top_skips += passed
        short += len(picked) < k
        negatives.append(picked)
    return Mined(
        negatives,
        top_skips,
        margin_skips,
        short,
        float(positive_scores.mean()) if len(positive_scores) else 0.0,
        float(np.mean(chosen_scores)) if chosen_scores else 0.0,
    )
