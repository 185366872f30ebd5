"""bertcli embed: pooling and layer options against direct transformers outputs, padding invariance,
every output format with ids and order, stdin, chunked streaming, resume, and parity with sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import DataOptions, EmbedConfig, EmbedOptions, VectorOptions
from bertcli.errors import Interrupted, ModelError, UsageError
from bertcli.inference.batching import batches_for, token_budget_batches, unpadded_batches
from bertcli.tasks.embedding.embed import embed
from bertcli.tasks.embedding.embedder import Embedder, parse_layers

runner = CliRunner()
TEXTS = [
    "the movie was good",
    "bad acting",
    "the plot was really quite boring and dull , i hated it",
    "a",
    "we loved the song and the guitar",
    "they vote in the election",
    "sports news",
    "this film is not great but fun",
    "code on the phone",
    "the team had a game",
]


def _reference(model_dir: Path, text: str):
    """Hidden states of one unpadded input, straight from transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.inference_mode():
        out = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states], out.pooler_output[0].numpy()


@pytest.fixture(scope="module")
def reference(tiny_model):
    return _reference(tiny_model, TEXTS[2])


@pytest.mark.parametrize(
    "pooling, layers, agg, expected",
    [
        ("mean", "-1", "mean", lambda hs: hs[-1].mean(0)),
        ("cls", "-1", "mean", lambda hs: hs[-1][0]),
        ("max", "-1", "mean", lambda hs: hs[-1].max(0)),
        ("mean", "-2:", "mean", lambda hs: ((hs[-2] + hs[-1]) / 2).mean(0)),
        ("cls", "0,-1", "concat", lambda hs: np.concatenate([hs[0][0], hs[-1][0]])),
        ("max", "-2,-1", "concat", lambda hs: np.concatenate([hs[-2], hs[-1]], axis=-1).max(0)),
        ("mean", "0", "mean", lambda hs: hs[0].mean(0)),
    ],
)
def test_pooling_and_layers_match_transformers(tiny_model, reference, pooling, layers, agg, expected):
    hidden, _ = reference
    embedder = Embedder(str(tiny_model), EmbedOptions(pooling=pooling, layers=layers, layer_agg=agg, precision="no"))
    vectors = embedder.embed(TEXTS).vectors
    want = expected(hidden)
    assert vectors.shape == (len(TEXTS), want.shape[0]) and vectors.dtype == np.float32
    assert embedder.dim == want.shape[0] == (64 if agg == "concat" else 32)
    np.testing.assert_allclose(vectors[2], want, atol=1e-5)


def test_pooler_output_and_normalize(tiny_model, reference):
    _, pooled = reference
    vectors = (
        Embedder(str(tiny_model), EmbedOptions(pooling="pooler", normalize=True, precision="no")).embed(TEXTS).vectors
    )
    np.testing.assert_allclose(vectors[2], pooled / np.linalg.norm(pooled), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_model_without_pooler_is_a_clear_error(tiny_model, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    BertModel(BertConfig.from_pretrained(str(tiny_model)), add_pooling_layer=False).save_pretrained(str(tmp_path))
    AutoTokenizer.from_pretrained(str(tiny_model)).save_pretrained(str(tmp_path))
    with pytest.raises(ModelError, match="no trained pooler"):
        Embedder(str(tmp_path), EmbedOptions(pooling="pooler"))
    assert Embedder(str(tmp_path), EmbedOptions()).embed(["fine"]).vectors.shape == (1, 32)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("layers", ["-1", "-2:"])
def test_padding_does_not_change_a_vector(tiny_model, pooling, layers):
    """A short input gives the same vector alone and in a batch padded to a much longer input."""
    embedder = Embedder(str(tiny_model), EmbedOptions(pooling=pooling, layers=layers, batch_size=8))
    alone = embedder.embed(["bad acting"]).vectors[0]
    together = embedder.embed(["bad acting", TEXTS[2] * 3]).vectors[0]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_token_level_vectors_are_unpadded_with_tokens_and_offsets(tiny_model, reference):
    hidden, _ = reference
    embedder = Embedder(str(tiny_model), EmbedOptions(token_level=True, batch_size=4, precision="no"))
    result = embedder.embed(TEXTS)
    for text, tokens, offsets, vectors in zip(TEXTS, result.tokens, result.offsets, result.vectors):
        assert len(tokens) == len(offsets) == vectors.shape[0] and vectors.shape[1] == 32
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        assert all(text[s:e].lower() == t.removeprefix("##") for t, (s, e) in zip(tokens[1:-1], offsets[1:-1]))
    np.testing.assert_allclose(result.vectors[2], hidden[-1], atol=1e-5)


def test_layer_and_option_errors(tiny_model):
    assert parse_layers("-1", 6) == [6] and parse_layers("-4:", 6) == [3, 4, 5, 6] and parse_layers("0,-2", 6) == [0, 5]
    for bad in ("7", "-8", "x", "3:1"):
        with pytest.raises(UsageError, match="--layers"):
            parse_layers(bad, 6)
    with pytest.raises(UsageError, match="takes no --layers"):
        Embedder(str(tiny_model), EmbedOptions(pooling="pooler", layers="-2:"))
    with pytest.raises(UsageError, match="unknown --pooling"):
        Embedder(str(tiny_model), EmbedOptions(pooling="sum"))
    with pytest.raises(UsageError, match="exceeds the model's limit"):
        Embedder(str(tiny_model), EmbedOptions(max_length=4096))


def test_token_budget_batches_cover_every_input_once():
    lengths = [5, 40, 3, 40, 12, 7, 100, 2]
    batches = token_budget_batches(lengths, max_tokens=80)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 80 or len(b) == 1 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_unpadded_batches_hold_the_budget_in_real_tokens_longest_first():
    lengths = [5, 40, 3, 40, 12, 7, 100, 2, 30]
    batches = unpadded_batches(lengths, max_tokens=80, max_batch=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert [[lengths[i] for i in b] for b in batches] == [[100], [40, 40], [30, 12, 7], [5, 3, 2]]
    assert [len(b) for b in batches_for(lengths, None, 80, unpadded=True)] == [1, 2, 6]  # 100, 80, 59 tokens
    assert [len(b) for b in batches_for(lengths, None, 80)] == [1, 2, 2, 4]  # padded: 100, 80, 60, 28


@pytest.mark.parametrize("layers", ["-1", "-2:"])
def test_default_batches_hold_the_budget_of_the_path_the_forward_takes(tiny_model, layers):
    """Torch on a CPU runs unpadded, in batches of BATCH_TOKENS["cpu-unpadded"] real tokens; every layer's output
    (`--layers`) runs padded, in batches of BATCH_TOKENS["cpu"] padded tokens."""
    from bertcli.config import BATCH_TOKENS

    embedder = Embedder(str(tiny_model), EmbedOptions(precision="no", layers=layers))
    if not embedder.backend.unpadded:
        pytest.skip("torch runs unpadded on a CPU only")
    shapes, forward = [], embedder.backend.forward
    embedder.backend.forward = lambda features, outputs: (
        shapes.append((*features["input_ids"].shape, int(features["attention_mask"].sum())))
        or forward(features, outputs)
    )
    texts = [" ".join(["good movie"] * (3 + i % 2)) for i in range(400)]  # two lengths: 200 inputs each
    embedder.embed(texts)
    padded = layers != "-1"
    used = [rows * width if padded else real for rows, width, real in shapes]
    assert sum(rows for rows, _, _ in shapes) == 400
    assert max(used) <= BATCH_TOKENS["cpu" if padded else "cpu-unpadded"] < 2 * max(used)  # full batches


def test_a_common_length_gets_unpadded_batches_of_its_own():
    lengths = [9, 7, 30, 7, 8, 7, 7, 7, 7, 6, 7, 7, 5]  # eight inputs of 7 tokens, five rarer lengths
    batches = token_budget_batches(lengths, max_tokens=40, min_equal=8)
    sevens = [b for b in batches if 7 in {lengths[i] for i in b}]
    assert all({lengths[i] for i in b} == {7} for b in sevens)  # never padded up to a longer neighbour
    assert sorted(np.concatenate(sevens).tolist()) == [i for i, n in enumerate(lengths) if n == 7]
    assert [len(b) for b in sevens] == [5, 3]  # 40 tokens // 7 = 5 per batch
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))


# --- export: formats, ids, order, stdin, streaming, resume ---------------------------------------


@pytest.fixture
def corpus_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "docs.csv", [{"doc_id": f"d{i:02d}", "body": t} for i, t in enumerate(TEXTS)])


@pytest.fixture(scope="module")
def expected(tiny_model):
    """fp32 vectors: the comparisons below pin fp32 too, so 1e-5 holds whatever --precision auto means here."""
    return Embedder(str(tiny_model), EmbedOptions(normalize=True, precision="no")).embed(TEXTS).vectors


def _read(path: Path, fmt: str):
    """(ids, texts or None, vectors) from any output format."""
    if fmt == "npy":
        ids = path.with_name(path.stem + ".ids.txt").read_text(encoding="utf-8").splitlines()
        return ids, None, np.load(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        return table["id"], table.get("text"), np.array(table["vector"], dtype=np.float32)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return (
        [r["id"] for r in records],
        [r["text"] for r in records] if "text" in records[0] else None,
        np.array([r["vector"] for r in records], dtype=np.float32),
    )


@pytest.mark.parametrize("fmt", ["npy", "parquet", "jsonl"])
def test_output_formats_round_trip_with_ids_in_order(tiny_model, corpus_csv, tmp_path, expected, fmt):
    out = tmp_path / f"vectors.{fmt}"
    args = [
        "embed",
        str(corpus_csv),
        "-m",
        str(tiny_model),
        "-o",
        str(out),
        "--normalize",
        "--text-column",
        "body",
        "--id-column",
        "doc_id",
    ]
    result = runner.invoke(
        app, [*args, "--include-text", "--chunk-size", "3", "--batch-size", "2", "--precision", "no"]
    )
    assert result.exit_code == 0, result.stderr
    ids, texts, vectors = _read(out, fmt)
    assert ids == [f"d{i:02d}" for i in range(len(TEXTS))]
    assert texts is None if fmt == "npy" else texts == TEXTS
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert not list(tmp_path.glob("*.partial*")) and "embedded 10 inputs (dim 32)" in result.stderr


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_float16_output(tiny_model, corpus_csv, tmp_path, expected, fmt):
    out = tmp_path / f"half.{fmt}"
    result = runner.invoke(
        app,
        [
            "embed",
            str(corpus_csv),
            "-m",
            str(tiny_model),
            "-o",
            str(out),
            "--normalize",
            "--dtype",
            "float16",
            "--precision",
            "no",
        ],
    )
    assert result.exit_code == 0, result.stderr
    if fmt == "npy":
        vectors = np.load(out)
        assert vectors.dtype == np.float16
    else:
        import pyarrow.parquet as pq

        assert str(pq.read_schema(out).field("vector").type.value_type) == "halffloat"
        vectors = _read(out, fmt)[2]
    np.testing.assert_allclose(vectors.astype(np.float32), expected, atol=2e-3)


@pytest.mark.parametrize("how", ["file", "dash", "stdin"])
def test_txt_input_from_file_or_stdin_to_stdout(tiny_model, tmp_path, expected, how):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    args = {"file": [str(source)], "dash": ["-"], "stdin": []}[how]
    args += ["-m", str(tiny_model), "--normalize", "-o", "-", "--precision", "no"]
    result = runner.invoke(app, ["embed", *args], input=None if how == "file" else source.read_text())
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == list(range(len(TEXTS)))
    np.testing.assert_allclose(np.array([r["vector"] for r in records], dtype=np.float32), expected, atol=1e-5)


@pytest.mark.parametrize("recipe", [False, True])
def test_piped_stdout_is_the_default_output_with_or_without_a_recipe(tiny_model, tmp_path, expected, recipe):
    args = ["embed", "-m", str(tiny_model), "--normalize", "--precision", "no"]
    if recipe:  # a recipe without an output: still JSONL on the pipe
        (tmp_path / "r.toml").write_text(f'model = "{tiny_model}"\nnormalize = true\n')
        args = ["embed", "--config", str(tmp_path / "r.toml"), "--precision", "no"]
    result = runner.invoke(app, args, input="\n".join(TEXTS) + "\n")
    assert result.exit_code == 0, result.stderr
    vectors = [json.loads(line)["vector"] for line in result.stdout.splitlines()]
    np.testing.assert_allclose(np.array(vectors, dtype=np.float32), expected, atol=1e-5)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_token_level_export(tiny_model, corpus_csv, tmp_path, fmt):
    out = tmp_path / f"tokens.{fmt}"
    result = runner.invoke(
        app,
        [
            "embed",
            str(corpus_csv),
            "-m",
            str(tiny_model),
            "-o",
            str(out),
            "--token-level",
            "--chunk-size",
            "4",
            "--precision",
            "no",
        ],
    )
    assert result.exit_code == 0, result.stderr
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    want = Embedder(str(tiny_model), EmbedOptions(token_level=True, precision="no")).embed(TEXTS)
    assert [r["id"] for r in rows] == list(range(len(TEXTS)))
    for row, tokens, vectors in zip(rows, want.tokens, want.vectors):
        assert row["tokens"] == tokens and len(row["offsets"]) == len(tokens)
        np.testing.assert_allclose(np.array(row["vectors"], dtype=np.float32), vectors, atol=1e-5)
    npy = runner.invoke(
        app, ["embed", str(corpus_csv), "-m", str(tiny_model), "-o", str(tmp_path / "t.npy"), "--token-level"]
    )
    assert npy.exit_code == 2 and "--token-level writes .parquet or .jsonl" in npy.stderr


def test_streaming_chunks_smaller_than_the_input_give_the_same_result(tiny_model, tmp_path):
    source = tmp_path / "many.txt"
    texts = [TEXTS[i % len(TEXTS)] + " " + "good " * (i % 7) for i in range(53)]
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    opts = EmbedOptions(batch_size=4, precision="no")  # fp32: batches differ, values must not
    common = dict(input=str(source), model=str(tiny_model), embed=opts)
    chunked = embed(EmbedConfig(output=str(tmp_path / "a.npy"), vectors=VectorOptions(chunk_size=5), **common))
    whole = embed(EmbedConfig(output=str(tmp_path / "b.npy"), vectors=VectorOptions(chunk_size=1000), **common))
    assert chunked.rows == whole.rows == 53
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-5)
    assert (tmp_path / "a.ids.txt").read_text().splitlines() == [str(i) for i in range(53)]


@pytest.mark.parametrize("fmt", ["npy", "parquet", "jsonl"])
def test_resume_after_an_interrupted_export(tiny_model, corpus_csv, tmp_path, monkeypatch, expected, fmt):
    from bertcli.tasks.embedding import vectors as vector_io

    out = tmp_path / f"vectors.{fmt}"
    data = DataOptions(text_column="body", id_column="doc_id")
    opts, export = EmbedOptions(normalize=True, precision="no"), VectorOptions(chunk_size=3)

    def run(vectors: VectorOptions):
        return embed(
            EmbedConfig(
                input=str(corpus_csv), output=str(out), model=str(tiny_model), embed=opts, vectors=vectors, data=data
            )
        )

    writer_cls = vector_io.WRITERS[fmt]
    real_append = writer_cls.append
    calls = {"n": 0}

    def flaky_append(self, records, vectors):
        calls["n"] += 1
        if calls["n"] == 3:  # two chunks (6 inputs) are on disk when Ctrl-C arrives
            raise KeyboardInterrupt
        real_append(self, records, vectors)

    monkeypatch.setattr(writer_cls, "append", flaky_append)
    with pytest.raises(Interrupted, match="after 6 inputs"):
        run(export)
    assert not out.exists() and Path(str(out) + ".partial").exists()
    if fmt == "npy":  # a crash mid-append leaves bytes beyond the last checkpoint; resume must drop them
        with open(str(out) + ".partial", "ab") as handle:
            handle.write(b"\1" * 100)
    monkeypatch.setattr(writer_cls, "append", real_append)

    with pytest.raises(UsageError, match="other settings"):
        run(VectorOptions(chunk_size=3, resume=True, dtype="float16"))
    result = run(VectorOptions(chunk_size=3, resume=True))
    assert result.resumed_from == 6 and result.rows == len(TEXTS)
    ids, _, vectors = _read(out, fmt)
    assert ids == [f"d{i:02d}" for i in range(len(TEXTS))]
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert not list(tmp_path.glob("*.partial*"))


def test_input_errors_are_one_line(tiny_model, corpus_csv, tmp_path):
    missing = runner.invoke(
        app, ["embed", str(corpus_csv), "-m", str(tiny_model), "-o", str(tmp_path / "x.npy"), "--text-column", "nope"]
    )
    assert missing.exit_code == 1 and "column 'nope' (from --text-column) not found" in missing.stderr
    assert "columns are: doc_id, body" in missing.stderr and not list(tmp_path.glob("x.*"))
    suffix = runner.invoke(app, ["embed", str(corpus_csv), "-m", str(tiny_model), "-o", str(tmp_path / "x.bin")])
    assert suffix.exit_code == 2 and "cannot tell the output format" in suffix.stderr
    empty = runner.invoke(app, ["embed", "-m", str(tiny_model), "-o", str(tmp_path / "e.npy")], input="")
    assert empty.exit_code == 1 and "no input records" in empty.stderr and not list(tmp_path.glob("e.*"))


# --- the real model against its reference implementation ------------------------------------------


def test_matches_sentence_transformers_all_minilm():
    """all-MiniLM-L6-v2, mean pooling + normalize, equals SentenceTransformer.encode on real sentences (incl. truncated ones)."""
    from sentence_transformers import SentenceTransformer

    from bertcli.corpora import rotten_tomatoes
    from bertcli.hub import default_model

    texts = rotten_tomatoes()[1]["text"].tolist()[:300]
    texts += [" ".join(texts[i : i + 25]) for i in range(0, 100, 25)]  # several hundred tokens: cut at 256
    reference_model = SentenceTransformer(default_model(), device="cpu")
    assert reference_model.max_seq_length == 256
    want = reference_model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    embedder = Embedder(None, EmbedOptions(normalize=True, precision="no"))
    assert embedder.max_length == 256
    result = embedder.embed(texts)
    assert sum(result.truncated) == 4
    cosine = (result.vectors * want).sum(axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999, (cosine.argmin(), cosine.min())


def test_bf16_vectors_stay_close_to_fp32(tiny_model):
    """The bf16 path (what --precision auto picks on fast-bf16 hardware): bf16 keeps 8 bits of mantissa, so cosines
    stay above 0.99 against fp32, not 1e-5 equal."""
    fp32 = Embedder(str(tiny_model), EmbedOptions(normalize=True, precision="no")).embed(TEXTS).vectors
    bf16 = Embedder(str(tiny_model), EmbedOptions(normalize=True, precision="bf16"))
    assert bf16.backend.dtype is not None
    cosine = (bf16.embed(TEXTS).vectors * fp32).sum(axis=1)
    assert cosine.min() >= 0.99 and not np.allclose(bf16.embed(TEXTS).vectors, fp32, atol=1e-6)


def test_two_precisions_live_in_one_process(tiny_model):
    """No process-wide precision: an fp32 and a bf16 model side by side, each computing in its own."""
    a = Embedder(str(tiny_model), EmbedOptions(precision="no"))
    b = Embedder(str(tiny_model), EmbedOptions(precision="bf16"))
    again = Embedder(str(tiny_model), EmbedOptions(precision="no"))
    np.testing.assert_allclose(a.embed(TEXTS).vectors, again.embed(TEXTS).vectors, rtol=0, atol=0)
    assert (a.backend.dtype, str(b.backend.dtype)) == (None, "torch.bfloat16")
