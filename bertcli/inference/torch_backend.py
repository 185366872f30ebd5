"""The torch backend: a transformers model on this process's device, autocast to its own precision.

No process-wide state: each backend resolves its precision and autocasts per call, so models of different
precisions share a process (the server, a notebook, a test run).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from bertcli.config import BATCH_TOKENS
from bertcli.errors import ModelError
from bertcli.inference.encoding import Features
from bertcli.inference.unpadded import PACKED, UNPAD, unpad_encoder

HEADS = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "encoder": "AutoModel",
}


class TorchBackend:
    def __init__(self, model: Any, precision: str = "auto") -> None:
        from bertcli.runtime.device import inference_device
        from bertcli.runtime.precision import autocast_dtype, resolve_precision

        self.device = inference_device()
        self.precision = resolve_precision(precision)
        self.dtype = autocast_dtype(self.precision)
        self.model = model.to(self.device).eval()
        # before the cast: it adds layers; reduced precision runs oneDNN kernels, built per shape (packed_rows)
        self.unpadded = self.device.type == "cpu" and unpad_encoder(self.model, round_rows=self.dtype is not None)
        if self.dtype is not None:
            _prepare_linear_layers(self.model, self.dtype)
        self.inputs = frozenset(inspect.signature(self.model.forward).parameters)
        self.name = f"torch {self.precision if self.precision != 'no' else 'fp32'} on {self.device}"
        self.threads_per_call = self.device.type == "cpu"  # the calling thread's count (runtime.device.use_threads)
        on = "accelerator" if self.device.type != "cpu" else "cpu-unpadded" if self.unpadded else "cpu"
        self.batch_tokens = BATCH_TOKENS[on]

    def provides(self, output: str) -> bool:
        """Whether the model computes `output` (an encoder without a trained pooler has no pooler_output)."""
        return output != "pooler_output" or getattr(self.model, "pooler", None) is not None

    def forward(self, features: Features, outputs: Sequence[str] = ("logits",)) -> dict[str, np.ndarray]:
        import torch

        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)
        with torch.inference_mode(), autocast:
            tensors = {k: torch.from_numpy(v).to(self.device) for k, v in features.items()}
            if "hidden_states" in outputs:  # every layer's output, padded: the unpadded layers' would be packed
                result = self.model(**tensors, output_hidden_states=True)
            else:
                result = self.model(**tensors, **({UNPAD: True} if self.unpadded else {}))
            arrays = {}
            for name in outputs:
                value = result[name]
                if isinstance(value, tuple):
                    value = torch.stack(value, dim=1)
                arrays[name] = value.float().cpu().numpy()
        return arrays


def _prepare_linear_layers(model: Any, dtype: Any) -> None:
    """Store the Linear layers' weights in the autocast dtype once. Autocast would cast them again on every call:
    about 4 of the 10 ms a small all-MiniLM-L6-v2 forward takes on 2 cores, the fixed cost a server pays per batch.
    On a CPU in bf16, each weight is also packed once into oneDNN's blocked layout, which a bf16 matmul otherwise
    rebuilds on every call: half the time of a 16 x 384 x 1536 linear on one thread, and 20-30% of a large one. The
    results are bit-identical (the same rounding and the same kernels, done once), and the model is this backend's
    own."""
    import torch

    from bertcli.runtime.precision import native_bf16_cpu

    on_cpu = next(model.parameters()).device.type == "cpu"
    pack = dtype == torch.bfloat16 and on_cpu and torch.backends.mkldnn.is_available() and native_bf16_cpu()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
            if pack:
                module.forward = _packed_linear(module)


def _packed_linear(module: Any) -> Any:
    """`module`'s forward on its weight packed once (in its dtype); the packed weight and the bias are kept on the
    module (PACKED), where the unpadded layers read them too."""
    import torch

    from bertcli.inference.packed_layers import linear

    weight = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), None)
    bias = None if module.bias is None else module.bias.detach()
    setattr(module, PACKED, (weight, bias))
    return lambda hidden: linear(hidden, weight, bias, packed=True)


def load_model(path: str, head: str, keep_pooler: bool = False, **options: Any) -> Any:
    """A model directory with one of the HEADS (`options` go to from_pretrained). An encoder's pooler is dropped
    unless asked for, and never used when the checkpoint has no trained one (it would be random)."""
    import transformers

    from bertcli.hub import quiet_transformers

    quiet_transformers()
    auto = getattr(transformers, HEADS[head])
    try:
        model, info = auto.from_pretrained(path, output_loading_info=True, **options)
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", file=path) from None
    if head == "encoder" and getattr(model, "pooler", None) is not None:
        if not keep_pooler or any(k.startswith("pooler.") for k in info["missing_keys"]):
            model.pooler = None
    return model
