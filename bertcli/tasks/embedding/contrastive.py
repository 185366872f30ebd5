"""The contrastive objective: pooled sentence vectors, the multiple-negatives ranking loss (in-batch negatives, with
Matryoshka prefixes), its cached (gradient-cache) form, and the batches they read.

A batch holds B queries and B positives (then B x K negatives): query i's positive is candidate i, every other
candidate is its negative. The cached form embeds the batch in mini-batches without a graph, computes the loss and
its gradients with respect to the vectors, then replays each mini-batch with the same random state and pushes those
gradients through it (Gao et al. 2021): the gradients of the whole batch in the memory of one mini-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

QUERY, DOCS = ("input_ids", "attention_mask"), ("doc_input_ids", "doc_attention_mask")


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per input from its token vectors, padding excluded (sentence-transformers' Pooling)."""
    if mode == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(weights == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def encoder(pooling: str) -> Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]:
    def encode(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask, pooling).float()

    return encode


def ranking_loss(
    scale: float, symmetric: bool, dims: Sequence[int]
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Multiple-negatives ranking loss: cross-entropy of each query's scaled cosines over all candidates, its
    positive the target; symmetric: plus each positive ranking the queries. With Matryoshka `dims`, the sum of the
    loss over those leading dimensions (each prefix renormalised), as sentence-transformers' MatryoshkaLoss."""

    def loss(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        labels = torch.arange(len(queries), device=queries.device)
        total = queries.new_zeros(())
        for dim in dims or [queries.shape[1]]:
            scores = F.normalize(queries[:, :dim], dim=-1) @ F.normalize(candidates[:, :dim], dim=-1).T * scale
            value = F.cross_entropy(scores, labels)
            if symmetric:
                value = (value + F.cross_entropy(scores[:, : len(queries)].T, labels)) / 2
            total = total + value
        return total

    return loss


def plain_loss(encode: Callable, loss: Callable) -> Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]:
    def batch_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss(encode(model, *(batch[k] for k in QUERY)), encode(model, *(batch[k] for k in DOCS)))

    return batch_loss


class _RandomState:
    """The random state a forward pass draws dropout from, to replay it exactly."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def replay(self):
        devices = [self.device] if self.cuda is not None else []
        fork = torch.random.fork_rng(devices=devices)
        fork.__enter__()
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        return fork


class _Replay(torch.autograd.Function):
    """Its backward replays the mini-batches with grad and pushes the cached vector gradients through them."""

    @staticmethod
    def forward(ctx, anchor, value, replay):
        ctx.replay = replay
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        ctx.replay(grad_output)
        return None, None, None


def cached_loss(
    encode: Callable, loss: Callable, mini_batch: int
) -> Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]:
    """The loss of the whole batch with gradients computed `mini_batch` rows at a time (gradient cache)."""

    def batch_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        chunks, vectors = [], {QUERY: [], DOCS: []}
        for keys in (QUERY, DOCS):
            ids, mask = (batch[k] for k in keys)
            for start in range(0, len(ids), mini_batch):
                rows = slice(start, start + mini_batch)
                state = _RandomState(ids.device)
                with torch.no_grad():
                    vectors[keys].append(encode(model, ids[rows], mask[rows]))
                chunks.append((keys, rows, state))
        queries = torch.cat(vectors[QUERY]).requires_grad_()
        candidates = torch.cat(vectors[DOCS]).requires_grad_()
        with torch.enable_grad():
            value = loss(queries, candidates)
        grads = dict(zip((QUERY, DOCS), torch.autograd.grad(value, [queries, candidates])))

        def replay(grad_output: torch.Tensor) -> None:
            for keys, rows, state in chunks:
                ids, mask = (batch[k] for k in keys)
                fork = state.replay()
                try:
                    with torch.enable_grad():
                        out = encode(model, ids[rows], mask[rows])
                    torch.autograd.backward(out, grads[keys][rows] * grad_output)
                finally:
                    fork.__exit__(None, None, None)

        anchor = torch.zeros((), device=value.device, requires_grad=True)
        return _Replay.apply(anchor, value.detach(), replay)

    return batch_loss


def collate_pairs(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """Queries padded together, then every example's positive followed by all negatives padded together."""

    def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.as_tensor(row), 1
        return ids, mask

    def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        queries = padded([e["input_ids"] for e in examples])
        docs = [e["docs"][0] for e in examples] + [n for e in examples for n in e["docs"][1:]]
        return dict(zip(QUERY + DOCS, (*queries, *padded(docs))))

    return collate
