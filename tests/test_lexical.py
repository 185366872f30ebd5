"""The lexical baseline, the combined model and the majority-class checks, on real text (bertcli.corpora): numpy
scoring equal to scikit-learn's fitted objects, a round trip without pickle, a weight never worse than either part,
auto's noise rule, and the degenerate-model warning."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

from bertcli.reports.metrics import report_for_task
from bertcli.tasks.classification import combine, lexical
from bertcli.tasks.classification.baselines import degenerate, majority_probabilities, majority_report
from bertcli.tasks.classification.metrics import value
from bertcli.tasks.classification.scores import decisions


@pytest.fixture(scope="module")
def rt():
    """Rotten Tomatoes snippets (fresh / rotten): 1500 to train, 500 to score, split by movie."""
    from bertcli.corpora import rotten_tomatoes

    train, test = rotten_tomatoes()
    names = ["fresh", "rotten"]
    ids = lambda frame: np.array([names.index(v) for v in frame["label"]])  # noqa: E731
    return train.head(1500), ids(train.head(1500)), test.head(500), ids(test.head(500))


@pytest.fixture(scope="module")
def rt_model(rt):
    train, labels, _, _ = rt
    return lexical.fit(train["text"].tolist(), None, labels, "single_label", 2)


@pytest.fixture(scope="module")
def mfd():
    """Moral Foundations Dictionary terms, multi-label (foundations and virtue/vice)."""
    from bertcli.corpora import moral_foundations

    train, test = moral_foundations()
    names = sorted({n for cell in train["labels"] for n in cell.split(",")})
    rows = lambda frame: np.array([[int(n in c.split(",")) for n in names] for c in frame["labels"]])  # noqa: E731
    return train, rows(train), test, rows(test), names


@pytest.fixture(scope="module")
def char_model(rt):
    """A second real classifier of the same snippets (character n-grams), in the role of the fine-tuned model."""
    train, labels, test, _ = rt
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True)
    model = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(train["text"]), labels)
    return model.predict_proba(vectorizer.transform(test["text"]))


def sklearn_reference(texts, pairs, labels, min_df=lexical.MIN_DF):
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=min_df)
    return vectorizer, vectorizer.fit_transform(lexical.joined(texts, pairs)), labels


def test_single_label_scores_equal_scikit_learns_predict_proba(rt, rt_model):
    train, labels, test, gold = rt
    vectorizer, features, _ = sklearn_reference(train["text"].tolist(), None, labels)
    reference = (
        LogisticRegression(max_iter=1000).fit(features, labels).predict_proba(vectorizer.transform(test["text"]))
    )
    ours = rt_model.probabilities(test["text"].tolist())
    assert ours.shape == (500, 2) and np.abs(ours - reference).max() < 1e-9
    assert rt_model.terms == vectorizer.get_feature_names_out().tolist() and rt_model.min_df == 2
    assert 0.62 < float((ours.argmax(1) == gold).mean()) < 0.75  # short snippets: the baseline is modest here


def test_multi_label_scores_equal_one_logistic_regression_per_label(mfd):
    train, rows, test, _, names = mfd
    model = lexical.fit(train["text"].tolist(), None, rows, "multi_label", len(names))
    vectorizer, features, _ = sklearn_reference(train["text"].tolist(), None, rows)
    x = vectorizer.transform(test["text"])
    reference = np.stack(
        [LogisticRegression(max_iter=1000).fit(features, col).predict_proba(x)[:, 1] for col in rows.T], axis=1
    )
    assert np.abs(model.probabilities(test["text"].tolist()) - reference).max() < 1e-9


def test_regression_equals_ridge_and_falls_back_to_min_df_1_when_no_term_repeats():
    """Word-affect words are each unique: min_df=2 keeps no term, so the vocabulary is fitted with min_df=1."""
    from bertcli.corpora import word_affect

    train, test = word_affect()
    words, scores = train["text"].tolist()[:300], train["score"].to_numpy()[:300]
    model = lexical.fit(words, None, scores, "regression", 1)
    vectorizer, features, _ = sklearn_reference(words, None, scores, min_df=1)
    assert model.min_df == 1 and model.terms == vectorizer.get_feature_names_out().tolist()
    assert len(model.terms) >= len(words)  # every word's own term (a few words hold two: "o'clock")
    probe = words[:50] + test["text"].tolist()[:50]  # seen words, then unseen ones (the intercept alone)
    reference = Ridge(alpha=1.0).fit(features, scores).predict(vectorizer.transform(probe))
    ours = model.probabilities(probe)
    assert ours.shape == (100, 1) and np.abs(ours[:, 0] - reference).max() < 1e-9
    unseen = [i for i, w in enumerate(probe) if not set(lexical.analyzer()(w)) & set(model.terms)]
    assert len(unseen) >= 40 and (ours[unseen, 0] == model.intercept[0]).all()


def test_pairs_join_with_a_separator_token_and_match_scikit_learn(rt):
    from bertcli.corpora import rt_pairs

    frame = rt_pairs(rt[0], 400)
    labels = (frame["label"] == "same").to_numpy().astype(int)
    texts, pairs = frame["text"].tolist(), frame["text_pair"].tolist()
    model = lexical.fit(texts[:300], pairs[:300], labels[:300], "single_label", 2)
    vectorizer, features, _ = sklearn_reference(texts[:300], pairs[:300], labels[:300])
    reference = LogisticRegression(max_iter=1000).fit(features, labels[:300])
    probs = model.probabilities(texts[300:], pairs[300:])
    assert (
        np.abs(probs - reference.predict_proba(vectorizer.transform(lexical.joined(texts[300:], pairs[300:])))).max()
        < 1e-9
    )
    assert "__pair__" in model.terms  # the separator is a term of its own, in every pair


def test_a_class_missing_from_the_training_split_gets_probability_zero(rt):
    train, labels, test, _ = rt
    model = lexical.fit(train["text"].tolist(), None, labels, "single_label", 3)  # class 2 never seen
    probs = model.probabilities(test["text"].tolist()[:50])
    vectorizer, features, _ = sklearn_reference(train["text"].tolist(), None, labels)
    reference = (
        LogisticRegression(max_iter=1000).fit(features, labels).predict_proba(vectorizer.transform(test["text"][:50]))
    )
    assert (probs[:, 2] == 0).all() and np.abs(probs[:, :2] - reference).max() < 1e-9


def test_no_words_no_model():
    assert lexical.fit(["!", "?", "a", "..."], None, [0, 1, 0, 1], "single_label", 2) is None


def test_saved_as_plain_arrays_and_loaded_without_pickle(rt, rt_model, tmp_path):
    record = rt_model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lexical.npz"]
    assert record["file"] == "lexical.npz" and record["terms"] == len(rt_model.terms)
    assert record["vectorizer"]["min_df"] == 2 and record["model"] == "logistic"
    with np.load(tmp_path / "lexical.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    with zipfile.ZipFile(tmp_path / "lexical.npz") as archive:  # npy members only: nothing a loader would unpickle
        assert sorted(archive.namelist()) == ["coef.npy", "idf.npy", "intercept.npy", "settings.npy", "terms.npy"]
    loaded = lexical.LexicalModel.load(tmp_path)
    texts = rt[2]["text"].tolist()
    assert loaded.terms == rt_model.terms and np.array_equal(loaded.probabilities(texts), rt_model.probabilities(texts))


def test_numpy_metrics_equal_the_reports_on_real_predictions(rt, rt_model, mfd):
    _, _, test, gold = rt
    probs = rt_model.probabilities(test["text"].tolist())
    cases = [("single_label", gold, probs, ["fresh", "rotten"])]
    train, rows, mtest, mrows, names = mfd
    mprobs = lexical.fit(train["text"].tolist(), None, rows, "multi_label", len(names)).probabilities(
        mtest["text"].tolist()
    )
    cases.append(("multi_label", mrows, np.clip(mprobs * 2.5, 0, 1), names))  # scaled: some labels cross 0.5
    values = probs[:, 0] * 3 + np.where(gold == 0, 0.5, 0.0)  # regression: real scores against real targets
    cases.append(("regression", np.round(probs[:, 0] * 3, 1), values[:, None], None))
    for task, refs, p, label_names in cases:
        gold_list = refs.tolist()
        report = report_for_task(task, gold_list, decisions(task, p, 0.5), label_names)
        scalars = {k: v for k, v in report.items() if isinstance(v, float)}
        assert len(scalars) >= 6
        for key, expected in scalars.items():
            assert value(task, key, refs, p) == pytest.approx(expected, abs=1e-12), (task, key)


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "mcc", "loss"])
def test_the_chosen_weight_is_never_worse_on_validation_than_either_part(rt, rt_model, char_model, metric):
    _, _, test, gold = rt
    words = rt_model.probabilities(test["text"].tolist())
    choice = combine.choose("single_label", gold, char_model, words, metric)
    better = max if metric != "loss" else min
    assert choice.combined == better(choice.combined, choice.bert, choice.lexical)
    assert choice.bert == value("single_label", metric, gold, char_model)
    assert choice.lexical == value("single_label", metric, gold, words)
    assert choice.combined == value("single_label", metric, gold, combine.mix(char_model, words, choice.weight))
    assert 0.0 < choice.weight < 1.0  # two real models of different views: the mix beats both here


def test_multi_label_and_regression_weights_are_never_worse_than_either_part(mfd):
    """Multi-label terms (f1_micro) and word-affect ratings (mse, lower is better): word n-grams against character
    n-grams, two real models of the same words."""
    from bertcli.corpora import word_affect

    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    train, rows, test, gold, names = mfd
    x, t = chars.fit_transform(train["text"]), chars.transform(test["text"])
    by_chars = np.stack([LogisticRegression(max_iter=1000).fit(x, c).predict_proba(t)[:, 1] for c in rows.T], 1)
    words = lexical.fit(train["text"].tolist(), None, rows, "multi_label", len(names)).probabilities(test["text"])
    affect_train, affect_test = (frame.head(2000) for frame in word_affect())
    x, t = chars.fit_transform(affect_train["text"]), chars.transform(affect_test["text"])
    values = Ridge().fit(x, affect_train["score"]).predict(t)[:, None]
    ridge = lexical.fit(affect_train["text"].tolist(), None, affect_train["score"].to_numpy(), "regression", 1)
    cases = (
        ("multi_label", gold, by_chars, words, "f1_micro", max),
        ("regression", affect_test["score"].to_numpy(), values, ridge.probabilities(affect_test["text"]), "mse", min),
    )
    for task, refs, bert, other, metric, better in cases:
        choice = combine.choose(task, refs, bert, other, metric)
        assert choice.combined == better(choice.combined, choice.bert, choice.lexical), (task, choice)
        assert choice.combined == value(task, metric, refs, combine.mix(bert, other, choice.weight))
        assert choice.bert != choice.lexical


def test_ties_keep_bert_alone(rt, char_model):
    gold = rt[3]
    choice = combine.choose("single_label", gold, char_model, char_model.copy(), "accuracy")
    assert (choice.weight, choice.combine, choice.confidence) == (0.0, False, 0.0)
    assert choice.combined == choice.bert == choice.lexical


def test_auto_combines_when_bert_collapsed_to_the_majority_class(rt, rt_model):
    _, _, test, gold = rt
    collapsed = majority_probabilities("single_label", gold, len(gold)) * 0.2 + 0.4  # 0.6 on the majority class
    choice = combine.choose("single_label", gold, collapsed, rt_model.probabilities(test["text"].tolist()), "accuracy")
    assert choice.combine and choice.confidence >= 0.99 and choice.weight > 0.5
    assert choice.combined == choice.lexical > choice.bert == float(np.bincount(gold).max() / len(gold))
    assert choice.weight_for("auto") == choice.weight
    assert (choice.weight_for("off"), choice.weight_for("only")) == (0.0, 1.0)


def test_auto_treats_one_validation_example_as_noise_and_two_as_evidence(rt, char_model):
    """The same model, with k of its wrong validation answers made right: the share of resamples holding at least
    one of those k texts is 1 - (1 - k/120)^120: 0.63 for one text (noise), 0.87 for two, 1.00 for six."""
    gold, bert = rt[3][:120], char_model[:120]
    wrong = np.flatnonzero(bert.argmax(1) != gold)
    for k, low, high in ((1, 0.58, 0.68), (2, 0.83, 0.91), (6, 0.99, 1.0)):
        better = bert.copy()
        better[wrong[:k]] = np.eye(2)[gold[wrong[:k]]]
        choice = combine.choose("single_label", gold, bert, better, "accuracy")
        assert choice.combined - choice.bert == pytest.approx(k / 120)
        assert low <= choice.confidence <= high and choice.combine is (k > 1), choice


def test_the_majority_baseline_report(rt):
    gold = rt[3]
    report = majority_report("single_label", gold, ["fresh", "rotten"])
    share = float(np.bincount(gold).max() / len(gold))
    assert report["accuracy"] == pytest.approx(share)
    assert report["f1_macro"] == pytest.approx(share / (1 + share))  # 2p/(1+p) for one class, 0 for the other, halved
    prior = np.array([1] * 10 + [0])  # the training majority (rotten) can differ from the evaluated set's
    assert majority_report("single_label", gold, ["fresh", "rotten"], prior=prior)["accuracy"] == pytest.approx(
        1 - share
    )


def test_a_one_class_model_is_reported_with_what_to_try(rt, rt_model):
    _, _, test, gold = rt
    collapsed = np.tile([0.55, 0.45], (len(gold), 1))
    found = degenerate("single_label", gold, collapsed, ["fresh", "rotten"])
    assert found.reason == "one class" and found.model == found.majority
    assert "every one of the 500 validation texts is predicted 'fresh'" in found.warning and "--epochs" in found.warning
    assert found.record() == {
        "reason": "one class",
        "f1_macro": round(found.model, 6),
        "majority_f1_macro": round(found.majority, 6),
    }
    assert degenerate("single_label", gold, rt_model.probabilities(test["text"].tolist()), ["fresh", "rotten"]) is None


def test_a_model_no_better_than_the_majority_is_reported(rt, rt_model):
    _, _, test, gold = rt
    inverted = rt_model.probabilities(test["text"].tolist())[:, ::-1]  # two classes predicted, mostly wrong
    found = degenerate("single_label", gold, inverted, ["fresh", "rotten"])
    assert found.reason == "no better than the majority" and found.model < found.majority
    assert f"validation f1_macro {found.model:.4f} is no better than the majority-class prediction's" in found.warning


def test_degenerate_multi_label_and_regression(mfd):
    _, _, _, rows, _ = mfd
    silent = np.zeros(rows.shape)  # no label ever reaches the threshold
    assert degenerate("multi_label", rows, silent).reason == "one label set"
    values = rows[:, 0].astype(float) * 2 + 1
    assert degenerate("regression", values, np.full((len(values), 1), 2.0)).reason == "constant"
    assert degenerate("regression", values, values[:, None] * 0.9 + 0.1) is None


def test_small_data_gets_enough_optimizer_steps():
    """Unset --epochs: 3, or more on small data so that the run makes MIN_STEPS optimizer steps."""
    from bertcli.config.training import EPOCHS, MIN_STEPS, classification_epochs

    assert (EPOCHS, MIN_STEPS) == (3.0, 150)
    # 119 long political documents, one window each per epoch, batch 16: 8 steps an epoch, 24 in 3 epochs
    assert classification_epochs(119, 16, 1, 1, None) == 18.75
    # 1,800 Rotten Tomatoes snippets in batches of 32: 57 steps an epoch, 171 in 3: as before (so the debates' 1,020
    # windows at 16, 192 steps; rt-pairs 171; moral-foundations 276; word-affect 591: of the real sets, only the long
    # political documents, 24 steps, and the 223 movie documents, 42 steps, get more epochs)
    assert classification_epochs(1800, 32, 1, 1, None) == 3.0
    # 760 inputs in batches of 16: 48 an epoch, 144 in 3: 150 steps in 3.125 epochs
    assert classification_epochs(760, 16, 1, 1, None) == 3.125
    assert classification_epochs(760, 16, 2, 1, None) == classification_epochs(760, 16, 1, 2, None) == 150 / 24
    assert classification_epochs(119, 16, 1, 1, 3.0) == 3.0  # --epochs given: as given
    assert classification_epochs(119, 16, 1, 1, None, max_steps=40) == 3.0  # --max-steps decides


def test_scoring_a_saved_model_imports_neither_torch_nor_scikit_learn(rt_model, tmp_path):
    """What the torch-free ONNX path adds: loading lexical.npz, scoring and mixing need numpy only."""
    import subprocess
    import sys

    rt_model.save(tmp_path)
    code = (
        "import sys\nimport numpy as np\n"
        "from bertcli.tasks.classification.combine import mix\n"
        "from bertcli.tasks.classification.lexical import LexicalModel\n"
        f"p = LexicalModel.load({str(tmp_path)!r}).probabilities(['A triumph of style.', 'Two hours lost.'])\n"
        "print(mix(np.full_like(p, 0.5), p, 0.25).round(6).tolist())\n"
        "heavy = ('torch', 'transformers', 'datasets', 'accelerate', 'sklearn', 'scipy')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    mixed, loaded = done.stdout.splitlines()
    expected = 0.75 * 0.5 + 0.25 * rt_model.probabilities(["A triumph of style.", "Two hours lost."])
    assert loaded == "[]" and np.allclose(json.loads(mixed), expected, atol=1e-6)


def test_a_mix_no_better_than_the_lexical_model_alone_gives_way_to_it(rt, rt_model):
    """BERT near chance beside a lexical model that learned: the best mix beats BERT but ties the lexical model within
    noise, so auto predicts with the lexical model alone (weight 1), as it keeps BERT alone when the mix ties it."""
    _, _, test, gold = rt
    lexical = rt_model.probabilities(test["text"].tolist())
    rng = np.random.default_rng(0)
    noise = 0.5 + rng.uniform(-0.01, 0.01, len(gold))
    bert = np.stack([noise, 1 - noise], axis=1)  # chance: right on about half the texts
    choice = combine.choose("single_label", gold, bert, lexical, "accuracy")
    assert choice.combine and choice.weight == 1.0 and choice.combined == choice.lexical > choice.bert + 0.1
    assert choice.confidence == combine.paired_confidence("single_label", gold, bert, lexical, "accuracy")


def test_a_mix_that_beats_both_parts_is_kept():
    """Two models each sure where they are right and unsure where they are wrong, on overlapping thirds: together they
    get every text right, so the mix beats each part by more than noise and stays."""
    gold = np.random.default_rng(0).integers(0, 2, 300)
    onehot = np.eye(2)[gold]

    def sure_on(first: int, last: int) -> np.ndarray:
        probs = onehot * 0.4 + (1 - onehot) * 0.6  # unsure and wrong
        probs[first:last] = onehot[first:last] * 0.9 + (1 - onehot[first:last]) * 0.1
        return probs

    bert, lexical = sure_on(0, 200), sure_on(100, 300)
    choice = combine.choose("single_label", gold, bert, lexical, "accuracy")
    assert choice.combine and 0.0 < choice.weight < 1.0 and choice.combined == 1.0
    assert choice.bert == pytest.approx(2 / 3) and choice.lexical == pytest.approx(2 / 3)


def test_the_one_standard_error_rule_keeps_the_strongest_regularisation_within_noise():
    grid = (0.25, 1.0, 4.0)
    flat = np.array([[0.80, 0.82, 0.78], [0.81, 0.83, 0.79], [0.80, 0.84, 0.79]])  # 0.25 is within the best's error
    assert lexical.one_standard_error(grid, flat) == 0.25
    peaked = np.array([[0.60, 0.61, 0.59], [0.70, 0.71, 0.69], [0.80, 0.81, 0.79]])
    assert lexical.one_standard_error(grid, peaked) == 4.0
    near = np.array([[0.60, 0.61, 0.59], [0.795, 0.80, 0.805], [0.78, 0.82, 0.80]])  # 1.0 is within 4.0's error
    assert lexical.one_standard_error(grid, near) == 1.0


def test_a_tuned_fit_refits_plain_logistic_regression_at_the_c_cross_validation_chose(rt, tmp_path):
    """The warm-started search picks what cold fits over the same seeded folds pick, and the final model is plain
    logistic regression at that C on the whole training split."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    train, labels, test, _ = rt
    model = lexical.fit(train["text"].tolist(), None, labels, "single_label", 2, tuned=True)
    chosen = model.regularisation["C"]
    vectorizer, features, _ = sklearn_reference(train["text"].tolist(), None, labels)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    cold = np.array([cross_val_score(LogisticRegression(C=c, max_iter=1000), features, labels, cv=folds)
                     for c in lexical.C_GRID])  # fmt: skip
    assert chosen == lexical.one_standard_error(lexical.C_GRID, cold) and model.regularisation["folds"] == 5
    reference = LogisticRegression(C=chosen, max_iter=1000).fit(features, labels)
    want = reference.predict_proba(vectorizer.transform(test["text"]))
    assert np.abs(model.probabilities(test["text"].tolist()) - want).max() < 1e-9
    assert model.save(tmp_path)["regularisation"]["C"] == chosen  # the record bertcli.json gets
    assert lexical.LexicalModel.load(tmp_path).regularisation == model.regularisation


def test_tuning_keeps_the_defaults_where_the_data_are_too_few_to_fold(mfd):
    texts = ["good fun film", "bad dull film", "good great fun", "dull bad boring", "fun good"]
    model = lexical.fit(texts, None, [1, 0, 1, 0, 1], "single_label", 2, tuned=True)
    assert (model.regularisation["C"], model.regularisation["folds"]) == (lexical.C, 0)  # two negatives
    ridge = lexical.fit(texts, None, np.array([0.1, 0.9, 0.3, 0.8, 0.2]), "regression", 1, tuned=True)
    assert (ridge.regularisation["alpha"], ridge.regularisation["folds"]) == (lexical.ALPHA, 0)
    train, rows, _, _, names = mfd
    rows = rows.copy()
    rows[:, 0] = 0
    rows[:2, 0] = 1  # a label with two positives: untuned; the others are tuned on their own folds
    multi = lexical.fit(train["text"].tolist(), None, rows, "multi_label", len(names), tuned=True)
    assert multi.regularisation["folds"][0] == 0 and multi.regularisation["C"][0] == lexical.C
    assert all(f == 5 for f in multi.regularisation["folds"][1:]) and set(multi.regularisation["C"]) <= set(
        lexical.C_GRID
    )


def test_a_large_training_split_is_subsampled_for_the_search_keeping_a_rare_class(rt, monkeypatch):
    train, labels, _, _ = rt
    texts, classes = train["text"].tolist(), np.array(labels)
    classes[:4] = 2  # a rare third class of 4 texts
    monkeypatch.setattr(lexical, "TUNED_ROWS", 300)
    rows = lexical._subsample(classes, classify=True)
    assert 295 <= len(rows) <= 310 and (classes[rows] == 2).sum() == 4 and len(set(rows)) == len(rows)
    model = lexical.fit(texts, None, classes, "single_label", 3, tuned=True)
    assert model.regularisation["folds"] == 5 and model.regularisation["C"] in lexical.C_GRID
    assert model.probabilities(texts[:4]).shape == (4, 3)
