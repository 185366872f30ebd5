"""Fine-tuning a sequence classifier: a table's texts and labels become examples for the shared finetune skeleton."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.config import FinetuneConfig
from bertcli.data.columns import Columns
from bertcli.data.labels import LabelSpec, encode_labels, infer_labels, split_validation
from bertcli.data.tables import Table, load_table
from bertcli.errors import DataError, UsageError
from bertcli.inference.encoding import Encoded, TextEncoder
from bertcli.tasks.classification import DEFAULT_METRIC, DEFAULTS
from bertcli.tasks.classification.scores import references_and_predictions
from bertcli.training.finetune import FinetuneResult, Prepared, inverse_frequency
from bertcli.training.finetune import finetune as run_finetune

log = logging.getLogger("bertcli")
PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}


@dataclass
class TrainingData:
    table: Table
    columns: Columns
    texts: list[str]
    pairs: list[str] | None
    spec: LabelSpec
    labels: list[Any]


class ClassificationTask:
    defaults = DEFAULTS

    def read(self, cfg: FinetuneConfig) -> TrainingData:
        table = load_table(cfg.train, cfg.data)
        columns = table.columns(cfg.data, need_label=True)
        log.info("%s: %d rows, columns %s", cfg.train, len(table.dataset), columns.describe())
        texts, pairs = table.texts(columns)
        spec = infer_labels(table, columns.label, cfg.data, cfg.task)
        labels = encode_labels(table, columns.label, spec, cfg.data)
        log.info(
            "task %s%s", spec.task, f", {len(spec.names)} labels: {', '.join(spec.names[:20])}" if spec.names else ""
        )
        if spec.task != "regression" and len(spec.names) < 2:
            raise DataError(
                f"only one label ({spec.names[0]!r}) in the training data", file=cfg.train, column=columns.label
            )
        if cfg.training.class_weights == "auto" and spec.task == "regression":
            raise UsageError("--class-weights auto needs a classification task, not regression")
        return TrainingData(table, columns, texts, pairs, spec, labels)

    def load_model(self, path: str, data: TrainingData) -> Any:
        import transformers

        from bertcli.bundle import load_with_head

        auto = transformers.AutoModelForSequenceClassification
        return load_with_head(
            auto, path, data.spec.names or ["score"], "classification", problem_type=PROBLEM_TYPES[data.spec.task]
        )

    def prepare(
        self, cfg: FinetuneConfig, data: TrainingData, tokenizer: Any, model: Any, accelerator: Any
    ) -> Prepared:
        from bertcli.bundle import model_max_length

        opts, spec = cfg.training, data.spec
        cap = model_max_length(model.name_or_path)
        if opts.max_length is not None and opts.max_length > cap:
            raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {cap}")
        encoded = TextEncoder.of(tokenizer, opts.max_length or cap).encode(data.texts, data.pairs)
        lengths = encoded.lengths
        max_length = opts.max_length or min(cap, int(np.ceil(max(lengths) / 8) * 8))
        log.info(
            "tokens per example: p50 %d, p95 %d, max %d; max length %d (%d truncated)",
            np.percentile(lengths, 50),
            np.percentile(lengths, 95),
            max(lengths),
            max_length,
            sum(encoded.truncated),
        )
        train, val = self._split(cfg, data, encoded, TextEncoder.of(tokenizer, max_length))
        log.info("%d training and %d validation examples", len(train), len(val))
        weights = None
        if opts.class_weights == "auto":
            weights = class_weights(spec.task, [e["label"] for e in train], spec.num_labels).to(accelerator.device)
        loss_of = _loss_fn(spec.task, weights)
        collate = _collate(spec.task, tokenizer.pad_token_id or 0)

        def loss(model: Any, batch: dict[str, Any]) -> Any:
            labels = batch.pop("labels")
            return loss_of(model(**batch).logits, labels)

        meta = {
            "task": spec.task,
            "labels": spec.names,
            "columns": {"text": data.columns.text, "pair": data.columns.pair, "label": data.columns.label},
            "label_sep": cfg.data.label_sep,
            "max_length": max_length,
            "threshold": 0.5 if spec.task == "multi_label" else None,
            "train_data": {"rows": len(data.table.dataset)},
        }
        evaluate = _evaluator(val, spec, collate, loss_of, opts.batch_size * 2, accelerator) if val else None
        return Prepared(train, collate, loss, evaluate, opts.metric or DEFAULT_METRIC[spec.task], meta)

    def _split(self, cfg: FinetuneConfig, data: TrainingData, encoded: Encoded, encoder: TextEncoder):
        """Training and validation examples: --validation's file, else a seeded (stratified) share of the data."""
        if cfg.validation:
            table = load_table(cfg.validation, cfg.data)
            columns = table.columns(cfg.data, need_label=True, saved={"label": data.columns.label})
            labels = encode_labels(table, columns.label, data.spec, cfg.data)
            val_encoded = encoder.encode(*table.texts(columns))
            return _examples(encoded, data.labels, range(len(data.labels))), _examples(
                val_encoded, labels, range(len(labels))
            )
        if cfg.val_split > 0:
            stratify = data.spec.task == "single_label"
            train, val = split_validation(data.labels, cfg.val_split, cfg.training.seed, stratify=stratify)
            return _examples(encoded, data.labels, train), _examples(encoded, data.labels, val)
        return _examples(encoded, data.labels, range(len(data.labels))), []


def finetune(cfg: FinetuneConfig, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune a sequence classifier on a table and save a model bundle to cfg.output."""
    return run_finetune(cfg, ClassificationTask(), callbacks)


def _examples(encoded: Encoded, labels: Sequence[Any], indices: Sequence[int]) -> list[dict[str, Any]]:
    return [
        {"input_ids": encoded.input_ids[i], "token_type_ids": encoded.token_type_ids[i], "label": labels[i]}
        for i in indices
    ]


def _collate(task: str, pad_id: int):
    import torch

    from bertcli.inference.encoding import pad

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        encoded = Encoded(
            [e["input_ids"] for e in examples], [e["token_type_ids"] for e in examples], [False] * len(examples)
        )
        batch = {k: torch.from_numpy(v) for k, v in pad(encoded, range(len(examples)), pad_id).items()}
        batch["labels"] = torch.tensor(
            [e["label"] for e in examples], dtype=torch.long if task == "single_label" else torch.float
        )
        return batch

    return collate


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


def class_weights(task: str, labels: Sequence[Any], num_labels: int) -> Any:
    """Inverse-frequency weights (single-label) or negative/positive ratios (multi-label)."""
    import torch

    if task == "single_label":
        return inverse_frequency(labels, num_labels)
    positives = np.asarray(labels).sum(axis=0)
    return torch.tensor((len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float)


def _evaluator(examples: list[dict[str, Any]], spec: LabelSpec, collate, loss_of, batch_size: int, accelerator: Any):
    """Validation metrics of the model being trained: every example scored once across the launch's processes."""
    import torch

    from bertcli.reports.metrics import report_for_task
    from bertcli.runtime.distributed import gather_in_order, shard_batches

    batches = shard_batches(
        [len(e["input_ids"]) for e in examples], batch_size, accelerator.process_index, accelerator.num_processes
    )
    refs = np.asarray([e["label"] for e in examples])

    def evaluate(model: Any, accelerator: Any) -> dict[str, float]:
        model.eval()
        indices, rows = [], []
        with torch.inference_mode(), accelerator.autocast():
            for batch in batches:
                inputs = {k: v.to(accelerator.device) for k, v in collate([examples[i] for i in batch.indices]).items()}
                inputs.pop("labels")
                logits = model(**inputs).logits.float().cpu().numpy()
                if batch.real:
                    indices.extend(batch.indices)
                    rows.extend(logits)
        logits = np.stack(gather_in_order(accelerator, indices, rows))
        targets = torch.tensor(refs, dtype=torch.long if spec.task == "single_label" else torch.float).to(
            accelerator.device
        )
        loss = loss_of(torch.from_numpy(logits).to(accelerator.device), targets).item()
        report = report_for_task(spec.task, *references_and_predictions(spec.task, refs, logits, 0.5), spec.names)
        flat = {k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "n" and v is not None}
        return {"loss": loss, **flat, "examples": len(logits)}

    return evaluate
