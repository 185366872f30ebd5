"""Contrastive training of embedding models: the sampler, the cached loss, Matryoshka prefixes, hard-negative mining,
the saved sentence-transformers directory, exact resume and bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import WORDS, assert_same_weights, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import FinetuneConfig, build_config
from bertcli.errors import Interrupted
from bertcli.tasks import finetune
from bertcli.training.batches import NoDuplicateBatches
from bertcli.training.loop import Callbacks

runner = CliRunner()
FAST = {"lr": 2e-3, "batch_size": 16, "epochs": 4, "precision": "no"}


def toy_pairs(n: int = 49, seed: int = 0) -> list[dict[str, str]]:
    """Queries and positives that share one key word (each key once), in varying filler: learnable in seconds."""
    rng = random.Random(seed)
    keys = [w for w in WORDS if len(w) > 2][:n]
    fillers = ["the", "a", "movie", "story", "was", "very", "and", "it"]
    return [
        {"query": f"{key} {' '.join(rng.sample(fillers, 2))}", "positive": f"{' '.join(rng.sample(fillers, 3))} {key}"}
        for key in keys
    ]


def config(train: Path, output: Path, model: Path, **overrides) -> FinetuneConfig:
    return build_config(
        FinetuneConfig, None, train=str(train), output=str(output), model=str(model), **{**FAST, **overrides}
    )


def test_the_sampler_never_puts_a_text_twice_in_a_batch():
    rng = random.Random(1)
    texts = [(f"q{i}", f"p{rng.randrange(12)}", f"n{rng.randrange(30)}") for i in range(200)]  # many shared texts
    sampler = NoDuplicateBatches(texts, 8, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(200))  # every example once per epoch
        for batch in batches:
            seen = [t for i in batch for t in texts[i]]
            assert len(seen) == len(set(seen)) and 1 <= len(batch) <= 8
        assert len(sampler) == len(batches)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(NoDuplicateBatches(texts, 8, seed=3)) == first and list(sampler) != first  # seeded, new each epoch


def test_the_cached_loss_gives_the_plain_loss_gradients(tiny_model):
    import torch
    from transformers import AutoModel

    from bertcli.tasks.embedding.contrastive import cached_loss, encoder, plain_loss, ranking_loss

    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(5, 60, (6, 7)),
        "attention_mask": torch.ones(6, 7, dtype=torch.long),
        "doc_input_ids": torch.randint(5, 60, (12, 9)),  # 6 positives, then one negative each
        "doc_attention_mask": torch.ones(12, 9, dtype=torch.long),
    }
    batch["doc_attention_mask"][3, 5:] = 0
    losses, grads = [], []
    for make in (plain_loss, lambda e, loss: cached_loss(e, loss, 4)):
        model = AutoModel.from_pretrained(str(tiny_model)).eval()  # no dropout: the two forward orders draw alike
        value = make(encoder("mean"), ranking_loss(20.0, True, [32, 16]))(model, batch)
        (value / 2).backward()  # what the loop does under gradient accumulation
        losses.append(value.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 30
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-5, msg=name)


def test_hard_negatives_exclude_the_positive_and_the_margin_band():
    from bertcli.training.negatives import mine

    query = np.array([[1.0, 0.0]])
    angles = [0.30, 0.05, 0.10, 0.40, 0.50, 0.60, 0.70, 0.80]  # cosines 0.955, 0.999, 0.995, 0.921, ...
    candidates = np.array([[np.cos(a), np.sin(a)] for a in angles])
    # the positive is candidate 0 (cosine 0.955); 1 and 2 rank above it; with skip 1: candidate 1 is skipped for
    # its rank, 2 for scoring above the positive; with margin 0.05, 3 (0.921) is within 0.05 of 0.955 too
    mined = mine(query, candidates, [0], k=2, skip=1, margin=0.05)
    assert mined.negatives == [[4, 5]]
    assert (mined.skipped_top, mined.skipped_margin, mined.short) == (1, 2, 0)
    assert mined.positive_score == pytest.approx(np.cos(0.30))
    # without skip or margin, what scores above the positive still is no negative
    assert mine(query, candidates, [0], k=3, skip=0, margin=0.0).negatives == [[3, 4, 5]]
    assert mine(query, candidates[:3], [0], k=2, skip=1, margin=0.05).short == 1


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("embedding")
    train = write_csv(root / "pairs.csv", toy_pairs())
    result = finetune(
        config(train, root / "model", tiny_model, matryoshka_dims="32,8", hard_negatives=1, negative_skip=0)
    )
    return root, train, result


def test_finetune_on_pairs_saves_a_validated_sentence_transformers_model(trained):
    root, _, result = trained
    meta = result.meta
    assert (meta.task, meta.matryoshka_dims, meta.metric) == ("encoder", [32, 8], "ndcg@10")
    assert {"ndcg@10", "mrr@10", "recall@10", "ndcg@10@8"} <= set(meta.history[-1])
    assert meta.best["ndcg@10"] == max(h["ndcg@10"] for h in meta.history)
    data = meta.run["train_data"]
    assert (
        data["rows"] == len(toy_pairs()) == 49
        and "1 mined per row" in data["negatives"]
        and "Matryoshka over 32,8" in data["loss"]
    )
    model = root / "model"
    modules = json.loads((model / "modules.json").read_text())
    rotated = (model / "2_Dense").is_dir()  # Matryoshka: a PCA rotation, kept where validation says it helps
    assert [m["path"] for m in modules] == [
        "",
        "1_Pooling",
        *(["2_Dense"] if rotated else []),
        f"{2 + rotated}_Normalize",
    ]
    assert json.loads((model / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    card = (model / "README.md").read_text()
    assert "sha256" in card and "multiple-negatives ranking loss" in card and "ndcg@10" in card


def test_sentence_transformers_loads_it_with_the_vectors_of_bertcli_embed(trained, tmp_path):
    from sentence_transformers import SentenceTransformer

    root, _, _ = trained
    texts = ["the movie was good", "guitar song", "a story about an election"]
    inputs = write_csv(tmp_path / "in.csv", [{"text": t} for t in texts])
    out = tmp_path / "v.npy"
    result = runner.invoke(
        app, ["embed", str(inputs), "-m", str(root / "model"), "-o", str(out), "--normalize", "--precision", "no"]
    )
    assert result.exit_code == 0, result.output
    expected = SentenceTransformer(str(root / "model"), device="cpu").encode(texts)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


def test_matryoshka_prefixes_are_trained(tmp_path, tiny_model):
    """The 8 leading dimensions of a Matryoshka model retrieve better than those of a model trained without it."""
    from bertcli.reports.retrieval import validation_metrics
    from bertcli.tasks.embedding.embedder import Embedder

    pairs = toy_pairs()
    train = write_csv(tmp_path / "pairs.csv", pairs)
    scores = {}
    for name, dims in (("matryoshka", "32,8"), ("plain", None)):
        finetune(config(train, tmp_path / name, tiny_model, matryoshka_dims=dims, val_split=0.0, epochs=8))
        embedder = Embedder(str(tmp_path / name), normalize=True, precision="no")
        q, d = (embedder.embed([p[side] for p in pairs]).vectors[:, :8] for side in ("query", "positive"))
        scores[name] = validation_metrics(*(v / np.linalg.norm(v, axis=1, keepdims=True) for v in (q, d)))["ndcg@10"]
    assert scores["matryoshka"] > scores["plain"] + 0.05, scores


def test_the_rotation_is_fitted_on_pairs_without_a_repeated_text():
    from bertcli.tasks.embedding.matryoshka import distinct_pairs

    queries = [[1, 2], [3], [1, 2], [4], [5]]
    documents = [[7], [8], [9], [8], [7, 1]]  # pair 2 repeats a query, pair 3 a document
    assert distinct_pairs(queries, documents) == [0, 1, 4]


def test_the_refined_rotation_stays_orthogonal_and_lowers_the_prefix_loss_it_was_fitted_on():
    """The refined axes keep every full-size cosine and lower the small size's ranking loss on the pairs they were
    fitted on, from the principal axes they start at (whether that helps held-out data is validation's call)."""
    import torch

    from bertcli.tasks.embedding.contrastive import ranking_loss
    from bertcli.tasks.embedding.matryoshka import prefix_ndcg, principal_axes, refined

    rng = np.random.default_rng(0)
    topics = rng.normal(size=(300, 32))  # each pair shares a topic vector; a random rotation spreads it evenly
    mix, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    queries = ((topics + 0.6 * rng.normal(size=topics.shape)) @ mix).astype(np.float32)
    positives = ((topics + 0.6 * rng.normal(size=topics.shape)) @ mix).astype(np.float32)
    axes = principal_axes(np.concatenate([queries, positives]))
    np.testing.assert_allclose(axes.T @ axes, np.eye(32), atol=1e-5)
    rotation = refined(queries, positives, axes, [8], scale=20.0, batch_size=32, seed=0)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(32), atol=1e-4)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(queries @ rotation) @ unit(positives @ rotation).T,
                               unit(queries) @ unit(positives).T, atol=1e-4)  # fmt: skip
    loss = ranking_loss(20.0, False, [8])

    def prefix_loss(r: np.ndarray) -> float:
        return float(loss(*(torch.from_numpy(v @ r) for v in (queries, positives))))

    assert prefix_loss(rotation) < prefix_loss(axes) - 0.05  # 2.50 -> 2.34 here
    assert prefix_ndcg(queries @ rotation, positives @ rotation, [32]) == pytest.approx(
        prefix_ndcg(queries, positives, [32]), abs=1e-6
    )


@pytest.mark.parametrize(
    "options",
    [
        {"mini_batch_size": 8},
        {"hard_negatives": 1, "negative_skip": 0},
        {"mini_batch_size": 8, "hard_negatives": 1, "negative_skip": 0},
    ],
    ids=["cached", "mined", "cached-mined"],
)
def test_resume_ends_with_identical_weights(tmp_path, tiny_model, options):

    train = write_csv(tmp_path / "pairs.csv", toy_pairs())
    settings = dict(epochs=4, val_split=0.0, **options)  # no validation: the last weights, the whole trajectory
    whole = finetune(config(train, tmp_path / "whole", tiny_model, **settings))

    def stop_at_7(step):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted at step 7"):
        finetune(config(train, tmp_path / "split", tiny_model, **settings), Callbacks(on_step=stop_at_7))
    resumed = finetune(config(train, tmp_path / "split", tiny_model, resume="auto", **settings))
    assert resumed.meta.run["steps"] == whole.meta.run["steps"]
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_finetune_detects_pairs_and_refuses_an_empty_side(tmp_path, tiny_model):
    rows = toy_pairs(20)
    rows[4]["positive"] = ""
    bad = write_csv(tmp_path / "bad.csv", rows)
    result = runner.invoke(app, ["finetune", str(bad), "-o", str(tmp_path / "o"), "-m", str(tiny_model)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"bertcli: error: {bad}:6, column 'positive': empty text (remove the row or fill it in)"
    ] or result.stderr.strip().splitlines()[-1].endswith("empty text (remove the row or fill it in)")
    # other column names: --task embedding with --text-column/--text-pair-column
    named = write_csv(tmp_path / "named.csv", [{"title": r["query"], "body": r["positive"]} for r in toy_pairs(40)])
    result = runner.invoke(
        app,
        ["finetune", str(named), "-o", str(tmp_path / "n"), "-m", str(tiny_model), "--task", "embedding",
         "--text-column", "title", "--text-pair-column", "body", "--max-steps", "2", "--precision", "no"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "columns query='title', positive='body'" in result.stderr
    assert json.loads((tmp_path / "n" / "bertcli.json").read_text())["task"] == "encoder"


def test_a_mistyped_metric_is_a_usage_error(tmp_path, tiny_model):
    train = write_csv(tmp_path / "pairs.csv", toy_pairs(20))
    result = runner.invoke(
        app, ["finetune", str(train), "-o", str(tmp_path / "o"), "-m", str(tiny_model), "--metric", "accuracy"]
    )
    assert result.exit_code == 2 and "unknown --metric 'accuracy' for a embedding model" in result.stderr


def test_serve_answers_dimensions_for_a_matryoshka_model(trained, tiny_model):
    from test_serve import Server

    root, _, _ = trained
    server = Server(f"emb={root / 'model'}", f"enc={tiny_model}", "--precision", "no")
    try:
        full = server.post("/v1/embeddings", {"model": "emb", "input": ["guitar song"]}).json()["data"][0]["embedding"]
        short = server.post("/v1/embeddings", {"model": "emb", "input": ["guitar song"], "dimensions": 8}).json()
        refused = server.post("/v1/embeddings", {"model": "enc", "input": ["guitar song"], "dimensions": 8})
    finally:
        server.stop()
    vector = np.asarray(short["data"][0]["embedding"])
    prefix = np.asarray(full[:8])
    assert len(full) == 32 and vector.shape == (8,)
    np.testing.assert_allclose(vector, prefix / np.linalg.norm(prefix), atol=1e-5)
    assert refused.status_code == 422 and "not trained with --matryoshka-dims" in refused.json()["error"]["message"]


def test_a_rotation_module_gives_the_same_vectors_in_sentence_transformers_bertcli_and_onnx(trained, tmp_path):
    """A Matryoshka model's PCA rotation (2_Dense) is applied by SentenceTransformer, bertcli's Embedder and the ONNX
    export alike, and as an orthogonal map leaves every cosine as it was."""
    import shutil

    from sentence_transformers import SentenceTransformer

    from bertcli.errors import UsageError
    from bertcli.tasks.embedding.embedder import Embedder
    from bertcli.tasks.embedding.st_files import write_sentence_transformers

    root, _, _ = trained
    model = tmp_path / "rotated"
    shutil.copytree(root / "model", model)
    for stale in ("2_Dense", "2_Normalize", "3_Normalize"):
        shutil.rmtree(model / stale, ignore_errors=True)
    texts = ["the movie was good", "guitar song", "a story about an election"]
    write_sentence_transformers(model, 32, "mean", 128)
    plain = Embedder(str(model), normalize=True, precision="no").embed(texts).vectors
    shutil.rmtree(model / "2_Normalize")
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))
    write_sentence_transformers(model, 32, "mean", 128, rotation.astype(np.float32))
    ours = Embedder(str(model), normalize=True, precision="no").embed(texts).vectors
    np.testing.assert_allclose(ours, plain @ rotation, atol=1e-5)
    np.testing.assert_allclose(SentenceTransformer(str(model), device="cpu").encode(texts), ours, atol=1e-5)
    np.testing.assert_allclose(ours @ ours.T, plain @ plain.T, atol=1e-5)
    result = runner.invoke(app, ["export", str(model), "-o", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.stderr
    exported = Embedder(str(tmp_path / "onnx"), normalize=True).embed(texts).vectors
    np.testing.assert_allclose(exported, ours, atol=1e-4)
    with pytest.raises(UsageError, match="Dense module reads the last layer"):
        Embedder(str(model), layers="-2")
