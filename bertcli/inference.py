"""Batched, length-sorted, no-grad forward passes for embed, predict and evaluate.

Follows sentence-transformers' encode(): eval mode, inference_mode, batches of similar length
with padding only to the longest in the batch, results put back in input order. The model runs
behind `Backend`, a one-method interface, so another runtime (e.g. ONNX Runtime) can slot in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Features = dict[str, np.ndarray]


class Backend(Protocol):
    def forward(self, features: Features, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run the model on one padded batch; return the requested outputs as float32 arrays."""


class TorchBackend:
    """A transformers model on this process's device, autocast to its own precision (no process-wide state)."""

    def __init__(self, model: Any, precision: str = "auto") -> None:
        from bertcli.runtime.device import inference_device
        from bertcli.runtime.precision import autocast_dtype, resolve_precision

        self.device = inference_device()
        self.precision = resolve_precision(precision)
        self.dtype = autocast_dtype(self.precision)
        self.model = model.to(self.device).eval()

    def forward(self, features: Features, outputs: Sequence[str] = ("logits",)) -> dict[str, np.ndarray]:
        import torch

        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)
        with torch.inference_mode(), autocast:
            tensors = {k: torch.from_numpy(v).to(self.device) for k, v in features.items()}
            result = self.model(**tensors, output_hidden_states="hidden_states" in outputs)
            arrays = {}
            for name in outputs:
                value = result[name]
                if isinstance(value, tuple):
                    value = torch.stack(value, dim=1)
                arrays[name] = value.float().cpu().numpy()
        return arrays


@dataclass
class Encoded:
    """Tokenized inputs, unpadded; `truncated` marks inputs cut at max_length."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    truncated: list[bool]
    offsets: list[list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int, offsets: bool = False
) -> Encoded:
    batch = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_offsets_mapping=offsets,
    )
    return Encoded(
        input_ids=batch["input_ids"],
        token_type_ids=batch.get("token_type_ids"),
        truncated=[bool(e.overflowing) for e in batch.encodings],
        offsets=batch.get("offset_mapping"),
    )


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length, longest first (a too-large batch fails at once, not at the end)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad(encoded: Encoded, indices: Sequence[int], pad_id: int) -> Features:
    """Pad the selected examples to the longest among them (dynamic padding)."""
    width = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(indices), width), dtype=np.int64)
    token_type_ids = np.zeros((len(indices), width), dtype=np.int64) if encoded.token_type_ids is not None else None
    for row, i in enumerate(indices):
        ids = encoded.input_ids[i]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        if token_type_ids is not None:
            token_type_ids[row, : len(ids)] = encoded.token_type_ids[i]
    features = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        features["token_type_ids"] = token_type_ids
    return features


def run_batches(
    backend: Backend,
    encoded: Encoded,
    pad_id: int,
    batch_size: int,
    outputs: Sequence[str] = ("logits",),
    reduce: Callable[[dict[str, np.ndarray], Features], Sequence[Any]] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[Any]:
    """Forward every example in length-sorted batches; return per-example results in input order.

    `reduce` turns one batch's outputs into one result per example (default: the rows of the
    first output, e.g. logits).
    """
    results: list[Any] = [None] * len(encoded)
    for indices in length_sorted_batches([len(ids) for ids in encoded.input_ids], batch_size):
        features = pad(encoded, indices, pad_id)
        out = backend.forward(features, outputs)
        rows = reduce(out, features) if reduce is not None else out[outputs[0]]
        for i, row in zip(indices, rows):
            results[i] = row
        if on_batch is not None:
            on_batch(len(indices))
    return results
