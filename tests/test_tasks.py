"""The task contract: one validation split, one metric check, one predictor shape, whatever the task."""

from __future__ import annotations

import json

import pytest
from helpers import sentiment_rows, toy_corpus, write_conll, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

runner = CliRunner()


def _data(tmp_path, kind: str):
    rows = sentiment_rows(40)
    if kind == "multi_label":
        rows = [{"text": r["text"], "labels": json.dumps([r["label"], "film"])} for r in rows]
        path = tmp_path / "train.jsonl"
        path.write_text(
            "".join(json.dumps({"text": r["text"], "labels": json.loads(r["labels"])}) + "\n" for r in rows)
        )
        return path
    if kind == "regression":
        rows = [
            {"text": r["text"], "label": (0.9 if r["label"] == "pos" else 0.1) + i / 400} for i, r in enumerate(rows)
        ]
    if kind == "ner":
        return write_conll(tmp_path / "train.conll", toy_corpus(30, 0))
    return write_csv(tmp_path / "train.csv", rows)


@pytest.mark.parametrize("kind", ["single_label", "multi_label", "regression", "ner"])
def test_a_mistyped_metric_is_a_usage_error_for_every_task(tmp_path, tiny_model, kind):
    """Checked once in the skeleton against what the task's validation reports, before any model loads."""
    data = _data(tmp_path, kind)
    out = tmp_path / "out"
    result = runner.invoke(app, ["finetune", str(data), "-o", str(out), "-m", str(tiny_model), "--metric", "acuracy"])
    assert result.exit_code == 2, result.stderr
    assert f"unknown --metric 'acuracy' for a {kind} model" in result.stderr and "choose one of loss" in result.stderr
    assert not out.exists() and not (tmp_path / "out.incomplete").exists()


def test_a_listed_metric_picks_the_best_model(tmp_path, tiny_model):
    data = _data(tmp_path, "single_label")
    out = tmp_path / "out"
    args = ["finetune", str(data), "-o", str(out), "-m", str(tiny_model), "--metric", "mcc", "--epochs", "1"]
    result = runner.invoke(app, [*args, "--precision", "no", "--val-split", "0.25"])
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "bertcli.json").read_text())
    assert meta["metric"] == "mcc" and "mcc" in meta["best"]


def test_the_validation_split_is_one_seeded_share_for_every_task(tmp_path):
    from bertcli.config import FinetuneConfig, build_config
    from bertcli.training.finetune import held_out

    cfg = build_config(FinetuneConfig, None, train="t.csv", output=str(tmp_path / "o"), val_split=0.25)
    labels = ["a"] * 30 + ["b"] * 10
    train, val = held_out(cfg, 40, labels)
    assert sorted(train + val) == list(range(40)) and len(val) == 10
    assert sum(labels[i] == "b" for i in val) in (2, 3)  # stratified: a quarter of each class
    assert held_out(cfg, 40, labels) == (train, val)  # seeded
    plain_train, plain_val = held_out(cfg, 40)
    assert len(plain_val) == 10 and sorted(plain_train + plain_val) == list(range(40))
    whole = build_config(FinetuneConfig, None, train="t.csv", output=str(tmp_path / "o"), val_split=0.0)
    assert held_out(whole, 40, labels) == (list(range(40)), [])


def test_predictors_share_one_contract(tiny_model, tmp_path):
    """Built by keyword from a command's config, `predict(texts, pairs=None)`, and `run` + `records` for serve."""
    from bertcli.config import PredictConfig
    from bertcli.tasks import open_bundle
    from bertcli.tasks.contract import options_for

    out = tmp_path / "clf"
    train = _data(tmp_path, "single_label")
    args = ["finetune", str(train), "-o", str(out), "-m", str(tiny_model), "--epochs", "1", "--precision", "no"]
    assert runner.invoke(app, args).exit_code == 0
    bundle, task = open_bundle(str(out))
    cfg = PredictConfig(model_dir=str(out), top_k=1, precision="no")
    options = options_for(type(task.load(bundle, precision="no")), cfg)
    assert options["top_k"] == 1 and options["precision"] == "no" and "aggregation" not in options
    classifier = task.load(bundle, **options)
    texts = ["so good", "", "awful film"]
    records = classifier.predict(texts)
    assert records == classifier.records(classifier.run([(t, None) for t in texts]))
    assert records[1] == {"label": None, "score": None, "scores": None} and len(records[0]["scores"]) == 1
    assert (
        classifier.routes == {"predict"}
        and classifier.takes_pairs
        and classifier.request_options
        == {
            "top_k",
            "threshold",
        }
    )


def test_loading_a_model_leaves_torch_threads_to_the_command(tiny_model):
    """A served process holds several models: none of them sets the process-wide thread pool; the command does."""
    import torch

    import bertcli
    from bertcli.runtime.device import use_threads

    before = torch.get_num_threads()
    try:
        bertcli.Embedder(str(tiny_model), threads=before + 1, precision="no").embed(["a text"])
        assert torch.get_num_threads() == before
        use_threads(before + 1)
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


def test_small_data_trains_for_enough_steps_unless_epochs_are_given(tiny_model, tmp_path):
    """The schedule rule reaches the run: unset --epochs on 30 training texts (batch 16: 2 steps an epoch) becomes
    75 epochs, 150 optimizer steps; a given --epochs is kept."""
    from bertcli.config import FinetuneConfig, build_config
    from bertcli.hub import load_tokenizer
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.tasks.classification.finetune import ClassifierTraining

    train = _data(tmp_path, "single_label")
    task = ClassifierTraining()
    for given, epochs in ((None, 75.0), (2.0, 2.0)):
        cfg = build_config(FinetuneConfig, None, train=str(train), output=str(tmp_path / "o"), model=str(tiny_model),
                           epochs=given, val_split=0.25)  # fmt: skip
        data = task.read(cfg)
        prepared = task.prepare(
            cfg, data, load_tokenizer(str(tiny_model)), task.load_model(str(tiny_model), data), make_accelerator("no")
        )
        assert prepared.cfg.training.batch_size == 16 and prepared.cfg.training.epochs == epochs
