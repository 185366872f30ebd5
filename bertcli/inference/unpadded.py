"""Unpadded inference on a CPU: a padded batch's real tokens go through the embeddings and the encoder layers as one
packed sequence.

A batch pads every input to its longest, and the model computes the padding too. On real long-tail text (statements
of 20 tokens beside a few of 300) that is most of a forward, and a server, which batches whatever requests are
queued, cannot sort by length as an offline run does. Here only the real tokens are embedded (each with its own
position) and enter the layers: every linear layer works on the batch's real token count, and attention runs one
input at a time over its own tokens. The output is scattered back to the padded shape, so heads, pooling and every
caller see what they saw before.

Batches then count real tokens (config BATCH_TOKENS). All-MiniLM-L6-v2, bf16, 2 cores, offline: Rotten Tomatoes
snippets 815-845 texts/s against 681-691 padded, long-tail statements 396-416 against 346-351. The layers run as
one short loop of their own arithmetic (packed_layers.py, compiled by TorchScript where it can be), which also
takes a batch without padding: transformers' layer modules cost about 1.5 of the 5 ms a one-text forward took. On an
accelerator padding costs little and a loop of per-input attention calls much, so this is a CPU path
(TorchBackend)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

UNPAD = "bertcli_unpad"  # the keyword a forward passes to run unpadded
# architectures whose base model embeds (`embeddings`, taking position ids) then encodes (`encoder`), and whose
# layers are the BERT family's post-norm blocks
ENCODERS = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
LAYERS = "bertcli_layers"  # the encoder's attribute holding its layers' weights (LayerWeights), from its first forward
PACKED = "bertcli_packed"  # a linear layer's attribute holding its weight packed by oneDNN and its bias (torch_backend)


def packed_rows(tokens: int) -> int:
    """The rows a packed sequence of `tokens` real tokens is grown to (with zeros): a multiple of 16, and of the
    power of two an eighth of its size or less, so at most 1/8 extra rows and about 8 sizes per doubling.

    oneDNN builds a kernel for every new shape of a reduced-precision matmul and keeps a bounded number of them
    (measured: cycling all-MiniLM-L6-v2's four linear shapes over 128 token counts stays cached, over 200 rebuilds
    every call, at about 4 ms a linear). A server's packed batches have a new token count nearly every time, and
    building the four linear shapes then took as long as the layers' arithmetic. All-MiniLM-L6-v2, bf16, one
    thread, 1,000 long-tail statements in random batches of 8 (a server's stream): 137 texts/s against 198 grown
    (228 and 221 sorted and batched offline). A first pass over 1,000 snippets (2 threads, offline): 655-682 against
    782-869. Multiples of 16 fill AMX's 16-row tiles (multiples of 8: 170 in the batches of 8). fp32 runs MKL, which
    builds nothing per shape (76 against 70 grown), so only reduced precision grows."""
    step = max(16, 1 << max(0, tokens.bit_length() - 4))
    return -(-tokens // step) * step


def _runs(lengths: list[int]) -> list[tuple[int, int]]:
    """Consecutive equal lengths as (length, count): a length-sorted batch's inputs of one length attend in one call."""
    runs: list[tuple[int, int]] = []
    for length in lengths:
        if runs and runs[-1][0] == length:
            runs[-1] = (length, runs[-1][1] + 1)
        else:
            runs.append((length, 1))
    return runs


def unpad_encoder(model: Any, round_rows: bool = False) -> bool:
    """Make `model` (in place, inference only) run unpadded when a forward passes UNPAD=True; False, and the model
    untouched, when its architecture is not one of ENCODERS.

    The layers then run as one short loop of their arithmetic (packed_layers.py), compiled where it can be, rather
    than through transformers' layer modules: on a CPU their Python costs about as much as a small batch's
    arithmetic, and a server pays it on every forward. An activation that loop does not compute (ACTIVATIONS)
    keeps the model untouched too. Each layer's query, key and value projections become one linear layer
    (`encoder.bertcli_qkv`, registered so that the backend's weight cast and packing reach it): a third of the
    linear calls fewer, at the memory of a copy of those weights, taken now (so a model still being trained must
    not be unpadded). `round_rows` grows each packed sequence to `packed_rows` (for oneDNN's reduced-precision
    kernels, see there). A forward given anything beyond ids, mask and token types (position ids, embeddings,
    every layer's output) runs the model's own padded path."""
    import torch

    from bertcli.inference.packed_layers import ACTIVATIONS

    base = getattr(model, "base_model", None)
    encoder = getattr(base, "encoder", None)
    if model.config.model_type not in ENCODERS or encoder is None or model.config.is_decoder:
        return False
    if model.config.hidden_act not in ACTIVATIONS:
        return False
    encoder.bertcli_qkv = torch.nn.ModuleList(_fused_projection(layer.attention.self) for layer in encoder.layer)
    padded = base.forward

    @functools.wraps(padded)  # the same signature: the backend passes the inputs it names
    def forward(
        input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None, bertcli_unpad: bool = False,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        more = any(value is not None for name, value in kwargs.items() if name != "return_dict")  # heads pass it
        if not bertcli_unpad or input_ids is None or more:
            return padded(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        return _unpadded_forward(base, input_ids, attention_mask, token_type_ids, round_rows)

    base.forward = forward
    return True


def _unpadded_forward(base: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any, round_rows: bool) -> Any:
    """The base model's output for a padded batch, computed on its real tokens only: each embedded at its own
    position, the layers run packed, the result scattered back to the padded shape (padding's rows are zeros).
    Embedding a padded batch took 8% of a served forward of 20 long-tail statements (a Xeon with AMX, one thread).
    On an EPYC (no AMX), the time served forwards spend outside the layers fell from 6.2-6.9% of it to 2.3-3.2%
    (random windows of 8 and 20 long-tail statements, one thread, torch's profiler)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    batch, width = input_ids.shape
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    real = mask.reshape(-1).nonzero().squeeze(1)

    def packed(values: Any) -> Any:
        return values.reshape(-1).index_select(0, real)[None]

    types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    embedded = base.embeddings(
        input_ids=packed(input_ids), token_type_ids=packed(types), position_ids=packed(_positions(base, input_ids))
    )[0]
    project = getattr(base, "embeddings_project", None)  # ELECTRA: embeddings narrower than the layers
    if project is not None:
        embedded = project(embedded)
    tokens = _encode_rows(base.encoder, embedded, _runs(mask.sum(1).tolist()), round_rows)
    size = tokens.shape[1]
    hidden = tokens.new_zeros(batch * width, size).index_copy_(0, real, tokens).view(batch, width, size)
    pooler = getattr(base, "pooler", None)
    return BaseModelOutputWithPoolingAndCrossAttentions(
        last_hidden_state=hidden, pooler_output=None if pooler is None else pooler(hidden)
    )


def _positions(base: Any, input_ids: Any) -> Any:
    """The position ids the model's embeddings give a padded batch: RoBERTa's family numbers real tokens from its
    padding id + 1 (its own function); BERT's counts from 0."""
    numbered = getattr(base.embeddings, "create_position_ids_from_input_ids", None)
    if numbered is not None:
        return numbered(input_ids, base.embeddings.padding_idx)
    return base.embeddings.position_ids[:, : input_ids.shape[1]].expand_as(input_ids)


def _fused_projection(attention: Any) -> Any:
    """One linear layer computing `attention`'s query, key and value projections side by side."""
    import torch

    parts = (attention.query, attention.key, attention.value)
    biased = parts[0].bias is not None
    weight = parts[0].weight
    fused = torch.nn.Linear(weight.shape[1], sum(p.out_features for p in parts), biased, weight.device, weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([p.weight for p in parts]))
        if biased:
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
    return fused.eval()


def _encode_rows(encoder: Any, packed: Any, runs: list[tuple[int, int]], round_rows: bool) -> Any:
    """`_encode` on the packed (tokens, width) hidden states, grown to `packed_rows` first when `round_rows`; the
    real tokens' rows."""
    import torch

    count, size = packed.shape
    rows = packed_rows(count) if round_rows else count
    if rows > count:
        packed = torch.cat([packed, packed.new_zeros(rows - count, size)])
    return _encode(encoder, packed, runs)[:count]


@dataclass(frozen=True)
class LayerWeights:
    """An encoder's layers as packed_layers.layers takes them. `packed`: every linear's weight is packed for bf16
    (torch_backend); `fp32`: every linear's weight is fp32 (so none is packed)."""

    linears: list[Any]
    biases: list[Any]
    norms: list[Any]
    epsilons: list[float]
    heads: int
    head_width: int
    scaling: float
    activation: str
    packed: bool
    fp32: bool


def _layer_weights(encoder: Any) -> LayerWeights:
    """The encoder's layer weights, read at its first unpadded forward: after the backend cast and packed them."""
    import torch

    linears = [
        linear
        for layer, projection in zip(encoder.layer, encoder.bertcli_qkv)
        for linear in (projection, layer.attention.output.dense, layer.intermediate.dense, layer.output.dense)
    ]
    norms = [norm for layer in encoder.layer for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]
    packed = all(hasattr(linear, PACKED) for linear in linears)
    weights = [getattr(linear, PACKED) if packed else (linear.weight, linear.bias) for linear in linears]
    attention = encoder.layer[0].attention.self
    return LayerWeights(
        linears=[weight.detach() for weight, _ in weights],
        biases=[None if bias is None else bias.detach() for _, bias in weights],
        norms=[tensor.detach() for norm in norms for tensor in (norm.weight, norm.bias)],
        epsilons=[float(norm.eps) for norm in norms],
        heads=attention.num_attention_heads,
        head_width=attention.attention_head_size,
        scaling=float(attention.scaling),
        activation=encoder.config.hidden_act,
        packed=packed,
        fp32=all(weight.dtype == torch.float32 for weight, _ in weights),  # a packed weight is bf16
    )


def _encode(encoder: Any, hidden: Any, runs: list[tuple[int, int]]) -> Any:
    """The encoder layers over packed (tokens, width) hidden states. Compiled when their dtypes are all explicit
    (packed linears, or fp32 outside autocast); else eagerly, under the caller's autocast."""
    import torch

    from bertcli.inference.packed_layers import compiled_layers, layers

    weights = getattr(encoder, LAYERS, None)
    if weights is None:
        weights = _layer_weights(encoder)
        setattr(encoder, LAYERS, weights)
    explicit = weights.packed or (weights.fp32 and not torch.is_autocast_enabled(hidden.device.type))
    compiled = compiled_layers() if explicit else None
    arguments = (
        hidden, weights.linears, weights.biases, weights.norms, weights.epsilons, runs, weights.heads,
        weights.head_width, weights.scaling, weights.activation, weights.packed,
    )  # fmt: skip
    if compiled is None:
        return layers(*arguments)
    # outside autocast, since every dtype is explicit: under it TorchScript adds casts of its own, and ran every
    # elementwise op in fp32 on copies (snippets offline, 2 cores: 547-685 texts/s against 865-945 eager)
    with torch.autocast(hidden.device.type, enabled=False):
        return compiled(*arguments)
