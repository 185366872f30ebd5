"""The files that make a bundle a sentence-transformers model as well: `SentenceTransformer(dir)` loads it with the
pooling and normalisation it was trained with.

The layout is the one sentence-transformers 2.x to 5.x write and every version since reads: modules.json listing
Transformer (the directory itself), Pooling (1_Pooling/config.json) and Normalize (2_Normalize/), with
sentence_bert_config.json (the input length) and config_sentence_transformers.json (cosine similarity).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from bertcli.io import write_json

POOLING_MODES = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}


def write_sentence_transformers(directory: Path, dim: int, pooling: str, max_seq_length: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    write_json(directory / "modules.json", modules)
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
    (directory / "2_Normalize").mkdir(exist_ok=True)
    versions = {name: _version(package) for name, package in (("transformers", "transformers"), ("pytorch", "torch"))}
    write_json(
        directory / "config_sentence_transformers.json",
        {"__version__": versions, "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
