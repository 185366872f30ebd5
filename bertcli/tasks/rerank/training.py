"""Fine-tuning a reranker (a cross-encoder with one output) for the shared finetune skeleton: each query trains
against its positive and K negatives mined with a first-stage encoder, with a listwise or a binary cross-entropy loss;
validated by reranking each held-out query's first-stage candidates."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bertcli.config import AGGREGATE_DEFAULTS, TASK_DEFAULTS, VALIDATION_METRICS, FinetuneConfig, WindowOptions
from bertcli.config.rerank import RERANK_LENGTH_CAP, RERANK_NEGATIVES, VALIDATION_CANDIDATES
from bertcli.errors import UsageError
from bertcli.inference.encoding import TextEncoder
from bertcli.inference.long_text import LongTextPolicy, checked
from bertcli.reports.retrieval import retrieval_metrics, top_k
from bertcli.tasks.rerank.data import QueryGroups, first_stage, read_groups
from bertcli.training.batches import collate_examples
from bertcli.training.finetune import (
    FinetuneResult,
    Finished,
    Prepared,
    held_out,
    train_task,
    validation_logits,
)
from bertcli.training.negatives import mine

log = logging.getLogger("bertcli")
LABEL = "relevance"  # the one output's name (config.json's id2label): what pipeline() shows
SCORES = VALIDATION_METRICS["reranker"]  # what validation reports, and what --metric may pick among
# measured on the docstrings set: 1,500 training queries gave a reranker below its all-MiniLM-L6-v2 first stage
# (NDCG@10 0.725 vs 0.742 on the test queries), 4,000 one above it (0.758)
TRY = "try more training queries (thousands), --epochs, or a --model pretrained for reranking"


class RerankTraining:
    defaults = TASK_DEFAULTS["rerank"]

    def read(self, cfg: FinetuneConfig) -> tuple[QueryGroups, QueryGroups]:
        groups = read_groups(cfg.train, cfg.data)
        log.info(
            "%s: %d rows, %d queries, columns %s",
            cfg.train,
            groups.rows,
            len(groups.queries),
            groups.columns.describe(),
        )
        train, val = held_out(cfg, len(groups.queries))
        validation = read_groups(cfg.validation, cfg.data) if cfg.validation else groups.subset(val)
        return groups.subset(train), validation

    def kind(self, data: Any) -> str:
        return "reranker"

    def load_model(self, path: str, data: Any) -> Any:
        from transformers import AutoModelForSequenceClassification

        from bertcli.hub import quiet_transformers

        quiet_transformers()
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, id2label={0: LABEL}, label2id={LABEL: 0}, ignore_mismatched_sizes=True
        )

    def prepare(self, cfg: FinetuneConfig, data: Any, tokenizer: Any, model: Any, accelerator: Any) -> Prepared:
        from bertcli.bundle import model_max_length

        train, validation = data
        opts, mining = cfg.training, cfg.mining
        limit = model_max_length(model.name_or_path)
        if opts.max_length is not None and opts.max_length > limit:
            raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {limit}")
        max_length = opts.max_length or min(RERANK_LENGTH_CAP, limit)
        policy = long_text_policy(cfg.windows, max_length)  # checked before the mining, which takes minutes
        k = RERANK_NEGATIVES if mining.hard_negatives is None else mining.hard_negatives
        retriever = cfg.rerank.retriever or model.name_or_path
        encoder = first_stage(retriever, opts.precision, given=cfg.rerank.retriever is not None)
        tokenizer.model_max_length = max_length  # saved so: CrossEncoder(dir) and pipeline() cut pairs where we do
        negatives, described = _mined_negatives(cfg, encoder, train, k)
        encode = TextEncoder.of(tokenizer, max_length).encode
        examples = _groups(encode, train, negatives)
        checks = None
        if validation.queries:
            checks = RerankValidation(encoder, validation, encode, tokenizer.pad_token_id or 0, opts.batch_size * 8)
        loss_name = cfg.rerank.rerank_loss
        after = f"{policy.aggregate} of windows" if policy.mode == "window" else "cut"
        log.info(
            "%d training (query, positive) groups of up to %d pairs, %d validation queries; max length %d (longer "
            "pairs cut in training and validation, %s after); %s loss",
            len(examples), 1 + k, len(validation.queries), max_length, after, loss_name,
        )  # fmt: skip
        facts = {"task": "reranker", "labels": [LABEL], "max_length": max_length, "long_text": policy.meta()}
        train_data = {
            "rows": train.rows,
            "columns": train.columns.describe(),
            "negatives": described,
            "loss": _describe_loss(loss_name, k),
            "retriever": retriever,
        }
        if checks is not None:
            train_data["first_stage_validation"] = {k: round(v, 6) for k, v in checks.first_stage.items()}
        return Prepared(
            examples, collate_groups(tokenizer.pad_token_id or 0), group_loss(loss_name), checks, facts, train_data,
            cfg, unit="pairs", finish=checks.finish if checks is not None else None,
        )  # fmt: skip


def train_reranker(cfg: FinetuneConfig, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune a cross-encoder on query/document data and save it as a one-output sequence classifier."""
    return train_task(cfg, RerankTraining(), callbacks)


def long_text_policy(options: WindowOptions, max_length: int) -> LongTextPolicy:
    """What prediction does with a (query, document) pair past the training length, saved in the bundle: cut it
    (TEI's and sentence-transformers' way, the default) or, with --long-text window, read the document in windows."""
    stride = options.stride if options.stride is not None else max_length // 4
    aggregate = options.aggregate or AGGREGATE_DEFAULTS["reranker"]
    return checked(LongTextPolicy(options.long_text or "truncate", max_length, stride, aggregate))


def _mined_negatives(cfg: FinetuneConfig, encoder: Any, train: QueryGroups, k: int) -> tuple[list[list[str]], str]:
    """Per query: the negatives the data gives, then ones mined with the first stage up to `k` in all (never one of
    its positives, nor a candidate in the skip/margin band)."""
    mining = cfg.mining
    needed = [max(0, k - len(given)) for given in train.negatives]
    if not any(needed):
        negatives, described = train.negatives, "given by the data"
    else:
        pool = train.documents
        position = {text: i for i, text in enumerate(pool)}
        mined = mine(
            encoder.embed(train.queries).vectors,
            encoder.embed(pool).vectors,
            [position[docs[0]] for docs in train.positives],
            k,
            mining.negative_skip,
            mining.negative_margin,
            [{position[d] for d in docs} for docs in train.positives],
        )
        log.info("%s", mined.describe(k, f"the first stage ({encoder.path})"))
        negatives = [
            given + [pool[i] for i in found if pool[i] not in given][:need]
            for given, found, need in zip(train.negatives, mined.negatives, needed)
        ]
        described = (
            f"{k} per query: given ones first, then mined with {encoder.path} (skipping the top "
            f"{mining.negative_skip} and those within {mining.negative_margin} of the positive; mean cosine "
            f"{mined.negative_score:.3f} vs {mined.positive_score:.3f})"
        )
    if not any(negatives):
        raise UsageError(
            "no negatives to train the reranker against", hint="--hard-negatives K (K > 0) or negative columns"
        )
    return negatives, described


def _groups(encode: Any, train: QueryGroups, negatives: list[list[str]]) -> list[dict[str, Any]]:
    """One example per (query, positive): the pair's ids, then its query's negatives' pairs."""
    rows = [(q, p, negs) for q, positives, negs in zip(train.queries, train.positives, negatives) for p in positives]
    pairs = [(q, d) for q, p, negs in rows for d in (p, *negs)]
    encoded = encode([q for q, _ in pairs], [d for _, d in pairs])
    examples, at = [], 0
    for _, _, negs in rows:
        size = 1 + len(negs)
        group = [(encoded.input_ids[at + j], encoded.token_type_ids[at + j]) for j in range(size)]
        examples.append({"input_ids": group[0][0], "pairs": group})
        at += size
    return examples


def collate_groups(pad_id: int):
    """Every example's pairs padded together, positive first; `group`/`slot` place each pair in its query's row."""
    import torch

    flat = collate_examples(pad_id, "float")

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows, group, slot = [], [], []
        for g, example in enumerate(examples):
            for j, (ids, types) in enumerate(example["pairs"]):
                rows.append({"input_ids": ids, "token_type_ids": types, "label": float(j == 0)})
                group.append(g)
                slot.append(j)
        batch = flat(rows)
        batch["group"], batch["slot"] = torch.tensor(group), torch.tensor(slot)
        return batch

    return collate


def group_loss(name: str):
    """listwise: cross-entropy of each query's scores over its positive and negatives (the positive the target);
    bce: each pair's relevance alone, positives weighted by their query's negatives so both sides count the same."""
    import torch
    import torch.nn.functional as F

    def loss(model: Any, batch: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "group", "slot")}
        scores = model(**inputs).logits.squeeze(-1).float()
        group, slot = batch["group"], batch["slot"]
        if name == "bce":
            negatives = torch.bincount(group)[group].float() - 1
            weights = torch.where(batch["labels"] > 0, negatives.clamp(min=1), torch.ones_like(negatives))
            per_pair = F.binary_cross_entropy_with_logits(scores, batch["labels"], reduction="none")
            return (per_pair * weights).sum() / weights.sum()
        table = scores.new_full((int(group.max()) + 1, int(slot.max()) + 1), float("-inf"))
        table[group, slot] = scores
        return F.cross_entropy(table, torch.zeros(len(table), dtype=torch.long, device=scores.device))

    return loss


class RerankValidation:
    """The loop's validation: each held-out query's first-stage top candidates (among all validation documents),
    reranked, scored by NDCG@10, MRR@10 and Recall@10. The first stage's own scores are measured once, so that the
    end of the run can say whether reranking with the trained model helps at all (`finish`)."""

    def __init__(self, encoder: Any, validation: QueryGroups, encode: Any, pad_id: int, batch_size: int) -> None:
        pool = validation.documents
        self.depth = min(VALIDATION_CANDIDATES, len(pool))
        self.found, _ = top_k(encoder.embed(validation.queries).vectors, encoder.embed(pool).vectors, self.depth)
        position = {text: str(i) for i, text in enumerate(pool)}
        self.qrels = {str(q): {position[d]: 1.0 for d in docs} for q, docs in enumerate(validation.positives)}
        before = retrieval_metrics({str(q): [str(i) for i in row] for q, row in enumerate(self.found)}, self.qrels)
        log.info(
            "first stage on validation (top %d of %d documents): ndcg@10 %.4f, mrr@10 %.4f, recall@%d %.4f",
            self.depth, len(pool), before["ndcg@10"], before["mrr@10"], self.depth, _recall(before, self.depth),
        )  # fmt: skip
        self.first_stage = {key: before[key] for key in SCORES}
        pairs = [(validation.queries[q], pool[i]) for q, row in enumerate(self.found) for i in row]
        encoded = encode([q for q, _ in pairs], [d for _, d in pairs])
        self.examples = [
            {"input_ids": ids, "token_type_ids": types, "label": 0.0}
            for ids, types in zip(encoded.input_ids, encoded.token_type_ids)
        ]
        self.collate, self.batch_size = collate_examples(pad_id, "float"), batch_size

    def __call__(self, model: Any, accelerator: Any) -> dict[str, float]:
        logits = validation_logits(model, accelerator, self.examples, self.collate, self.batch_size)
        scores = np.asarray([float(row[0]) for row in logits]).reshape(len(self.found), self.depth)
        reranked = {
            str(q): [str(self.found[q][j]) for j in np.argsort(-scores[q], kind="stable")]
            for q in range(len(self.found))
        }
        metrics = retrieval_metrics(reranked, self.qrels)
        return {key: metrics[key] for key in SCORES} | {"examples": len(self.found)}

    def finish(self, model: Any, accelerator: Any, metric: str, best: float | None) -> Finished:
        """After training: a kept model (`best`: its validation value of `metric`, as the loop measured it) that does
        not beat the first stage on validation would make rankings worse; say so in one warning line and record it
        (bertcli.json's `degenerate`, the card). No verdict when the loop evaluated nothing."""
        found = None if best is None else no_better_than_first_stage(best, self.first_stage, metric, len(self.found))
        if found is None:
            return Finished({})
        log.warning(found["warning"])
        return Finished({"degenerate": found})


def no_better_than_first_stage(
    after: float, first_stage: dict[str, float], metric: str, queries: int
) -> dict[str, Any] | None:
    """None when the reranked validation value of `metric` beats the first stage's, else what went wrong."""
    before = first_stage[metric]
    if after > before:
        return None
    warning = (
        f"the reranker ranks no better than its first stage: validation {metric} {after:.4f} reranked vs {before:.4f} "
        f"as retrieved ({queries} queries), so reranking with it would not help; {TRY}"
    )
    return {"reason": "no better than the first stage", metric: round(after, 6), f"first_stage_{metric}": round(before, 6),
            "warning": warning}  # fmt: skip


def _recall(metrics: dict[str, float], depth: int) -> float:
    return metrics["recall@100"] if depth > 10 else metrics["recall@10"]


def _describe_loss(name: str, k: int) -> str:
    if name == "bce":
        return f"binary cross-entropy per pair, positives weighted by the query's {k} negatives"
    return f"listwise: softmax cross-entropy over each query's positive and {k} negatives"
