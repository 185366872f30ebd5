"""Deploy speed: bertcli's ONNX exports (fp32, int8) against its torch path and what a user would otherwise run.

One run, all-MiniLM-L6-v2 (fine-tuned on Rotten Tomatoes for the classifier; as it ships for embeddings):

* cold start: the whole process of `echo x | bertcli predict MODEL` (torch, ONNX fp32, ONNX int8) and of a
  script with `transformers.pipeline`, median of 5 after one warm-up;
* predict: sentences/s and test accuracy on Rotten Tomatoes snippets, in-process, for the pipeline
  (batch 32), bertcli on torch (fp32, and what --precision auto picks here), ONNX fp32 and ONNX int8;
* embed: sentences/s and cosine to torch fp32 on the same snippets, for sentence-transformers' encode(),
  bertcli on torch fp32, ONNX fp32 and ONNX int8.

    python bench/export.py              # about 10 minutes on 2 idle cores
    python bench/export.py --quick      # small sizes: checks that everything runs

Tables go to stdout (markdown), progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {
    "cold_onnx_seconds": 0.6,
    "onnx_vs_torch": 1.0,
    "int8_vs_torch": 2.0,
    "int8_accuracy_drop": 0.01,
    "int8_cosine": 0.99,
}
PIPELINE_SCRIPT = """
import sys
from transformers import pipeline
classify = pipeline("text-classification", model=sys.argv[1])
for line in sys.stdin:
    print(classify(line.strip())[0]["label"])
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def run(command: list[str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def bertcli(*args: str) -> list[str]:
    found = shutil.which("bertcli")
    return [found, *args] if found else [sys.executable, "-m", "bertcli", *args]


def cold_starts(models: dict[str, Path], classifier: Path, repeats: int) -> list[tuple[str, float, float, float]]:
    """Whole-process seconds of one prediction: (method, median, min, max)."""
    commands = {
        f"bertcli predict ({name})": bertcli("predict", str(path), *extra) for name, (path, extra) in models.items()
    }
    script = Path(tempfile.mkdtemp()) / "pipeline_predict.py"
    script.write_text(PIPELINE_SCRIPT)
    commands["pipeline script (transformers)"] = [sys.executable, str(script), str(classifier)]
    rows = []
    for name, command in commands.items():
        run(command, "great movie\n")  # warm-up: page cache, .pyc files
        times = [run(command, "great movie\n") for _ in range(repeats)]
        rows.append((name, statistics.median(times), min(times), max(times)))
        log(f"cold {name}: median {rows[-1][1]:.3f}s")
    return rows


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def accuracy(predicted: list[str], gold: list[str]) -> float:
    return float(np.mean([p == g for p, g in zip(predicted, gold)]))


def predict_rows(
    classifier: Path, exports: dict[str, Path], texts: list[str], gold: list[str], threads: int
) -> list[tuple]:
    """(method, sentences/s, accuracy, seconds) in-process, model load apart, best of two passes."""
    import torch
    from transformers import pipeline

    from bertcli import load
    from bertcli.runtime.precision import resolve_precision

    torch.set_num_threads(threads)
    rows = []
    pipe = pipeline("text-classification", model=str(classifier), device="cpu")
    pipe(texts[:8], batch_size=32)
    seconds = min(timed(lambda t: pipe(t, batch_size=32), texts)[0] for _ in range(2))
    labels = [r["label"] for r in pipe(texts, batch_size=32)]
    rows.append(("pipeline text-classification, batch_size=32", len(texts) / seconds, accuracy(labels, gold), seconds))
    auto = resolve_precision("auto")
    predictors = {"bertcli torch fp32": load(str(classifier), backend="torch", precision="no")}
    if auto != "no":
        predictors[f"bertcli torch {auto} (--precision auto here)"] = load(str(classifier), backend="torch")
    for name, directory in exports.items():
        predictors[f"bertcli ONNX {name}"] = load(str(directory), backend="onnx", threads=threads)
    for name, predictor in predictors.items():
        predictor.predict(texts[:8])
        seconds, records = min((timed(predictor.predict, texts) for _ in range(2)), key=lambda r: r[0])
        rows.append((name, len(texts) / seconds, accuracy([r["label"] for r in records], gold), seconds))
        log(f"predict {name}: {rows[-1][1]:.1f}/s, accuracy {rows[-1][2]:.4f}")
    return rows


def embed_rows(exports: dict[str, Path], texts: list[str], threads: int) -> list[tuple]:
    """(method, sentences/s, mean cosine, min cosine, seconds) against bertcli torch fp32's vectors."""
    from sentence_transformers import SentenceTransformer

    from bertcli import Embedder
    from bertcli.hub import default_model

    reference = Embedder(None, normalize=True, backend="torch", precision="no")
    reference.embed(texts[:8])
    ref_seconds, ref = min((timed(lambda t: reference.embed(t).vectors, texts) for _ in range(2)), key=lambda r: r[0])
    st = SentenceTransformer(default_model(), device="cpu")
    st.encode(texts[:8])
    rows = [("bertcli torch fp32", len(texts) / ref_seconds, 1.0, 1.0, ref_seconds)]
    candidates = {
        "sentence-transformers encode(), batch 32": lambda t: st.encode(t, batch_size=32, normalize_embeddings=True)
    }
    for name, directory in exports.items():
        embedder = Embedder(str(directory), normalize=True, backend="onnx", threads=threads)
        embedder.embed(texts[:8])
        candidates[f"bertcli ONNX {name}"] = lambda t, e=embedder: e.embed(t).vectors
    for name, fn in candidates.items():
        seconds, vectors = min((timed(fn, texts) for _ in range(2)), key=lambda r: r[0])
        cosine = (np.asarray(vectors) * ref).sum(1)
        rows.append((name, len(texts) / seconds, float(cosine.mean()), float(cosine.min()), seconds))
        log(f"embed {name}: {rows[-1][1]:.1f}/s, cosine mean {rows[-1][2]:.4f}")
    return rows


def prepare(work: Path, model: str | None, train_size: int, test_size: int) -> tuple[Path, Path, Path]:
    """Rotten Tomatoes split, a fine-tuned classifier (unless given), and test.txt."""
    from bertcli.corpora import write_rotten_tomatoes

    train, test = write_rotten_tomatoes(str(work / "rt"), train_size, test_size)
    classifier = Path(model) if model else work / "clf"
    if not model:
        log("bertcli finetune (the classifier to export)")
        run(bertcli("finetune", str(train), "-o", str(classifier), "--epochs", "2"))
    return classifier, train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="a fine-tuned classifier to use instead of fine-tuning one")
    parser.add_argument("--n", type=int, help="test snippets for predict and embed [default: 2000; quick: 200]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    n = args.n or (200 if args.quick else 2000)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bertcli-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import pandas as pd

    from bertcli.hub import default_model

    classifier, train, test = prepare(work, args.model, 400 if args.quick else 2000, n)
    frame = pd.read_csv(test)
    texts, gold = [" ".join(str(t).split()) for t in frame["text"]], [str(x) for x in frame["label"]]
    log("bertcli export: classifier fp32 and int8 (checked on the test split), encoder fp32 and int8")
    clf = {"fp32": work / "clf-onnx", "int8": work / "clf-onnx-int8"}
    run(bertcli("export", str(classifier), "-o", str(clf["fp32"]), "--overwrite"))
    run(
        bertcli(
            "export", str(classifier), "-o", str(clf["int8"]), "--quantize", "int8", "--check", str(test), "--overwrite"
        )
    )
    enc = {"fp32": work / "enc-onnx", "int8": work / "enc-onnx-int8"}
    run(bertcli("export", default_model(), "-o", str(enc["fp32"]), "--overwrite"))
    (work / "texts.txt").write_text("".join(t + "\n" for t in texts))
    run(
        bertcli(
            "export",
            default_model(),
            "-o",
            str(enc["int8"]),
            "--quantize",
            "int8",
            "--check",
            str(work / "texts.txt"),
            "--overwrite",
        )
    )
    gate = json.loads((clf["int8"] / "bertcli.json").read_text())["onnx"]["int8"]
    models = {
        "torch": (classifier, ["--backend", "torch"]),
        "ONNX fp32": (clf["fp32"], []),
        "ONNX int8": (clf["int8"], []),
    }
    cold = cold_starts(models, classifier, 3 if args.quick else 5)
    predicted = predict_rows(classifier, clf, texts, gold, args.threads)
    embedded = embed_rows(enc, texts, args.threads)
    report(cold, predicted, embedded, gate, len(texts), args.threads)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def report(cold, predicted, embedded, gate, n, threads) -> None:
    torch_predict = next(r[1] for r in predicted if r[0] == "bertcli torch fp32")
    torch_embed = embedded[0][1]
    print(f"\n{n} Rotten Tomatoes test snippets, {threads} threads, {os.cpu_count()} CPUs\n")
    print("| cold start: `echo x \\| ...`, whole process | median s | min | max |\n|---|---:|---:|---:|")
    for name, median, low, high in cold:
        print(f"| {name} | {median:.3f} | {low:.3f} | {high:.3f} |")
    print("\n| predict | sentences/s | vs bertcli torch fp32 | test accuracy |\n|---|---:|---:|---:|")
    for name, rate, acc, _ in predicted:
        print(f"| {name} | {rate:.1f} | {rate / torch_predict:.2f}x | {acc:.4f} |")
    print("\n| embed | sentences/s | vs bertcli torch fp32 | mean cosine | min cosine |\n|---|---:|---:|---:|---:|")
    for name, rate, mean, low, _ in embedded:
        print(f"| {name} | {rate:.1f} | {rate / torch_embed:.2f}x | {mean:.4f} | {low:.4f} |")
    onnx_cold = next(m for name, m, *_ in cold if "ONNX fp32" in name)
    int8 = next(r for r in predicted if r[0] == "bertcli ONNX int8")
    fp32 = next(r for r in predicted if r[0] == "bertcli torch fp32")
    int8_embed = next(r for r in embedded if r[0] == "bertcli ONNX int8")
    print(
        f"\nint8 gate at export: {gate['metric']} {gate['int8']:.4f} vs fp32 {gate['fp32']:.4f} (drop {gate['drop']:.4f}, kept {gate['kept']})\n"
        f"goals: cold ONNX {onnx_cold:.3f}s (<= {GOALS['cold_onnx_seconds']}); ONNX fp32 predict "
        f"{next(r[1] for r in predicted if r[0] == 'bertcli ONNX fp32') / torch_predict:.2f}x torch fp32 (>= 1); "
        f"int8 {int8[1] / torch_predict:.2f}x torch fp32 (>= 2) at accuracy {int8[2]:.4f} vs {fp32[2]:.4f} (within 0.01); "
        f"int8 embed {int8_embed[1] / torch_embed:.2f}x, mean cosine {int8_embed[2]:.4f} (>= 0.99)"
    )


if __name__ == "__main__":
    main()
