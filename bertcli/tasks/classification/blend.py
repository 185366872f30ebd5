"""After fine-tuning: the lexical baseline fitted on the training split, both scored on the validation split, the
weight of their combination chosen there, and a model that learned nothing said out loud.

Everything here sees only the training split (the fit) and the validation split (the choice); test data never.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.data.labels import LabelSpec
from bertcli.tasks.classification import baselines, combine, lexical
from bertcli.training.finetune import Finished

log = logging.getLogger("bertcli")


@dataclass
class Splits:
    """The texts, pairs and encoded labels of the training and validation splits (the validation ones may be empty)."""

    train: tuple[list[str], list[str] | None, list[Any]]
    validation: tuple[list[str], list[str] | None, list[Any]]


def finisher(
    spec: LabelSpec, splits: Splits, mode: str, validation_probs: Callable[[Any, Any], np.ndarray | None]
) -> Callable[[Any, Any, str, float | None], Finished]:
    """The skeleton's `finish` for a classifier: `validation_probs(model, accelerator)` scores the validation texts
    with the trained (best) model as prediction will."""

    def finish(model: Any, accelerator: Any, metric: str, best: float | None) -> Finished:
        bert = validation_probs(model, accelerator)
        tuned = mode != "off"  # off: scikit-learn's plain baseline, reported only
        fitted = lexical.fit(*splits.train, spec.task, max(1, spec.num_labels), tuned=tuned)
        record, weight, final = _blend(spec, splits, mode, metric, bert, fitted)
        facts: dict[str, Any] = {"lexical": record}
        if bert is not None:
            found = _degenerate(spec, splits, bert, final, weight)
            if found is not None:
                log.warning(found["warning"])
                facts["degenerate"] = found
        if fitted is None or mode == "off":
            return Finished(facts)
        record.update(file=lexical.FILE, **fitted.settings(), terms=len(fitted.terms))
        return Finished(facts, fitted.save)

    return finish


def _degenerate(
    spec: LabelSpec, splits: Splits, bert: np.ndarray, final: np.ndarray | None, weight: float
) -> dict[str, Any] | None:
    """The fine-tuned model's collapse on validation (what plain `pipeline()` loads), and whether the combined model
    the bundle predicts with escapes it; None when the fine-tuned model learned."""
    refs, prior = np.asarray(splits.validation[2]), np.asarray(splits.train[2])
    found = baselines.degenerate(spec.task, refs, bert, spec.names, prior=prior)
    if found is None:
        return None
    rescued = (
        weight > 0
        and final is not None
        and baselines.degenerate(spec.task, refs, final, spec.names, prior=prior) is None
    )
    warning = found.warning
    if rescued:
        warning += f" (bertcli's predictions combine the lexical baseline at weight {weight:.2f}, which does learn)"
    return {**found.record(), "warning": warning, "combined_learns": rescued}


def _blend(
    spec: LabelSpec, splits: Splits, mode: str, metric: str, bert: np.ndarray | None, fitted: Any
) -> tuple[dict[str, Any] | None, float, np.ndarray | None]:
    """The lexical record for bertcli.json, the weight predictions apply, and the validation predictions it gives."""
    if fitted is None:
        log.warning("no lexical baseline: no training text has a word of two or more letters")
        return None, 0.0, bert
    texts, pairs, refs = splits.validation
    if bert is None:  # nothing to choose on: the fine-tuned model alone, unless --lexical only
        weight = 1.0 if mode == "only" else 0.0
        log.info("lexical baseline fitted; no validation data to compare it on (weight %.2f)", weight)
        return {"mode": mode, "weight": weight, "validation": None}, weight, None
    lex = fitted.probabilities(texts, pairs)
    choice = combine.choose(spec.task, np.asarray(refs), bert, lex, metric)
    weight = choice.weight_for(mode)
    log.info(
        "validation %s: BERT %.4f, lexical baseline %.4f; %s",
        metric,
        choice.bert,
        choice.lexical,
        _verdict(choice, mode, weight),
    )
    record = {"mode": mode, "weight": weight, "validation": choice.record()}
    return record, weight, combine.mix(bert, lex, weight)


def _verdict(choice: combine.Choice, mode: str, weight: float) -> str:
    if mode == "off":
        return "not combined (--lexical off)"
    if mode == "only":
        return "predicting with the lexical baseline alone (--lexical only)"
    if weight > 0:
        return f"combined at lexical weight {weight:.2f}: {choice.combined:.4f} ({choice.confidence:.0%} of resamples better)"
    if choice.weight > 0:
        return f"not combined: the best mix ({choice.combined:.4f}) beats BERT alone within noise ({choice.confidence:.0%})"
    return "not combined: BERT alone is best"
