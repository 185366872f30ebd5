"""The encoder layers' arithmetic over a packed sequence (unpadded.py), written once in the Python that TorchScript
compiles.

Compiled, a forward's layers run in C++ and release the GIL from the first layer to the last. Run eagerly, the loop
takes the GIL back between its ops (about 15 a layer), so a server's two forward streams and its event loop waited
on one another. All-MiniLM-L6-v2, bf16, two one-thread streams over random windows of 8 long-tail statements
(bench/streams.py): 477 texts/s against 400 eager; beside a Python thread holding the GIL 30% of the time, 368
against 278. Large sorted batches gain too, from the Python no longer run between ops: offline (`Embedder`, 2
cores), snippets 880-1006 texts/s against 838-841, long-tail statements 385-455 against 358-413.

Compiled runs only arithmetic whose dtypes it writes out, outside autocast: linears in fp32, or packed for bf16
(inputs cast as autocast casts a linear's); the results are bit-identical to the eager loop's. Linears that autocast
casts (fp16, or bf16 on a CPU without native bf16) run eagerly under it (`unpadded._encode` chooses).
"""

from __future__ import annotations

import functools
import logging
import warnings

import torch
import torch.nn.functional as F

log = logging.getLogger("bertcli")
ACTIVATIONS = ("gelu", "gelu_pytorch_tanh", "relu")  # the intermediate activations (config.hidden_act) it computes


def packed_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, runs: list[tuple[int, int]], scaling: float
) -> torch.Tensor:
    """Scaled dot-product attention per input over packed (tokens, heads, head width) tensors, each input attending
    to its own tokens only; `runs` are the inputs' lengths in order as (length, count). Returns (tokens, width)."""
    heads, width = query.shape[1], query.shape[2]
    parts: list[torch.Tensor] = []
    start = 0
    for length, count in runs:  # inputs of one length side by side: one call (views, no copy)
        end = start + length * count
        query_run = query[start:end].view(count, length, heads, width).transpose(1, 2)
        key_run = key[start:end].view(count, length, heads, width).transpose(1, 2)
        value_run = value[start:end].view(count, length, heads, width).transpose(1, 2)
        output = F.scaled_dot_product_attention(query_run, key_run, value_run, scale=scaling)
        parts.append(output.transpose(1, 2).reshape(length * count, heads * width))
        start = end
    if start < query.shape[0]:  # rows added by unpadded.packed_rows: zeros, which no input attends to
        parts.append(query.new_zeros(query.shape[0] - start, heads * width))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def layers(
    hidden: torch.Tensor,
    linears: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    norms: list[torch.Tensor],
    epsilons: list[float],
    runs: list[tuple[int, int]],
    heads: int,
    head_width: int,
    scaling: float,
    activation: str,
    packed: bool,
) -> torch.Tensor:
    """The post-norm encoder layers over packed (tokens, width) hidden states, as the modeling code computes them,
    with attention per input. Per layer: four linears (query, key and value fused; attention output; intermediate;
    output) with their biases, and two layer norms (weight and bias each, and an epsilon)."""
    size = hidden.shape[1]
    for index in range(len(linears) // 4):
        weight, bias, norm = linears[4 * index :], biases[4 * index :], norms[4 * index :]
        projected = linear(hidden, weight[0], bias[0], packed).view(-1, 3, heads, head_width).unbind(1)
        context = packed_attention(projected[0], projected[1], projected[2], runs, scaling)
        attended = linear(context, weight[1], bias[1], packed) + hidden
        hidden = F.layer_norm(attended, [size], norm[0], norm[1], epsilons[2 * index])
        inner = _activation(linear(hidden, weight[2], bias[2], packed), activation)
        output = linear(inner, weight[3], bias[3], packed) + hidden
        hidden = F.layer_norm(output, [size], norm[2], norm[3], epsilons[2 * index + 1])
    return hidden


def linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packed: bool) -> torch.Tensor:
    """A linear layer; `packed`: on a weight packed by oneDNN (torch_backend), its input cast to the weight's dtype
    as autocast casts a linear's. A packed layer's own forward calls it too."""
    if packed:
        no_scalars: list[int | float | complex | None] = []  # the op's schema types its (here unused) argument
        return torch.ops.mkldnn._linear_pointwise(hidden.to(weight.dtype), weight, bias, "none", no_scalars, "")
    return F.linear(hidden, weight, bias)


def _activation(hidden: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(hidden)
    return F.gelu(hidden, approximate="tanh" if name == "gelu_pytorch_tanh" else "none")


@functools.cache
def compiled_layers():
    """`layers` compiled by TorchScript, once per process; None where this torch cannot compile it (TorchScript is
    deprecated, and the only way to run the loop without the GIL: the eager loop then runs)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(layers)
    except Exception as exc:  # whatever a torch without a working TorchScript raises
        log.debug("the encoder layers run eagerly: TorchScript cannot compile them (%s)", exc)
        return None
