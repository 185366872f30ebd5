"""Vector search at 200k real texts: exact numpy, bertcli's index at each dtype (with and without rescoring), and
usearch and FAISS used directly with the same HNSW settings, in one run.

The corpus is every docstring paragraph of the installed packages (long-tailed: one-line notes to whole parameter
lists), with the documents of the docstrings retrieval set mixed in; its queries are those functions' summary lines,
so the same run also says whether --hybrid (BM25 fused with the dense hits) finds the right document more often.
Vectors: all-MiniLM-L6-v2's int8 ONNX export (`bertcli export --quantize int8`) through `bertcli embed`
(normalised); each index records that model, so it encodes the queries too. Each searcher runs in its own process, so resident
memory is its own, after the queries, less the interpreter and libraries measured before opening the index: its own
(anonymous) memory, and the pages of memory-mapped files it touched (page cache the kernel may reclaim).

    python bench/search.py [--dir /tmp/bench-search] [--size 200000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

HNSW = {"M": 16, "ef_construction": 128, "ef_search": 192}  # bertcli's defaults (config/search.py), for the peers too


def paragraphs(skip: set[str]):
    """Every distinct docstring paragraph (40+ characters) of the installed packages but `skip`, in sorted order."""
    root = Path(sysconfig.get_paths()["purelib"])
    seen = set()
    for package in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file() and p.name not in skip):
        for path in sorted(package.rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
                    for para in (ast.get_docstring(node, clean=True) or "").split("\n\n"):
                        para = " ".join(para.split())
                        if len(para) >= 40 and para not in seen:
                            seen.add(para)
                            yield para


def prepare(data: Path, size: int, queries: int) -> None:
    """corpus.jsonl (the docstrings test documents first, then distractor paragraphs of other packages), queries.jsonl
    with each query's relevant document, and corpus.parquet from `bertcli embed`."""
    from bertcli.data.docstrings import TEST_PACKAGES, package_pairs

    data.mkdir(parents=True, exist_ok=True)
    if not (data / "corpus.jsonl").is_file():
        pairs = package_pairs(TEST_PACKAGES)
        random.Random(0).shuffle(pairs)
        pairs = pairs[:queries]
        distractors = list(paragraphs(set(TEST_PACKAGES)))  # no paragraph of the query packages: no twin of a query
        random.Random(0).shuffle(distractors)
        docs = [d for _, d in pairs] + distractors[: size - len(pairs)]
        with open(data / "corpus.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": f"d{i}", "text": d}) + "\n" for i, d in enumerate(docs))
        with open(data / "queries.jsonl", "w", encoding="utf-8") as f:
            f.writelines(
                json.dumps({"id": f"q{i}", "text": q, "relevant": f"d{i}"}) + "\n" for i, (q, _) in enumerate(pairs)
            )
    model = int8_model(data)
    if not (data / "corpus.parquet").is_file():
        subprocess.run([sys.executable, "-m", "bertcli", "embed", str(data / "corpus.jsonl"), "-m", str(model),
                        "--id-column", "id", "--include-text", "--normalize", "-o", str(data / "corpus.parquet")],
                       check=True)  # fmt: skip


def int8_model(data: Path) -> Path:
    """all-MiniLM-L6-v2's int8 ONNX export (kept if its vectors keep a mean cosine of 0.99 to fp32 on 2,000 corpus
    texts): what embeds the corpus and, through each index's record, the queries."""
    model = data / "minilm-int8"
    if not (model / "bertcli.json").is_file():
        with open(data / "corpus.jsonl", encoding="utf-8") as corpus, open(data / "check.txt", "w") as check:
            check.writelines(json.loads(next(corpus))["text"] + "\n" for _ in range(2000))
        subprocess.run([sys.executable, "-m", "bertcli", "export", "sentence-transformers/all-MiniLM-L6-v2", "-o",
                        str(model), "--quantize", "int8", "--check", str(data / "check.txt")], check=True)  # fmt: skip
    return model


CHILD = r"""
import json, os, sys, time
import numpy as np
kind, path, queries_path, k, ef = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
queries = np.load(queries_path)
def rss():  # (anonymous, file-backed: mapped files, reclaimable) resident MB
    status = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("Rss")}
    return np.array([status["RssAnon"], status["RssFile"]]) / 1024
import usearch.index, faiss, bertcli.tasks.search.searcher  # libraries loaded before the baseline
before = rss()
if kind == "exact":
    matrix = np.load(path)  # what a user's own numpy search holds: the whole float32 matrix
    def search(q, k):
        scores = q @ matrix.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
elif kind.startswith("bertcli"):
    from bertcli.bundle import read_meta
    from bertcli.tasks.search.searcher import VectorSearch
    index, rescore = VectorSearch(path, read_meta(path)), kind.endswith("+rescore")  # no model: queries come encoded
    def search(q, k):
        return index.nearest(q, k, rescore)[0]
elif kind.startswith("usearch"):
    from usearch.index import Index
    index = Index.restore(path, view=True); index.expansion_search = ef
    def search(q, k):
        return np.asarray(index.search(q, k).keys).reshape(len(q), -1)
else:
    import faiss
    faiss.omp_set_num_threads(2)
    index = faiss.read_index_binary(path) if "binary" in kind else faiss.read_index(path)
    index.hnsw.efSearch = ef
    def search(q, k):
        if "binary" in kind:
            return index.search(np.packbits(q > 0, axis=1), k)[1]
        return index.search(q, k)[1]
search(queries[:10], k)
single = []
for q in queries:
    start = time.perf_counter(); search(q[None, :], k); single.append(time.perf_counter() - start)
start = time.perf_counter(); found = search(queries, k); batch = time.perf_counter() - start
print(json.dumps({"found": np.asarray(found).tolist(), "p50": float(np.percentile(single, 50)) * 1e3,
                  "p99": float(np.percentile(single, 99)) * 1e3, "batch": batch * 1e3 / len(queries),
                  "rss": (rss() - before).tolist()}))
"""


def run_child(kind: str, path: Path, queries: Path, k: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(queries), str(k), str(HNSW["ef_search"])],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def build_peers(vectors: np.ndarray, root: Path) -> dict[str, tuple[Path, float]]:
    """usearch and FAISS HNSW indexes built directly: f32 and 8-bit codes of both, FAISS's 6-bit codes and its binary
    HNSW."""
    import faiss
    from usearch.index import Index

    built = {}
    for kind, dtype in (("usearch", "f32"), ("usearch-i8", "i8")):  # inner product: the vectors are unit
        start = time.perf_counter()
        index = Index(ndim=vectors.shape[1], metric="ip", dtype=dtype, connectivity=HNSW["M"],
                      expansion_add=HNSW["ef_construction"], expansion_search=HNSW["ef_search"])  # fmt: skip
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors)
        index.save(str(root / f"{kind}.usearch"))
        built[kind] = (root / f"{kind}.usearch", time.perf_counter() - start)
    faiss.omp_set_num_threads(2)
    for kind, make in (
        ("faiss", lambda d: faiss.IndexHNSWFlat(d, HNSW["M"], faiss.METRIC_INNER_PRODUCT)),
        (
            "faiss-sq8",
            lambda d: faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, HNSW["M"], faiss.METRIC_INNER_PRODUCT),
        ),
        (
            "faiss-sq6",
            lambda d: faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_6bit, HNSW["M"], faiss.METRIC_INNER_PRODUCT),
        ),
        ("faiss-binary", lambda d: faiss.IndexBinaryHNSW(d, HNSW["M"])),
    ):
        start = time.perf_counter()
        index = make(vectors.shape[1])
        index.hnsw.efConstruction = HNSW["ef_construction"]
        data = np.packbits(vectors > 0, axis=1) if kind == "faiss-binary" else vectors
        if not index.is_trained:
            index.train(data)
        index.add(data)
        path = root / f"{kind}.index"
        (faiss.write_index_binary if kind == "faiss-binary" else faiss.write_index)(index, str(path))
        built[kind] = (path, time.perf_counter() - start)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp/bench-search")
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--serve-only", action="store_true", help="only /search, on the indexes a full run built")
    args = parser.parse_args()
    root = Path(args.dir)
    data = root / "data"
    prepare(data, args.size, args.queries)
    if args.serve_only:
        return served(root, data, args)
    import pyarrow.parquet as pq

    import bertcli

    table = pq.read_table(data / "corpus.parquet", columns=["vector"])
    vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32).reshape(
        table.num_rows, -1
    )
    np.save(root / "matrix.npy", vectors)
    queries = [json.loads(line) for line in open(data / "queries.jsonl", encoding="utf-8")]
    query_vectors = bertcli.Embedder(str(int8_model(data)), normalize=True).embed([q["text"] for q in queries]).vectors
    np.save(root / "queries.npy", query_vectors)
    exact = np.argsort(-(query_vectors @ vectors.T), axis=1)[:, : args.k]

    rows = []
    builds: dict[str, tuple[Path, float]] = {}
    for dtype in ("f32", "f16", "i8", "i6", "binary"):
        out = root / f"index-{dtype}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bertcli", "-q", "index", str(data / "corpus.parquet"), "--dtype", dtype,
                        "-m", str(int8_model(data)), "-o", str(out)], check=True)  # fmt: skip
        builds[dtype] = (out, time.perf_counter() - start)
    peers = build_peers(vectors, root)
    configs = [("exact numpy", "exact", root / "matrix.npy", None)]
    for dtype in ("f32", "f16", "i8", "i6", "binary"):
        path, seconds = builds[dtype]
        configs.append((f"bertcli {dtype}", f"bertcli-{dtype}", path, seconds))
        if dtype != "f32":
            configs.append((f"bertcli {dtype} + rescore", f"bertcli-{dtype}+rescore", path, seconds))
    configs += [(name, name, path, seconds) for name, (path, seconds) in peers.items()]
    for name, kind, path, seconds in configs:
        result = run_child(kind, path, root / "queries.npy", args.k)
        found = np.asarray(result["found"])
        recall = np.mean([len(set(f.tolist()) & set(e.tolist())) / args.k for f, e in zip(found, exact)])
        rows.append((name, seconds, size_mb(path), result, recall))
    full = vectors.nbytes / 2**20
    print(f"\n{len(vectors):,} vectors x {vectors.shape[1]} (float32 matrix {full:.0f} MB), {len(queries)} queries, "
          f"k={args.k}, {os.cpu_count()} cores; latency: the search alone, queries already encoded")  # fmt: skip
    print("| index | build s | disk MB | resident MB: own + mapped files | single p50 ms | single p99 ms | "
          "batch ms/query | recall@10 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, seconds, disk, result, recall in rows:
        own, mapped = result["rss"]
        print(f"| {name} | {'-' if seconds is None else f'{seconds:.1f}'} | {disk:.0f} | {own:.0f} + {mapped:.0f} | "
              f"{result['p50']:.3f} | {result['p99']:.3f} | {result['batch']:.3f} | {recall:.4f} |")  # fmt: skip
    quality(root, data, queries, args.k)
    served(root, data, args)


def served(root: Path, data: Path, args) -> None:
    texts = [json.loads(line)["text"] for line in open(data / "queries.jsonl", encoding="utf-8")]
    for dtype in ("f32", "i8", "i6"):
        rate = serve_rate(root / f"index-{dtype}", texts, args.clients)
        print(f"\n/search on the {dtype} index ({args.clients} clients, {rate['done']} requests of one query, k=10): "
              f"{rate['rate']:.0f} queries/s, p50 {rate['p50']:.1f} ms, p99 {rate['p99']:.1f} ms, "
              f"{rate['failures']} failed")  # fmt: skip


def serve_rate(index: Path, texts: list[str], clients: int) -> dict:
    """`bertcli serve INDEX` on loopback, `clients` aiohttp clients posting one query each until all are answered."""
    import asyncio
    import socket

    import aiohttp
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "bertcli", "-q", "serve", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pending = [json.dumps({"query": text, "k": 10}) for text in reversed(texts)]
        latencies: list[float] = []
        failures = 0

        async def client(http) -> None:
            nonlocal failures
            while pending:
                body = pending.pop()
                start = time.perf_counter()
                async with http.post(
                    url + "/search", data=body, headers={"content-type": "application/json"}
                ) as answer:
                    await answer.read()
                    failures += answer.status != 200
                latencies.append(time.perf_counter() - start)

        async def run() -> float:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
                for text in texts[:clients]:  # warm up: open the connections
                    async with http.post(url + "/search", json={"query": text}) as answer:
                        await answer.read()
                start = time.perf_counter()
                await asyncio.gather(*(client(http) for _ in range(clients)))
                return time.perf_counter() - start

        wall = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=60)
    ordered = sorted(latencies)
    return {"rate": len(latencies) / wall, "p50": ordered[len(ordered) // 2] * 1000,
            "p99": ordered[int(0.99 * len(ordered))] * 1000, "done": len(latencies), "failures": failures}  # fmt: skip


def quality(root: Path, data: Path, queries: list[dict], k: int) -> None:
    """Does --hybrid help? NDCG@10 / MRR@10 / Recall@10 of each query's one relevant document."""
    import bertcli
    from bertcli.reports.retrieval import retrieval_metrics

    searcher = bertcli.load(str(root / "index-f32"))
    texts = [q["text"] for q in queries]
    qrels = {q["id"]: {q["relevant"]: 1.0} for q in queries}
    print(f"\nRetrieval of the {len(queries)} docstrings queries' documents among all the texts:")
    print("| search | ndcg@10 | mrr@10 | recall@10 | s/1000 queries |")
    print("|---|---:|---:|---:|---:|")
    bm25 = _bm25(searcher, texts, k)
    for name, run in (
        ("BM25 alone", lambda: bm25),
        ("dense (f32 HNSW)", lambda: searcher.search(texts, k)),
        ("dense exact", lambda: searcher.search(texts, k, exact=True)),
        ("hybrid (RRF)", lambda: searcher.search(texts, k, hybrid=True)),
    ):
        start = time.perf_counter()
        hits = run()
        seconds = time.perf_counter() - start
        found = retrieval_metrics({q["id"]: [h["id"] for h in h_] for q, h_ in zip(queries, hits)}, qrels)
        print(f"| {name} | {found['ndcg@10']:.4f} | {found['mrr@10']:.4f} | {found['recall@10']:.4f} | "
              f"{seconds * 1000 / len(queries):.1f} |")  # fmt: skip


def _bm25(searcher, texts: list[str], k: int) -> list[list[dict]]:
    import bm25s

    from bertcli.tasks.search.searcher import _bm25_rows

    tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False, return_ids=False)
    return [[searcher.index.entry(r) for r in rows[:k]] for rows in _bm25_rows(searcher.index.bm25(), tokens, k)]


if __name__ == "__main__":
    main()
