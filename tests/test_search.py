"""Search: `bertcli index` from data and from embed's outputs, ANN equal to the exact scan, int8/binary rescoring on
real text, --add equal to one build, atomic builds, an index that remembers its model, --dim, --hybrid against a
hand-computed fusion, `bertcli search` over argument/file/stdin, `bertcli.load(dir).search`, and serve's /search."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from helpers import build_tiny_bert, post_in_process, sentiment_rows
from typer.testing import CliRunner

import bertcli
from bertcli.bundle import read_meta
from bertcli.cli.main import app
from bertcli.config.search import RESCORE_FACTOR, IndexConfig
from bertcli.errors import ModelError, UsageError
from bertcli.tasks import build_index, encoder
from bertcli.tasks.search.searcher import VectorSearch
from bertcli.tasks.search.store import read_ann

runner = CliRunner()
FAST = ["--precision", "no"]


def invoke(*args: str, input: str | None = None) -> list[dict]:
    result = runner.invoke(app, [*args, *FAST], input=input)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    unique = list(dict.fromkeys(row["text"] for row in sentiment_rows(600, seed=3)))[:200]  # no tied scores
    rows = [{"id": f"doc{i}", "text": text} for i, text in enumerate(unique)]
    return write_jsonl(tmp_path_factory.mktemp("search") / "docs.jsonl", rows)


@pytest.fixture(scope="module")
def index(tiny_model, docs) -> Path:
    out = docs.parent / "docs.index"
    invoke("index", str(docs), "-m", str(tiny_model), "--id-column", "id", "-o", str(out))
    return out


def texts_of(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_an_index_records_its_model_and_holds_unit_vectors_of_every_row(index, tiny_model, docs):
    meta = json.loads((index / "bertcli.json").read_text())
    record = meta["index"]
    assert meta["task"] == "index" and record["count"] == 200 and record["dim"] == 32 and record["dtype"] == "f32"
    assert record["model"]["path"] == str(tiny_model) and record["model"]["pooling"] == "mean"
    vectors = np.load(index / "vectors.npy")
    want = encoder(str(tiny_model), precision="no").embed(texts_of(docs)).vectors
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, want, atol=1e-5)
    first = json.loads((index / "records.jsonl").read_text().splitlines()[0])
    assert first == {"id": "doc0", "text": texts_of(docs)[0]}


def test_ann_results_equal_the_exact_scan_on_a_small_set(index, docs):
    queries = texts_of(docs)[:40]
    searcher = bertcli.load(str(index), precision="no")
    ann = searcher.search(queries, 10)
    exact = searcher.search(queries, 10, exact=True)
    assert [[h["id"] for h in hits] for hits in ann] == [[h["id"] for h in hits] for hits in exact]
    assert [hits[0]["id"] for hits in exact] == [f"doc{i}" for i in range(40)]  # each text finds itself first
    assert all(hits[0]["score"] == pytest.approx(1.0, abs=1e-5) for hits in exact)
    vectors = VectorSearch(index, read_meta(index))  # the index alone, searched with vectors encoded elsewhere
    rows, scores = vectors.nearest(searcher.encode(queries), 10)
    assert rows[:, 0].tolist() == list(range(40)) and scores[:, 0] == pytest.approx(1.0, abs=1e-5)
    assert [[searcher.index.entry(r)["id"] for r in row] for row in rows] == [[h["id"] for h in hits] for hits in ann]


@pytest.fixture(scope="module")
def real_vectors(tmp_path_factory) -> tuple[Path, list[str]]:
    """600 Rotten Tomatoes snippets embedded with the default model, written as embed writes .npy + ids."""
    from bertcli.corpora import rotten_tomatoes

    train, _ = rotten_tomatoes()
    texts = train["text"].tolist()[:620]
    vectors = encoder(None, precision="no").embed(texts).vectors
    root = tmp_path_factory.mktemp("real")
    np.save(root / "docs.npy", vectors[:600])
    (root / "docs.ids.txt").write_text("".join(f"rt{i}\n" for i in range(600)))
    return root / "docs.npy", texts


@pytest.mark.parametrize("dtype", ["f16", "i8", "i6", "binary"])
def test_quantized_indexes_with_rescoring_recover_the_exact_top10_on_real_text(real_vectors, dtype, tmp_path):
    path, texts = real_vectors
    out = tmp_path / f"{dtype}.index"
    invoke("index", str(path), "--dtype", dtype, "-o", str(out))
    searcher = bertcli.load(str(out), precision="no")
    queries = texts[600:]  # 20 snippets that are not in the index
    exact = [[h["id"] for h in hits] for hits in searcher.search(queries, 10, exact=True)]
    rescored = [[h["id"] for h in hits] for hits in searcher.search(queries, 10, rescore=True)]
    coarse = [[h["id"] for h in hits] for hits in searcher.search(queries, 10, rescore=False)]
    recall = {name: np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
              for name, found in (("rescored", rescored), ("coarse", coarse))}  # fmt: skip
    if dtype == "binary":
        # one bit per dimension ranks snippets that score ~0.2 against the query coarsely: rescoring 200 of its
        # candidates brings back all but a few of the exact hits, and puts them in the exact order
        assert recall["rescored"] >= 0.95 and recall["coarse"] < recall["rescored"]
        assert all([i for i in r if i in e] == [i for i in e if i in r] for r, e in zip(rescored, exact))
    else:
        assert rescored == exact
        assert recall["coarse"] >= 0.8  # the codes alone find most of the exact hits
    assert np.load(out / "vectors.npy", mmap_mode="r").dtype == np.float32  # the copy rescoring reads
    stored = read_ann(out / "ann.faiss", dtype, mapped=True)  # bytes of codes per vector the graph holds in memory
    code_size = stored.code_size if dtype == "binary" else faiss.downcast_index(stored.storage).code_size
    assert code_size == {"f16": 768, "i8": 384, "i6": 288, "binary": 48}[dtype]  # 384 dimensions


def test_adding_to_an_index_equals_building_it_at_once(tiny_model, docs, tmp_path):
    rows = [json.loads(line) for line in docs.read_text().splitlines()]
    first, second = write_jsonl(tmp_path / "a.jsonl", rows[:120]), write_jsonl(tmp_path / "b.jsonl", rows[120:])
    grown, whole = tmp_path / "grown.index", tmp_path / "whole.index"
    invoke("index", str(first), "-m", str(tiny_model), "--id-column", "id", "-o", str(grown))
    invoke("index", str(second), "--id-column", "id", "-o", str(grown), "--add")
    invoke("index", str(docs), "-m", str(tiny_model), "--id-column", "id", "-o", str(whole))
    np.testing.assert_allclose(np.load(grown / "vectors.npy"), np.load(whole / "vectors.npy"), atol=1e-6)
    assert (grown / "records.jsonl").read_bytes() == (whole / "records.jsonl").read_bytes()
    assert json.loads((grown / "bertcli.json").read_text())["index"]["count"] == 200
    queries = [row["text"] for row in rows[100:140]]
    for options in ({}, {"exact": True}, {"hybrid": True}):
        a = bertcli.load(str(grown), precision="no").search(queries, 5, **options)
        b = bertcli.load(str(whole), precision="no").search(queries, 5, **options)
        assert [[h["id"] for h in hits] for hits in a] == [[h["id"] for h in hits] for hits in b]
    result = runner.invoke(app, ["index", str(second), "--id-column", "id", "-o", str(grown), "--add", *FAST])
    assert result.exit_code == 1 and "id 'doc120' is already in the index (row 121)" in result.stderr


def test_a_quantized_index_grows_with_the_quantiser_it_was_trained_with(tiny_model, docs, tmp_path):
    """--add on an i6 index encodes the new vectors with the ranges learned at the first build: every text, old or
    added, finds itself first."""
    rows = [json.loads(line) for line in docs.read_text().splitlines()]
    first, second = write_jsonl(tmp_path / "a.jsonl", rows[:120]), write_jsonl(tmp_path / "b.jsonl", rows[120:])
    grown = tmp_path / "grown.index"
    invoke("index", str(first), "-m", str(tiny_model), "--id-column", "id", "--dtype", "i6", "-o", str(grown))
    built = read_ann(grown / "ann.faiss", "i6", mapped=False)  # kept alive: its storage is owned by it
    before = faiss.downcast_index(built.storage)
    ranges, codes = faiss.vector_to_array(before.sq.trained), faiss.vector_to_array(before.codes)
    invoke("index", str(second), "--id-column", "id", "-o", str(grown), "--add")
    record = json.loads((grown / "bertcli.json").read_text())["index"]
    assert (record["dtype"], record["count"]) == ("i6", 200)
    grew = read_ann(grown / "ann.faiss", "i6", mapped=False)
    after = faiss.downcast_index(grew.storage)
    np.testing.assert_array_equal(faiss.vector_to_array(after.sq.trained), ranges)  # not trained again
    assert faiss.vector_to_array(after.codes)[: len(codes)].tobytes() == codes.tobytes()  # old codes kept as they were
    assert after.ntotal == 200 and before.ntotal == 120
    picked = rows[100:140]  # 20 of the first build, 20 added
    hits = bertcli.load(str(grown), precision="no").search([row["text"] for row in picked], 1)
    assert [h[0]["id"] for h in hits] == [row["id"] for row in picked]
    assert min(h[0]["score"] for h in hits) > 0.999  # rescored: the full-precision cosine of a text with itself


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here: reads are not announced")
def test_rescoring_announces_each_candidate_row_once_at_its_offset(real_vectors, tmp_path, monkeypatch):
    """Before reading, rescoring asks the kernel for every candidate row of every query (-1 padding left out, a row
    two queries share asked for once), at the byte range that row holds in vectors.npy; the hits are unchanged."""
    path, texts = real_vectors
    out = tmp_path / "i8.index"
    invoke("index", str(path), "--dtype", "i8", "-o", str(out))
    searcher = bertcli.load(str(out), precision="no")
    queries = texts[600:604]
    expected = [[h["id"] for h in hits] for hits in searcher.search(queries, 5, exact=True)]
    asked: list[tuple[int, int, int]] = []
    monkeypatch.setattr("os.posix_fadvise", lambda fd, offset, length, advice: asked.append((offset, length, advice)))
    assert [[h["id"] for h in hits] for hits in searcher.search(queries, 5, rescore=True)] == expected
    rows = searcher.index.vectors
    assert {length for _, length, _ in asked} == {rows.row_bytes} == {384 * 4}
    assert {advice for _, _, advice in asked} == {os.POSIX_FADV_WILLNEED}
    offsets = [offset for offset, _, _ in asked]
    assert len(offsets) == len(set(offsets)) and all((o - rows.start) % rows.row_bytes == 0 for o in offsets)
    candidates, _ = searcher.index.ann_search(searcher.encode(queries), 5 * RESCORE_FACTOR["i8"])
    assert {(o - rows.start) // rows.row_bytes for o in offsets} == set(candidates[candidates >= 0].tolist())


def test_an_interrupted_build_leaves_the_old_index_or_none(tiny_model, docs, tmp_path, monkeypatch):
    from bertcli.tasks.search import store

    calls = {"n": 0}
    append = store.IndexWriter.append

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return append(self, *args, **kwargs)

    cfg = dict(input=str(docs), model=str(tiny_model), precision="no", chunk_size=50)
    fresh = tmp_path / "fresh.index"
    monkeypatch.setattr(store.IndexWriter, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(IndexConfig(output=str(fresh), **cfg))
    assert not fresh.exists() and list(tmp_path.iterdir()) == []  # no index, no staging directory
    monkeypatch.setattr(store.IndexWriter, "append", append)
    build_index(IndexConfig(output=str(fresh), **cfg))
    before = (fresh / "records.jsonl").read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(store.IndexWriter, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(IndexConfig(output=str(fresh), add=True, **{**cfg, "input": str(docs)}))
    assert (fresh / "records.jsonl").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "fresh.index"
    ]


def test_an_index_remembers_its_model(index, tiny_model, tmp_path):
    result = runner.invoke(app, ["search", str(index), "a good movie", "-m", bertcli_default(), *FAST])
    assert result.exit_code == 2 and f"built with {tiny_model}; its queries must be encoded" in result.stderr
    [same] = invoke("search", str(index), "a good movie", "-m", str(tiny_model), "-k", "2")  # its own model passes
    assert len(same["hits"]) == 2
    moved = tmp_path / "model"
    build_tiny_bert(moved)
    copy = tmp_path / "copy.index"
    shutil.copytree(index, copy)
    meta = json.loads((copy / "bertcli.json").read_text())
    meta["index"]["model"]["path"] = str(moved)  # the model there is another one (other weights)
    (copy / "bertcli.json").write_text(json.dumps(meta))
    build_tiny_bert(moved, seed=1)
    with pytest.raises(ModelError, match="weights changed"):
        bertcli.load(str(copy))
    meta["index"]["model"] |= {"path": str(tiny_model), "weights": None}  # recorded before ONNX dirs had a fingerprint
    (copy / "bertcli.json").write_text(json.dumps(meta))
    assert len(bertcli.load(str(copy), precision="no").search("a good movie", 2)) == 2


def bertcli_default() -> str:
    from bertcli.hub import default_model

    return default_model()


@pytest.mark.parametrize("source", ["argument", "file", "stdin"])
def test_search_takes_queries_as_an_argument_a_file_or_stdin(index, tmp_path, source):
    query = "a wonderful film"
    (tmp_path / "q.txt").write_text(query + "\n")
    args = {
        "argument": (["search", str(index), query, "-k", "3"], None),
        "file": (["search", str(index), "--input", str(tmp_path / "q.txt"), "-k", "3"], None),
        "stdin": (["search", str(index), "-k", "3"], query + "\n"),
    }[source]
    [line] = invoke(*args[0], input=args[1])
    want = bertcli.load(str(index), precision="no").search(query, 3)
    assert line["query"] == query and line["hits"] == want and len(want) == 3
    assert all(set(hit) == {"id", "score", "text"} for hit in want)
    assert [h["score"] for h in want] == sorted((h["score"] for h in want), reverse=True)
    [bare] = invoke(*args[0], "--no-texts", input=args[1])
    assert bare["hits"] == [{"id": h["id"], "score": h["score"]} for h in want]


def test_indexes_from_embeds_outputs_equal_the_index_of_the_data(tiny_model, docs, index, tmp_path):
    for suffix in ("npy", "parquet", "jsonl"):
        vectors = tmp_path / f"docs.{suffix}"
        result = runner.invoke(app, ["embed", str(docs), "-m", str(tiny_model), "--id-column", "id",
                                     "--include-text", "-o", str(vectors), *FAST])  # fmt: skip
        assert result.exit_code == 0, result.stderr
        out = tmp_path / f"{suffix}.index"
        invoke("index", str(vectors), "-m", str(tiny_model), "-o", str(out))
        np.testing.assert_allclose(np.load(out / "vectors.npy"), np.load(index / "vectors.npy"), atol=1e-5)
        ids = [json.loads(line)["id"] for line in (out / "records.jsonl").read_text().splitlines()]
        assert ids == [f"doc{i}" for i in range(200)]
        assert (out / "bm25").is_dir() == (suffix != "npy")  # npy holds no texts
    result = runner.invoke(app, ["index", str(tmp_path / "docs.parquet"), "-o", str(tmp_path / "x"), *FAST])
    assert result.exit_code == 1 and "dimensions" in result.stderr  # 32-dim vectors, a 384-dim default model


def test_vectors_from_another_model_are_refused(tiny_model, docs, tmp_path):
    other = build_tiny_bert(tmp_path / "other", seed=5)
    vectors = tmp_path / "docs.parquet"
    runner.invoke(app, ["embed", str(docs), "-m", str(other), "--include-text", "-o", str(vectors), *FAST])
    result = runner.invoke(app, ["index", str(vectors), "-m", str(tiny_model), "-o", str(tmp_path / "x"), *FAST])
    assert result.exit_code == 1 and "not made by" in result.stderr and "row 1" in result.stderr
    assert not (tmp_path / "x").exists()


def test_dim_keeps_the_leading_dimensions_renormalised(tiny_model, docs, index, tmp_path):
    out = tmp_path / "cut.index"
    invoke("index", str(docs), "-m", str(tiny_model), "--dim", "16", "-o", str(out))
    full = np.load(index / "vectors.npy")[:, :16]
    np.testing.assert_allclose(np.load(out / "vectors.npy"), full / np.linalg.norm(full, axis=1, keepdims=True),
                               atol=1e-5)  # fmt: skip
    searcher = bertcli.load(str(out), precision="no")
    query = searcher.encode(["a good movie"])
    assert query.shape == (1, 16) and np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)
    hits = searcher.search("a good movie", 3, exact=True)
    rows = [int(h["id"]) for h in hits]  # no --id-column: ids are the row numbers
    np.testing.assert_allclose([h["score"] for h in hits], np.load(out / "vectors.npy")[rows] @ query[0], atol=1e-5)
    with pytest.raises(UsageError, match="exceeds"):
        build_index(IndexConfig(input=str(docs), output=str(tmp_path / "y"), model=str(tiny_model), dim=64))


def test_hybrid_is_the_reciprocal_rank_fusion_of_dense_and_bm25(index, docs):
    import bm25s

    from bertcli.config.search import HYBRID_DEPTH, RRF_K

    texts = texts_of(docs)
    query = "a terrible boring movie"
    searcher = bertcli.load(str(index), precision="no")
    dense = [h["id"] for h in searcher.search(query, HYBRID_DEPTH)]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    found, scores = retriever.retrieve(
        bm25s.tokenize([query], stopwords="en", show_progress=False), k=HYBRID_DEPTH, show_progress=False
    )
    lexical = [f"doc{i}" for i, s in zip(found[0], scores[0]) if s > 0]
    fused: dict[str, float] = {}
    for ranking in (dense, lexical):
        for rank, doc in enumerate(ranking, 1):
            fused[doc] = fused.get(doc, 0.0) + 1 / (RRF_K + rank)
    want = sorted(fused.items(), key=lambda item: (-item[1], int(item[0][3:])))[:5]
    hits = searcher.search(query, 5, hybrid=True)
    assert [(h["id"], h["score"]) for h in hits] == [(d, pytest.approx(s, abs=1e-6)) for d, s in want]
    assert len(lexical) > 5 and hits != searcher.search(query, 5)  # BM25 moved the order


def test_hybrid_needs_the_texts(tiny_model, docs, tmp_path):
    out = tmp_path / "bare.index"
    invoke("index", str(docs), "-m", str(tiny_model), "--no-texts", "-o", str(out))
    assert not (out / "bm25").exists()
    [line] = invoke("search", str(out), "a good movie", "-k", "2")
    assert all(set(hit) == {"id", "score"} for hit in line["hits"])
    result = runner.invoke(app, ["search", str(out), "a good movie", "--hybrid", *FAST])
    assert result.exit_code == 2 and "--hybrid needs the texts" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"vector": [0.1, 0.2], "id": "a"}\n{"vector": [0.1], "id": "b"}\n', "different lengths"),
        ('{"vector": [0.1, 0.2]}\n{"id": "b"}\n', "no 'vector'"),
    ],
)
def test_bad_vector_files_name_the_row(tmp_path, content, message, tiny_model):
    path = tmp_path / "v.jsonl"
    path.write_text(content)
    result = runner.invoke(app, ["index", str(path), "-m", str(tiny_model), "-o", str(tmp_path / "x"), *FAST])
    assert result.exit_code == 1 and message in result.stderr and "row 2" in result.stderr
    assert not (tmp_path / "x").exists()


def test_an_index_is_not_a_model_for_other_commands(index):
    result = runner.invoke(app, ["predict", str(index)], input="a text\n")
    assert result.exit_code == 2 and "is an index" in result.stderr and "bertcli search" in result.stderr
    result = runner.invoke(app, ["search", str(index.parent), "x"])
    assert result.exit_code == 1 and "not a model directory" in result.stderr


def test_the_search_route_answers_as_the_command_and_refuses_bad_requests(index, docs):
    queries = ["a wonderful film", "boring and dull"]
    ids = ["doc3", "doc7", "doc11"]
    answers = post_in_process(
        index,
        "/search",
        [
            {"query": queries[0], "k": 4},
            {"queries": queries, "k": 4, "hybrid": True},
            {"query": queries[0], "k": 5, "filter": {"ids": ids}},
            {"k": 3},
            {"query": queries[0], "k": 0},
            {"query": " ", "k": 3},
            {"query": queries[0], "filter": {"tags": ["x"]}},
        ],
    )
    searcher = bertcli.load(str(index), precision="no")
    assert [a.status_code for a in answers] == [200, 200, 200, 422, 422, 422, 422]
    assert answers[0].json()["hits"] == invoke("search", str(index), queries[0], "-k", "4")[0]["hits"]
    assert [r["hits"] for r in answers[1].json()["results"]] == searcher.search(queries, 4, hybrid=True)
    filtered = answers[2].json()["hits"]
    assert sorted(h["id"] for h in filtered) == sorted(ids)  # only the allowed ids, all three (k is 5)
    assert [h["id"] for h in filtered] == [
        h["id"] for h in searcher.search(queries[0], 200, exact=True) if h["id"] in ids
    ]
    assert all(a.json()["error"]["type"] == "invalid_request_error" for a in answers[3:])


def test_a_filter_holds_for_hybrid_search_and_repeated_ids(index):
    searcher = bertcli.load(str(index), precision="no")
    allowed = ["doc3", "doc7", "doc11", "doc7"]
    for options in ({}, {"hybrid": True}):
        hits = searcher.search("a terrible boring movie", 10, ids=allowed, **options)
        assert sorted(h["id"] for h in hits) == ["doc11", "doc3", "doc7"]
    assert searcher.search("a terrible boring movie", 10, ids=["nope"]) == []


def test_adding_vectors_without_ids_numbers_them_after_the_index(tiny_model, docs, tmp_path):
    vectors = encoder(str(tiny_model), precision="no").embed(texts_of(docs)).vectors
    np.save(tmp_path / "a.npy", vectors[:150])
    np.save(tmp_path / "b.npy", vectors[150:])
    out = tmp_path / "rows.index"
    invoke("index", str(tmp_path / "a.npy"), "-m", str(tiny_model), "-o", str(out))
    invoke("index", str(tmp_path / "b.npy"), "-o", str(out), "--add")
    ids = [json.loads(line)["id"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert ids == list(range(200))
    hits = bertcli.load(str(out), precision="no").search(texts_of(docs)[170], 1, exact=True)
    assert hits[0]["id"] == 170 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_missing_id_column_is_named(tiny_model, docs, tmp_path):
    vectors = tmp_path / "docs.parquet"
    runner.invoke(app, ["embed", str(docs), "-m", str(tiny_model), "-o", str(vectors), *FAST])
    result = runner.invoke(
        app, ["index", str(vectors), "-m", str(tiny_model), "--id-column", "doc_id", "-o", str(tmp_path / "x"), *FAST]
    )
    assert result.exit_code == 1 and "no column 'doc_id'" in result.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [("ann.faiss", "the ANN file is damaged"), ("vectors.npy", "damaged"), ("records.offsets.npy", "damaged")],
)
def test_a_damaged_index_is_one_line_error(index, tmp_path, damage, message):
    copy = tmp_path / "copy.index"
    shutil.copytree(index, copy)
    data = (copy / damage).read_bytes()
    (copy / damage).write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["search", str(copy), "a good movie", *FAST])
    assert result.exit_code == 1 and message in result.stderr and "build" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
