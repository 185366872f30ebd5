"""bertcli export and the ONNX backend: parity with torch on real text, the torch-free path, the int8 gate, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import sentiment_rows, toy_corpus, write_conll, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

runner = CliRunner()
HEAVY = ("torch", "transformers", "datasets", "accelerate")


def invoke(*args: str, input: str | None = None):
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def real_text(tmp_path_factory) -> Path:
    """Rotten Tomatoes snippets (real text, many lengths), with an empty line and a long one among them."""
    from bertcli.corpora import rotten_tomatoes

    texts = rotten_tomatoes()[1]["text"].tolist()[:150]
    texts[7] = ""
    texts[20] = " ".join(texts[:12])  # past the tiny models' 128 positions: truncated (NER: windowed)
    path = tmp_path_factory.mktemp("real") / "texts.txt"
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """A tiny classifier (exported fp32) and a tiny tagger (exported with int8), trained once."""
    root = tmp_path_factory.mktemp("export")
    clf_data = write_csv(root / "train.csv", sentiment_rows(96))
    ner_data = write_conll(root / "train.conll", toy_corpus(160, seed=0))
    ner_test = write_conll(root / "test.conll", toy_corpus(30, seed=1))
    for data, name in ((clf_data, "clf"), (ner_data, "ner")):
        invoke(
            "finetune",
            str(data),
            "-o",
            str(root / name),
            "-m",
            str(tiny_model),
            "--epochs",
            "3",
            "--lr",
            "5e-3",
            "-b",
            "16",
        )
    invoke("export", str(root / "clf"))
    invoke("export", str(root / "ner"), "--quantize", "int8", "--check", str(ner_test))
    return root


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_an_export_is_a_directory_that_serves_alone(exported):
    onnx = exported / "clf" / "onnx"
    assert {"model.onnx", "bertcli.json", "config.json", "tokenizer.json"} <= {p.name for p in onnx.iterdir()}
    assert not (onnx / "model.safetensors").exists() and not list((exported / "clf").glob(".onnx.partial-*"))
    section = json.loads((onnx / "bertcli.json").read_text())["onnx"]
    assert section["file"] == "model.onnx" and section["outputs"] == ["logits"] and section["opset"] >= 17
    assert section["parity_max_abs_diff"] <= 1e-4 and section["exporter"].startswith("torch.onnx.export(dynamo=True)")
    assert section["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_classifier_parity_on_real_text(exported, real_text):
    torch_run = records(
        invoke("predict", str(exported / "clf"), str(real_text), "--backend", "torch", "--precision", "no")
    )
    onnx_run = records(invoke("predict", str(exported / "clf"), str(real_text), "--backend", "onnx"))
    assert [r["label"] for r in onnx_run] == [r["label"] for r in torch_run] and onnx_run[7]["label"] is None
    assert onnx_run[20].get("truncated") is True and torch_run[20].get("truncated") is True
    for a, b in zip(onnx_run, torch_run):
        if a["scores"] is not None:
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_ner_parity_on_real_text(exported, real_text):
    """The fp32 export tags like torch: the same entities at the same character offsets."""
    directory = str(exported / "ner")
    onnx_file = ["--backend", "onnx"]
    torch_run = records(invoke("predict", directory, str(real_text), "--backend", "torch", "--precision", "no"))
    from bertcli import load

    fp32 = load(directory, backend="onnx", onnx_file="model.onnx")
    texts = real_text.read_text(encoding="utf-8").splitlines()
    for got, want in zip(fp32.predict(texts), torch_run):
        assert [(e["label"], e["start"], e["end"], e["text"]) for e in got["entities"]] == [
            (e["label"], e["start"], e["end"], e["text"]) for e in want["entities"]
        ]
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]], abs=1e-3)
    assert sum(len(r["entities"]) for r in torch_run) > 0
    assert len(records(invoke("predict", directory, str(real_text), *onnx_file))) == len(texts)


def test_int8_kept_behind_the_gate_is_recorded(exported):
    section = json.loads((exported / "ner" / "onnx" / "bertcli.json").read_text())["onnx"]
    check = section["int8"]
    assert section["file"] == "model.int8.onnx" and (exported / "ner" / "onnx" / "model.int8.onnx").is_file()
    assert check["kept"] and check["metric"] == "f1" and check["drop"] == pytest.approx(check["fp32"] - check["int8"])
    assert check["drop"] <= check["max_drop"] == 0.01 and check["examples"] == 30 and len(check["data"]["sha256"]) == 64


def test_precision_no_runs_the_fp32_graph_never_the_int8_one(exported, real_text, tmp_path):
    """--precision no asks for full precision: beside an int8 export it runs the export's fp32 graph, torch when that
    graph is gone, and an export directory left with only int8 says so in one line."""
    from bertcli import load

    directory = exported / "ner"
    args = ["predict", str(directory), str(real_text)]
    int8_run, full_run = runner.invoke(app, args), runner.invoke(app, [*args, "--precision", "no"])
    assert int8_run.exit_code == full_run.exit_code == 0
    assert "onnx/model.int8.onnx (int8" in int8_run.stderr and "onnx/model.onnx (fp32" in full_run.stderr
    texts = real_text.read_text(encoding="utf-8").splitlines()
    fp32 = load(str(directory), backend="onnx", onnx_file="model.onnx").predict(texts)
    assert records(full_run) == fp32 and sum(len(r["entities"]) for r in fp32) > 0
    int8_only = tmp_path / "ner"
    shutil.copytree(directory, int8_only)
    (int8_only / "onnx" / "model.onnx").unlink()
    torch_run = runner.invoke(app, ["predict", str(int8_only), str(real_text), "--precision", "no"])
    assert torch_run.exit_code == 0 and "ONNX" not in torch_run.stderr and len(records(torch_run)) == len(texts)
    alone = runner.invoke(app, ["predict", str(int8_only / "onnx"), str(real_text), "--precision", "no"])
    assert alone.exit_code == 2 and "only its int8 graph" in alone.stderr and "without --quantize" in alone.stderr


def test_encoder_parity_and_every_pooling_on_the_real_model(tmp_path, real_text):
    """all-MiniLM-L6-v2 exported: vectors equal torch's (cosine >= 0.9999) for mean, cls, max, several layers, tokens."""
    from bertcli import Embedder
    from bertcli.hub import default_model

    out = tmp_path / "minilm"
    invoke("export", default_model(), "-o", str(out))
    texts = real_text.read_text(encoding="utf-8").splitlines()
    for options in (
        {"normalize": True},
        {"pooling": "cls"},
        {"pooling": "max", "layers": "-2:"},
        {"layers": "0,-1", "layer_agg": "concat"},
    ):
        torch_vectors = Embedder(None, backend="torch", precision="no", **options).embed(texts).vectors
        onnx_vectors = Embedder(str(out), backend="onnx", **options).embed(texts).vectors
        cosine = (torch_vectors * onnx_vectors).sum(1) / (
            np.linalg.norm(torch_vectors, axis=1) * np.linalg.norm(onnx_vectors, axis=1)
        )
        assert cosine.min() >= 0.9999, (options, cosine.min())
    tokens = Embedder(str(out), token_level=True).embed(texts[:5])
    reference = Embedder(None, token_level=True, backend="torch", precision="no").embed(texts[:5])
    assert tokens.tokens == reference.tokens and tokens.offsets == reference.offsets
    assert max(float(np.abs(a - b).max()) for a, b in zip(tokens.vectors, reference.vectors)) < 1e-4


def test_the_onnx_path_imports_no_torch(exported, tmp_path, real_text):
    """predict (classifier and tagger) on an export, in fresh processes: torch, transformers, datasets and accelerate
    stay unloaded, and so does pydantic (typer 0.29 imported it for every command: 0.15 s of a cold start)."""
    cold = (*HEAVY, "pydantic")
    code = (
        "import sys\nfrom bertcli.cli.main import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print('loaded:', [m for m in {cold!r} if m in sys.modules], file=sys.stderr)"
    )
    for args in (
        ["predict", str(exported / "clf"), str(real_text)],
        ["predict", str(exported / "ner"), str(real_text)],
    ):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "loaded: []" in done.stderr, done.stderr[-2000:]
        assert len(done.stdout.splitlines()) == len(real_text.read_text().splitlines())


def test_the_onnx_embed_path_imports_no_torch(tiny_model, tmp_path, real_text):
    invoke("export", str(tiny_model), "-o", str(tmp_path / "enc"))
    code = (
        "import sys\nfrom bertcli.cli.main import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    args = ["embed", str(real_text), "-m", str(tmp_path / "enc"), "-o", str(tmp_path / "v.npy"), "--normalize"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "loaded: []" in done.stderr, done.stderr[-2000:]
    assert np.load(tmp_path / "v.npy").shape == (len(real_text.read_text().splitlines()), 32)


def test_the_int8_gate_refuses_a_model_that_drops_too_far(tiny_model, tmp_path, real_text):
    """An encoder's int8 vectors are never identical to fp32: with --max-drop 0 the gate must refuse them, keep the
    fp32 export, record both numbers, and say so in one line."""
    out = tmp_path / "enc"
    result = runner.invoke(
        app,
        ["export", str(tiny_model), "-o", str(out), "--quantize", "int8", "--check", str(real_text), "--max-drop", "0"],
    )
    assert (
        result.exit_code == 1
        and "int8 model refused: cosine to fp32 drops" in result.stderr
        and "--force" in result.stderr
    )
    section = json.loads((out / "bertcli.json").read_text())["onnx"]
    assert section["file"] == "model.onnx" and not (out / "model.int8.onnx").exists()
    assert section["int8"]["kept"] is False and 0.9 < section["int8"]["int8"] < 1.0 == section["int8"]["fp32"]
    forced = runner.invoke(
        app,
        [
            "export",
            str(tiny_model),
            "-o",
            str(out),
            "--quantize",
            "int8",
            "--check",
            str(real_text),
            "--max-drop",
            "0",
            "--force",
            "--overwrite",
        ],
    )
    assert forced.exit_code == 0, forced.stderr
    section = json.loads((out / "bertcli.json").read_text())["onnx"]
    assert section["file"] == "model.int8.onnx" and section["int8"]["kept"] and section["int8"]["forced"]


def test_auto_uses_the_export_and_says_so_torch_stays_the_default_without_one(exported, tmp_path):
    line = "a great film\n"
    used = runner.invoke(app, ["predict", str(exported / "clf")], input=line)
    assert used.exit_code == 0 and used.stderr.count("running the ONNX export") == 1
    plain = tmp_path / "plain"
    shutil.copytree(exported / "clf", plain, ignore=shutil.ignore_patterns("onnx"))
    torch_only = runner.invoke(app, ["predict", str(plain)], input=line)
    assert torch_only.exit_code == 0 and "ONNX" not in torch_only.stderr
    missing = runner.invoke(app, ["predict", str(plain), "--backend", "onnx"], input=line)
    assert (
        missing.exit_code == 1 and f"run: bertcli export {plain}" in missing.stderr and missing.stderr.count("\n") == 1
    )
    bf16 = runner.invoke(
        app, ["predict", str(exported / "clf"), "--precision", "bf16", "--backend", "onnx"], input=line
    )
    assert bf16.exit_code == 2 and "runs on torch" in bf16.stderr
    alone = exported / "clf" / "onnx"  # an export's own directory has no torch to fall back to: the same clear line
    bf16_alone = runner.invoke(app, ["predict", str(alone), "--precision", "bf16"], input=line)
    assert bf16_alone.exit_code == 2 and "runs on torch" in bf16_alone.stderr
    served = runner.invoke(app, ["predict", str(alone)], input=line)
    assert served.exit_code == 0 and served.stderr.count("running the ONNX export") == 1


def test_threads_reach_onnx_runtime(exported):
    from bertcli import load

    classifier = load(str(exported / "clf"), backend="onnx", threads=1)
    assert classifier.backend.session_for(None).get_session_options().intra_op_num_threads == 1


def test_a_forward_asked_for_another_thread_count_gets_a_session_of_its_own_with_the_same_scores(exported):
    """The server's streams: a forward thread that set a count (`use_threads`) runs on a session of that many
    threads, made once and kept; another thread, and a command that never set one, keep the backend's own."""
    import threading

    from bertcli import load
    from bertcli.runtime.device import use_threads

    classifier = load(str(exported / "clf"), backend="onnx", threads=2)
    texts = ["a triumph of a film", "dull", "it was fine, i guess, for a sunday afternoon"]
    own = classifier.predict(texts)
    asked = {}

    def on_one_thread():
        use_threads(1)
        asked["records"] = classifier.predict(texts)

    worker = threading.Thread(target=on_one_thread)
    worker.start()
    worker.join()
    sessions = classifier.backend.sessions
    assert sorted(sessions) == [1, 2] and sessions[1].get_session_options().intra_op_num_threads == 1
    assert [r["label"] for r in asked["records"]] == [r["label"] for r in own]
    np.testing.assert_allclose([r["score"] for r in asked["records"]], [r["score"] for r in own], atol=1e-5)
    assert classifier.predict(texts) == own and sorted(sessions) == [1, 2]  # this thread never asked: its own


def test_a_corrupt_model_onnx_is_one_clear_line(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported / "clf" / "onnx", broken)
    (broken / "model.onnx").write_bytes(b"not a protobuf" * 10)
    result = runner.invoke(app, ["predict", str(broken)], input="hi\n")
    assert result.exit_code == 1 and "cannot load the ONNX model" in result.stderr and "bertcli export" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 2  # the backend line, then the error


def test_an_export_of_another_model_is_refused(exported, tmp_path, tiny_model):
    other = tmp_path / "other"
    shutil.copytree(exported / "clf", other, ignore=shutil.ignore_patterns("onnx"))
    invoke(
        "finetune",
        str(write_csv(tmp_path / "t.csv", sentiment_rows(64, seed=3))),
        "-o",
        str(tmp_path / "b"),
        "-m",
        str(tiny_model),
        "--epochs",
        "1",
    )
    shutil.copytree(exported / "clf" / "onnx", tmp_path / "b" / "onnx")  # A's export inside B
    result = runner.invoke(app, ["predict", str(tmp_path / "b")], input="hi\n")
    assert result.exit_code == 1 and "made from other weights" in result.stderr and "--overwrite" in result.stderr


def test_an_unsupported_architecture_is_named(tmp_path):
    from transformers import AlbertConfig, AlbertModel

    directory = tmp_path / "albert"
    AlbertModel(
        AlbertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            embedding_size=8,
        )
    ).save_pretrained(directory)
    result = runner.invoke(app, ["export", str(directory), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "exporting a 'albert' model to ONNX is not supported" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_onnxruntime_names_the_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    result = runner.invoke(app, ["predict", str(exported / "clf"), "--backend", "onnx"], input="hi\n")
    assert result.exit_code == 2 and "needs onnxruntime" in result.stderr and "pip install" in result.stderr


@pytest.mark.parametrize(
    "usage, message", [(["--quantize", "int8"], "needs --check DATA"), (["--check", "x.csv"], "needs --quantize int8")]
)
def test_export_usage_errors(exported, usage, message):
    result = runner.invoke(app, ["export", str(exported / "clf"), "--overwrite", *usage])
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.parametrize("model_type", ["distilbert", "roberta", "electra"])
def test_every_supported_family_exports_with_parity(tiny_model, tmp_path, model_type):
    """The families bertcli claims: a tiny random encoder of each (with the tiny BERT's tokenizer) exports and matches torch."""
    import transformers

    from bertcli.export.graph import SUPPORTED

    assert model_type in SUPPORTED
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_model))
    config = transformers.AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                              intermediate_size=37, max_position_embeddings=64, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                              embedding_size=32)  # fmt: skip
    transformers.AutoModel.from_config(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    result = runner.invoke(app, ["export", str(tmp_path / "model"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    section = json.loads((tmp_path / "out" / "bertcli.json").read_text())["onnx"]
    assert section["parity_max_abs_diff"] <= 1e-4 and section["outputs"][0] == "hidden_states.0"
    assert ("token_type_ids" in section["inputs"]) == (model_type != "distilbert")
    assert attention_nodes(tmp_path / "out" / "model.onnx") == [("Attention", 4)] * 2


def attention_nodes(path: Path) -> list[tuple[str, int | None]]:
    """(op, q_num_heads) of every attention-like node; a graph with any transpose left gets one more entry."""
    import onnx

    graph = onnx.load(str(path)).graph
    found = [
        (n.op_type, next((a.i for a in n.attribute if a.name == "q_num_heads"), None))
        for n in graph.node
        if "Attention" in n.op_type or n.op_type == "Softmax"
    ]
    return found + [("Transpose", None)] * any(n.op_type == "Transpose" for n in graph.node)


def test_attention_exports_as_one_node_per_layer_on_hidden_states_in_fp32_and_int8(exported):
    """At the default opset every layer's attention is one standard Attention node reading (batch, length, hidden):
    no reshape-and-transpose to heads around it, and int8 keeps the same node (never the quantizer's QAttention)."""
    assert attention_nodes(exported / "clf" / "onnx" / "model.onnx") == [("Attention", 4)] * 2
    assert attention_nodes(exported / "ner" / "onnx" / "model.int8.onnx") == [("Attention", 4)] * 2
    assert json.loads((exported / "ner" / "onnx" / "bertcli.json").read_text())["onnx"]["opset"] == 23


def test_an_opset_below_23_exports_plain_attention_with_parity(tiny_model, tmp_path, real_text):
    invoke("export", str(tiny_model), "-o", str(tmp_path / "enc"), "--opset", "20")
    section = json.loads((tmp_path / "enc" / "bertcli.json").read_text())["onnx"]
    assert section["opset"] == 20 and section["parity_max_abs_diff"] <= 1e-4
    assert attention_nodes(tmp_path / "enc" / "model.onnx") == [("Softmax", None)] * 2 + [("Transpose", None)]


def _retrieval_check(real_text: Path, root: Path, layout: str) -> Path:
    """Real snippets split in two: each first half is a query whose relevant document is its own second half."""
    halves = [t.split() for t in real_text.read_text(encoding="utf-8").splitlines() if len(t.split()) >= 8][:60]
    queries, documents = [" ".join(w[: len(w) // 2]) for w in halves], [" ".join(w[len(w) // 2 :]) for w in halves]
    if layout == "pairs":
        return write_csv(root / "pairs.csv", [{"query": q, "positive": d} for q, d in zip(queries, documents)])
    beir = root / "beir"
    beir.mkdir()
    lines = (json.dumps({"_id": f"d{i}", "text": d}) for i, d in enumerate(documents))
    (beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (beir / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"q{i}", "text": q}) for i, q in enumerate(queries))
    )
    (beir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(60)))
    return beir


@pytest.mark.parametrize("layout", ["pairs", "beir"])
def test_an_encoders_int8_gate_holds_retrieval_ndcg(tiny_model, tmp_path, real_text, layout):
    """On retrieval data the gate measures NDCG@10 of the fp32 and the int8 export, the numbers evaluate gives at the
    same batch size (dynamic int8 scales activations per batch, so batching moves its vectors a little)."""
    from bertcli.config import EvaluateConfig, ExportConfig
    from bertcli.tasks import evaluate

    size = ExportConfig.batch_size

    check = _retrieval_check(real_text, tmp_path, layout)
    out = tmp_path / "enc"
    invoke("export", str(tiny_model), "-o", str(out), "--quantize", "int8", "--check", str(check), "--max-drop", "0.5")
    gate = json.loads((out / "bertcli.json").read_text())["onnx"]["int8"]
    assert gate["metric"] == "ndcg@10" and gate["kept"] is True and gate["examples"] == 60
    assert len(gate["data"]["sha256"]) == 64
    scores = {
        name: evaluate(
            EvaluateConfig(model_dir=str(out), input=str(check), backend="onnx", onnx_file=name, batch_size=size)
        )
        for name in ("model.onnx", "model.int8.onnx")
    }
    assert gate["fp32"] == pytest.approx(scores["model.onnx"]["ndcg@10"], abs=1e-6)
    assert gate["int8"] == pytest.approx(scores["model.int8.onnx"]["ndcg@10"], abs=1e-6)
    assert gate["drop"] == pytest.approx(gate["fp32"] - gate["int8"], abs=2e-6)
    shown = json.loads(invoke("evaluate", str(out), str(check), "--json", "-b", str(size)).stdout)  # its int8 model
    assert shown["ndcg@10"] == pytest.approx(gate["int8"], abs=1e-6)


def test_an_encoders_int8_gate_on_scored_pairs_holds_spearman(tiny_model, tmp_path, real_text):
    texts = [t for t in real_text.read_text(encoding="utf-8").splitlines() if t.strip()][:41]
    rows = [{"query": a, "positive": b, "score": float(i % 5)} for i, (a, b) in enumerate(zip(texts, texts[1:]))]
    check = write_csv(tmp_path / "sts.csv", rows)
    out = tmp_path / "enc"
    invoke("export", str(tiny_model), "-o", str(out), "--quantize", "int8", "--check", str(check), "--max-drop", "0.5")
    gate = json.loads((out / "bertcli.json").read_text())["onnx"]["int8"]
    assert gate["metric"] == "spearman" and gate["examples"] == 40 and -1 <= gate["int8"] <= 1
