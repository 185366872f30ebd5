"""The files that make a bundle a sentence-transformers model as well: `SentenceTransformer(dir)` loads it with the
pooling and normalisation it was trained with.

The layout is the one sentence-transformers 2.x to 5.x write and every version since reads: modules.json listing
Transformer (the directory itself), Pooling (1_Pooling/config.json), for a Matryoshka model a linear Dense
(2_Dense: its PCA rotation), and Normalize, with
sentence_bert_config.json (the input length) and config_sentence_transformers.json (cosine similarity).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from bertcli.io import write_json

POOLING_MODES = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}


def write_sentence_transformers(
    directory: Path, dim: int, pooling: str, max_seq_length: int, rotation: np.ndarray | None = None
) -> None:
    """The sentence-transformers files; `rotation` (dim x dim, applied as `vector @ rotation`) becomes a linear Dense
    module between pooling and normalisation."""
    types = ["Transformer", "Pooling", *(["Dense"] if rotation is not None else []), "Normalize"]
    paths = ["", "1_Pooling", *(["2_Dense"] if rotation is not None else []), f"{len(types) - 1}_Normalize"]
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (kind, path) in enumerate(zip(types, paths))
    ]
    write_json(directory / "modules.json", modules)
    if rotation is not None:
        _write_dense(directory / "2_Dense", rotation)
    write_json(directory / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    pooling_config = {"word_embedding_dimension": dim}
    pooling_config.update({key: mode == pooling for mode, key in POOLING_MODES.items()})
    pooling_config.update(
        {
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        }
    )
    (directory / "1_Pooling").mkdir(exist_ok=True)
    write_json(directory / "1_Pooling" / "config.json", pooling_config)
    (directory / paths[-1]).mkdir(exist_ok=True)
    versions = {name: _version(package) for name, package in (("transformers", "transformers"), ("pytorch", "torch"))}
    write_json(
        directory / "config_sentence_transformers.json",
        {"__version__": versions, "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def _write_dense(folder: Path, rotation: np.ndarray) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(exist_ok=True)
    size = int(rotation.shape[0])
    write_json(
        folder / "config.json",
        {"in_features": size, "out_features": size, "bias": False,
         "activation_function": "torch.nn.modules.linear.Identity"},
    )  # fmt: skip
    save_file({"linear.weight": np.ascontiguousarray(rotation.T, dtype=np.float32)}, str(folder / "model.safetensors"))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
