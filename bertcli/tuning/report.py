"""What a search leaves to read: a row per trial, and a plot of the metric by trial beside the parameters'
importances (Optuna's default importance evaluator)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def trial_rows(study: Any) -> list[dict[str, Any]]:
    return [
        {
            "trial": t.number,
            "params": dict(t.params),
            "value": t.value,
            "state": t.state.name.lower(),
            "last": (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None),
        }  # fmt: skip
        for t in study.trials
    ]


def plot_search(study: Any, metric: str, path: Path) -> bool:
    """tuning.png: the metric of every trial (the finished ones, and where pruned ones stopped), and importances."""
    import optuna

    from bertcli.reports.plots import pyplot, save_figure

    plt = pyplot()
    rows = trial_rows(study)
    if not any(r["value"] is not None or r["last"] is not None for r in rows):
        return False
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    importances = {}
    if len(complete) >= 2 and len(study.best_trial.params) > 1:
        try:
            with warnings.catch_warnings():  # "importances will be equal" on a handful of trials
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # too few distinct values to split on
            importances = {}
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=(3, 2))
    colours = {"complete": "tab:blue", "pruned": "tab:orange", "fail": "tab:red"}
    for state, colour in colours.items():
        points = [
            (r["trial"], r["value"] if r["value"] is not None else r["last"]) for r in rows if r["state"] == state
        ]
        points = [p for p in points if p[1] is not None]
        if points:
            left.scatter(*zip(*points), color=colour, label=state)
    left.set(xlabel="trial", ylabel=f"validation {metric}", title=f"{metric} by trial (best {study.best_value:.4f})")
    left.legend()
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names], color="tab:blue")
        right.set(xlabel="importance", title="what mattered")
    else:
        right.axis("off")
        right.text(0.5, 0.5, "importances need two finished trials", ha="center", va="center")
    figure.tight_layout()
    save_figure(figure, path)
    return True
