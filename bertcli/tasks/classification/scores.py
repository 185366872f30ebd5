"""Logits to scores and decisions: softmax (single-label), sigmoid (multi-label), values (regression)."""

from __future__ import annotations

import numpy as np

from bertcli.inference.scores import sigmoid, softmax


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if task == "single_label":
        return softmax(logits)
    if task == "multi_label":
        return sigmoid(logits)
    return logits


def decisions(task: str, probs: np.ndarray, threshold: float) -> list:
    """Per example: the class id, the 0/1 row of labels at or above the threshold, or the value."""
    if task == "single_label":
        return probs.argmax(-1).tolist()
    if task == "multi_label":
        return (probs >= threshold).astype(int).tolist()
    return probs[:, 0].tolist()


def references_and_predictions(task: str, refs: np.ndarray, logits: np.ndarray, threshold: float) -> tuple[list, list]:
    """Gold targets and predictions in the form the task's metrics take."""
    gold = refs.astype(float).tolist() if task == "regression" else refs.astype(int).tolist()
    return gold, decisions(task, probabilities(logits, task), threshold)
