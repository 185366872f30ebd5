"""Dropout for training on a CPU, drawn from random bits instead of one random float per element.

torch draws a dropout mask element by element (`bernoulli_`): on 2 cores, 90 ms for the 12.6M attention probabilities
of one layer of a reranker's step (64 pairs x 128 tokens, 12 heads), a step that draws 19 masks in 2.2-2.4 s.
Filling int32 words with random bits and keeping an element when the low 15 bits of its half-word reach
round(p x 32768) takes about a quarter of the time. The mask is the same Bernoulli draw at that resolution (p = 0.1
drops with probability 0.100006), scaled by 1 / (1 - p) as torch's, and it comes from torch's generator, so a seeded
run repeats itself and gradient checkpointing replays it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

LEVELS = 32768  # 15 random bits per element: an int32 word's upper half-word has only 15 (random_() stays >= 0)
ATTENTION = "bertcli_cpu_training"  # the attention implementation training forwards run on a CPU (model_settings)


class _BitsDropout(torch.autograd.Function):
    """The mask is kept in the input's dtype (0 or 1): multiplying a bf16 tensor by a bool one converts it on every
    call (11 ms against 2 for 12.6M elements); the scale stays a Python float, which bf16 would round (1/0.9 to 1.109)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        words = torch.empty((x.numel() + 1) // 2, dtype=torch.int32, device=x.device).random_()
        bits = words.view(torch.int16)[: x.numel()].view(x.shape) & (LEVELS - 1)
        keep = (bits >= round(p * LEVELS)).to(x.dtype)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def cpu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout` with the mask drawn from random bits (for CPU tensors: on an accelerator the loop keeps torch's
    fused dropout, see model_settings.cpu_training_kernels)."""
    if not training or p == 0.0:
        return F.dropout(x, p, training)
    return _BitsDropout.apply(x, p)


def cpu_training_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (transformers' `eager_attention_forward` for BERT-family encoders) with `cpu_dropout` on the
    probabilities (`register_attention`). Under autocast the scores stay in the query's precision: adding the fp32
    mask made them, the softmax, its backward and the dropout fp32, with two conversions each way, all on the step's
    largest tensors (64 pairs x 128 tokens, bf16: 1.81-2.11 s a step, 1.38-1.43 s kept in bf16). torch's CPU softmax
    computes in fp32 inside and rounds its output to bf16, which is what transformers' decoders do by hand."""
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores + attention_mask.to(scores.dtype)
    weights = cpu_dropout(F.softmax(scores, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def register_attention() -> str:
    """ATTENTION, registered with transformers with eager attention's additive mask (without a mask function of its
    own, transformers would build none and padding would be attended)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(ATTENTION, cpu_training_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)
    return ATTENTION


def bits_dropout_modules(model: torch.nn.Module) -> list[torch.nn.Dropout]:
    """Every nn.Dropout of `model`, now running `cpu_dropout` (undo: `del module.forward`)."""
    modules = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for module in modules:
        module.forward = _bits_forward(module)
    return modules


def _bits_forward(module: torch.nn.Dropout):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return cpu_dropout(x, module.p, module.training)

    return forward
