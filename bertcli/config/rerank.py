"""The options of reranker training (finetune --task rerank) and of reranking with a first stage, and their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from bertcli.config.fields import checked

RERANK_LOSSES = ("listwise", "bce")  # softmax over each query's positive and negatives, or each pair on its own
# finetune --task rerank when the user sets nothing: one pass over the queries, 16 queries a step (each with its
# positive and RERANK_NEGATIVES mined negatives, so 16 x 8 pairs), at sentence-transformers' CrossEncoder rate.
RERANK_DEFAULTS = {"lr": 2e-5, "batch_size": 16, "epochs": 1.0}
RERANK_NEGATIVES = 7  # --hard-negatives for a reranker: mined per query with the first stage
# training reads at most this many tokens of a (query, document) pair; evaluation and inference read the model's
# full length
RERANK_LENGTH_CAP = 256
# candidates the first stage hands the reranker: per validation query in training, per query in evaluate
VALIDATION_CANDIDATES, CANDIDATES = 20, 100


@dataclass
class RerankOptions:
    """Training a cross-encoder on (query, positive[, negatives]) pairs or (query, document, label) rows."""

    rerank_loss: str = checked("listwise", choices=RERANK_LOSSES)
    retriever: str | None = None  # the first stage that mines negatives (None: the base model as an encoder)
