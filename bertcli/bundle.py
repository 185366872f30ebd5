"""Model bundles: a model directory's metadata (`bertcli.json`) as one typed record, read once when a bundle opens
and written only here.

A bundle is a standard Hugging Face model directory (config with id2label, tokenizer, model.safetensors) plus
`bertcli.json`, so plain `transformers` loads it with its label names. Opening a bundle needs only JSON: the ONNX
path and the CLI's routing import no torch or transformers. A plain transformers model gets metadata derived from
its config.json, so any model directory opens the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertcli.errors import ModelError

BUNDLE_FILE = "bertcli.json"
TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_UNBOUNDED = 100_000  # tokenizer configs without a limit say 1e30
# the typed facts after task and labels, in the order bertcli.json has always had them
_FACTS = ("columns", "label_sep", "scheme", "data_scheme", "max_length", "stride", "label_all_tokens", "long_text",
          "threshold", "matryoshka_dims")  # fmt: skip
_RECORDS = ("lexical", "degenerate", "seeds", "search", "onnx", "index")  # after the run record


@dataclass(frozen=True)
class BundleMeta:
    """What a model directory is and how it was made; `run` is the training record (data fingerprints, resolved
    configuration, history, timings, versions), kept as the loop wrote it."""

    task: str | None
    labels: list[str] = field(default_factory=list)
    max_length: int | None = None  # the length the model was trained with (classifiers, NER)
    columns: dict[str, str | None] | None = None  # the training data's columns, reused by evaluate and predict
    label_sep: str | None = None  # multi-label cells split on it
    threshold: float | None = None  # multi-label decision threshold
    long_text: dict[str, Any] | None = None  # the long-text policy (inference/long_text.py): classifiers, rerankers
    scheme: str | None = None  # NER: the tagging scheme the model predicts in
    data_scheme: str | None = None  # NER: the scheme its training data was in
    stride: int | None = None  # NER: window overlap
    label_all_tokens: bool | None = None  # NER
    matryoshka_dims: list[int] | None = None  # embedding models: the leading sizes trained to work alone
    run: dict[str, Any] = field(default_factory=dict)
    lexical: dict[str, Any] | None = None  # classifiers: the lexical baseline, its validation scores, its weight
    # why a model is no better on validation than the majority class (classifiers) or its first stage (rerankers)
    degenerate: dict[str, Any] | None = None
    seeds: dict[str, Any] | None = None  # --seeds: every run and the mean +- std
    search: dict[str, Any] | None = None  # bertcli tune: the search's record
    onnx: dict[str, Any] | None = None  # an export's own directory: its model file, opset, parity, int8 check
    index: dict[str, Any] | None = None  # an index directory (bertcli index): its vectors, model and ANN settings

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BundleMeta:
        typed = {f.name for f in dataclasses.fields(cls)} - {"run"}
        known = {key: value for key, value in data.items() if key in typed}
        return cls(**{"task": None, **known}, run={k: v for k, v in data.items() if k not in typed})

    def to_json(self) -> dict[str, Any]:
        """bertcli.json as earlier versions wrote it: the model's facts, the run record, then seeds/search/export."""
        head = {"task": self.task, "labels": list(self.labels)}
        for name in _FACTS:
            if getattr(self, name) is not None:
                head[name] = getattr(self, name)
        tail = {name: getattr(self, name) for name in _RECORDS if getattr(self, name) is not None}
        return {**head, **self.run, **tail}

    @property
    def metric(self) -> str | None:
        return self.run.get("metric")

    @property
    def best(self) -> dict[str, Any]:
        return self.run.get("best") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.run.get("history") or []

    def moved_to(self, output: str | Path) -> BundleMeta:
        """The same record for a bundle that ends at `output` (the configuration names where the model lives)."""
        config = {**(self.run.get("config") or {}), "output": str(output)}
        return dataclasses.replace(self, run={**self.run, "config": config})


@dataclass(frozen=True)
class Bundle:
    """An opened model directory: its metadata, its config.json and the longest input it takes."""

    directory: Path
    meta: BundleMeta
    config: dict[str, Any]
    limit: int

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        directory = Path(path)
        config = _json(directory / "config.json")
        return cls(directory, read_meta(directory), config, _max_length(directory, config))

    @property
    def has_torch_weights(self) -> bool:
        return any((self.directory / name).is_file() for name in TORCH_WEIGHTS)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_config(path: str | Path) -> dict[str, Any]:
    """A model directory's config.json as plain data (no transformers)."""
    return _json(Path(path) / "config.json")


def model_max_length(path: str | Path) -> int:
    """The longest input a model directory accepts (see `_max_length`)."""
    return _max_length(Path(path), read_config(path))


def _max_length(directory: Path, config: dict[str, Any]) -> int:
    """Its position embeddings, tightened by the tokenizer's limit. RoBERTa-style models number positions from
    padding_idx + 1, so that many positions are never a token's."""
    positions = config.get("max_position_embeddings", 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= config.get("pad_token_id", 1) + 1
    limits = [positions]
    tokenizer_limit = _json(directory / "tokenizer_config.json").get("model_max_length")
    if isinstance(tokenizer_limit, (int, float)) and 0 < tokenizer_limit < _UNBOUNDED:
        limits.append(int(tokenizer_limit))
    return min(limits)


def read_meta(path: str | Path) -> BundleMeta:
    """bertcli.json of a model directory; a plain transformers model gets one derived from its config.json."""
    directory = Path(path)
    if (directory / BUNDLE_FILE).is_file():
        return BundleMeta.from_json(_json(directory / BUNDLE_FILE))
    config = _json(directory / "config.json")
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    architectures = config.get("architectures") or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return BundleMeta("ner", labels)
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return BundleMeta("encoder")
    task = {"multi_label_classification": "multi_label", "regression": "regression"}.get(
        config.get("problem_type") or "", "single_label"
    )
    return BundleMeta(task, [] if task == "regression" else labels)


def write_meta(directory: str | Path, meta: BundleMeta) -> None:
    """The one place bertcli.json is written (atomically)."""
    from bertcli.io import write_json

    write_json(Path(directory) / BUNDLE_FILE, meta.to_json())


def has_meta(directory: str | Path) -> bool:
    """Whether a directory holds a bertcli.json (a bundle bertcli wrote, or an export)."""
    return (Path(directory) / BUNDLE_FILE).is_file()


def bundle_dir(path: str) -> Path:
    """A model directory given to evaluate/predict/export, checked before anything is loaded."""
    directory = Path(path)
    if not directory.is_dir():
        raise ModelError("model directory not found", file=path, hint="pass the -o directory of bertcli finetune")
    if not (directory / "config.json").is_file() and read_meta(directory).task != "index":
        hint = (
            "this looks like an interrupted run; finish it with --resume auto"
            if directory.name.endswith(".incomplete")
            else None
        )
        raise ModelError("not a model directory (no config.json)", file=path, hint=hint)
    return directory


def weights_fingerprint(directory: Path) -> dict[str, Any] | None:
    """Size and SHA-256 of the first and last MiB of the weights: enough to tell another model's export. The torch
    weights when the directory has them, else its ONNX graphs (an export directory has no torch weights)."""
    torch_weights = next((directory / name for name in TORCH_WEIGHTS if (directory / name).is_file()), None)
    files = [torch_weights] if torch_weights is not None else sorted(directory.glob("*.onnx"))
    if not files:
        return None
    digest, total = hashlib.sha256(), 0
    for weights in files:
        size = weights.stat().st_size
        total += size
        digest.update(str(size).encode())
        with open(weights, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return {"file": ", ".join(path.name for path in files), "bytes": total, "sample_sha256": digest.hexdigest()}


def save_bundle(
    model: Any, tokenizer: Any, directory: Path, meta: BundleMeta, weights: dict[str, Any] | None = None
) -> None:
    """Write the model directory (safetensors weights, tokenizer, bertcli.json) into `directory`.

    `weights` (a state dict) replaces the model's own: a sharded run's model holds only this process's shard.
    """
    from bertcli.hub import quiet_transformers

    quiet_transformers()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), state_dict=weights, safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    write_meta(directory, meta)


def library_versions() -> dict[str, str]:
    """The versions a bundle records, read from package metadata (no imports)."""
    from importlib import metadata

    from bertcli.version import __version__

    versions = {"bertcli": __version__, "python": sys.version.split()[0]}
    for package in ("torch", "transformers", "datasets", "accelerate"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions
