"""Rerankers on the docstrings retrieval set (a function's summary line finds the rest of its docstring; train and
test packages disjoint): BM25 and the base encoder alone, then the base encoder's top 100 reranked by bertcli's
trained reranker (defaults) and by sentence-transformers' CrossEncoderTrainer on the same queries with the same budget
(3 epochs, lr 1e-4, 16 queries x 4 pairs a step, 3 mined negatives per query, 128 tokens, BCE with positives weighted
by the negatives). Training is a whole process, start-up included. Latency: one
query's 100 candidates, median of 5, torch and ONNX int8 (bertcli) vs CrossEncoder.predict.

    python bench/rerank.py [--train 1500] [--test 800] [--queries 200] [--dir /tmp/bench-rerank]
    python bench/rerank.py --latency-only RERANKER_DIR [--queries 12]   # latency alone, on a trained reranker
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ST_SCRIPT = """
import sys
from datasets import load_dataset
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from sentence_transformers.util import mine_hard_negatives
train, out, base, negatives, length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
epochs, lr = float(sys.argv[6]), float(sys.argv[7])
data = load_dataset("csv", data_files=train, split="train")
pairs = mine_hard_negatives(
    data, SentenceTransformer(base, device="cpu"), anchor_column_name="query", positive_column_name="positive",
    num_negatives=negatives, range_min=3, absolute_margin=0.05, output_format="labeled-pair", verbose=False,
)
model = CrossEncoder(base, num_labels=1, max_length=length, device="cpu")
args = CrossEncoderTrainingArguments(
    output_dir=out + ".tmp", num_train_epochs=epochs, per_device_train_batch_size=16 * (1 + negatives), learning_rate=lr,
    warmup_ratio=0.1, save_strategy="no", report_to="none", logging_steps=1000, seed=42, bf16=True, use_cpu=True,
)
loss = BinaryCrossEntropyLoss(model, pos_weight=__import__("torch").tensor(float(negatives)))
CrossEncoderTrainer(model=model, args=args, train_dataset=pairs, loss=loss).train()
model.save(out)
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def metrics(rankings: dict, qrels: dict) -> tuple[float, float]:
    from bertcli.reports.retrieval import retrieval_metrics

    found = retrieval_metrics(rankings, qrels)
    return found["ndcg@10"], found["mrr@10"]


def reranked(score, data, first: dict) -> dict:
    pairs = [(data.queries[q], data.corpus[d]) for q, docs in first.items() for d in docs]
    scores = np.asarray(score(pairs), dtype=np.float64)
    out, at = {}, 0
    for q, docs in first.items():
        part = scores[at : at + len(docs)]
        out[q] = [docs[j] for j in np.argsort(-part, kind="stable")]
        at += len(docs)
    return out


def latency(score, pairs) -> float:
    score(pairs)  # warm
    times = []
    for _ in range(5):
        start = time.perf_counter()
        score(pairs)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def latencies(model_dir: Path, test_dir: Path, queries: int) -> None:
    """Rerank latency of each query's 100 candidates (query i: corpus texts 100i to 100i + 99, wrapping around the
    corpus), median of 5, every scorer in turn on the same query; then each scorer's median over the queries and its
    speed-up over CrossEncoder.predict, measured query by query (each query takes about 25 s on 2 cores)."""
    from sentence_transformers import CrossEncoder

    from bertcli import load
    from bertcli.data.retrieval import read_beir
    from bertcli.inference.loading import EXPORT_DIR, INT8

    if not (model_dir / EXPORT_DIR / INT8).is_file():
        subprocess.run(
            [sys.executable, "-m", "bertcli", "-q", "export", str(model_dir), "--quantize", "int8", "--force",
             "--overwrite"], check=True,
        )  # fmt: skip
    data = read_beir(str(test_dir))
    documents = list(data.corpus.values())
    peer = CrossEncoder(str(model_dir), device="cpu")
    scorers = {
        "bertcli ONNX int8 (default batches)": load(str(model_dir)).run,
        "bertcli ONNX int8, -b 32": load(str(model_dir), batch_size=32).run,
        "bertcli torch (default precision)": load(str(model_dir), backend="torch").run,
        "sentence-transformers CrossEncoder.predict": lambda p: peer.predict(p, batch_size=32),
    }
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for i, query in enumerate(list(data.queries)[:queries]):
        pairs = [(data.queries[query], documents[(i * 100 + j) % len(documents)]) for j in range(100)]
        for name, score in scorers.items():
            times[name].append(latency(score, pairs))
    peer_ms = np.asarray(times["sentence-transformers CrossEncoder.predict"])
    print(
        f"\nrerank latency, {len(peer_ms)} queries x 100 docstring candidates (median of 5 each), {os.cpu_count()} cores\n"
    )
    print("| scorer | median ms | speed-up over CrossEncoder.predict: median (min-max) |")
    print("|---|---:|---|")
    for name, ms in times.items():
        ratio = peer_ms / np.asarray(ms)
        print(f"| {name} | {np.median(ms):.0f} | {np.median(ratio):.2f}x ({ratio.min():.2f}-{ratio.max():.2f}) |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=800)
    parser.add_argument("--queries", type=int, default=200, help="test queries reranked (each: 100 candidates)")
    parser.add_argument("--dir", default="/tmp/bench-rerank")
    parser.add_argument(
        "--latency-only", metavar="RERANKER_DIR", help="only the latency rows, over --queries queries (take about 12)"
    )
    args = parser.parse_args()
    root = Path(args.dir)
    data_dir = root / "data"
    if not (data_dir / "train.csv").is_file():
        subprocess.run(
            [sys.executable, "-m", "bertcli.corpora", "docstrings", str(data_dir), str(args.train), str(args.test)],
            check=True,
        )
    if args.latency_only:
        latencies(Path(args.latency_only), data_dir / "test", args.queries)
        return
    from sentence_transformers import CrossEncoder

    from bertcli import Embedder, load
    from bertcli.data.retrieval import Retrieval, read_beir
    from bertcli.hub import default_model
    from bertcli.reports.retrieval import bm25_rankings, top_k

    full = read_beir(str(data_dir / "test"))
    picked = sorted(random.Random(0).sample(list(full.queries), min(args.queries, len(full.queries))))
    data = Retrieval({q: full.queries[q] for q in picked}, full.corpus, {q: full.qrels[q] for q in picked}, full.source)
    rows = []
    rows.append(("BM25 alone", *metrics(bm25_rankings(data, 100), data.qrels), "", ""))
    base = Embedder(None, normalize=True)
    doc_ids = list(data.corpus)
    found, _ = top_k(
        base.embed(list(data.queries.values())).vectors, base.embed(list(data.corpus.values())).vectors, 100
    )
    first = {q: [doc_ids[i] for i in row] for q, row in zip(data.queries, found)}
    rows.append(("base encoder alone (all-MiniLM-L6-v2)", *metrics(first, data.qrels), "", ""))
    print(f"bm25 and base encoder done; {len(data.queries)} queries", file=sys.stderr)

    ours, theirs = root / "bertcli", root / "st"
    train = str(data_dir / "train.csv")
    ours_s = timed(
        [sys.executable, "-m", "bertcli", "-q", "finetune", train, "--task", "rerank", "-o", str(ours), "--overwrite"]
    )
    print(f"bertcli trained in {ours_s:.0f}s", file=sys.stderr)
    from bertcli.config import TASK_DEFAULTS
    from bertcli.config.rerank import RERANK_LENGTH_CAP, RERANK_NEGATIVES

    budget = TASK_DEFAULTS["rerank"]
    theirs_s = timed(
        [sys.executable, "-c", ST_SCRIPT, train, str(theirs), default_model(), str(RERANK_NEGATIVES),
         str(RERANK_LENGTH_CAP), str(budget["epochs"]), str(budget["lr"])]
    )  # fmt: skip
    print(f"sentence-transformers trained in {theirs_s:.0f}s", file=sys.stderr)

    model = load(str(ours), precision="no")
    peer = CrossEncoder(str(theirs), device="cpu")
    ours_ranked = reranked(lambda p: [r[0] for r in model.run(p)], data, first)
    theirs_ranked = reranked(lambda p: peer.predict(p, batch_size=32), data, first)
    subprocess.run(
        [sys.executable, "-m", "bertcli", "-q", "export", str(ours), "--quantize", "int8", "--force", "--overwrite"],
        check=True,
    )
    int8 = load(str(ours / "onnx"))
    int8_ranked = reranked(lambda p: [r[0] for r in int8.run(p)], data, first)
    query = next(iter(first))
    pairs = [(data.queries[query], data.corpus[d]) for d in first[query]]
    ours_ms = latency(lambda p: model.run(p), pairs)
    int8_ms = latency(lambda p: int8.run(p), pairs)
    theirs_ms = latency(lambda p: peer.predict(p, batch_size=32), pairs)
    rows.append(("+ bertcli reranker (torch)", *metrics(ours_ranked, data.qrels), f"{ours_s:.0f}", f"{ours_ms:.0f}"))
    rows.append(("+ bertcli reranker (ONNX int8)", *metrics(int8_ranked, data.qrels), "", f"{int8_ms:.0f}"))
    rows.append(
        (
            "+ sentence-transformers CrossEncoderTrainer",
            *metrics(theirs_ranked, data.qrels),
            f"{theirs_s:.0f}",
            f"{theirs_ms:.0f}",
        )
    )
    print(f"\n{len(data.queries)} test queries, {len(data.corpus)} documents; reranking the base encoder's top 100\n")
    print("| first stage / reranker | NDCG@10 | MRR@10 | train s | rerank 100 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, ndcg, mrr, train_s, ms in rows:
        print(f"| {name} | {ndcg:.4f} | {mrr:.4f} | {train_s} | {ms} |")


if __name__ == "__main__":
    main()
