"""Pretraining: masked LM (optionally with next-sentence prediction), from scratch or continued, on the shared loop.

The model is always a `BertForPreTraining` (encoder with pooler, MLM head, NSP head) inside the objective of
`objective`, which runs the vocabulary projection at masked positions only. The result is saved as a
standard model directory that `AutoModelForMaskedLM`, `pipeline("fill-mask")` and `bertcli finetune` load,
with `bertcli.json` recording the objective, masking, corpus hash and evaluation history.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bertcli.bundle import BundleMeta
from bertcli.config import PRETRAIN_LR, DataOptions, PretrainConfig, to_dict
from bertcli.errors import DataError, UsageError
from bertcli.tasks.pretraining.data import (
    Datasets,
    corpus_fingerprint,
    example_source,
    expand_inputs,
    split_examples,
    with_keys,
)
from bertcli.tasks.pretraining.models import build_model, load_or_train_tokenizer, load_pretraining_model
from bertcli.tasks.pretraining.objective import MaskingCollator, PretrainingObjective, evaluate_objective

log = logging.getLogger("bertcli")
# Accelerate warns at every checkpoint that it stored the tied decoder/embedding weight once; it is tied again on load
logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)
MODES = {"packed": "packed blocks", "lines": "line by line", "nsp": "sentence pairs"}


# --- evaluation -----------------------------------------------------------------------------------------------


class EvalBatches:
    """This process's share of the validation examples as masked batches, with the filler flag of `shard_batches`."""

    def __init__(
        self, examples: list[dict[str, Any]], collate: MaskingCollator, batch_size: int, accelerator: Any
    ) -> None:
        from bertcli.runtime.distributed import shard_batches

        lengths = [len(e["input_ids"]) for e in examples]
        self.batches = shard_batches(lengths, batch_size, accelerator.process_index, accelerator.num_processes)
        self.examples, self.collate, self.device = examples, collate, accelerator.device

    def __iter__(self):
        for batch in self.batches:
            tensors = self.collate([self.examples[i] for i in batch.indices])
            yield {k: v.to(self.device) for k, v in tensors.items()}, batch.real


def evaluate_mlm(
    model_dir: str,
    inputs: list[str],
    data: DataOptions | None = None,
    line_by_line: bool = False,
    max_length: int = 128,
    mlm_probability: float = 0.15,
    whole_word_mask: bool = False,
    batch_size: int = 32,
    seed: int = 42,
    precision: str = "auto",
) -> dict[str, float]:
    """Score a model's masked-LM head on a corpus, through the same loading, masking and evaluation as pretrain."""
    from bertcli.hub import load_tokenizer, resolve_model
    from bertcli.runtime.accelerator import make_accelerator

    path = resolve_model(model_dir)
    tokenizer = load_tokenizer(path)
    files = expand_inputs(inputs)
    mode = "lines" if line_by_line else "packed"
    examples = with_keys(list(example_source(files, data or DataOptions(), tokenizer, max_length, mode, False, seed)()))
    if not examples:
        raise DataError("the corpus has no text", file=inputs[0])
    accelerator = make_accelerator(precision)
    model = accelerator.prepare(PretrainingObjective(load_pretraining_model(path, nsp=False)))
    collate = MaskingCollator(tokenizer, mlm_probability, whole_word_mask, seed, salt=1)
    metrics = evaluate_objective(model, EvalBatches(examples, collate, batch_size, accelerator), accelerator)
    return {**metrics, "examples": len(examples)}


# --- pretrain -------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    output: Path
    meta: BundleMeta


def pretrain(cfg: PretrainConfig, callbacks=None) -> PretrainResult:
    """Pretrain (or continue pretraining) a BERT on a text corpus and save it to cfg.output."""
    from accelerate import DataLoaderConfiguration
    from accelerate.utils import set_seed

    from bertcli.bundle import model_max_length
    from bertcli.hub import resolve_model
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.training.loop import train
    from bertcli.training.run import check_output, finish_run, logs_dir, prepare_run_dir

    cfg.validate()
    out = check_output(cfg.output, cfg.overwrite)
    opts = replace(cfg.training, lr=cfg.training.lr or PRETRAIN_LR["continued" if cfg.model else "scratch"])
    files = expand_inputs(cfg.inputs)
    model_path = resolve_model(cfg.model) if cfg.model else None
    set_seed(opts.seed)
    # each process reads the stream itself: Accelerate's default for streams (read on one process, dispatch)
    # drops the loader's private generator and draws from the global RNG, so a resumed run would be a draw off
    loading = DataLoaderConfiguration(dispatch_batches=False) if cfg.streaming else None
    accelerator = make_accelerator(
        opts.precision,
        opts.report_to,
        logs_dir(cfg.output),
        gradient_accumulation_steps=opts.grad_accum,
        dataloader_config=loading,
    )
    run_dir = prepare_run_dir(cfg.output, opts.resume, accelerator)
    with accelerator.main_process_first():  # the main process trains a vocabulary, the others then load it
        tokenizer = load_or_train_tokenizer(cfg, files, run_dir, model_path)
    model = build_model(cfg, tokenizer, model_path, opts.max_length)
    cap = model_max_length(model_path) if model_path else model.config.max_position_embeddings
    if opts.max_length > cap:
        raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {cap}")

    mode = "nsp" if cfg.nsp else "lines" if cfg.line_by_line else "packed"
    data = _examples(cfg, opts, files, tokenizer, mode)
    evaluate = _validation(cfg, opts, tokenizer, data, accelerator)
    job = _job(cfg, opts, tokenizer, model, data, evaluate)
    initial = _initial_evaluation(job.model, evaluate, accelerator, run_dir)
    result = train(job, opts, accelerator, run_dir, callbacks)
    state, model = result.state, result.model.model
    weights = {name.removeprefix("model."): tensor for name, tensor in result.weights.items()}  # unwrap the objective
    meta = _meta(cfg, opts, mode, model, files, data, state, initial)
    finish_run(accelerator, run_dir, out, lambda staging: _save(model, weights, tokenizer, staging, meta, cfg.nsp))
    return PretrainResult(out, meta)


def _job(cfg: PretrainConfig, opts: Any, tokenizer: Any, model: Any, data: Datasets, evaluate: Any) -> Any:
    """The loop's job: the objective around the model, masked batches, tokens as the unit, masked-token accuracy live."""
    from bertcli.training.loop import TrainJob

    last: dict[str, float] = {}

    def loss(model, batch):
        out = model(**batch)
        last["acc"] = float(out["correct"]) / max(int(out["masked"]), 1)
        return out["loss"]

    if not cfg.nsp:  # MLM alone never reaches the pooler and NSP head; frozen, DDP does not wait for their gradients
        for param in (*model.bert.pooler.parameters(), *model.cls.seq_relationship.parameters()):
            param.requires_grad_(False)
    collate = MaskingCollator(tokenizer, cfg.mlm_probability, cfg.whole_word_mask, opts.seed)
    return TrainJob(
        model=PretrainingObjective(model),
        dataset=data.train,
        lengths=data.lengths,
        collate=collate,
        loss=loss,
        evaluate=evaluate,
        metric="loss",
        unit="tok",
        size=lambda batch: int(batch["attention_mask"].sum()),
        stats=lambda: dict(last),
        config=to_dict(cfg),
    )


def _examples(cfg: PretrainConfig, opts: Any, files: list[Path], tokenizer: Any, mode: str) -> Datasets:
    """Training and held-out examples (in memory or streamed), with a warning when NSP pairs are mostly random."""
    make = example_source(files, cfg.data, tokenizer, opts.max_length, mode, cfg.streaming, opts.seed)
    data = split_examples(make, cfg.val_split, cfg.streaming, opts.seed)
    log.info(
        "%s examples (%s, up to %d tokens): %s for training, %d held out for validation",
        "streamed" if cfg.streaming else "in-memory",
        MODES[mode],
        opts.max_length,
        "a stream" if data.train_examples is None else data.train_examples,
        len(data.validation),
    )
    if cfg.nsp and data.lengths is not None:
        randoms = sum(e["next_sentence_label"] for e in data.train) / len(data.train)
        if randoms > 0.7:  # a one-sentence chunk always gets a random B, as in google-research/bert
            log.warning(
                "%.0f%% of the sentence pairs have a random second segment: documents have too few sentences "
                "for next-sentence prediction (one sentence or paragraph per line, a blank line between documents)",
                100 * randoms,
            )
    return data


def _validation(cfg: PretrainConfig, opts: Any, tokenizer: Any, data: Datasets, accelerator: Any):
    """The evaluation of the held-out examples, masked the same way every time (salt 1), or None without them."""
    if not data.validation:
        return None
    val_collate = MaskingCollator(tokenizer, cfg.mlm_probability, cfg.whole_word_mask, opts.seed, salt=1)
    val_batches = EvalBatches(data.validation, val_collate, opts.batch_size * 2, accelerator)

    def evaluate(model, accelerator):
        return evaluate_objective(model, val_batches, accelerator)

    return evaluate


def _meta(
    cfg: PretrainConfig,
    opts: Any,
    mode: str,
    model: Any,
    files: list[Path],
    data: Datasets,
    state: Any,
    initial: dict | None,
) -> BundleMeta:
    """bertcli.json: what was trained on what, how, and how validation went (step 0 is the untrained start)."""
    from bertcli.training.run import provenance, run_record

    config = model.config
    start = (
        {"model": cfg.model}
        if cfg.model
        else {"preset": cfg.preset}
        if cfg.preset
        else {"model_config": cfg.model_config}
    )
    corpus = {
        "streaming": cfg.streaming,
        "train_examples": data.train_examples,
        "validation_examples": len(data.validation),
    }
    run = {
        "objective": "mlm+nsp" if cfg.nsp else "mlm",
        "masking": {
            "mlm_probability": cfg.mlm_probability,
            "whole_word_mask": cfg.whole_word_mask,
            "replace": {"mask": 0.8, "random": 0.1, "keep": 0.1},
            "dynamic": True,
        },
        "examples": MODES[mode],
        "start": start,
        "architecture": {
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "heads": config.num_attention_heads,
            "vocab_size": config.vocab_size,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "tokenizer": cfg.tokenizer or ("from the model" if cfg.model else "WordPiece trained on the corpus"),
        "corpus": {**corpus_fingerprint(files), **corpus},
        "lr": opts.lr,
        "config": to_dict(cfg),
        **run_record(state, "loss", unit="tokens", initial=initial),
        **provenance(),
    }
    return BundleMeta("pretraining", max_length=opts.max_length, run=run)


def _initial_evaluation(objective: PretrainingObjective, evaluate, accelerator: Any, run_dir: Path) -> dict | None:
    """Validation metrics before the first step: the baseline a curve starts from (kept in the run for --resume)."""
    from bertcli.io import write_json

    if evaluate is None:
        return None
    saved = run_dir / "initial_evaluation.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    log.info("evaluating before training")
    metrics = evaluate(objective.to(accelerator.device), accelerator)
    if accelerator.is_main_process:
        write_json(saved, metrics)
    return metrics


def _save(model: Any, weights: dict[str, Any], tokenizer: Any, directory: Path, meta: BundleMeta, nsp: bool) -> None:
    """A BertForMaskedLM directory (the pooler kept for fine-tuning), or BertForPreTraining when NSP was trained."""
    from bertcli.bundle import write_meta
    from bertcli.io import write_json

    state = {k: v for k, v in weights.items() if nsp or not k.startswith("cls.seq_relationship")}
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), state_dict=state)
    config = json.loads((directory / "config.json").read_text())  # save_pretrained names the class it was called on
    write_json(
        directory / "config.json", {**config, "architectures": ["BertForPreTraining" if nsp else "BertForMaskedLM"]}
    )
    tokenizer.save_pretrained(str(directory))
    write_meta(directory, meta)
