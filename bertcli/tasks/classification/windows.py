"""Long texts for sequence classification: the training policy, chosen from the data's real token lengths
(`choose_policy`); the policy itself and how it reads and aggregates windows are `bertcli.inference.long_text`.
"""

from __future__ import annotations

import logging

import numpy as np

from bertcli.config import AGGREGATE_DEFAULTS, LENGTH_CAP, WINDOW_SHARE, WindowOptions
from bertcli.inference.encoding import percentiles, suggest_max_length
from bertcli.inference.long_text import LongTextPolicy, checked

log = logging.getLogger("bertcli")


def choose_policy(lengths: list[int], options: WindowOptions, max_length: int | None, cap: int) -> LongTextPolicy:
    """The training policy: the options given, the rest from the real token lengths of the training texts.

    Max length: `tokenize --stats`' suggestion (the smallest multiple of 32 that keeps 99% of the texts whole), at
    most LENGTH_CAP. Mode: window when more than WINDOW_SHARE of the texts are longer than that, else truncate
    (the measurements are in bertcli.config.training).
    """
    spread = percentiles(lengths)
    length = max_length or suggest_max_length(spread["p99"], min(cap, LENGTH_CAP))
    longer = float(np.mean(np.asarray(lengths) > length))
    mode = options.long_text or ("window" if longer > WINDOW_SHARE else "truncate")
    stride = options.stride if options.stride is not None else length // 4
    policy = checked(LongTextPolicy(mode, length, stride, options.aggregate or AGGREGATE_DEFAULTS["classifier"]))
    how = (
        f"windows of {length} tokens, {stride} shared, {policy.aggregate} of window logits"
        if mode == "window"
        else f"truncate at {length} tokens"
    )
    log.info(
        "long text: %s%s; real lengths p50 %d, p95 %d, max %d tokens, %.1f%% longer than %d",
        how,
        "" if options.long_text and max_length else " (chosen from the lengths)",
        spread["p50"],
        spread["p95"],
        max(lengths),
        100 * longer,
        length,
    )
    return policy
