"""Multi-process runs on CPU (gloo) through the real launchers: `accelerate launch` and `torchrun`.

Each test starts two processes, so each costs two interpreter start-ups; the models and data are tiny.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_weights, sentiment_rows, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
CPU_RECIPE = ROOT / "recipes" / "accelerate" / "multi-cpu.yaml"
TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(launcher: str, args: list[str], cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """Two processes of `bertcli ARGS`, started by `accelerate launch` (the CPU recipe) or `torchrun`."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("BERTCLI_DEBUG", None)
    if launcher == "accelerate":
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(CPU_RECIPE),
            "--main_process_port",
            str(free_port()),
            "-m",
            "bertcli",
            *args,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "bertcli",
            *args,
        ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def one_and_two(args: list[str], tmp_path: Path, name: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """`bertcli ARGS -o one-NAME` in this process and `-o two-NAME` under a 2-process torchrun; both must succeed."""
    one = CliRunner().invoke(app, [*args, "-o", str(tmp_path / f"one-{name}")])
    assert one.exit_code == 0, one.stderr
    result = launch("torchrun", [*args, "-o", str(tmp_path / f"two-{name}")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / f"one-{name}", tmp_path / f"two-{name}", result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def bertcli_lines(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bertcli:") and text in line]


@pytest.fixture
def classification_data(tmp_path) -> tuple[Path, Path]:
    return write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=1)), write_csv(
        tmp_path / "val.csv", sentiment_rows(21, seed=2)
    )


def test_two_process_finetune_matches_one_process_evaluation(tmp_path, tiny_model, classification_data):
    train, val = classification_data
    out = tmp_path / "clf"
    result = launch(
        "accelerate",
        [
            "finetune",
            str(train),
            "--validation",
            str(val),
            "-m",
            str(tiny_model),
            "-o",
            str(out),
            "--epochs",
            "2",
            "-b",
            "8",
            "--lr",
            "1e-3",
            "--precision",
            "no",  # validation in training and evaluate afterwards compute alike: metrics equal to 1e-9
            "--lexical",
            "off",  # the fine-tuned model's own predictions, as its validation scored them
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # one output, written once; the run directory is gone
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("clf")) == ["clf"]
    # the main process alone logs, and reports the global batch: 8 per process x 2 processes
    assert (
        len(bertcli_lines(result.stderr, "batch 8 x 1 accumulation x 2 process(es) = 16, 8 steps (2 epochs)")) == 1
    )  # 4 per epoch: each process has half
    assert len(bertcli_lines(result.stderr, "64 training and 21 validation texts (64 and 21 model inputs)")) == 1
    meta = json.loads((out / "bertcli.json").read_text())
    assert [h["examples"] for h in meta["history"]] == [21, 21]  # every validation example once, none repeated
    best = next(h for h in meta["history"] if h["step"] == meta["best"]["step"])

    report = CliRunner().invoke(app, ["evaluate", str(out), str(val), "--json", "--precision", "no"])
    assert report.exit_code == 0, report.stderr
    single = json.loads(report.stdout)
    assert single["n"] == 21
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "mcc"):
        assert best[key] == pytest.approx(single[key], abs=1e-9), key


def test_two_process_embedding_training_validates_once_and_matches_evaluate(tmp_path, tiny_model):
    """Contrastive training under `accelerate launch`: each process fills its own duplicate-free batches, the
    validation retrieves every held-out query once, and its best NDCG@10 is what evaluate measures afterwards."""
    from test_embedding_train import toy_pairs

    pairs = toy_pairs(48)
    train, val = write_csv(tmp_path / "pairs.csv", pairs[:36]), write_csv(tmp_path / "val.csv", pairs[36:])
    out = tmp_path / "emb"
    args = ["finetune", str(train), "--validation", str(val), "-m", str(tiny_model), "-o", str(out)]
    result = launch("accelerate", [*args, "--epochs", "3", "-b", "6", "--lr", "2e-3", "--precision", "no"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("emb")) == ["emb"]
    assert len(bertcli_lines(result.stderr, "batch 6 x 1 accumulation x 2 process(es) = 12, 9 steps (3 epochs)")) == 1
    meta = json.loads((out / "bertcli.json").read_text())
    assert [h["examples"] for h in meta["history"]] == [12, 12, 12]  # each validation query once per evaluation
    best = next(h for h in meta["history"] if h["step"] == meta["best"]["step"])
    report = CliRunner().invoke(app, ["evaluate", str(out), str(val), "--json", "--precision", "no"])
    assert report.exit_code == 0, report.stderr
    single = json.loads(report.stdout)
    assert single["n"] == 12
    for key in ("ndcg@10", "mrr@10", "recall@10"):
        assert best[key] == pytest.approx(single[key], abs=1e-6), key


def test_two_process_pretrain_validates_each_held_out_block_once(tmp_path, tiny_model):
    from bertcli.config import DataOptions
    from bertcli.hub import load_tokenizer
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.tasks.pretraining.data import example_source, split_examples
    from bertcli.tasks.pretraining.models import load_pretraining_model
    from bertcli.tasks.pretraining.objective import MaskingCollator, PretrainingObjective, evaluate_objective
    from bertcli.tasks.pretraining.pretrain import EvalBatches

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(row["text"] + " ." for row in sentiment_rows(300, seed=3)) + "\n")
    out = tmp_path / "mlm"
    result = launch(
        "torchrun",
        [
            "pretrain",
            str(corpus),
            "-m",
            str(tiny_model),
            "-o",
            str(out),
            "--max-steps",
            "4",
            "--eval-steps",
            "2",
            "-b",
            "4",
            "--max-length",
            "32",
            "--val-split",
            "0.2",
            "--precision",
            "no",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("mlm")) == ["mlm"]
    assert len(bertcli_lines(result.stderr, "x 2 process(es) = 8, 4 steps")) == 1
    meta = json.loads((out / "bertcli.json").read_text())
    held_out = meta["corpus"]["validation_examples"]
    assert held_out > 2
    assert [h["examples"] for h in meta["history"]] == [held_out] * 3  # before training, at steps 2 and 4

    # the saved (best) model, scored on the same held-out blocks and masks in one process
    tokenizer = load_tokenizer(str(out))
    make = example_source([corpus], DataOptions(), tokenizer, 32, "packed", False, 42)
    validation = split_examples(make, 0.2, False, 42).validation
    assert len(validation) == held_out
    accelerator = make_accelerator("no")
    model = PretrainingObjective(load_pretraining_model(str(out), nsp=False)).to(accelerator.device)
    collate = MaskingCollator(tokenizer, 0.15, False, 42, salt=1)
    single = evaluate_objective(model, EvalBatches(validation, collate, 5, accelerator), accelerator)
    best = next(h for h in meta["history"] if h["step"] == meta["best"]["step"])
    assert single["examples"] == held_out
    assert single["loss"] == pytest.approx(best["loss"], rel=1e-4)
    assert single["accuracy"] == pytest.approx(best["accuracy"], abs=1e-9)


def test_two_process_embed_equals_one_process(tmp_path, tiny_model):
    source = tmp_path / "texts.jsonl"
    with source.open("w") as handle:
        for i, row in enumerate(sentiment_rows(47, seed=4)):
            handle.write(json.dumps({"id": f"doc-{i}", "text": " ".join([row["text"]] * (1 + i % 5))}) + "\n")
    args = ["embed", str(source), "-m", str(tiny_model), "--id-column", "id", "--chunk-size", "10", "--precision", "no"]
    one, two, result = one_and_two(args, tmp_path, "vectors.parquet")
    assert len(bertcli_lines(result.stderr, "embedded 47 inputs")) == 1

    import pyarrow.parquet as pq

    single, double = pq.read_table(one).to_pydict(), pq.read_table(two).to_pydict()
    assert double["id"] == single["id"] == [f"doc-{i}" for i in range(47)]
    np.testing.assert_allclose(np.array(double["vector"]), np.array(single["vector"]), atol=1e-5)

    # token level: per-token vectors with their tokens and offsets come back from each process in order too
    one, two, _ = one_and_two([*args, "--token-level", "--max-length", "12"], tmp_path, "tokens.jsonl")
    single, double = read_jsonl(one), read_jsonl(two)
    assert [(r["id"], r["tokens"], r["offsets"]) for r in double] == [
        (r["id"], r["tokens"], r["offsets"]) for r in single
    ]
    assert len({len(r["tokens"]) for r in double}) > 1  # inputs of different lengths, unpadded
    for a, b in zip(double, single):
        np.testing.assert_allclose(np.array(a["vectors"]), np.array(b["vectors"]), atol=1e-5)


def test_two_process_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, tiny_model):
    """Kill the whole launch after its first checkpoint, relaunch with --resume auto: same weights as never stopped."""
    import time

    import psutil

    train = write_csv(tmp_path / "train.csv", sentiment_rows(160, seed=3))
    args = [
        "finetune",
        str(train),
        "-m",
        str(tiny_model),
        "--val-split",
        "0",
        "--epochs",
        "2",
        "-b",
        "4",
        "--lr",
        "1e-3",
        "--save-steps",
        "5",
    ]
    whole = launch("torchrun", [*args, "-o", str(tmp_path / "whole")], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "bertcli",
        *args,
        "-o",
        str(tmp_path / "split"),
    ]
    checkpoints = tmp_path / "split.incomplete" / "checkpoints"
    running = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT
    while not any(p.name.startswith("step-") for p in checkpoints.glob("step-*")) and running.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    launcher = psutil.Process(running.pid)
    ranks = launcher.children(recursive=True)
    for process in [*ranks, launcher]:  # a preempted job: every rank dies, no handler runs
        process.kill()
    running.wait()
    psutil.wait_procs(ranks, timeout=30)
    assert not (tmp_path / "split").exists(), "the run finished before it could be killed"
    resumed = launch("torchrun", [*args, "-o", str(tmp_path / "split"), "--resume", "auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(bertcli_lines(resumed.stderr, "resum")) >= 1, resumed.stderr[-3000:]

    assert_same_weights(tmp_path / "whole", tmp_path / "split")
    assert json.loads((tmp_path / "split" / "bertcli.json").read_text())["steps"] == 40  # 160 / (4 x 2) x 2 epochs


def test_two_process_predict_and_evaluate_equal_one_process(tmp_path, tiny_model, classification_data):
    train, val = classification_data
    model = tmp_path / "clf"
    trained = CliRunner().invoke(
        app, ["finetune", str(train), "-m", str(tiny_model), "-o", str(model), "--epochs", "1", "--val-split", "0"]
    )
    assert trained.exit_code == 0, trained.stderr
    source = tmp_path / "texts.txt"
    lines = [row["text"] for row in sentiment_rows(39, seed=5)]
    lines[7] = lines[30] = ""  # empty lines still get their (null) record, in place
    source.write_text("".join(line + "\n" for line in lines))
    args = [
        "predict",
        str(model),
        str(source),
        "-b",
        "2",
        "--precision",
        "no",
    ]  # chunks of 16 lines: three, the last one short
    one, two, result = one_and_two(args, tmp_path, "predictions.jsonl")
    single, double = read_jsonl(one), read_jsonl(two)
    assert len(double) == len(single) == 39 and double[7]["label"] is None and double[30]["label"] is None
    assert [r["label"] for r in double] == [r["label"] for r in single]
    for a, b in zip(double, single):
        if a["label"] is not None:
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    assert not result.stdout.strip()  # the second process wrote nothing to stdout either

    # evaluate: the examples dealt out, one report (printed once), the same errors file
    args = ["evaluate", str(model), str(val), "--json", "--precision", "no"]
    one = CliRunner().invoke(app, [*args, "--errors", str(tmp_path / "one-errors.jsonl")])
    assert one.exit_code == 0, one.stderr
    result = launch("torchrun", [*args, "--errors", str(tmp_path / "two-errors.jsonl")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    single, double = json.loads(one.stdout), json.loads(result.stdout)  # two reports on stdout would not parse
    assert double["n"] == single["n"] == 21
    assert double["confusion_matrix"] == single["confusion_matrix"]
    for key in ("accuracy", "f1_macro", "mcc"):
        assert double[key] == pytest.approx(single[key], abs=1e-9), key
    single_accuracy = single["accuracy"]
    # the errors file names each misclassified example with its own scores: a mix-up of examples between processes shows
    single, double = read_jsonl(tmp_path / "one-errors.jsonl"), read_jsonl(tmp_path / "two-errors.jsonl")
    assert len(double) == len(single) == 21 - round(single_accuracy * 21) > 0
    assert [(r["row"], r["text"], r["label"], r["predicted"]) for r in double] == [
        (r["row"], r["text"], r["label"], r["predicted"]) for r in single
    ]
    for a, b in zip(double, single):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_two_process_ner_predict_and_evaluate_equal_one_process(tmp_path, tiny_model):
    from test_ner import toy_corpus, write_conll

    train = write_conll(tmp_path / "train.conll", toy_corpus(160, seed=0))
    model = tmp_path / "ner"
    settings = ["--epochs", "4", "--lr", "5e-3", "--val-split", "0"]  # enough to find entities, so tags are compared
    trained = CliRunner().invoke(app, ["finetune", str(train), "-m", str(tiny_model), "-o", str(model), *settings])
    assert trained.exit_code == 0, trained.stderr
    raw = tmp_path / "lines.txt"
    raw.write_text("".join(" ".join(words) + "\n" for words, _ in toy_corpus(37, seed=7)))
    tokens = write_conll(tmp_path / "test.conll", toy_corpus(23, seed=8))
    for source, name in ((raw, "entities.jsonl"), (tokens, "tagged.conll")):
        args = [
            "predict",
            str(model),
            str(source),
            "-b",
            "2",
            "--precision",
            "no",
        ]  # chunks of 16: several, the last short
        one, two, _ = one_and_two(args, tmp_path, name)
        single, double = one.read_text(), two.read_text()
        assert double.count("\n") == single.count("\n") > 20
        if name.endswith(".jsonl"):
            a, b = [json.loads(x) for x in double.splitlines()], [json.loads(x) for x in single.splitlines()]
            assert [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in a] == [
                [(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in b
            ]
            assert sum(len(r["entities"]) for r in a) > 10
        else:
            assert double == single  # tokens, gold and predicted tags, line for line

    args = ["evaluate", str(model), str(tokens), "--json", "--precision", "no"]
    one = CliRunner().invoke(app, args)
    assert one.exit_code == 0, one.stderr
    result = launch("torchrun", args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    single, double = json.loads(one.stdout), json.loads(result.stdout)
    assert double["n"] == single["n"] == 23 and single["f1"] > 0
    assert {k: v for k, v in double.items() if k != "model"} == {k: v for k, v in single.items() if k != "model"}


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_stdin_is_refused_under_a_launch(tmp_path, tiny_model, monkeypatch, command):
    """Only one process would see stdin: under a launch evaluate and predict say so (exit 2) instead of hanging."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, [command, str(tiny_model), "-"], input="a line\n")
    assert result.exit_code == 2
    assert f"under a multi-process launch {command} reads a file, not stdin" in result.stderr
    assert not result.stdout


def test_failure_on_one_process_ends_the_launch_with_its_error(tmp_path, tiny_model):
    """Only the main process opens the output: its error must end the other process (waiting for it), not hang it."""
    source = tmp_path / "texts.txt"
    source.write_text("".join(f"sentence number {i}\n" for i in range(30)))
    out = tmp_path / "vectors.jsonl"
    # a partial export left by an interrupted run with other settings (--normalize)
    (tmp_path / "vectors.jsonl.partial").write_text('{"row": 1, "id": 0, "vector": [1.0]}\n')
    (tmp_path / "vectors.jsonl.partial.json").write_text(
        json.dumps({"fingerprint": {"normalize": True}, "rows": 1, "state": {}})
    )
    result = launch(
        "torchrun", ["embed", str(source), "-m", str(tiny_model), "-o", str(out), "--resume"], tmp_path, timeout=120
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("bertcli: error:")]
    assert len(errors) == 1 and "the partial export was made with other settings" in errors[0], result.stderr[-3000:]
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [["tokenize", "-m", "{model}", "hello world"], ["tokenize", "-m", "{model}", "--stats", "missing.txt"]]
)
def test_a_command_destroys_the_process_group_it_ran_in(tmp_path, tiny_model, monkeypatch, args):
    """Left to interpreter teardown, gloo's threads can abort a finished process (seen in CI: SIGABRT after the
    work was done), so every command, successful or failed, destroys the launch's process group on its way out."""
    import torch.distributed as dist

    monkeypatch.chdir(tmp_path)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        result = CliRunner().invoke(app, [arg.format(model=tiny_model) for arg in args])
        assert result.exit_code == (0 if "hello world" in args else 1), result.stderr
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
