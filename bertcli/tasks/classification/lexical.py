"""The lexical baseline: TF-IDF over word uni- and bigrams and a linear model, fitted with scikit-learn on the
training split, saved as plain arrays and scored with numpy alone.

Fitting uses scikit-learn (`TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)`; logistic regression
for single- and multi-label, one per label for the latter; ridge for regression). A sentence pair is one text, its
two halves joined by SEPARATOR. The model's output is logits in the BERT head's semantics, so `probabilities` gives
softmax / per-label sigmoid / the value exactly as the fine-tuned model's scores do.

Saved: one `lexical.npz` (the terms, idf, coefficients, intercepts and the analyzer settings, no object arrays),
read back with `allow_pickle=False`; no pickle or joblib, whose loading runs arbitrary code. Scoring rebuilds
scikit-learn's analyzer (lowercase, token_pattern, n-grams) and transform (1 + log tf, idf, L2) in numpy, equal to
`predict_proba` / `predict` of the fitted objects (tests/test_lexical.py, to 1e-9 on real text). Why not
scikit-learn at predict time: on the torch-free ONNX path it nearly triples the CPU time. Measured: a cold
`bertcli predict --backend onnx` of one line on a fine-tuned MiniLM with the full Rotten Tomatoes lexical model
(28,396 terms), whole process, 9 runs each alternating with the command alone (CPU seconds, median ratio; 2 cores
shared, load 3-5, so wall times are noisy; the command alone: 1.05-1.1 CPU s):

    + numpy scoring from lexical.npz (this module)    1.03x   exact
    + skl2onnx graph in a second ONNX Runtime session  1.03x   not exact: max |p difference| 0.12, 21 of 2,393
                                                               RT test labels differ (its tokenizer: [a-zA-Z0-9_]+);
                                                               its StringNormalizer needs an installed locale;
                                                               a new dependency
    + import scipy.sparse (a sparse-matrix scorer)     1.20x
    + scikit-learn's vectorizer and model rebuilt      2.90x   (+2.1 CPU s)
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.errors import ModelError
from bertcli.tasks.classification.scores import probabilities

FILE = "lexical.npz"
SEPARATOR = " __pair__ "  # one token of its own under the token pattern: a pair's halves never form a bigram
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default
NGRAMS = (1, 2)
MIN_DF = 2  # a term seen once is noise; tiny sets whose terms are all unique fall back to 1
ABSENT = -1e4  # the logit of a class the training split lacks: its probability underflows to exactly 0
C, ALPHA, MAX_ITER = 1.0, 1.0, 1000  # scikit-learn's regularisation defaults; iterations enough to converge
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # logistic regression's C, strongest regularisation first
ALPHA_GRID = (10.0, 3.0, 1.0, 0.3, 0.1)  # ridge's alpha, strongest first
FOLDS, FEWEST_FOLDS = 5, 3  # fewer folds give no usable standard error: the defaults are kept
TUNED_ROWS = 20_000  # cross-validation sees at most this many training rows (seeded); the final fit sees them all
CHOSEN_BY = "cross-validation on the training split, one-standard-error rule; the default 1 where folds is 0"
MODELS = {"single_label": "logistic", "multi_label": "logistic per label", "regression": "ridge"}


def joined(texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[str]:
    """One document per example: the text, or the pair's halves joined by SEPARATOR."""
    if pairs is None:
        return [str(t) for t in texts]
    return [f"{t}{SEPARATOR}{p}" for t, p in zip(texts, pairs)]


@dataclass(frozen=True)
class LexicalModel:
    """TF-IDF features and one linear head: logits = X @ coef.T + intercept, X the L2-normalised TF-IDF rows."""

    task: str
    terms: list[str]  # the feature columns, in scikit-learn's order
    idf: np.ndarray  # (terms,)
    coef: np.ndarray  # (outputs, terms): classes (single-label), labels (multi-label) or 1 (regression)
    intercept: np.ndarray  # (outputs,)
    min_df: int = MIN_DF
    regularisation: dict[str, Any] | None = None  # the setting used: {"C", "folds"} (lists per label) / {"alpha", ...}

    @cached_property
    def index(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.terms)}

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        index, analyze = self.index, analyzer()
        out = np.empty((len(texts), len(self.intercept)), dtype=np.float64)
        for row, doc in enumerate(joined(texts, pairs)):
            counts = Counter(t for t in analyze(doc) if t in index)
            columns = np.fromiter((index[t] for t in counts), dtype=np.int64, count=len(counts))
            tf = np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts))) + 1.0  # sublinear
            weights = tf * self.idf[columns]
            norm = math.sqrt(float(weights @ weights))
            out[row] = self.coef[:, columns] @ (weights / norm if norm > 0 else weights) + self.intercept
        return out

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """Softmax over classes, a sigmoid per label, or the value: what the BERT path's scores are."""
        return probabilities(self.logits(texts, pairs), self.task)

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Write lexical.npz (arrays and settings, no pickle) and return its record for bertcli.json."""
        from bertcli.io import atomic_write

        settings = self.settings()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            settings=_text_array(json.dumps(settings)),
            terms=_text_array("\n".join(self.terms)),
            idf=self.idf,
            coef=self.coef,
            intercept=self.intercept,
        )
        with atomic_write(Path(directory) / FILE, "wb", encoding=None) as handle:
            handle.write(buffer.getvalue())
        return {"file": FILE, **settings, "terms": len(self.terms)}

    def settings(self) -> dict[str, Any]:
        vectorizer = {"lowercase": True, "token_pattern": TOKEN_PATTERN, "ngram_range": list(NGRAMS)}
        vectorizer |= {"min_df": self.min_df, "sublinear_tf": True, "norm": "l2", "separator": SEPARATOR}
        regularisation = {"regularisation": self.regularisation} if self.regularisation else {}
        return {"task": self.task, "vectorizer": vectorizer, "model": MODELS[self.task]} | regularisation

    @classmethod
    def load(cls, directory: str | Path) -> LexicalModel:
        with np.load(Path(directory) / FILE, allow_pickle=False) as arrays:
            settings = json.loads(_text(arrays["settings"]))
            vectorizer = settings["vectorizer"]
            analyzer_settings = (vectorizer["token_pattern"], tuple(vectorizer["ngram_range"]), vectorizer["separator"])
            if analyzer_settings != (TOKEN_PATTERN, NGRAMS, SEPARATOR):
                raise ModelError(f"{FILE} was written with other analyzer settings: {vectorizer}", hint="retrain")
            terms = _text(arrays["terms"])
            return cls(
                settings["task"],
                terms.split("\n") if terms else [],
                arrays["idf"],
                arrays["coef"],
                arrays["intercept"],
                vectorizer["min_df"],
                settings.get("regularisation"),
            )


def analyzer():
    """scikit-learn's word analyzer at our settings: lowercase, the token pattern, then uni- and bigrams."""
    tokens = re.compile(TOKEN_PATTERN).findall

    def analyze(doc: str) -> list[str]:
        words = tokens(doc.lower())
        return words + [" ".join(words[i : i + 2]) for i in range(len(words) - 1)]

    return analyze


def fit(
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    labels: Sequence[Any],
    task: str,
    num_labels: int,
    tuned: bool = False,
) -> LexicalModel | None:
    """Fit on the training split. labels: class ids, 0/1 rows, or values. None when no text has a word in it.

    tuned: the regularisation (C, or ridge's alpha) chosen by cross-validation on these texts alone, what `finetune`
    fits; else scikit-learn's defaults, the plain baseline. Measured on bench/quality.py's sets, each fitted on the
    training split of three validation splits and scored on its test set: accuracy +1.3 points on debates, +4.7 on
    long debates, +3.7 on Rotten Tomatoes, macro-F1 +3.0 on moral foundations; -0.3 on rt-pairs, where no model gets
    far above chance, and -0.4 on movie documents. Each label of a multi-label set is tuned by its own accuracy.
    """
    fitted = vectorize(joined(texts, pairs))
    if fitted is None:
        return None
    vectorizer, features = fitted
    terms = vectorizer.get_feature_names_out().tolist()
    if task == "single_label":
        classes = np.asarray(labels, dtype=np.int64)
        c, folds = _chosen(C_GRID, features, classes, classify=True) if tuned else (C, 0)
        coef, intercept = _single_label(features, classes, num_labels, c)
        regularisation = {"C": c, "folds": folds}
    elif task == "multi_label":
        columns = np.asarray(labels, dtype=np.int64).T
        chosen = [_chosen(C_GRID, features, column, classify=True) if tuned else (C, 0) for column in columns]
        heads = [_binary(features, column, c) for column, (c, _) in zip(columns, chosen)]
        coef, intercept = np.stack([h[0] for h in heads]), np.array([h[1] for h in heads])
        regularisation = {"C": [c for c, _ in chosen], "folds": [f for _, f in chosen]}
    else:
        from sklearn.linear_model import Ridge

        values = np.asarray(labels, dtype=np.float64)
        alpha, folds = _chosen(ALPHA_GRID, features, values, classify=False) if tuned else (ALPHA, 0)
        ridge = Ridge(alpha=alpha).fit(features, values)
        coef, intercept = ridge.coef_.reshape(1, -1), np.atleast_1d(ridge.intercept_).astype(np.float64)
        regularisation = {"alpha": alpha, "folds": folds}
    if tuned:
        regularisation["chosen_by"] = CHOSEN_BY
    return LexicalModel(
        task,
        terms,
        vectorizer.idf_.astype(np.float64),
        coef.astype(np.float64),
        intercept,
        vectorizer.min_df,
        regularisation,
    )


def _logistic(c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=MAX_ITER)


def _chosen(grid: Sequence[float], features: Any, target: np.ndarray, classify: bool) -> tuple[float, int]:
    """The most regularised setting in `grid` (strongest first) whose mean cross-validated score (accuracy, or R2)
    is within one standard error of the best one's (the one-standard-error rule): where the scores are flat within
    noise it keeps the simpler model. Returns it with the number of folds; (the default 1, 0) when the data are too
    few for three folds. A label's folds are bounded by its second-largest class, so that every training fold holds
    two classes; rarer classes may miss a fold. Logistic regression walks each fold's grid from a warm start (its
    previous solution): on debates (844 texts, 3 classes) that took the search from 15 s to 6 s."""
    import warnings

    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, StratifiedKFold

    default = (C if classify else ALPHA), 0
    if len(target) > TUNED_ROWS:
        rows = _subsample(target, classify)
        features, target = features[rows], target[rows]
    if classify:
        counts = np.sort(np.bincount(target))[::-1]
        folds = min(FOLDS, int(counts[1]) if len(counts) > 1 else 0)
    else:
        folds = min(FOLDS, len(target) // 5)
    if folds < FEWEST_FOLDS:
        return default
    splitter = (StratifiedKFold if classify else KFold)(n_splits=folds, shuffle=True, random_state=0)
    scores = np.empty((len(grid), folds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only N members"
        splits = list(splitter.split(features, target))
    for fold, (train, held) in enumerate(splits):
        warm = _logistic(grid[0]).set_params(warm_start=True) if classify else None  # one per fold
        for i, value in enumerate(grid):
            model = warm.set_params(C=value) if classify else Ridge(alpha=value)
            model.fit(features[train], target[train])
            scores[i, fold] = model.score(features[held], target[held])
    return one_standard_error(grid, scores), folds


def _subsample(target: np.ndarray, classify: bool) -> np.ndarray:
    """About TUNED_ROWS row indices, seeded; a class keeps its share, and at least FOLDS rows (all, when fewer)."""
    rng = np.random.default_rng(0)
    if not classify:
        return np.sort(rng.choice(len(target), TUNED_ROWS, replace=False))
    share = TUNED_ROWS / len(target)
    rows = []
    for label in np.unique(target):
        members = np.flatnonzero(target == label)
        keep = min(len(members), max(FOLDS, round(share * len(members))))
        rows.append(rng.choice(members, keep, replace=False))
    return np.sort(np.concatenate(rows))


def one_standard_error(grid: Sequence[float], scores: np.ndarray) -> float:
    """The first setting of `grid` (strongest regularisation first) whose mean score over folds (`scores`: settings x
    folds) reaches the best mean less the best's standard error."""
    means = scores.mean(axis=1)
    best = int(np.argmax(means))
    floor = means[best] - scores[best].std(ddof=1) / math.sqrt(scores.shape[1])
    return float(next(value for value, mean in zip(grid, means) if mean >= floor))


def vectorize(docs: list[str]) -> tuple[Any, Any] | None:
    """The fitted TfidfVectorizer and the training matrix; min_df 1 when 2 leaves no term, None when 1 does too."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    for min_df in (MIN_DF, 1):
        vectorizer = TfidfVectorizer(
            sublinear_tf=True, ngram_range=NGRAMS, min_df=min_df, token_pattern=TOKEN_PATTERN, lowercase=True
        )
        try:
            return vectorizer, vectorizer.fit_transform(docs)
        except ValueError:  # "empty vocabulary" or "after pruning, no terms remain"
            continue
    return None


def _single_label(features: Any, labels: np.ndarray, num_labels: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits for every class: a class missing from the training split gets ABSENT; two classes, [0, w] (softmax
    of [0, d] is scikit-learn's [1 - expit(d), expit(d)])."""
    coef = np.zeros((num_labels, features.shape[1]))
    intercept = np.full(num_labels, ABSENT)
    present = np.unique(labels)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    model = _logistic(c).fit(features, labels)
    if len(present) == 2:
        coef[present[1]], intercept[present] = model.coef_[0], (0.0, model.intercept_[0])
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return coef, intercept


def _binary(features: Any, column: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """One label's logistic regression; a label constant in training gets its smoothed log-odds as the intercept."""
    positives = int(column.sum())
    if positives in (0, len(column)):
        share = (positives + 0.5) / (len(column) + 1.0)
        return np.zeros(features.shape[1]), math.log(share / (1.0 - share))
    model = _logistic(c).fit(features, column)
    return model.coef_[0], float(model.intercept_[0])


def _text_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _text(array: np.ndarray) -> str:
    return array.tobytes().decode("utf-8")


def saved_lexical(record: dict[str, Any] | None, directory: Path) -> tuple[Any, float]:
    """The lexical model a bundle applies and its weight; (None, 0.0) when it applies none."""
    if not record or not record.get("weight"):
        return None, 0.0
    if not (directory / FILE).is_file():
        raise ModelError(
            f"bertcli.json combines a lexical model ({FILE}) that is not in the directory",
            file=directory,
            hint="copy the whole model directory, or retrain",
        )
    return LexicalModel.load(directory), float(record["weight"])


def bundled(directory: Path) -> LexicalModel | None:
    """The lexical baseline a bundle holds, applied or not (evaluate reports it beside the model); None without one."""
    return LexicalModel.load(directory) if (Path(directory) / FILE).is_file() else None
