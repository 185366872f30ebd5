"""What the loop sets on a model before it trains: gradient checkpointing, the attention dropout, and the attention
and dropout kernels a training forward runs on a CPU."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from bertcli.errors import UsageError
from bertcli.training.dropout import bits_dropout_modules, register_attention

log = logging.getLogger("bertcli")
# where a BERT-family config records the attention dropout (BERT, RoBERTa, ELECTRA, MPNet; DistilBERT)
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def _pretrained(model: torch.nn.Module, having: str) -> Any:
    """The outermost transformers model inside the task's module (a task may wrap it, as embedding training does)."""
    return next((m for m in model.modules() if hasattr(m, having)), None)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant, the variant that works under DDP."""
    pretrained = _pretrained(model, "gradient_checkpointing_enable")
    if pretrained is None or not pretrained.supports_gradient_checkpointing:
        raise UsageError("--gradient-checkpointing: this model does not support it")
    if hasattr(pretrained, "activation_checkpointing_enable"):  # the name from transformers 5.x on
        pretrained.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        pretrained.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    log.info("gradient checkpointing: activations are recomputed in the backward pass")


def set_attention_dropout(model: torch.nn.Module, p: float) -> None:
    """Dropout on the attention probabilities: each self-attention module's, and the config's (so the saved model
    says what it was trained with). The probability matrices are the largest tensors of a training step, and
    drawing their mask took a quarter of a reranker's step on a CPU (what it is worth: RERANK_DEFAULTS)."""
    modules = [
        m
        for m in model.modules()
        if type(m).__name__.endswith("SelfAttention") and isinstance(getattr(m, "dropout", None), torch.nn.Dropout)
    ]
    if not modules:
        raise UsageError(
            f"--attention-dropout: no self-attention dropout found in {type(model).__name__}",
            hint="leave --attention-dropout unset for this model",
        )
    for module in modules:
        module.dropout.p = p
    config = getattr(_pretrained(model, "config"), "config", None)
    for key in ATTENTION_DROPOUT_KEYS:
        if config is not None and hasattr(config, key):
            setattr(config, key, p)


def cpu_training_kernels(model: torch.nn.Module, device: torch.device) -> Callable[[], None]:
    """On a CPU, every dropout draws its mask from random bits (training/dropout.py), and forwards in training mode run
    eager attention with that dropout while the others (validation) run the model's own; undone by the returned call.
    sdpa's fused CPU kernel has a slow backward (a step of 64 x 128 tokens without attention dropout: 2.96-3.02 s,
    eager 2.36-2.49 s), and with dropout it falls back to its unfused path (3.54-3.97 s). all-MiniLM-L6-v2, bf16, 2
    cores, a reranker's step of 64 pairs x 128 tokens with the model's dropouts: eager attention and torch's dropout
    2.15-2.43 s, these kernels 1.38-1.43 s. In inference sdpa is the faster (128 x 128: 1.47 s, eager 2.1-2.2 s)."""
    if device.type != "cpu":
        return lambda: None
    dropouts = bits_dropout_modules(model)
    pretrained = _pretrained(model, "set_attn_implementation")
    own = None if pretrained is None else pretrained.config._attn_implementation
    hook = None
    if own in ("sdpa", "eager"):
        training = register_attention()

        def choose(module: Any, args: Any) -> None:
            wanted = training if module.training else own
            if module.config._attn_implementation != wanted:
                module.set_attn_implementation(wanted)

        hook = pretrained.register_forward_pre_hook(choose)

    def undo() -> None:
        for module in dropouts:
            del module.forward
        if hook is not None:
            hook.remove()
            pretrained.set_attn_implementation(own)

    return undo
