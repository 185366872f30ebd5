"""Labels: the task they imply (single-label, multi-label, regression), their vocabulary, model targets, and the split."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bertcli.config import DataOptions
from bertcli.data.tables import Table


@dataclass
class LabelSpec:
    """The task and label vocabulary, taken from training data and saved with the model."""

    task: str
    names: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "regression" else len(self.names)


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _split(value: Any, sep: str | None) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if sep is not None:
        return [part.strip() for part in str(value).split(sep) if part.strip()]
    return [str(value)]


def infer_labels(table: Table, column: str, options: DataOptions, task: str | None = None) -> LabelSpec:
    """Infer the task from the label cells and collect the label set, sorted stably."""
    values = table.dataset[column]
    for row, value in enumerate(values):
        if _is_missing(value):
            raise table.error("missing label", row=row, column=column, hint="every training row needs a label")
    if task is None:
        if any(isinstance(v, list) for v in values) or (
            options.label_sep is not None and any(options.label_sep in str(v) for v in values)
        ):
            task = "multi_label"
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and any(
            isinstance(v, float) and not float(v).is_integer() for v in values
        ):
            task = "regression"
        else:
            task = "single_label"
    if task == "regression":
        for row, value in enumerate(values):
            try:
                float(value)
            except (TypeError, ValueError):
                raise table.error(f"regression label {value!r} is not a number", row=row, column=column) from None
        return LabelSpec("regression")
    if task == "multi_label":
        names = {name for v in values for name in _split(v, options.label_sep)}
    else:
        names = {_label_name(v) for v in values}
    return LabelSpec(task, _sort_labels(names))


def _label_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _sort_labels(names: set[str]) -> list[str]:
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_labels(table: Table, column: str, spec: LabelSpec, options: DataOptions) -> list[Any]:
    """Labels as model targets: class ids, multi-hot float rows, or floats.

    Labels the model does not know are counted and reported together, since at evaluate time
    a user wants the whole picture, not only the first offending row.
    """
    values = table.dataset[column]
    missing = [row for row, v in enumerate(values) if _is_missing(v)]
    if missing:
        raise table.error(
            f"missing label ({len(missing)} row(s) in all)",
            row=missing[0],
            column=column,
            hint="every row needs a label",
        )
    if spec.task == "regression":
        return [float(v) for v in values]
    index = {name: i for i, name in enumerate(spec.names)}
    unknown: Counter[str] = Counter()
    first_unknown: int | None = None
    encoded: list[Any] = []
    for row, value in enumerate(values):
        names = _split(value, options.label_sep) if spec.task == "multi_label" else [_label_name(value)]
        bad = [n for n in names if n not in index]
        if bad:
            unknown.update(bad)
            first_unknown = row if first_unknown is None else first_unknown
            continue
        if spec.task == "multi_label":
            row_vec = [0.0] * len(spec.names)
            for n in names:
                row_vec[index[n]] = 1.0
            encoded.append(row_vec)
        else:
            encoded.append(index[names[0]])
    if unknown:
        listing = ", ".join(f"{name!r} ({count})" for name, count in unknown.most_common(10))
        raise table.error(
            f"{sum(unknown.values())} label(s) the model does not know: {listing}",
            row=first_unknown,
            column=column,
            hint=f"the model knows: {', '.join(spec.names)}",
        )
    return encoded


def split_validation(labels: Sequence[Any], fraction: float, seed: int, stratify: bool) -> tuple[list[int], list[int]]:
    """Seeded train/validation indices; stratified by class when every class has at least two examples."""
    from sklearn.model_selection import train_test_split

    indices = list(range(len(labels)))
    counts = Counter(labels) if stratify else Counter()
    use_strata = stratify and min(counts.values()) >= 2 and len(counts) <= len(labels) * fraction
    train, val = train_test_split(
        indices, test_size=fraction, random_state=seed, stratify=list(labels) if use_strata else None
    )
    return sorted(train), sorted(val)
