"""Fine-tuning a sequence classifier: a table's texts and labels become examples for the shared finetune skeleton."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.config import DEFAULT_METRICS, TASK_DEFAULTS, FinetuneConfig, classification_batch_size, train_windows
from bertcli.data.columns import Columns
from bertcli.data.labels import LabelSpec, encode_labels, infer_labels, split_validation
from bertcli.data.tables import Table, load_table
from bertcli.errors import DataError, UsageError
from bertcli.inference.encoding import Encoded, TextEncoder
from bertcli.tasks.classification.scores import references_and_predictions
from bertcli.tasks.classification.windows import Documents, LongTextPolicy, aggregate, choose_policy, read_documents
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
    defaults = TASK_DEFAULTS["classification"]

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
        lengths = TextEncoder.of(tokenizer, cap).lengths(data.texts, data.pairs)
        policy = choose_policy(lengths, cfg.windows, opts.max_length, cap)
        encoder = TextEncoder.of(tokenizer, policy.max_length)
        (train_texts, train_pairs, train_labels), validation = self._split(cfg, data)
        train_docs = read_documents(encoder, train_texts, train_pairs, policy)
        per_text = _epoch_plan(cfg, policy, train_docs, accelerator.num_processes)
        train = _examples(train_docs, train_labels, per_text)
        val_docs = read_documents(encoder, validation[0], validation[1], policy) if validation[0] else None
        log.info(
            "%d training and %d validation texts (%d and %d model inputs)",
            len(train_labels),
            len(validation[2]),
            len(train),
            0 if val_docs is None else len(val_docs.encoded),
        )
        weights = None
        if opts.class_weights == "auto":
            weights = class_weights(spec.task, train_labels, spec.num_labels).to(accelerator.device)
        loss_of = _loss_fn(spec.task, weights)
        collate = _collate(spec.task, tokenizer.pad_token_id or 0)

        def loss(model: Any, batch: dict[str, Any]) -> Any:
            labels, weight = batch.pop("labels"), batch.pop("weight")
            return loss_of(model(**batch).logits, labels, weight)

        meta = {
            "task": spec.task,
            "labels": spec.names,
            "columns": {"text": data.columns.text, "pair": data.columns.pair, "label": data.columns.label},
            "label_sep": cfg.data.label_sep,
            "max_length": policy.max_length,
            "long_text": policy.meta(),
            "threshold": 0.5 if spec.task == "multi_label" else None,
            "train_data": {"rows": len(data.table.dataset)},
        }
        evaluate = None
        if val_docs is not None:
            evaluate = _evaluator(
                val_docs, validation[2], spec, collate, loss_of, opts.batch_size * 2, accelerator, policy
            )
        metric = opts.metric or DEFAULT_METRICS[spec.task]
        groups = train_docs.source.tolist() if per_text else None
        return Prepared(train, collate, loss, evaluate, metric, meta, groups=groups, per_group=per_text)

    def _split(self, cfg: FinetuneConfig, data: TrainingData) -> tuple[tuple, tuple]:
        """(texts, pairs, labels) for training and validation: --validation's file, else a seeded (stratified)
        share of the texts. Texts are split, then windowed: every window of a text stays on its side."""
        everything = (data.texts, data.pairs, data.labels)
        if cfg.validation:
            table = load_table(cfg.validation, cfg.data)
            columns = table.columns(cfg.data, need_label=True, saved={"label": data.columns.label})
            return everything, (*table.texts(columns), encode_labels(table, columns.label, data.spec, cfg.data))
        if cfg.val_split <= 0:
            return everything, ([], None, [])
        stratify = data.spec.task == "single_label"
        train, val = split_validation(data.labels, cfg.val_split, cfg.validation_seed, stratify=stratify)

        def pick(indices: list[int]) -> tuple:
            pairs = [data.pairs[i] for i in indices] if data.pairs is not None else None
            return [data.texts[i] for i in indices], pairs, [data.labels[i] for i in indices]

        return pick(train), pick(val)


def finetune(cfg: FinetuneConfig, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune a sequence classifier on a table and save a model bundle to cfg.output."""
    return run_finetune(cfg, ClassificationTask(), callbacks)


def _epoch_plan(cfg: FinetuneConfig, policy: Any, documents: Documents, processes: int) -> int | None:
    """Windows each text trains on per epoch (None: all), and the batch size when none was given."""
    per_text = None
    if policy.mode == "window":
        per_text = train_windows(cfg.windows.train_windows, len(documents.encoded), len(documents))
        log.info(
            "training on %s of each text per epoch (%.1f windows per text)",
            f"{per_text} window(s), drawn afresh," if per_text else "every window",
            len(documents.encoded) / max(1, len(documents)),
        )
    opts = cfg.training
    if opts.batch_size is None:
        per_epoch = int(np.minimum(documents.counts, per_text).sum()) if per_text else len(documents.encoded)
        opts.batch_size = classification_batch_size(per_epoch, opts.epochs, opts.grad_accum, processes, opts.max_steps)
        log.info("batch size %d (%d inputs per epoch)", opts.batch_size, per_epoch)
    return per_text


def _examples(documents: Documents, labels: Sequence[Any], per_text: int | None = None) -> list[dict[str, Any]]:
    """One example per model input, with its text's label; each text weighs 1 in an epoch, shared by the windows
    the epoch trains on (all of them, or `per_text` drawn from them)."""
    encoded = documents.encoded
    used = np.minimum(documents.counts, per_text) if per_text else documents.counts
    return [
        {"input_ids": ids, "token_type_ids": types, "label": labels[doc], "weight": 1.0 / used[doc]}
        for ids, types, doc in zip(encoded.input_ids, encoded.token_type_ids, documents.source)
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
        batch["weight"] = torch.tensor([e["weight"] for e in examples], dtype=torch.float)
        return batch

    return collate


def _loss_fn(task: str, weights: Any):
    import torch
    import torch.nn.functional as F

    def loss_from_logits(logits, labels, weight=None):
        """The weighted mean loss of a batch: each example counted by its class weight (single-label) and by `weight`,
        its text's share (a text's k windows 1/k each). Normalised per batch, so every batch counts the same: on the
        debates corpus this beat leaving the shares out of the divisor (every window of a long text then weighs 1/k
        across batches too): seeds 1/2/3 0.768/0.711/0.735 against 0.730/0.664/0.754."""
        logits = logits.float()
        if task == "single_label":
            each = F.cross_entropy(logits, labels, reduction="none")
            scale = weights[labels] if weights is not None else torch.ones_like(each)
        elif task == "multi_label":
            each = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weights, reduction="none").mean(-1)
            scale = torch.ones_like(each)
        else:
            each = F.mse_loss(logits.squeeze(-1), labels, reduction="none")
            scale = torch.ones_like(each)
        if weight is not None:
            scale = scale * weight.to(scale.device)
        return (each * scale).sum() / scale.sum()

    return loss_from_logits


def class_weights(task: str, labels: Sequence[Any], num_labels: int) -> Any:
    """Inverse-frequency weights (single-label) or negative/positive ratios (multi-label)."""
    import torch

    if task == "single_label":
        return inverse_frequency(labels, num_labels)
    positives = np.asarray(labels).sum(axis=0)
    return torch.tensor((len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float)


def _evaluator(
    documents: Documents,
    labels: list[Any],
    spec: LabelSpec,
    collate,
    loss_of,
    batch_size: int,
    accelerator: Any,
    policy: LongTextPolicy,
):
    """Validation metrics of the model being trained, per text (its windows' logits aggregated as at predict time);
    every model input is scored once across the launch's processes."""
    import torch

    from bertcli.reports.metrics import report_for_task
    from bertcli.runtime.distributed import gather_in_order, shard_batches

    rows = _examples(documents, [0] * len(documents))  # the inputs; the targets are per text, below
    batches = shard_batches(documents.encoded.lengths, batch_size, accelerator.process_index, accelerator.num_processes)
    refs = np.asarray(labels)

    def evaluate(model: Any, accelerator: Any) -> dict[str, float]:
        model.eval()
        indices, outputs = [], []
        with torch.inference_mode(), accelerator.autocast():
            for batch in batches:
                inputs = {k: v.to(accelerator.device) for k, v in collate([rows[i] for i in batch.indices]).items()}
                inputs.pop("labels"), inputs.pop("weight")
                logits = model(**inputs).logits.float().cpu().numpy()
                if batch.real:
                    indices.extend(batch.indices)
                    outputs.extend(logits)
        logits = np.stack(gather_in_order(accelerator, indices, outputs))
        if policy.mode == "window":
            logits = aggregate(logits, documents, policy.aggregate).astype(np.float32)
        targets = torch.tensor(refs, dtype=torch.long if spec.task == "single_label" else torch.float)
        loss = loss_of(torch.from_numpy(logits).to(accelerator.device), targets.to(accelerator.device)).item()
        report = report_for_task(spec.task, *references_and_predictions(spec.task, refs, logits, 0.5), spec.names)
        flat = {k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "n" and v is not None}
        return {"loss": loss, **flat, "examples": len(logits)}

    return evaluate
