"""The combined model: a weighted mean of the fine-tuned model's and the lexical baseline's probabilities,
(1 - w) * bert + w * lexical, with w chosen on validation data.

w = 0 is BERT alone and w = 1 the lexical model alone, and both are on the grid, so on validation the chosen mix is
never worse than either part. Ties on the metric go to the lower validation log-loss (a proper score, continuous in
w), then to the smaller w.

`auto` uses the mix only when it beats BERT alone by more than noise: in a paired bootstrap over the validation
examples (the same resampled examples scored for both), the mix must beat BERT in at least CONFIDENCE of the
resamples. Paired, because the two are scored on the same texts: what varies is which texts they disagree on. On a
discrete metric this is a sign test: k texts the mix gets right and BERT wrong, none the other way, pass when the
chance of resampling none of them, (1 - k/n)^n, is under 20%. One text of any n is noise (about 37%); two pass
(12-13%). Measured on 14 validation texts of the long political documents (132 train, bench/quality.py's
debates-long), where the mix won 2 texts and lost none (confidence 0.88 and 0.89): at 0.95 auto kept BERT alone
and lost on test what the mix gained, 0.596 -> 0.825 (BERT after 24 steps) and 0.807 -> 0.895 (after 152 steps).
On 2,000 Rotten Tomatoes snippets, where BERT wins (validation 0.800, lexical 0.705, 200 texts), the best mix
(w = 0.45) gained 2 validation texts net at confidence 0.72: BERT alone stays, and the mix's test accuracy would
have been 0.819 against 0.818.

The same test runs the other way: a mix that beats BERT but not the lexical model alone by more than noise gives way
to the lexical model alone (w = 1), when that beats BERT. On rt-pairs (2,000 sentence pairs, BERT near chance after
171 steps), two of three seeds' mixes (w = 0.75 and 0.95) had won by 0-1 of 200 validation texts over the lexical
model, and lost to it on test by 11 and 25 of 1,000 texts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bertcli.tasks.classification.metrics import higher_is_better, log_loss, of_decisions, value
from bertcli.tasks.classification.scores import decisions

GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # steps of 0.05: finer moves validation scores by noise only
RESAMPLES, CONFIDENCE, SEED = 1000, 0.8, 0
TIE = 1e-12  # metric values closer than this are equal (float sums of the same decisions)
MODES = ("auto", "off", "only")


def mix(bert: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """The combined probabilities (or values): BERT alone at weight 0, the lexical model alone at 1."""
    bert = np.asarray(bert, dtype=np.float64)
    if weight == 0:
        return bert
    return (1.0 - weight) * bert + weight * np.asarray(lexical, dtype=np.float64)


@dataclass(frozen=True)
class Choice:
    """The weight chosen on validation, the three validation scores, and auto's verdict."""

    metric: str
    weight: float  # of the lexical model in the best mix
    bert: float  # validation metric of BERT alone (w = 0)
    lexical: float  # of the lexical model alone (w = 1)
    combined: float  # of the mix at `weight`
    confidence: float  # share of bootstrap resamples in which the mix beats BERT alone
    combine: bool  # auto's verdict: the mix beats BERT alone by more than noise

    def weight_for(self, mode: str) -> float:
        """The lexical weight a bundle applies: auto (this verdict), off (BERT alone), only (the lexical model)."""
        if mode not in MODES:
            raise ValueError(f"unknown lexical mode {mode!r}; use {', '.join(MODES)}")
        return {"off": 0.0, "only": 1.0}.get(mode, self.weight if self.combine else 0.0)

    def record(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def choose(
    task: str,
    references: np.ndarray,
    bert: np.ndarray,
    lexical: np.ndarray,
    metric: str,
    threshold: float = 0.5,
) -> Choice:
    """The best weight on the grid for `metric` on validation, and whether it beats BERT alone by more than noise."""
    refs = np.asarray(references)
    sign = 1.0 if higher_is_better(metric) else -1.0
    raw, loss = {}, {}
    for w in GRID.tolist():
        probs = mix(bert, lexical, w)
        raw[w], loss[w] = value(task, metric, refs, probs, threshold), log_loss(task, refs, probs)
    score = {w: _score(sign * v) for w, v in raw.items()}
    tied = [w for w in GRID.tolist() if score[w] >= max(score.values()) - TIE]
    weight = min(w for w in tied if loss[w] <= min(loss[t] for t in tied) + TIE)
    confidence, mixed = 0.0, mix(bert, lexical, weight)
    if score[weight] > score[0.0] + TIE:
        confidence = paired_confidence(task, refs, bert, mixed, metric, threshold)
    if confidence >= CONFIDENCE and 0.0 < weight < 1.0:
        # a mix that beats the lexical model alone only within noise: the lexical model alone, when it beats BERT
        if paired_confidence(task, refs, lexical, mixed, metric, threshold) < CONFIDENCE:
            alone = paired_confidence(task, refs, bert, lexical, metric, threshold)
            if alone >= CONFIDENCE:
                weight, confidence = 1.0, alone
    return Choice(metric, weight, raw[0.0], raw[1.0], raw[weight], confidence, confidence >= CONFIDENCE)


def _score(x: float) -> float:
    """Higher is better; an undefined metric (NaN: the correlation of constant predictions) ranks below any other."""
    return -np.inf if np.isnan(x) else x


def paired_confidence(
    task: str, refs: np.ndarray, first: np.ndarray, second: np.ndarray, metric: str, threshold: float = 0.5
) -> float:
    """The share of bootstrap resamples of the examples in which `second` scores better than `first` (seeded)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    rng = np.random.default_rng(SEED)
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    classes = first.shape[1]
    if metric == "loss":
        score = lambda probs, pick: log_loss(task, refs[pick], probs[pick])  # noqa: E731
    else:  # decide once; a resample's decisions are the resampled decisions
        first, second = (np.asarray(decisions(task, p, threshold)) for p in (first, second))
        score = lambda preds, pick: of_decisions(task, metric, refs[pick], preds[pick], classes)  # noqa: E731
    wins = 0
    for _ in range(RESAMPLES):
        pick = rng.integers(0, len(refs), len(refs))
        wins += _score(sign * score(second, pick)) > _score(sign * score(first, pick)) + TIE
    return wins / RESAMPLES
