"""Pictures where people look: training curves beside a saved model, confusion matrix and F1 bars beside a report.

matplotlib is imported inside each function (Agg backend, no display needed), so importing this
module costs nothing and `bertcli --help` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAINING_CURVES = "training_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
F1_BARS = "f1_per_type.png"


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    from bertcli.io import atomic_write

    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return Path(path)


def _quality_metric(meta: dict[str, Any]) -> str | None:
    """The validation metric worth a panel of its own: the run's selection metric, or for loss-selected runs
    (pretraining, no validation metric) the first accuracy/F1 that was measured."""
    history = meta.get("history") or []
    candidates = [meta.get("metric"), "f1", "accuracy", "f1_macro"]
    for name in candidates:
        if name and name != "loss" and any(isinstance(h.get(name), (int, float)) for h in history):
            return name
    return None


def training_curves(meta: dict[str, Any], path: str | Path) -> Path | None:
    """Training loss (with validation loss), learning rate and the validation metric against the optimizer step.

    Reads a bundle's bertcli.json: `train_log` (per-interval training loss and lr) and `history` (evaluations).
    Returns None when the run recorded nothing to draw.
    """
    train_log = meta.get("train_log") or []
    history = meta.get("history") or []
    if not train_log and not history:
        return None
    plt = pyplot()
    metric = _quality_metric(meta)
    panels = 3 if metric else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    loss_ax, lr_ax = axes[0], axes[1]

    if train_log:
        loss_ax.plot([r["step"] for r in train_log], [r["loss"] for r in train_log], label="training", color="tab:blue")
    val = [(h["step"], h["loss"]) for h in history if isinstance(h.get("loss"), (int, float))]
    if val:
        loss_ax.plot(*zip(*val), marker="o", label="validation", color="tab:orange")
    loss_ax.set(title="loss", xlabel="step")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)

    if train_log:
        lr_ax.plot([r["step"] for r in train_log], [r["lr"] for r in train_log], color="tab:green")
    lr_ax.set_title("learning rate", pad=14)
    lr_ax.set_xlabel("step")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    lr_ax.grid(alpha=0.3)

    if metric:
        ax = axes[2]
        points = [(h["step"], h[metric]) for h in history if isinstance(h.get(metric), (int, float))]
        ax.plot(*zip(*points), marker="o", color="tab:purple")
        best = (meta.get("best") or {}).get("step")
        for step, value in points:
            if step == best:
                ax.scatter([step], [value], s=120, facecolors="none", edgecolors="black", label="best", zorder=3)
                ax.legend()
        ax.set(title=f"validation {metric}", xlabel="step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{meta.get('task', 'training')}: {meta.get('steps', '?')} steps", fontsize=10, y=1.04)
    return save_figure(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path) -> Path:
    """Counts with rows gold and columns predicted, shaded by each gold row's share (so rare classes show too)."""
    import numpy as np

    plt = pyplot()
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="gold", title="confusion matrix (colour: share of the gold row)")
    if len(labels) <= 25:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if shares[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def f1_bars(per_type: dict[str, dict[str, Any]], path: str | Path, title: str) -> Path:
    """Horizontal F1 bars per entity type (or label), sorted, each annotated with its support."""
    plt = pyplot()
    rows = sorted(per_type.items(), key=lambda item: item[1]["f1"])
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.4 * len(rows) + 1)))
    names = [name for name, _ in rows]
    values = [0.0 if row["f1"] is None or math.isnan(row["f1"]) else row["f1"] for _, row in rows]
    ax.barh(names, values, color="tab:blue")
    for y, (value, (_, row)) in enumerate(zip(values, rows)):
        ax.text(min(value + 0.01, 0.9), y, f"{value:.2f} (n={row['support']})", va="center", fontsize=8)
    ax.set(xlim=(0, 1), xlabel="F1", title=title)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def report_plots(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """The pictures an evaluation report supports: confusion matrix (single-label), F1 per type (NER) or per label."""
    directory = Path(directory)
    written = []
    if report.get("confusion_matrix") and report.get("labels"):
        written.append(confusion_matrix(report["confusion_matrix"], report["labels"], directory / CONFUSION_MATRIX))
    per = report.get("per_type") or report.get("per_label")
    if per:
        what = "entity type" if "per_type" in report else "label"
        written.append(f1_bars(per, directory / F1_BARS, f"F1 per {what} (n = gold support)"))
    return written
