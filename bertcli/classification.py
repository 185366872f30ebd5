"""Sequence classification: the finetune, evaluate and predict cores for single-label, multi-label and regression.

This is the task layer between the commands and the shared machinery (data layer, model bundle,
training loop, inference path); token classification and pretraining get modules of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.config import DataOptions, FinetuneConfig, to_dict, with_task_defaults
from bertcli.data.columns import Columns
from bertcli.data.formats import file_fingerprint
from bertcli.data.labels import LabelSpec, encode_labels, infer_labels, split_validation
from bertcli.data.tables import Table, load_table
from bertcli.errors import BertcliError, DataError, UsageError
from bertcli.inference import Encoded, TorchBackend, encode, run_batches

log = logging.getLogger("bertcli")
DEFAULT_METRIC = {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "mse"}


# --- shared helpers --------------------------------------------------------------------------------


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax for single-label, sigmoid for multi-label, identity for regression."""
    logits = np.asarray(logits, dtype=np.float64)
    if task == "single_label":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if task == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits






# --- finetune ----------------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    output: Path
    meta: dict[str, Any]


def _collate(task: str):
    import torch

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.zeros((len(examples), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        types = torch.zeros_like(ids)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[row, :n] = torch.tensor(e["input_ids"])
            mask[row, :n] = 1
            if e.get("token_type_ids") is not None:
                types[row, :n] = torch.tensor(e["token_type_ids"])
        dtype = torch.long if task == "single_label" else torch.float
        labels = torch.tensor([e["label"] for e in examples], dtype=dtype)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}

    return collate


def _examples(encoded: Encoded, labels: Sequence[Any], indices: Sequence[int]) -> list[dict[str, Any]]:
    return [
        {
            "input_ids": encoded.input_ids[i],
            "token_type_ids": encoded.token_type_ids[i] if encoded.token_type_ids is not None else None,
            "label": labels[i],
        }
        for i in indices
    ]


def _loss_fn(task: str, weights: Any):
    import torch.nn.functional as F

    def loss_from_logits(logits, labels):
        logits = logits.float()
        if task == "single_label":
            return F.cross_entropy(logits, labels, weight=weights)
        if task == "multi_label":
            return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weights)
        return F.mse_loss(logits.squeeze(-1), labels)

    return loss_from_logits


def class_weights_for(task: str, labels: Sequence[Any], num_labels: int):
    """Inverse-frequency weights (single-label) or negative/positive ratios (multi-label)."""
    import torch

    if task == "single_label":
        counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(np.float64)
        weights = len(labels) / (num_labels * np.maximum(counts, 1))
    elif task == "multi_label":
        positives = np.asarray(labels).sum(axis=0)
        weights = (len(labels) - positives) / np.maximum(positives, 1)
    else:
        raise UsageError("--class-weights auto needs a classification task, not regression")
    return torch.tensor(weights, dtype=torch.float)


def finetune(cfg: FinetuneConfig, on_step=None) -> FinetuneResult:
    """Fine-tune a sequence classifier on a table and save a model bundle to cfg.output."""
    import torch
    from accelerate.utils import set_seed

    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.metrics import report_for_task
    from bertcli.model_card import launch_command
    from bertcli.modeling import (
        DEFAULT_HUB_ID,
        library_versions,
        load_sequence_classifier,
        load_tokenizer,
        model_max_length,
        resolve_model,
        save_bundle,
    )
    from bertcli.training import TrainJob, finish_run, logs_dir, prepare_run_dir, run_record, train

    cfg.validate()
    opts = cfg.training = with_task_defaults(cfg.training, "classification")
    table = load_table(cfg.train, cfg.data)
    columns = table.columns(cfg.data, need_label=True)
    log.info("%s: %d rows, columns %s", cfg.train, len(table.dataset), columns.describe())
    texts, pairs = table.texts(columns)
    spec = infer_labels(table, columns.label, cfg.data, cfg.task)
    labels = encode_labels(table, columns.label, spec, cfg.data)
    log.info("task %s%s", spec.task, f", {len(spec.names)} labels: {', '.join(spec.names[:20])}" if spec.names else "")
    if spec.task != "regression" and len(spec.names) < 2:
        raise DataError(f"only one label ({spec.names[0]!r}) in the training data", file=cfg.train, column=columns.label)

    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    set_seed(opts.seed)
    accelerator = make_accelerator(
        opts.precision, opts.report_to, logs_dir(cfg.output), gradient_accumulation_steps=opts.grad_accum
    )
    model = load_sequence_classifier(model_path, spec)
    cap = model_max_length(tokenizer, model.config)
    if opts.max_length is not None and opts.max_length > cap:
        raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {cap}")
    encoded = encode(tokenizer, texts, pairs, opts.max_length or cap)
    lengths = [len(ids) for ids in encoded.input_ids]
    max_length = opts.max_length or min(cap, int(np.ceil(max(lengths) / 8) * 8))
    log.info(
        "tokens per example: p50 %d, p95 %d, max %d; max length %d (%d truncated)",
        np.percentile(lengths, 50), np.percentile(lengths, 95), max(lengths), max_length, sum(encoded.truncated),
    )  # fmt: skip

    if cfg.validation:
        val_table = load_table(cfg.validation, cfg.data)
        val_columns = val_table.columns(cfg.data, need_label=True, saved={"label": columns.label})
        val_labels = encode_labels(val_table, val_columns.label, spec, cfg.data)
        val_encoded = encode(tokenizer, *val_table.texts(val_columns), max_length)
        train_examples = _examples(encoded, labels, range(len(labels)))
        val_examples = _examples(val_encoded, val_labels, range(len(val_labels)))
    elif cfg.val_split > 0:
        train_idx, val_idx = split_validation(labels, cfg.val_split, opts.seed, stratify=spec.task == "single_label")
        train_examples, val_examples = _examples(encoded, labels, train_idx), _examples(encoded, labels, val_idx)
    else:
        train_examples, val_examples = _examples(encoded, labels, range(len(labels))), []
    log.info("%d training and %d validation examples", len(train_examples), len(val_examples))

    weights = class_weights_for(spec.task, [e["label"] for e in train_examples], spec.num_labels) if opts.class_weights == "auto" else None
    loss_from_logits = _loss_fn(spec.task, weights.to(accelerator.device) if weights is not None else None)
    collate = _collate(spec.task)

    def loss(model, batch):
        labels = batch.pop("labels")
        return loss_from_logits(model(**batch).logits, labels)

    evaluate = None
    if val_examples:
        from bertcli.runtime.distributed import gather_in_order, shard_batches

        val_batches = shard_batches(
            [len(e["input_ids"]) for e in val_examples], opts.batch_size * 2, accelerator.process_index, accelerator.num_processes
        )  # fmt: skip

        def evaluate(model, accelerator) -> dict[str, float]:
            model.eval()
            indices, rows = [], []
            with torch.inference_mode(), accelerator.autocast():
                for batch in val_batches:
                    inputs = {k: v.to(accelerator.device) for k, v in collate([val_examples[i] for i in batch.indices]).items()}
                    inputs.pop("labels")
                    logits = model(**inputs).logits.float().cpu().numpy()
                    if batch.real:
                        indices.extend(batch.indices)
                        rows.extend(logits)
            logits_np = np.stack(gather_in_order(accelerator, indices, rows))
            refs = np.asarray([e["label"] for e in val_examples])
            targets = torch.tensor(refs, dtype=torch.long if spec.task == "single_label" else torch.float)
            loss = loss_from_logits(torch.from_numpy(logits_np).to(accelerator.device), targets.to(accelerator.device)).item()
            report = report_for_task(spec.task, *_references_predictions(spec.task, refs, logits_np, 0.5), spec.names)
            flat = {k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "n" and v is not None}
            return {"loss": loss, **flat, "examples": len(logits_np)}

    metric = opts.metric or DEFAULT_METRIC[spec.task]
    job = TrainJob(
        model=model, dataset=train_examples, lengths=[len(e["input_ids"]) for e in train_examples],
        collate=collate, loss=loss, evaluate=evaluate, metric=metric if val_examples else "loss", config=to_dict(cfg),
    )  # fmt: skip
    out, run_dir = prepare_run_dir(cfg, accelerator)
    state = train(job, opts, accelerator, run_dir, on_step=on_step)

    meta = {
        "task": spec.task,
        "labels": spec.names,
        "columns": {"text": columns.text, "pair": columns.pair, "label": columns.label},
        "label_sep": cfg.data.label_sep,
        "max_length": max_length,
        "threshold": 0.5 if spec.task == "multi_label" else None,
        "base_model": cfg.model or DEFAULT_HUB_ID,
        "config": to_dict(cfg),
        "train_data": {**file_fingerprint(cfg.train), "rows": len(table.dataset)},
        "validation_data": file_fingerprint(cfg.validation) if cfg.validation else {"split": cfg.val_split},
        **run_record(state, job.metric),
        "command": launch_command(),
        "versions": library_versions(),
    }
    finish_run(accelerator, run_dir, out, lambda staging: save_bundle(job.model, tokenizer, staging, meta, job.weights))
    return FinetuneResult(out, meta)


def _references_predictions(task: str, refs: np.ndarray, logits: np.ndarray, threshold: float):
    probs = probabilities(logits, task)
    if task == "single_label":
        return refs.astype(int).tolist(), probs.argmax(-1).tolist()
    if task == "multi_label":
        return refs.astype(int).tolist(), (probs >= threshold).astype(int).tolist()
    return refs.astype(float).tolist(), probs[:, 0].tolist()


# --- evaluate -------------------------------------------------------------------------------------------


class Classifier:
    """A loaded bundle ready for inference: tokenizes, batches and turns logits into scores."""

    def __init__(self, model_dir: str, precision: str = "auto", batch_size: int = 32, max_length: int | None = None) -> None:
        from bertcli.modeling import load_bundle, model_max_length

        self.bundle = load_bundle(model_dir)
        self.spec: LabelSpec = self.bundle.spec
        self.tokenizer = self.bundle.tokenizer
        self.max_length = max_length or model_max_length(self.tokenizer, self.bundle.model.config)
        self.batch_size = batch_size
        self.backend = TorchBackend(self.bundle.model, precision)
        self.threshold = self.bundle.meta.get("threshold") or 0.5

    def scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[np.ndarray, list[bool]]:
        """Class probabilities (or regression values) in input order, and which inputs were truncated."""
        encoded = encode(self.tokenizer, texts, pairs, self.max_length)
        logits = run_batches(self.backend, encoded, self.tokenizer.pad_token_id or 0, self.batch_size)
        width = self.spec.num_labels
        stacked = np.stack(logits) if logits else np.zeros((0, width), dtype=np.float32)
        return probabilities(stacked, self.spec.task), encoded.truncated

    def shared_scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[np.ndarray, list[bool]]:
        """`scores` with the texts dealt out among a launch's processes; every process gets all scores, in input order."""
        from bertcli.runtime.device import processes
        from bertcli.runtime.distributed import shared_map

        def score(items: list[tuple[str, str | None]]) -> list[tuple[np.ndarray, bool]]:
            probs, truncated = self.scores([t for t, _ in items], [p for _, p in items] if pairs else None)
            return list(zip(probs, truncated))

        rows = shared_map(processes(), list(zip(texts, pairs or [None] * len(texts))), score)
        if not rows:
            return np.zeros((0, self.spec.num_labels), dtype=np.float32), []
        return np.stack([p for p, _ in rows]), [flag for _, flag in rows]



def evaluate_model(
    model_dir: str, data: str, options: DataOptions, batch_size: int = 32, precision: str = "auto",
    errors_path: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Score a saved model on labelled data: the full metrics report (and optionally the errors file).

    Under a launch the examples are dealt out among the processes and each is scored once.
    """
    from bertcli.metrics import report_for_task

    classifier = Classifier(model_dir, precision, batch_size)
    spec = classifier.spec
    if options.label_sep is None and classifier.bundle.meta.get("label_sep"):
        options = DataOptions(**{**options.__dict__, "label_sep": classifier.bundle.meta["label_sep"]})
    table = load_table(data, options)
    columns = table.columns(options, need_label=True, saved=classifier.bundle.meta.get("columns"))
    texts, pairs = table.texts(columns)
    labels = encode_labels(table, columns.label, spec, options)
    probs, truncated = classifier.shared_scores(texts, pairs)
    refs, preds = _references_predictions(spec.task, np.asarray(labels), _as_logits(probs, spec.task), classifier.threshold)
    report = report_for_task(spec.task, refs, preds, spec.names)
    report.update(
        {"task": spec.task, "model": str(model_dir), "data": data, "columns": columns.describe(), "truncated": int(sum(truncated))}
    )
    if errors_path:
        _write_errors(errors_path, spec, texts, refs, preds, probs)
        report["errors_file"] = errors_path
    return report


def _as_logits(probs: np.ndarray, task: str) -> np.ndarray:
    """Inverse of `probabilities` up to monotone transforms, so thresholds and argmax agree."""
    if task == "multi_label":
        clipped = np.clip(probs, 1e-12, 1 - 1e-12)
        return np.log(clipped / (1 - clipped))
    if task == "single_label":
        return np.log(np.clip(probs, 1e-12, None))
    return probs


def _write_errors(path: str, spec: LabelSpec, texts, refs, preds, probs) -> None:
    from bertcli.io import atomic_write, dumps

    with atomic_write(path) as handle:
        for row, (text, gold, pred, p) in enumerate(zip(texts, refs, preds, probs)):
            if spec.task == "regression":
                record = {"row": row + 1, "text": text, "label": gold, "predicted": pred, "error": pred - gold}
            elif gold == pred:
                continue
            elif spec.task == "single_label":
                record = {
                    "row": row + 1, "text": text, "label": spec.names[gold], "predicted": spec.names[pred],
                    "score": float(p[pred]), "scores": {n: round(float(s), 6) for n, s in zip(spec.names, p)},
                }  # fmt: skip
            else:
                record = {
                    "row": row + 1, "text": text, "labels": [n for n, g in zip(spec.names, gold) if g],
                    "predicted": [n for n, g in zip(spec.names, pred) if g],
                    "scores": {n: round(float(s), 6) for n, s in zip(spec.names, p)},
                }  # fmt: skip
            handle.write(dumps(record) + "\n")


__all__ = ["finetune", "evaluate_model", "Classifier", "BertcliError"]
