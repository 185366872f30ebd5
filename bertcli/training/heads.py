"""A base model loaded with a task head for the labels it will learn (classification, token classification)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bertcli.errors import ModelError
from bertcli.hub import quiet_transformers

log = logging.getLogger("bertcli")


def load_with_head(auto_class: Any, path: str, labels: list[str], what: str, **config: Any) -> Any:
    """Load `path` with a task head for `labels`; a head missing or mis-sized in the checkpoint is initialised.

    Weights other than the head that had to be initialised mean the checkpoint does not fit: warn about them.
    """
    quiet_transformers()
    try:
        model, info = auto_class.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **config,
        )
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", file=path) from None
    new = sorted(set(info["missing_keys"]) | {k for k, *_ in info["mismatched_keys"]})
    if any(not k.startswith(("classifier", "score", "pre_classifier")) for k in new):
        log.warning("weights not found in the checkpoint were initialised at random: %s", ", ".join(new[:5]))
    elif new:
        log.info("initialised a new %s head (%d outputs) on %s", what, len(labels), Path(path).name)
    return model
