"""Export a model to ONNX with torch's own (dynamo) exporter, and check the graph against torch on a probe batch.

Dynamic batch and sequence axes; outputs named after the torch model's, so the ONNX backend answers the same
requests: `logits` for classifiers and taggers, `hidden_states.0`..`hidden_states.N` (and `pooler_output` when the
encoder has a trained pooler) for encoders, which covers every pooling and layer option of `bertcli embed`.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.errors import ModelError
from bertcli.export.attention import attention_on_hidden_states

log = logging.getLogger("bertcli")
# the encoder-only families whose export was checked against torch here (tests/test_export.py)
SUPPORTED = ("bert", "distilbert", "roberta", "xlm-roberta", "electra")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PARITY = 1e-4  # max |torch - onnx| on real (unpadded) positions, fp32
PROBE = [
    "The quick brown fox jumps over the lazy dog.",
    "A triumph of style and heart: the best film of the year, and one of the best of the decade.",
    "Two hours I will never get back.",
    "ok",
    "Zürich, São Paulo and Kraków — naïve café résumé, 東京 and emoji 👍🏽 in one line!",
    " ".join(["a long sentence that keeps going"] * 20),
]


def output_names(model: Any, head: str) -> list[str]:
    if head != "encoder":
        return ["logits"]
    names = [f"hidden_states.{i}" for i in range(model.config.num_hidden_layers + 1)]
    return names + (["pooler_output"] if getattr(model, "pooler", None) is not None else [])


class _Outputs:
    """Builds the module the exporter traces: the model's forward with plain tensors in and out."""

    @staticmethod
    def wrap(model: Any, head: str, inputs: list[str]) -> Any:
        import torch

        pooled = head == "encoder" and getattr(model, "pooler", None) is not None

        def outputs(result: Any) -> Any:
            if head != "encoder":
                return result.logits
            return (*result.hidden_states, *((result.pooler_output,) if pooled else ()))

        class WithTypes(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                kwargs = {"output_hidden_states": True} if head == "encoder" else {}
                return outputs(
                    self.model(
                        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs
                    )
                )

        class WithoutTypes(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                kwargs = {"output_hidden_states": True} if head == "encoder" else {}
                return outputs(self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs))

        return (WithTypes if "token_type_ids" in inputs else WithoutTypes)().eval()


def load_for_export(directory: str, head: str) -> Any:
    """The fp32 model with SDPA attention: exported at opset 23 it becomes one Attention node per layer
    (export/attention.py), which ONNX Runtime runs faster than eager attention's MatMul/Softmax graph."""
    from bertcli.bundle import read_config
    from bertcli.inference.torch_backend import load_model

    model_type = read_config(directory).get("model_type")
    if model_type not in SUPPORTED:
        raise ModelError(
            f"exporting a {model_type!r} model to ONNX is not supported", file=directory,
            hint=f"bertcli exports {', '.join(SUPPORTED)} models; serve this one with the torch backend",
        )  # fmt: skip
    return load_model(directory, head, keep_pooler=True, attn_implementation="sdpa").eval()


def export_graph(model: Any, head: str, path: Path, opset: int) -> dict[str, Any]:
    """Write `path` (one file, weights inside); return what the export's bertcli.json records about it."""
    import torch

    accepted = inspect.signature(model.forward).parameters
    inputs = [name for name in INPUTS if name in accepted]
    names = output_names(model, head)
    example = torch.full((2, 16), 1000, dtype=torch.long)  # batch and length above 1: neither becomes a constant
    args = tuple(
        torch.ones_like(example)
        if n == "attention_mask"
        else example
        if n == "input_ids"
        else torch.zeros_like(example)
        for n in inputs
    )
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    quiet = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed", once per op
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _Outputs.wrap(model, head, inputs), args, dynamo=True, external_data=False, opset_version=opset,
                input_names=inputs, output_names=names, dynamic_shapes={n: {0: batch, 1: sequence} for n in inputs},
            )  # fmt: skip
            program.save(str(path), external_data=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the ONNX exporter failed on this {model.config.model_type} model: {reason}") from None
    import onnx

    graph = onnx.load(str(path))
    if attention_on_hidden_states(graph, model.config.num_attention_heads):
        onnx.save(graph, str(path))
    opset_used = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "inputs": inputs,
        "outputs": names,
        "opset": opset_used,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
    }


def probe_features(encoder: Any, inputs: list[str]) -> dict[str, np.ndarray]:
    """A padded batch of varied real text (and pairs), for the parity check."""
    from bertcli.inference.encoding import pad

    encoded = encoder.encode(PROBE)
    pairs = encoder.encode(PROBE[:3], PROBE[3:6])
    both = type(encoded)(encoded.input_ids + pairs.input_ids, encoded.token_type_ids + pairs.token_type_ids, [])
    features = pad(both, range(len(both.input_ids)), encoder.specials.pad)
    return {name: features[name] for name in inputs}


def parity(model: Any, path: Path, features: dict[str, np.ndarray], names: list[str]) -> float:
    """Max |torch - onnx| over every output at real positions: padded positions hold values no pooling reads."""
    import torch

    from bertcli.inference.onnx_backend import OnnxBackend

    with torch.inference_mode():
        result = model(**{k: torch.from_numpy(v) for k, v in features.items()}, output_hidden_states=True)
    reference = (
        {"logits": result.logits}
        if hasattr(result, "logits")
        else {f"hidden_states.{i}": h for i, h in enumerate(result.hidden_states)}
    )
    if "pooler_output" in names:
        reference["pooler_output"] = result.pooler_output
    ours = OnnxBackend(path, threads=1).forward(features, names)
    mask = features["attention_mask"].astype(bool)
    worst = 0.0
    for name in names:
        want, got = reference[name].float().numpy(), ours[name]
        diff = np.abs(want - got)
        if diff.ndim == 3:  # per token: only real positions
            diff = diff[mask]
        worst = max(worst, float(diff.max()))
    return worst
