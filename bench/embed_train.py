"""Embedding training on the docstrings retrieval set (a function's summary line finds the rest of its docstring;
train and test packages disjoint): BM25, the base model, sentence-transformers' SentenceTransformerTrainer with
MultipleNegativesRankingLoss (its documented defaults, and bertcli's budget), and bertcli finetune (defaults, hard
negatives, Matryoshka at 128 dimensions). Each run is a whole process, start-up included; peak RSS from the kernel.

    python bench/embed_train.py [--train 1500] [--test 800] [--dir /tmp/bench-embed]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ST_SCRIPT = """
import sys
from datasets import load_dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.losses import MultipleNegativesRankingLoss
from sentence_transformers.training_args import BatchSamplers
train, out, batch, lr, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
model = SentenceTransformer(sys.argv[6], device="cpu")
model.max_seq_length = length
data = load_dataset("csv", data_files=train, split="train")
args = SentenceTransformerTrainingArguments(
    output_dir=out + ".tmp", num_train_epochs=1, per_device_train_batch_size=batch, learning_rate=lr,
    warmup_ratio=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to="none",
    logging_steps=1000, seed=42,
)
SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)).train()
model.save(out)
"""


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process: wait4 reports that child's own peak, where
    RUSAGE_CHILDREN would report the largest of every child so far."""
    start = time.perf_counter()
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, command)
    return wall, usage.ru_maxrss / 1024


def evaluate(model: str, test: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bertcli", "-q", "evaluate", model, str(test), "--output-format", "json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def at_dims(model: str, test: Path, dims: int) -> dict:
    """Retrieval metrics of the leading `dims` dimensions (renormalised), as serve's `dimensions` answers."""
    import numpy as np

    from bertcli.data.retrieval import read_beir
    from bertcli.reports.retrieval import retrieval_metrics, top_k
    from bertcli.tasks import load

    data, embedder = read_beir(str(test)), load(model)
    unit = lambda v: v[:, :dims] / np.linalg.norm(v[:, :dims], axis=1, keepdims=True)  # noqa: E731
    q = unit(embedder.embed(list(data.queries.values())).vectors)
    d = unit(embedder.embed(list(data.corpus.values())).vectors)
    ids = list(data.corpus)
    ranked = {qid: [ids[i] for i in row] for qid, row in zip(data.queries, top_k(q, d)[0])}
    return retrieval_metrics(ranked, data.qrels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=800)
    parser.add_argument("--dir", default="/tmp/bench-embed")
    args = parser.parse_args()
    from bertcli.hub import default_model

    base, root = default_model(), Path(args.dir)
    data = root / "data"
    if not (data / "train.csv").is_file():
        subprocess.run(
            [sys.executable, "-m", "bertcli.corpora", "docstrings", str(data), str(args.train), str(args.test)],
            check=True,
        )
    train, test = data / "train.csv", data / "test"
    rows: list[tuple[str, dict, float | None, float | None]] = []
    report = evaluate(base, test)
    rows += [("BM25 (bm25s)", report["baseline"], None, None), ("base all-MiniLM-L6-v2", report, None, None)]
    st = [sys.executable, "-c", ST_SCRIPT, str(train)]
    bertcli = [sys.executable, "-m", "bertcli", "-q", "finetune", str(train), "--overwrite", "--val-split", "0"]
    runs = [
        ("ST trainer, documented defaults (b32, lr 2e-5)", st + [str(root / "st-default"), "32", "2e-5", "256", base]),
        (
            "ST trainer, bertcli's budget (b64, lr 5e-5, len 128)",
            st + [str(root / "st-budget"), "64", "5e-5", "128", base],
        ),
        ("bertcli finetune (defaults)", bertcli + ["-o", str(root / "bertcli")]),
        ("bertcli --hard-negatives 1", bertcli + ["-o", str(root / "bertcli-hn"), "--hard-negatives", "1"]),
        (  # with the default validation split: the rotation that orders the dimensions is chosen on it
            "bertcli --matryoshka-dims 384,256,128,64 (10% held out for validation)",
            [*bertcli[:-2], "-o", str(root / "bertcli-mrl"), "--matryoshka-dims", "384,256,128,64"],
        ),
    ]
    for name, command in runs:
        wall, rss = timed(command)
        model = command[command.index("-o") + 1] if "-o" in command else command[4]
        rows.append((name, evaluate(model, test), wall, rss))
        if "matryoshka" in name:
            rows.append(("  the same at 128 dimensions", at_dims(model, test, 128), None, None))
    print(
        f"\n{args.train} training pairs, {report['n']} test queries against {report['corpus_size']} documents (load {os.getloadavg()[0]:.1f})\n"
    )
    print("| run | NDCG@10 | MRR@10 | Recall@10 | train wall s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|")
    for name, metrics, wall, rss in rows:
        timing = f"{wall:.0f} | {rss:.0f}" if wall is not None else " | "
        print(
            f"| {name} | {metrics['ndcg@10']:.4f} | {metrics['mrr@10']:.4f} | {metrics['recall@10']:.4f} | {timing} |"
        )


if __name__ == "__main__":
    main()
