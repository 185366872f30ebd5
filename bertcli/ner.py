"""Token classification (NER): the finetune, evaluate and predict cores.

Words and tags come from `bertcli.ner_data`, sub-token windows and the tagger from `bertcli.ner_tagger`;
training is the one loop in `bertcli.training`. Scores are seqeval's, through `bertcli.metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.config import DataOptions, FinetuneConfig, to_dict, with_task_defaults
from bertcli.runtime.device import processes
from bertcli.errors import DataError, ModelError, UsageError
from bertcli.ner_data import Sentence, format_name, ner_format, read_corpus, split_words
from bertcli.ner_schemes import convert, entities, label_names
from bertcli.ner_tagger import (
    IGNORE,
    Tagger,
    check_stride,
    decode,
    make_windows,
    window_labels,
    window_probabilities,
    word_probabilities,
)

log = logging.getLogger("bertcli")
METRICS = ("f1", "precision", "recall", "accuracy", "loss")
STRICT_SCHEME = {"IO": "IOB2", "IOB1": "IOB1", "IOB2": "IOB2", "BIOES": "IOBES"}


# --- scores ---------------------------------------------------------------------------------------------


def entity_report(gold: list[list[str]], predicted: list[list[str]], scheme: str) -> dict[str, Any]:
    """seqeval entity P/R/F1 in default (conlleval) and strict mode, per type, and token accuracy."""
    from bertcli.metrics import ner_report

    default = ner_report(gold, predicted)
    if scheme == "IO":  # seqeval has no IO scheme; the same entities written IOB2 are what strict mode checks
        gold, predicted = [convert(t, "IOB2") for t in gold], [convert(t, "IOB2") for t in predicted]
    strict = ner_report(gold, predicted, mode="strict", scheme=STRICT_SCHEME[scheme])
    return {
        "n": default["n"], "precision": default["precision"], "recall": default["recall"], "f1": default["f1"],
        "accuracy": default["accuracy"], "strict_precision": strict["precision"], "strict_recall": strict["recall"],
        "strict_f1": strict["f1"], "per_type": default["per_type"], "strict_per_type": strict["per_type"],
        "strict_scheme": STRICT_SCHEME[scheme],
    }  # fmt: skip


def entity_records(
    tags: Sequence[str], sentence: Sentence, scores: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Entities as {text, label, start, end[, score]} with character offsets into the sentence's text."""
    text, offsets = sentence_text(sentence)
    records = []
    for label, first, end in entities(list(tags)):
        start, stop = offsets[first][0], offsets[end - 1][1]
        record = {"text": text[start:stop], "label": label, "start": start, "end": stop}
        if scores is not None:
            record["score"] = round(float(np.mean(scores[first:end])), 4)
        records.append(record)
    return records


def sentence_text(sentence: Sentence) -> tuple[str, list[tuple[int, int]]]:
    """The raw text when words were cut from it, else the words joined by spaces; with word offsets."""
    if sentence.text is not None and sentence.offsets is not None:
        return sentence.text, sentence.offsets
    offsets, position = [], 0
    for word in sentence.words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(sentence.words), offsets


# --- finetune -----------------------------------------------------------------------------------------


def _in_scheme(sentences: list[Sentence], source_scheme: str, scheme: str) -> list[list[str]]:
    return [s.tags if source_scheme == scheme else convert(s.tags, scheme) for s in sentences]


def _collate(pad_id: int):
    import torch

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


class _LiveModel:
    """The inference-backend interface over the model being trained, on the loop's device and precision."""

    def __init__(self, model: Any, accelerator: Any) -> None:
        self.model, self.accelerator = model, accelerator

    def forward(self, features: dict[str, np.ndarray], outputs: Sequence[str] = ("logits",)) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode(), self.accelerator.autocast():
            tensors = {k: torch.from_numpy(v).to(self.accelerator.device) for k, v in features.items()}
            return {"logits": self.model(**tensors).logits.float().cpu().numpy()}


@dataclass
class FinetuneResult:
    output: Path
    meta: dict[str, Any]


def finetune(cfg: FinetuneConfig, on_step=None) -> FinetuneResult:
    """Fine-tune a token classifier on CoNLL/JSONL data and save a model bundle to cfg.output."""
    import torch.nn.functional as F
    from accelerate.utils import set_seed

    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.classification import class_weights_for
    from bertcli.data.formats import file_fingerprint
    from bertcli.data.labels import split_validation
    from bertcli.model_card import launch_command
    from bertcli.modeling import (
        DEFAULT_HUB_ID,
        library_versions,
        load_token_classifier,
        load_tokenizer,
        model_max_length,
        resolve_model,
        save_bundle,
    )
    from bertcli.training import TrainJob, finish_run, logs_dir, prepare_run_dir, run_record, train

    cfg.validate()
    opts = cfg.training = with_task_defaults(cfg.training, "ner")
    metric = opts.metric or "f1"
    if metric not in METRICS:
        raise UsageError(f"unknown --metric {metric!r} for NER", hint=f"choose {', '.join(METRICS)}")
    corpus = read_corpus(cfg.train, format_name(cfg.data.format), cfg.ner.scheme)
    scheme = "IOB2" if corpus.scheme == "IOB1" else corpus.scheme  # B- opening every entity is what taggers learn best
    gold = _in_scheme(corpus.sentences, corpus.scheme, scheme)
    types = sorted({label for tags in gold for label, _, _ in entities(tags)})
    if not types:
        raise DataError("no entities in the training data (every tag is O)", file=corpus.source)
    labels = label_names(types, scheme)
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
    if cfg.validation:
        val = read_corpus(cfg.validation, format_name(cfg.data.format), cfg.ner.scheme)
        val_words, val_gold = [s.words for s in val.sentences], _in_scheme(val.sentences, val.scheme, scheme)
        unknown = sorted({label for tags in val_gold for label, _, _ in entities(tags)} - set(types))
        if unknown:
            log.warning("entity types in the validation data but not in training: %s", ", ".join(unknown))
        train_idx = list(range(len(words)))
    elif cfg.val_split > 0:
        train_idx, val_idx = split_validation(list(range(len(words))), cfg.val_split, opts.seed, stratify=False)
        val_words, val_gold = [words[i] for i in val_idx], [gold[i] for i in val_idx]
    else:
        train_idx, val_words, val_gold = list(range(len(words))), [], []

    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    if not tokenizer.is_fast:
        raise ModelError("NER needs a fast tokenizer (tokenizer.json) to map sub-tokens to words", file=model_path)
    set_seed(opts.seed)
    accelerator = make_accelerator(
        opts.precision, opts.report_to, logs_dir(cfg.output), gradient_accumulation_steps=opts.grad_accum
    )
    model = load_token_classifier(model_path, labels)
    cap = model_max_length(tokenizer, model.config)
    if opts.max_length is not None and not 4 <= opts.max_length <= cap:
        raise UsageError(f"--max-length must be between 4 and the model's limit of {cap}")
    pieces = [len(w.input_ids) for w in make_windows(tokenizer, words, 10**9, 0)]
    max_length = opts.max_length or min(cap, int(math.ceil(max(pieces) / 8) * 8))
    stride = check_stride(cfg.ner.stride, max_length)
    index = {name: i for i, name in enumerate(labels)}
    inside = {index[n]: index["I-" + n[2:]] for n in labels if n.startswith("B-")} if cfg.ner.label_all_tokens else None

    train_words = [words[i] for i in train_idx]
    windows = make_windows(tokenizer, train_words, max_length, stride)
    examples = [
        {"input_ids": w.input_ids, "labels": window_labels(w, [index[t] for t in gold[train_idx[w.sentence]]], inside)}
        for w in windows
    ]
    examples = [e for e in examples if any(label != IGNORE for label in e["labels"])]
    log.info(
        "sub-tokens per sentence: p50 %d, p95 %d, max %d; max length %d, stride %d: %d windows for %d sentences",
        np.percentile(pieces, 50), np.percentile(pieces, 95), max(pieces), max_length, stride, len(windows), len(train_words),
    )  # fmt: skip
    val_windows = make_windows(tokenizer, val_words, max_length, stride)
    log.info("%d training and %d validation sentences", len(train_words), len(val_words))

    weights = None
    if opts.class_weights == "auto":
        weights = class_weights_for("single_label", [index[t] for i in train_idx for t in gold[i]], len(labels)).to(
            accelerator.device
        )

    def loss(model, batch):
        targets = batch.pop("labels")
        logits = model(**batch).logits.float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), weight=weights, ignore_index=IGNORE)

    evaluate = None
    if val_words:
        val_targets = [window_labels(w, [index.get(t, 0) for t in val_gold[w.sentence]], None) for w in val_windows]

        def evaluate(model, accelerator) -> dict[str, float]:
            model.eval()
            probs = window_probabilities(
                _LiveModel(model, accelerator), val_windows, tokenizer.pad_token_id or 0, opts.batch_size * 2
            )
            picked = [
                p[np.flatnonzero(np.asarray(t) != IGNORE), np.asarray(t)[np.asarray(t) != IGNORE]]
                for p, t in zip(probs, val_targets)
            ]
            nll = -np.log(np.clip(np.concatenate(picked), 1e-12, None)).mean() if picked else float("nan")
            tags, _ = decode(word_probabilities(val_windows, probs, [len(w) for w in val_words], "first"), labels)
            report = entity_report(val_gold, tags, scheme)
            return {
                "loss": float(nll),
                **{k: report[k] for k in ("f1", "precision", "recall", "accuracy", "strict_f1")},
            }

    job = TrainJob(
        model=model, dataset=examples, lengths=[len(e["input_ids"]) for e in examples], collate=_collate(tokenizer.pad_token_id or 0),
        loss=loss, evaluate=evaluate, metric=metric if val_words else "loss", unit="windows", config=to_dict(cfg),
    )  # fmt: skip
    out, run_dir = prepare_run_dir(cfg, accelerator)
    state = train(job, opts, accelerator, run_dir, on_step=on_step)
    meta = {
        "task": "ner",
        "labels": labels,
        "scheme": scheme,
        "data_scheme": corpus.scheme,
        "max_length": max_length,
        "stride": stride,
        "label_all_tokens": cfg.ner.label_all_tokens,
        "base_model": cfg.model or DEFAULT_HUB_ID,
        "config": to_dict(cfg),
        "train_data": {**file_fingerprint(cfg.train), "sentences": len(words)},
        "validation_data": file_fingerprint(cfg.validation) if cfg.validation else {"split": cfg.val_split},
        **run_record(state, job.metric),
        "command": launch_command(),
        "versions": library_versions(),
    }
    finish_run(accelerator, run_dir, out, lambda staging: save_bundle(job.model, tokenizer, staging, meta, job.weights))
    return FinetuneResult(out, meta)


# --- evaluate -------------------------------------------------------------------------------------------


def evaluate_model(
    model_dir: str, data: str, fmt: str | None = None, scheme: str | None = None, batch_size: int = 64,
    precision: str = "auto", errors_path: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Entity-level scores of a saved token classifier on labelled CoNLL/JSONL data (and optionally the errors file).

    Under a launch the sentences are dealt out among the processes and each is tagged once.
    """
    tagger = Tagger(model_dir, precision, batch_size)
    corpus = read_corpus(data, format_name(fmt), scheme)
    gold = _in_scheme(corpus.sentences, corpus.scheme, tagger.scheme)
    known = {label[2:] for label in tagger.labels if label != "O"}
    unknown = sorted({label for tags in gold for label, _, _ in entities(tags)} - known)
    if unknown:
        log.warning("entity types the model does not know (they count as missed): %s", ", ".join(unknown))
    predicted, scores = tagger.shared_tag([s.words for s in corpus.sentences])
    report = entity_report(gold, predicted, tagger.scheme)
    report.update({
        "task": "ner", "model": str(model_dir), "data": data, "words": sum(len(t) for t in gold),
        "scheme": tagger.scheme, "data_scheme": corpus.scheme,
    })  # fmt: skip
    if errors_path:
        _write_errors(errors_path, corpus.sentences, gold, predicted, scores)
        report["errors_file"] = errors_path
    return report


def _write_errors(path: str, sentences: list[Sentence], gold, predicted, scores) -> None:
    """Sentences whose predicted entities differ from the gold ones, both as spans of the sentence text."""
    from bertcli.io import atomic_write, dumps

    with atomic_write(path) as handle:
        for sentence, g, p, s in zip(sentences, gold, predicted, scores):
            if entities(g) == entities(p):
                continue
            text, _ = sentence_text(sentence)
            record = {
                "line": sentence.line,
                "text": text,
                "gold": entity_records(g, sentence),
                "predicted": entity_records(p, sentence, s),
            }
            handle.write(dumps(record) + "\n")


# --- predict --------------------------------------------------------------------------------------------


@dataclass
class NerPredictOptions:
    batch_size: int = 32
    aggregation: str = "first"
    max_length: int | None = None
    stride: int | None = None
    precision: str = "auto"
    include_text: bool = False


def predict_stream(model_dir: str, source: str | None, data: DataOptions, opts: NerPredictOptions) -> Iterator[str]:
    """Tag a stream in micro-batches; yields output text in input order as it is ready.

    Raw text (txt lines, or a text column) gives one JSONL record of entities per input; pre-tokenized input
    comes back in its own format with the predicted tags added (CoNLL: a last column; JSONL: `pred_tags`),
    rewritten as the entities they spell (conlleval's reading) so the column is a valid sequence that
    `bertcli evaluate` and strict scorers accept.
    """
    from bertcli.data.records import iter_records
    from bertcli.io import dumps
    from bertcli.ner_data import iter_sentences
    from bertcli.prediction import input_batches

    if opts.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    fmt = _predict_format(source, data.format)
    tagger = Tagger(model_dir, opts.precision, opts.batch_size, opts.max_length, opts.stride, opts.aggregation)
    launch = processes()

    def batches(records: Iterator[Any]) -> Iterator[list[Any]]:
        return input_batches(records, opts.batch_size * 8, launch)

    if fmt == "conll":
        for batch in batches(iter_sentences(source, "conll", need_tags=False)):
            tags, _ = tagger.shared_tag([s.words for s in batch])
            if not launch.is_main_process:
                yield ""
                continue
            tags = [convert(t, tagger.scheme) for t in tags]
            yield "".join(
                "".join("\t".join([*row, tag]) + "\n" for row, tag in zip(s.columns, t)) + "\n"
                for s, t in zip(batch, tags)
            )
        return
    where = source if source not in (None, "-") else "<stdin>"
    for batch in batches(iter_records(source, DataOptions(**{**data.__dict__, "format": fmt}))):
        sentences = [_sentence(record, data, where) for record in batch]
        tags, scores = tagger.shared_tag([s.words for s in sentences])
        if not launch.is_main_process:
            yield ""
            continue
        yield "".join(
            dumps(_output(r, s, t, sc, tagger.scheme, data, opts)) + "\n"
            for r, s, t, sc in zip(batch, sentences, tags, scores)
        )


def _predict_format(source: str | None, explicit: str | None) -> str:
    from bertcli.data.formats import detect_format

    if explicit is not None and explicit.lower() in ("conll", "iob", "bio"):
        return "conll"
    if explicit is None and source not in (None, "-") and ner_format(source) == "conll":
        return "conll"
    return detect_format(source or "", explicit or (None if source not in (None, "-") else "txt"))


def _sentence(record: dict[str, Any], data: DataOptions, where: str) -> Sentence:
    if isinstance(record.get("tokens"), list) and data.text_column is None:
        tokens = record["tokens"]
        if not all(isinstance(t, str) and t.strip() for t in tokens):
            raise DataError("tokens must be non-empty strings", file=where)
        return Sentence(tokens, None, 0)
    column = data.text_column or "text"
    if record and column not in record:
        raise DataError(
            f"no {column!r} column", file=where, hint=f"columns are: {', '.join(record)}; pass --text-column"
        )
    text = "" if record.get(column) is None else str(record[column])
    offsets = split_words(text)
    return Sentence([text[s:e] for s, e in offsets], None, 0, text=text, offsets=offsets)


def _output(
    record: dict[str, Any], sentence: Sentence, tags, scores, scheme: str, data: DataOptions, opts: NerPredictOptions
) -> dict[str, Any]:
    if sentence.text is None:
        return {**record, "pred_tags": convert(tags, scheme)}
    out: dict[str, Any] = {}
    if data.id_column:
        out["id"] = record.get(data.id_column)
    if opts.include_text:
        out["text"] = sentence.text
    out["entities"] = entity_records(tags, sentence, scores)
    return out
