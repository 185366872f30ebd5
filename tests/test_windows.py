"""Long texts for classifiers: windows that cover every token, per-document aggregation, the policy saved and
applied, training weights per document, resume, and the default policy chosen from the data's lengths."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
from helpers import NEGATIVE, POSITIVE, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import WindowOptions
from bertcli.inference.encoding import TextEncoder
from bertcli.inference.long_text import LongTextPolicy, aggregate, read_documents, saved_policy
from bertcli.tasks.classification.windows import choose_policy

runner = CliRunner()
FILLER = "the a this that movie film story plot actor acting was is and but it we of to in on with".split()


def long_rows(n: int, seed: int, words: int = 70) -> list[dict[str, str]]:
    """Long reviews whose sentiment words are spread through the text (most of it filler)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        vocab = POSITIVE if label == "pos" else NEGATIVE
        text = [
            rng.choice(vocab) if rng.random() < 0.12 else rng.choice(FILLER) for _ in range(words + rng.randint(0, 30))
        ]
        rows.append({"text": " ".join(text), "label": label})
    return rows


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return TextEncoder.load(str(tiny_model), 24)


@pytest.mark.parametrize("stride", [0, 5, 11])
def test_windows_cover_every_token_with_special_tokens_on_each(tiny_model, encoder, stride):
    texts = [row["text"] for row in long_rows(6, seed=1)] + ["short one"]
    full = [ids[1:-1] for ids in TextEncoder.load(str(tiny_model), 10**6).encode(texts).input_ids]
    windows, source = encoder.windows(texts, None, stride)
    for doc, whole in enumerate(full):
        mine = [windows.input_ids[i] for i, s in enumerate(source) if s == doc]
        assert all(len(w) <= 24 and w[0] == encoder.specials.cls and w[-1] == encoder.specials.sep for w in mine)
        pieces = [w[1:-1] for w in mine]
        rebuilt = pieces[0] + [t for piece in pieces[1:] for t in piece[stride:]]
        assert rebuilt == whole  # every token, in order, none lost at a cut
        assert all(a[-stride:] == b[:stride] for a, b in zip(pieces, pieces[1:]) if stride)  # neighbours share `stride`
    assert source.count(len(texts) - 1) == 1 and max(source.count(d) for d in range(6)) >= 4


def test_pairs_keep_the_first_text_whole_and_window_the_second(encoder):
    windows, source = encoder.windows(["a great film"], [" ".join(["the story was good"] * 12)], 4)
    assert source.count(0) > 2
    firsts = {tuple(ids[: ids.index(encoder.specials.sep) + 1]) for ids in windows.input_ids}
    assert len(firsts) == 1 and all(len(ids) <= 24 for ids in windows.input_ids)
    assert all(set(types[: len(next(iter(firsts)))]) == {0} and types[-1] == 1 for types in windows.token_type_ids)
    alone, _ = encoder.windows([" ".join(["first"] * 40)], ["second"], 4)  # no room for the second text: cut
    assert alone.truncated == [True] and len(alone.input_ids) == 1
    first = " ".join(["a"] * 17)  # 17 + 3 special tokens leave the second text 4 = stride tokens: not windowed
    assert encoder.lengths([first], ["b"]) == [21]
    whole, _ = encoder.windows([first], ["b"], 4)  # ... but its 21 tokens fit in 24: not cut either
    assert whole.truncated == [False] and len(whole.input_ids) == 1 and len(whole.input_ids[0]) == 21


def test_aggregation_on_a_hand_computed_example(encoder):
    documents = read_documents(encoder, ["x", "y"], None, LongTextPolicy("window", 24, 4, "mean"))
    documents.source, documents.counts = np.array([0, 0, 0, 1]), np.array([3, 1])
    logits = np.array([[1.0, 2.0], [3.0, -4.0], [-1.0, 5.0], [0.5, 0.25]])
    np.testing.assert_allclose(aggregate(logits, documents, "mean"), [[1.0, 1.0], [0.5, 0.25]])
    np.testing.assert_allclose(aggregate(logits, documents, "max"), [[3.0, 5.0], [0.5, 0.25]])


def test_choose_policy_from_the_real_lengths(caplog):
    logger = logging.getLogger("bertcli")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="bertcli")
    try:
        short = choose_policy([20] * 90 + [60] * 10, WindowOptions(), None, 512)
        longer = choose_policy([20] * 50 + [900] * 50, WindowOptions(), None, 512)
        given = choose_policy([20] * 50 + [900] * 50, WindowOptions(long_text="truncate", stride=3), 128, 512)
        tail = choose_policy([20] * 980 + [900] * 20, WindowOptions(), None, 512)
        rare = choose_policy([20] * 995 + [900] * 5, WindowOptions(), None, 512)
    finally:
        logger.removeHandler(caplog.handler)
    assert short == LongTextPolicy("truncate", 64, 16, "mean")  # p99 60 -> 64: nothing past it worth a window
    assert longer == LongTextPolicy("window", 128, 32, "mean")  # capped at 128, half of the texts past it
    assert given == LongTextPolicy("truncate", 128, 3, "mean")
    assert tail == LongTextPolicy("window", 128, 32, "mean")  # 2% past the cap: windows
    assert rare == LongTextPolicy("truncate", 32, 8, "mean")  # 99% fit in 32: the 0.5% past it are cut
    lines = [r.getMessage() for r in caplog.records]
    assert (
        "long text: truncate at 64 tokens (chosen from the lengths); real lengths p50 20, p95 60, max 60 tokens, 0.0% longer than 64"
        in lines
    )
    assert any(
        "windows of 128 tokens, 32 shared, mean of window logits" in line and "50.0% longer than 128" in line
        for line in lines
    )


def test_a_bundle_without_a_policy_truncates_at_the_model_limit():
    assert saved_policy(None, 512, "mean") == LongTextPolicy("truncate", 512, 128, "mean")
    saved = {"mode": "window", "max_length": 64, "stride": 16, "aggregate": "max"}  # bertcli.json's long_text
    assert saved_policy(saved, 512, "mean") == LongTextPolicy("window", 64, 16, "max")
    assert saved_policy(saved, 512, "mean").overridden(WindowOptions(aggregate="mean")).aggregate == "mean"


@pytest.fixture(scope="module")
def windowed(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("windows")
    train = write_csv(root / "train.csv", long_rows(80, seed=0))
    test = write_csv(root / "test.csv", long_rows(24, seed=5))
    args = [
        "finetune",
        str(train),
        "-o",
        str(root / "m"),
        "-m",
        str(tiny_model),
        "--max-length",
        "32",
        "--long-text",
        "window",
    ]
    result = runner.invoke(
        app,
        [
            *args,
            "--stride",
            "8",
            "--epochs",
            "4",
            "--lr",
            "5e-3",
            "-b",
            "16",
            "--precision",
            "no",
            "--train-windows",
            "0",
        ],
    )
    assert result.exit_code == 0, result.stderr
    return root / "m", train, test, result.stderr


def test_the_policy_is_saved_and_the_card_says_pipeline_truncates(windowed):
    model, _, _, log = windowed
    meta = json.loads((model / "bertcli.json").read_text())
    assert meta["long_text"] == {"mode": "window", "max_length": 32, "stride": 8, "aggregate": "mean"}
    assert "A plain `pipeline()` truncates at 32 tokens" in (model / "README.md").read_text()
    assert "long text: windows of 32 tokens, 8 shared" in log
    assert meta["history"][-1]["accuracy"] >= 0.8  # the sentiment words are spread through the text: read them all


def test_a_document_with_k_windows_gives_one_record(windowed):
    model, _, _, _ = windowed
    texts = [row["text"] for row in long_rows(3, seed=9)] + ["good"]
    out = runner.invoke(app, ["predict", str(model), "--precision", "no"], input="\n".join(texts) + "\n")
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 4 and all(r["windows"] >= 3 for r in records[:3]) and "windows" not in records[3]
    assert not any(r.get("truncated") for r in records)
    cut = runner.invoke(
        app, ["predict", str(model), "--precision", "no", "--long-text", "truncate"], input=texts[0] + "\n"
    )
    assert json.loads(cut.stdout)["truncated"] is True and "windows" not in json.loads(cut.stdout)


def test_windowed_evaluate_equals_windowed_predict(windowed):
    model, _, test, _ = windowed
    report = json.loads(runner.invoke(app, ["evaluate", str(model), str(test), "--json", "--precision", "no"]).stdout)
    predicted = [
        json.loads(line)
        for line in runner.invoke(app, ["predict", str(model), str(test), "--precision", "no"]).stdout.splitlines()
    ]
    gold = [row["label"] for row in long_rows(24, seed=5)]
    assert report["n"] == 24 and report["accuracy"] == pytest.approx(
        np.mean([p["label"] == g for p, g in zip(predicted, gold)])
    )
    assert report["windows"] == sum(p["windows"] for p in predicted) > 24


def test_every_document_weighs_one_in_training(tiny_model, tmp_path):
    from bertcli.config import FinetuneConfig, build_config
    from bertcli.hub import load_tokenizer
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.tasks.classification.finetune import ClassifierTraining

    rows = long_rows(10, seed=2) + [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    # prepare is called without the skeleton, which fills the task's defaults: give --epochs
    cfg = build_config(FinetuneConfig, None, train=str(write_csv(tmp_path / "t.csv", rows)), output=str(tmp_path / "o"),
                       model=str(tiny_model), max_length=32, long_text="window", stride=8, val_split=0.0,
                       epochs=3.0)  # fmt: skip
    task = ClassifierTraining()
    data = task.read(cfg)

    def prepared(windows: int | None):
        cfg.windows.train_windows = windows
        model = task.load_model(str(tiny_model), data)
        return task.prepare(cfg, data, load_tokenizer(str(tiny_model)), model, make_accelerator("no"))

    every = prepared(0)  # every window each epoch: a text's windows share its weight of 1
    assert every.per_group is None and len(every.examples) > 30
    assert sum(e["weight"] for e in every.examples) == pytest.approx(12)
    assert [e["weight"] for e in every.examples[-2:]] == [1.0, 1.0]
    one = prepared(None)  # 3.7 windows per text: one per epoch by default, which then weighs the whole text
    assert one.per_group == 1 and {e["weight"] for e in one.examples} == {1.0}
    assert len(one.groups) == len(one.examples) and sorted(set(one.groups)) == list(range(12))


@pytest.mark.parametrize("train_windows", [None, 1])
def test_resume_with_windows_ends_with_identical_weights(tiny_model, tmp_path, train_windows):
    from safetensors.numpy import load_file

    from bertcli.config import FinetuneConfig, build_config
    from bertcli.errors import Interrupted
    from bertcli.tasks.classification.finetune import train_classifier as finetune
    from bertcli.training.loop import Callbacks

    train = write_csv(tmp_path / "train.csv", long_rows(40, seed=3))

    def config(out: str, **extra):
        return build_config(FinetuneConfig, None, train=str(train), output=str(tmp_path / out), model=str(tiny_model),
                            max_length=32, long_text="window", stride=8, epochs=2, lr=5e-3, batch_size=16,
                            train_windows=train_windows, **extra)  # fmt: skip

    whole = finetune(config("whole"))

    def stop(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        finetune(config("split"), Callbacks(on_step=stop))
    resumed = finetune(config("split", resume="auto"))
    assert resumed.meta.run["steps"] == whole.meta.run["steps"] > 5
    a, b = (
        load_file(str(tmp_path / "whole" / "model.safetensors")),
        load_file(str(tmp_path / "split" / "model.safetensors")),
    )
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)


def test_a_texts_windows_share_its_weight_in_the_batch_loss():
    """Within a batch a text's windows share its weight (two halves count as one whole text); every batch counts the
    same in the mean (the scheme bench/long.py measured best)."""
    import torch

    from bertcli.tasks.classification.finetune import _loss_fn

    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 0, 1])
    each = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    loss = _loss_fn("single_label", None)
    assert loss(logits, labels) == pytest.approx(each.mean().item())
    shares = torch.tensor([0.5, 0.5, 1.0, 1.0])  # two windows of one text, then two whole texts
    assert loss(logits, labels, shares) == pytest.approx(((each * shares).sum() / 3).item())
    assert loss(logits, labels, torch.full((4,), 0.25)) == pytest.approx(each.mean().item())  # one text's 4 windows
