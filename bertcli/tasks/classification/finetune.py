"""Fine-tuning a sequence classifier: a table's texts and labels become examples for the shared finetune skeleton."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.config import (
    EPOCHS,
    MIN_STEPS,
    TASK_DEFAULTS,
    FinetuneConfig,
    classification_batch_size,
    classification_epochs,
    train_windows,
)
from bertcli.data.columns import Columns
from bertcli.data.labels import LabelSpec, encode_labels, infer_labels
from bertcli.data.tables import Table, load_table
from bertcli.errors import DataError, UsageError
from bertcli.inference.encoding import TextEncoder
from bertcli.inference.long_text import Documents, LongTextPolicy, aggregate, read_documents
from bertcli.tasks.classification.blend import Splits, finisher
from bertcli.tasks.classification.scores import probabilities, references_and_predictions
from bertcli.tasks.classification.windows import choose_policy
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
PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}


@dataclass
class TrainingData:
    table: Table
    columns: Columns
    spec: LabelSpec
    texts: list[str]  # the whole training file's, whose token lengths choose the long-text policy
    pairs: list[str] | None
    train: tuple[list[str], list[str] | None, list[Any]]  # texts, pairs, labels
    validation: tuple[list[str], list[str] | None, list[Any]]


class ClassifierTraining:
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
        train, val = held_out(cfg, len(labels), labels if spec.task == "single_label" else None)

        def pick(indices: list[int]) -> tuple:
            chosen_pairs = [pairs[i] for i in indices] if pairs is not None else None
            return [texts[i] for i in indices], chosen_pairs, [labels[i] for i in indices]

        validation = pick(val)
        if cfg.validation:  # texts are split, then windowed: every window of a text stays on its side
            val_table = load_table(cfg.validation, cfg.data)
            val_columns = val_table.columns(cfg.data, need_label=True, saved={"label": columns.label})
            validation = (*val_table.texts(val_columns), encode_labels(val_table, val_columns.label, spec, cfg.data))
        return TrainingData(table, columns, spec, texts, pairs, pick(train), validation)

    def kind(self, data: TrainingData) -> str:
        return data.spec.task

    def load_model(self, path: str, data: TrainingData) -> Any:
        import transformers

        from bertcli.training.heads import load_with_head

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
        (train_texts, train_pairs, train_labels), (val_texts, val_pairs, val_labels) = data.train, data.validation
        lengths = TextEncoder.of(tokenizer, cap).lengths(data.texts, data.pairs)
        policy = choose_policy(lengths, cfg.windows, opts.max_length, cap)
        encoder = TextEncoder.of(tokenizer, policy.max_length)
        train_docs = read_documents(encoder, train_texts, train_pairs, policy)
        per_text, batch_size, epochs = _epoch_plan(cfg, policy, train_docs, accelerator.num_processes)
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(opts, batch_size=batch_size, epochs=epochs))
        train = _examples(train_docs, train_labels, per_text)
        val_docs = read_documents(encoder, val_texts, val_pairs, policy) if val_texts else None
        log.info(
            "%d training and %d validation texts (%d and %d model inputs)",
            len(train_labels),
            len(val_labels),
            len(train),
            0 if val_docs is None else len(val_docs.encoded),
        )
        weights = None
        if opts.class_weights == "auto":
            weights = class_weights(spec.task, train_labels, spec.num_labels).to(accelerator.device)
        loss_of = _loss_fn(spec.task, weights)
        collate = collate_examples(tokenizer.pad_token_id or 0, "long" if spec.task == "single_label" else "float")

        def loss(model: Any, batch: dict[str, Any]) -> Any:
            labels, weight = batch.pop("labels"), batch.pop("weight")
            return loss_of(model(**batch).logits, labels, weight)

        facts = {
            "task": spec.task,
            "labels": spec.names,
            "columns": {"text": data.columns.text, "pair": data.columns.pair, "label": data.columns.label},
            "label_sep": cfg.data.label_sep,
            "max_length": policy.max_length,
            "long_text": policy.meta(),
            "threshold": 0.5 if spec.task == "multi_label" else None,
        }
        evaluate, probs_of = None, _no_validation
        if val_docs is not None:
            logits_of = _text_logits(val_docs, collate, batch_size * 2, policy)
            evaluate = _evaluator(logits_of, val_labels, spec, loss_of)
            probs_of = lambda model, accelerator: probabilities(logits_of(model, accelerator), spec.task)  # noqa: E731
        groups = train_docs.source.tolist() if per_text else None
        finish = finisher(spec, Splits(data.train, data.validation), cfg.lexical, probs_of)
        return Prepared(
            train, collate, loss, evaluate, facts, {"rows": len(data.table.dataset)}, cfg, groups=groups,
            per_group=per_text, finish=finish,
        )  # fmt: skip


def _no_validation(model: Any, accelerator: Any) -> None:
    return None


def train_classifier(cfg: FinetuneConfig, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune a sequence classifier on a table and save a model bundle to cfg.output."""
    return train_task(cfg, ClassifierTraining(), callbacks)


def _epoch_plan(
    cfg: FinetuneConfig, policy: Any, documents: Documents, processes: int
) -> tuple[int | None, int, float]:
    """Windows each text trains on per epoch (None: all), the batch size and the epochs: as given, else from the
    data (small data: smaller batches, then more epochs, so the run makes MIN_STEPS optimizer steps)."""
    per_text = None
    if policy.mode == "window":
        per_text = train_windows(cfg.windows.train_windows, len(documents.encoded), len(documents))
        log.info(
            "training on %s of each text per epoch (%.1f windows per text)",
            f"{per_text} window(s), drawn afresh," if per_text else "every window",
            len(documents.encoded) / max(1, len(documents)),
        )
    opts = cfg.training
    per_epoch = int(np.minimum(documents.counts, per_text).sum()) if per_text else len(documents.encoded)
    batch_size = opts.batch_size
    if batch_size is None:
        batch_size = classification_batch_size(
            per_epoch, opts.epochs or EPOCHS, opts.grad_accum, processes, opts.max_steps
        )
        log.info("batch size %d (%d inputs per epoch)", batch_size, per_epoch)
    epochs = classification_epochs(per_epoch, batch_size, opts.grad_accum, processes, opts.epochs, opts.max_steps)
    if opts.epochs is None and epochs > EPOCHS:
        log.info("%.1f epochs, so that the run makes %d optimizer steps on this small data set", epochs, MIN_STEPS)
    return per_text, batch_size, epochs


def _examples(documents: Documents, labels: Sequence[Any], per_text: int | None = None) -> list[dict[str, Any]]:
    """One example per model input, with its text's label; each text weighs 1 in an epoch, shared by the windows
    the epoch trains on (all of them, or `per_text` drawn from them)."""
    encoded = documents.encoded
    used = np.minimum(documents.counts, per_text) if per_text else documents.counts
    return [
        {"input_ids": ids, "token_type_ids": types, "label": labels[doc], "weight": 1.0 / used[doc]}
        for ids, types, doc in zip(encoded.input_ids, encoded.token_type_ids, documents.source)
    ]


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


def _text_logits(documents: Documents, collate, batch_size: int, policy: LongTextPolicy):
    """Per validation text, the model being trained's logits (its windows' aggregated as at predict time), every
    model input scored once across the launch's processes."""
    rows = _examples(documents, [0] * len(documents))  # the inputs; the targets are per text

    def logits_of(model: Any, accelerator: Any) -> np.ndarray:
        logits = np.stack(validation_logits(model, accelerator, rows, collate, batch_size))
        if policy.mode == "window":
            logits = aggregate(logits, documents, policy.aggregate).astype(np.float32)
        return logits

    return logits_of


def _evaluator(logits_of, labels: list[Any], spec: LabelSpec, loss_of):
    """Validation metrics of the model being trained, per text."""
    import torch

    from bertcli.reports.metrics import report_for_task

    refs = np.asarray(labels)

    def evaluate(model: Any, accelerator: Any) -> dict[str, float]:
        logits = logits_of(model, accelerator)
        targets = torch.tensor(refs, dtype=torch.long if spec.task == "single_label" else torch.float)
        loss = loss_of(torch.from_numpy(logits).to(accelerator.device), targets.to(accelerator.device)).item()
        report = report_for_task(spec.task, *references_and_predictions(spec.task, refs, logits, 0.5), spec.names)
        flat = {k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "n" and v is not None}
        return {"loss": loss, **flat, "examples": len(logits)}

    return evaluate
