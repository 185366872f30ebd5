"""The pretraining objective: dynamic masking, the MLM (+NSP) loss with the head at masked positions only, evaluation.

Computing the vocabulary projection only where a token is predicted (~15% of positions) gives the same loss as
the full head for a fraction of its cost, and the full head is most of the compute of a small BERT with a
30k vocabulary.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertcli.errors import UsageError
from bertcli.tasks.pretraining.data import Specials
from bertcli.training import IGNORE

log = logging.getLogger("bertcli")


class MaskingCollator:
    """Pads a batch and masks it afresh (dynamic masking), with randomness derived from the examples' keys.

    Seeding each example from (seed, salt, its key) instead of a running generator makes masking independent of
    when and with which others it is batched, so a resumed run masks exactly like an uninterrupted one, and
    validation examples (salt 1) are masked the same way at every evaluation, for any batch size or number of
    processes. Per sequence, round(p x maskable tokens) positions
    (at least one) are chosen, as in google-research/bert; of those 80% become [MASK], 10% a random token,
    10% stay. With whole-word masking, all WordPieces of a word are chosen together.
    """

    def __init__(self, tokenizer: Any, mlm_probability: float, whole_word_mask: bool, seed: int, salt: int = 0) -> None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.special = np.zeros(len(vocab), dtype=bool)
        self.special[[i for i in tokenizer.all_special_ids if i < len(vocab)]] = True
        self.regular = np.flatnonzero(~self.special)
        self.continuation = np.array([token.startswith("##") for token in vocab])
        if whole_word_mask and not self.continuation.any():
            raise UsageError("--whole-word-mask needs a WordPiece vocabulary (continuation pieces start with ##)")
        self.specials = Specials.of(tokenizer)
        self.p, self.whole_word_mask, self.seed, self.salt = mlm_probability, whole_word_mask, seed, salt

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        ids = np.full((len(examples), width), self.specials.pad, dtype=np.int64)
        attention = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[row, :n], attention[row, :n] = e["input_ids"], 1
            if "token_type_ids" in e:
                types[row, :n] = e["token_type_ids"]
        labels = np.full_like(ids, IGNORE)
        maskable = (attention == 1) & ~self.special[ids]
        for row, e in enumerate(examples):
            rng = np.random.default_rng([self.seed, self.salt, int(e["key"])])
            chosen = self._choose(ids[row], maskable[row], rng)
            labels[row, chosen] = ids[row, chosen]
            action = rng.random(len(chosen))
            ids[row, chosen[action < 0.8]] = self.specials.mask
            randomised = chosen[(action >= 0.8) & (action < 0.9)]
            ids[row, randomised] = rng.choice(self.regular, size=len(randomised))
        batch = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(attention),
            "token_type_ids": torch.from_numpy(types),
            "labels": torch.from_numpy(labels),
        }
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([e["next_sentence_label"] for e in examples])
        return batch

    def _choose(self, ids: np.ndarray, maskable: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        positions = np.flatnonzero(maskable)
        if len(positions) == 0:
            return positions
        budget = max(1, round(len(positions) * self.p))
        if not self.whole_word_mask:
            return np.sort(rng.choice(positions, size=budget, replace=False))
        # a word starts at a maskable piece that is not a ## continuation of the maskable piece before it
        starts = ~self.continuation[ids[positions]] | np.r_[True, np.diff(positions) > 1]
        words = np.split(positions, np.flatnonzero(starts)[1:])
        chosen: list[np.ndarray] = []
        count = 0
        for w in rng.permutation(len(words)):
            if count + len(words[w]) > budget:
                continue
            chosen.append(words[w])
            count += len(words[w])
            if count == budget:
                break
        if not chosen:  # every word is longer than the budget: take the shortest one whole
            chosen.append(min(words, key=len))
        return np.sort(np.concatenate(chosen))


class PretrainingObjective(torch.nn.Module):
    """BERT's pretraining loss (`BertForPreTraining` inside) with the MLM head applied to masked positions only.

    Returns the loss and the counts evaluation needs; the forward is the module's own, so Accelerate's
    wrappers (DDP, autocast) see one call per batch.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label=None) -> dict[str, Any]:
        out = self.model.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        selected = labels != IGNORE
        targets = labels[selected]
        logits = self.model.cls.predictions(out.last_hidden_state[selected]).float()
        mlm_loss = F.cross_entropy(logits, targets)
        result = {"mlm_loss": mlm_loss, "masked": targets.numel(), "correct": (logits.argmax(-1) == targets).sum()}
        loss = mlm_loss
        if next_sentence_label is not None:
            nsp_logits = self.model.cls.seq_relationship(out.pooler_output).float()
            result["nsp_loss"] = F.cross_entropy(nsp_logits, next_sentence_label)
            result["nsp_correct"] = (nsp_logits.argmax(-1) == next_sentence_label).sum()
            loss = loss + result["nsp_loss"]
        result["loss"] = loss
        return result


def evaluate_objective(model: torch.nn.Module, batches: Any, accelerator: Any) -> dict[str, float]:
    """MLM loss (mean over masked tokens), perplexity, masked-token accuracy; NSP loss and accuracy for pairs.

    `batches` yields (batch, real) on each process (see bertcli.runtime.distributed); filler batches only keep the
    processes in step and are not counted.
    """
    model.eval()
    # summed over batches: mlm loss x masked, masked, correct, nsp loss x pairs, nsp correct, pairs, examples
    sums = torch.zeros(7, dtype=torch.float64, device=accelerator.device)
    with torch.inference_mode(), accelerator.autocast():
        for batch, real in batches:
            out = model(**batch)
            if not real:
                continue
            sums[0] += out["mlm_loss"].double() * out["masked"]
            sums[1] += out["masked"]
            sums[2] += out["correct"]
            sums[6] += len(batch["input_ids"])
            if "nsp_loss" in out:
                pairs = len(batch["next_sentence_label"])
                sums[3] += out["nsp_loss"].double() * pairs
                sums[4] += out["nsp_correct"]
                sums[5] += pairs
    sums = accelerator.reduce(sums, reduction="sum").tolist()
    mlm_loss = sums[0] / sums[1]
    metrics = {
        "loss": mlm_loss,
        "perplexity": math.exp(min(mlm_loss, 50.0)),
        "accuracy": sums[2] / sums[1],
        "examples": int(sums[6]),
    }
    if sums[5]:  # "loss" stays the training objective, the sum of both
        nsp_loss = sums[3] / sums[5]
        metrics.update(loss=mlm_loss + nsp_loss, mlm_loss=mlm_loss, nsp_loss=nsp_loss, nsp_accuracy=sums[4] / sums[5])
    log.info(
        "validation: mlm loss %.4f, perplexity %.2f, masked-token accuracy %.4f%s",
        mlm_loss,
        metrics["perplexity"],
        metrics["accuracy"],
        f", nsp accuracy {metrics['nsp_accuracy']:.4f}" if sums[5] else "",
    )
    return metrics
