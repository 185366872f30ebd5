"""The options of reranker training (finetune --task rerank) and of reranking with a first stage, and their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from bertcli.config.fields import checked

RERANK_LOSSES = ("listwise", "bce")  # softmax over each query's positive and negatives, or each pair on its own
# finetune --task rerank when the user sets nothing: 16 (query, positive) groups a step, each with RERANK_NEGATIVES
# mined negatives (16 x 4 pairs), 3 epochs at 1e-4. A cross-encoder started from an encoder's weights learns slowly:
# on the docstrings set (bench/rerank.py, all-MiniLM-L6-v2, 270 queries) one epoch at sentence-transformers' 2e-5
# left the reranked order near random (NDCG@10 0.21 on the base encoder's top 30, whose own order scores 0.76), and
# 4 epochs at 1e-4 reached 0.68 (bce) / 0.67 (listwise); 1,350 queries, 3 epochs, listwise: 0.75.
# The model's own attention dropout (0.1) stays: without it (--attention-dropout 0) the bench's reranker trained
# 1.27x faster (620 s of steps against 788, with torch's dropout, before training/dropout.py made a mask cheap) but
# overfit (validation NDCG@10 fell in epoch 3) and reranked the test queries worse: 0.7051 against 0.7320
# (bench/rerank.py, 200 test queries, base encoder's top 100 at 0.7413).
RERANK_DEFAULTS = {"lr": 1e-4, "batch_size": 16, "epochs": 3.0}
RERANK_NEGATIVES = 3  # --hard-negatives for a reranker: mined per query with the first stage
# training reads at most this many tokens of a (query, document) pair; evaluation and inference read the length the
# model was trained with. On the docstrings set (bench/rerank.py: 1,500 queries, documents of 156 tokens at the median,
# 82% over 110), 256 tokens cost 3.5x the time per pair and reranked the test queries about as well: NDCG@10 0.7349
# against 0.7319 (torch bf16, the base encoder's top 100); reading those documents in windows at evaluation time
# (--long-text window) gave 0.7369 from the 128-token model.
RERANK_LENGTH_CAP = 128
# candidates the first stage hands the reranker: per validation query in training, per query in evaluate
VALIDATION_CANDIDATES, CANDIDATES = 20, 100


@dataclass
class RerankOptions:
    """Training a cross-encoder on (query, positive[, negatives]) pairs or (query, document, label) rows."""

    # bce (positives weighted by their query's negatives) measured above listwise on the same 270 queries: 0.680 vs
    # 0.666 reranked NDCG@10 on the test set, 0.954 vs 0.938 on validation
    rerank_loss: str = checked("bce", choices=RERANK_LOSSES)
    retriever: str | None = None  # the first stage that mines negatives (None: the base model as an encoder)
