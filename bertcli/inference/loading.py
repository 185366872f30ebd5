"""Open a model directory for inference: its backend and its text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertcli.inference.encoding import TOKENIZER_FILE, TextEncoder


def open_backend(directory: str | Path, head: str, precision: str = "auto", keep_pooler: bool = False) -> Any:
    """The model with `head` (see torch_backend.HEADS), ready to run batches."""
    from bertcli.inference.torch_backend import TorchBackend, load_model

    return TorchBackend(load_model(str(directory), head, keep_pooler), precision)


def text_encoder(directory: str | Path, max_length: int) -> TextEncoder:
    """The directory's tokenizer.json read by `tokenizers` itself; transformers only for a tokenizer without one."""
    if (Path(directory) / TOKENIZER_FILE).is_file():
        return TextEncoder.load(directory, max_length)
    from bertcli.bundle import load_tokenizer

    return TextEncoder.of(load_tokenizer(str(directory)), max_length)
