"""Fine-tuning a token classifier: tagged sentences become sub-token windows for the shared finetune skeleton."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.config import TASK_DEFAULTS, FinetuneConfig
from bertcli.errors import DataError, UsageError
from bertcli.inference.encoding import TextEncoder
from bertcli.inference.scores import softmax
from bertcli.tasks.ner.entities import entity_report
from bertcli.tasks.ner.formats import Corpus, format_name, read_corpus
from bertcli.tasks.ner.schemes import entities, in_scheme, label_names
from bertcli.tasks.ner.windows import (
    IGNORE,
    check_stride,
    decode,
    make_windows,
    window_labels,
    word_probabilities,
)
from bertcli.training.batches import collate_examples
from bertcli.training.finetune import (
    FinetuneResult,
    Prepared,
    held_out,
    inverse_frequency,
    train_task,
    validation_logits,
)

log = logging.getLogger("bertcli")


@dataclass
class TaggedData:
    corpus: Corpus
    scheme: str  # the scheme the model learns (IOB1 input is learnt as IOB2)
    gold: list[list[str]]
    types: list[str]
    labels: list[str]
    train: list[int]  # sentence indices
    val_words: list[list[str]]
    val_gold: list[list[str]]


class TaggerTraining:
    defaults = TASK_DEFAULTS["ner"]

    def read(self, cfg: FinetuneConfig) -> TaggedData:
        corpus = read_corpus(cfg.train, format_name(cfg.data.format), cfg.ner.scheme)
        scheme = (
            "IOB2" if corpus.scheme == "IOB1" else corpus.scheme
        )  # B- opening every entity is what taggers learn best
        gold = in_scheme(corpus.sentences, corpus.scheme, scheme)
        types = sorted({label for tags in gold for label, _, _ in entities(tags)})
        if not types:
            raise DataError("no entities in the training data (every tag is O)", file=corpus.source)
        log.info(
            "%s: %d sentences, %s tags read as %s; %d entity types: %s",
            cfg.train,
            len(gold),
            corpus.format,
            corpus.scheme,
            len(types),
            ", ".join(types[:20]),
        )
        words = [s.words for s in corpus.sentences]
        train, val_idx = held_out(cfg, len(words))
        val_words, val_gold = [words[i] for i in val_idx], [gold[i] for i in val_idx]
        if cfg.validation:
            val = read_corpus(cfg.validation, format_name(cfg.data.format), cfg.ner.scheme)
            val_words, val_gold = [s.words for s in val.sentences], in_scheme(val.sentences, val.scheme, scheme)
            unknown = sorted({label for tags in val_gold for label, _, _ in entities(tags)} - set(types))
            if unknown:
                log.warning("entity types in the validation data but not in training: %s", ", ".join(unknown))
        return TaggedData(corpus, scheme, gold, types, label_names(types, scheme), train, val_words, val_gold)

    def kind(self, data: TaggedData) -> str:
        return "ner"

    def load_model(self, path: str, data: TaggedData) -> Any:
        import transformers

        from bertcli.training.heads import load_with_head

        return load_with_head(transformers.AutoModelForTokenClassification, path, data.labels, "token classification")

    def prepare(self, cfg: FinetuneConfig, data: TaggedData, tokenizer: Any, model: Any, accelerator: Any) -> Prepared:
        from bertcli.bundle import model_max_length

        opts = cfg.training
        cap = model_max_length(model.name_or_path)
        if opts.max_length is not None and not 4 <= opts.max_length <= cap:
            raise UsageError(f"--max-length must be between 4 and the model's limit of {cap}")
        encoder = TextEncoder.of(tokenizer, cap)
        words = [s.words for s in data.corpus.sentences]
        pieces = [len(w.input_ids) for w in make_windows(encoder, words, 10**9, 0)]
        max_length = opts.max_length or min(cap, int(math.ceil(max(pieces) / 8) * 8))
        stride = check_stride(cfg.windows.stride, max_length)
        index = {name: i for i, name in enumerate(data.labels)}
        examples = _train_examples(encoder, data, index, max_length, stride, cfg.ner.label_all_tokens)
        log.info(
            "sub-tokens per sentence: p50 %d, p95 %d, max %d; max length %d, stride %d: %d windows",
            np.percentile(pieces, 50),
            np.percentile(pieces, 95),
            max(pieces),
            max_length,
            stride,
            len(examples),
        )
        log.info("%d training and %d validation sentences", len(data.train), len(data.val_words))
        weights = None
        if opts.class_weights == "auto":
            tag_ids = [index[t] for i in data.train for t in data.gold[i]]
            weights = inverse_frequency(tag_ids, len(data.labels)).to(accelerator.device)
        collate = collate_examples(encoder.specials.pad, token_labels=True)
        evaluate = None
        if data.val_words:
            val_windows = make_windows(encoder, data.val_words, max_length, stride)
            evaluate = _evaluator(data, val_windows, index, collate, opts.batch_size * 2)
        facts = {
            "task": "ner",
            "labels": data.labels,
            "scheme": data.scheme,
            "data_scheme": data.corpus.scheme,
            "max_length": max_length,
            "stride": stride,
            "label_all_tokens": cfg.ner.label_all_tokens,
        }
        resolved = dataclasses.replace(cfg, task="ner")  # what the run trained, however it was picked
        train_data = {"sentences": len(words)}
        return Prepared(examples, collate, _loss(weights), evaluate, facts, train_data, resolved, unit="windows")


def _train_examples(
    encoder: TextEncoder, data: TaggedData, index: dict[str, int], max_length: int, stride: int, label_all_tokens: bool
) -> list[dict[str, Any]]:
    """The training sentences' windows with their targets; a window without a labelled sub-token teaches nothing."""
    inside = {index[n]: index["I-" + n[2:]] for n in data.labels if n.startswith("B-")} if label_all_tokens else None
    windows = make_windows(encoder, [data.corpus.sentences[i].words for i in data.train], max_length, stride)
    examples = []
    for window in windows:
        tags = [index[t] for t in data.gold[data.train[window.sentence]]]
        labels = window_labels(window, tags, inside)
        if any(label != IGNORE for label in labels):
            examples.append({"input_ids": window.input_ids, "labels": labels})
    return examples


def train_tagger(cfg: FinetuneConfig, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune a token classifier on CoNLL/JSONL data and save a model bundle to cfg.output."""
    return train_task(cfg, TaggerTraining(), callbacks)


def _loss(weights: Any):
    import torch.nn.functional as F

    def loss(model: Any, batch: dict[str, Any]) -> Any:
        targets = batch.pop("labels")
        logits = model(**batch).logits.float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), weight=weights, ignore_index=IGNORE)

    return loss


def _evaluator(data: TaggedData, windows: list, index: dict[str, int], collate, batch_size: int):
    """Entity-level validation metrics of the model being trained, and the mean loss of the first sub-tokens."""
    targets = [window_labels(w, [index.get(t, 0) for t in data.val_gold[w.sentence]], None) for w in windows]
    rows = [{"input_ids": w.input_ids, "labels": t} for w, t in zip(windows, targets)]

    def evaluate(model: Any, accelerator: Any) -> dict[str, float]:
        probs = [softmax(logits) for logits in validation_logits(model, accelerator, rows, collate, batch_size)]
        picked = [
            p[np.flatnonzero(np.asarray(t) != IGNORE), np.asarray(t)[np.asarray(t) != IGNORE]]
            for p, t in zip(probs, targets)
        ]
        nll = -np.log(np.clip(np.concatenate(picked), 1e-12, None)).mean() if picked else float("nan")
        tags, _ = decode(word_probabilities(windows, probs, [len(w) for w in data.val_words], "first"), data.labels)
        report = entity_report(data.val_gold, tags, data.scheme)
        return {"loss": float(nll), **{k: report[k] for k in ("f1", "precision", "recall", "accuracy", "strict_f1")}}

    return evaluate
