"""Sequence classification speed: bertcli against transformers' Trainer and text-classification pipeline.

One run, one model (all-MiniLM-L6-v2), one data set (Rotten Tomatoes snippets, split by movie):

* finetune: `bertcli finetune` run as a user would (default hyperparameters) against the HF `Trainer`
  with run_classification's defaults (every example padded to 128 tokens) and tuned (dynamic padding,
  length-grouped batches), same epochs; training examples/s and test accuracy.
* predict: `bertcli predict` (the whole command, and `Classifier.scores` in-process to separate start-up)
  against `pipeline("text-classification")` with its defaults (batch 1) and with batch_size=32,
  all on the model bertcli just fine-tuned; sentences/s.

    python bench/classify.py            # about 10-12 minutes on 2 cores
    python bench/classify.py --quick    # tiny sizes, about 2 minutes: checks that everything runs

The table goes to stdout (markdown); progress to stderr. Timings are wall-clock on a machine that may be
shared, so the load average before and after is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GOALS = {"predict_vs_default": 2.5, "predict_vs_batched": 1.2, "finetune_vs_tuned": 1.3}
EQUAL_ACCURACY = 0.01  # "equal accuracy": within one point on the test set
HF_MAX_LENGTH = 128  # run_classification's --max_seq_length default
SEED = 42


@dataclass
class Row:
    method: str
    rate: float  # examples/s (finetune) or sentences/s (predict)
    accuracy: float | None
    wall: float
    note: str = ""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- environment -----------------------------------------------------------------------------------------


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    present = set(next((line for line in text.splitlines() if line.startswith("flags")), "").split())
    return [flag for flag in wanted if flag in present]


def matmul_seconds(dtype) -> float:
    """Best of 5 for one MiniLM-sized feed-forward matmul (256 tokens x 384 -> 1536)."""
    import torch

    a, b = torch.randn(256, 384).to(dtype), torch.randn(384, 1536).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


def environment() -> dict:
    import torch
    import transformers

    from bertcli.accel import fast_bf16_available, resolve_precision

    fp32, bf16 = matmul_seconds(torch.float32), matmul_seconds(torch.bfloat16)
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu_flags": cpu_flags(),
        "bf16_matmul_vs_fp32": bf16 / fp32,
        "fast_bf16": fast_bf16_available(),
        "auto_precision": resolve_precision("auto"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


# --- data ------------------------------------------------------------------------------------------------


def write_data(work: Path, train_size: int, test_size: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """train.csv, test.csv and test.txt (one snippet a line); whitespace collapsed so a line is a snippet."""
    from bertcli.corpora import rotten_tomatoes

    train, test = rotten_tomatoes()
    train, test = train.head(train_size).copy(), test.head(test_size).copy()
    for frame in (train, test):
        frame["text"] = [" ".join(t.split()) for t in frame["text"]]
    train[["text", "label"]].to_csv(work / "train.csv", index=False)
    test[["text", "label"]].to_csv(work / "test.csv", index=False)
    (work / "test.txt").write_text("".join(t + "\n" for t in test["text"]), encoding="utf-8")
    return list(train["text"]), list(train["label"]), list(test["text"]), list(test["label"])


def accuracy(predicted, gold) -> float:
    return sum(p == g for p, g in zip(predicted, gold)) / len(gold)


# --- bertcli ---------------------------------------------------------------------------------------------


def bertcli(*args: str) -> tuple[float, str]:
    """Run the installed `bertcli` command; its wall time and stdout."""
    command = [shutil.which("bertcli") or sys.executable, *([] if shutil.which("bertcli") else ["-m", "bertcli"]), *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def bench_bertcli_finetune(work: Path, epochs: float) -> tuple[Row, Row, Path, dict]:
    model_dir = work / "bertcli-model"
    log(f"bertcli finetune train.csv -o {model_dir.name} --epochs {epochs:g}")
    wall, _ = bertcli("finetune", str(work / "train.csv"), "-o", str(model_dir), "--epochs", f"{epochs:g}")
    meta = json.loads((model_dir / "bertcli.json").read_text())
    log("bertcli evaluate bertcli-model test.csv --json")
    _, report = bertcli("evaluate", str(model_dir), str(work / "test.csv"), "--json")
    acc = json.loads(report)["accuracy"]
    rate, seconds = meta["train_examples_per_second"], meta["train_seconds"]
    examples = rate * seconds
    loop = Row("bertcli finetune: training loop (bertcli.json)", rate, acc, seconds, f"{meta['steps']} steps, {meta['config']['training']['precision']} precision")
    command = Row("bertcli finetune: whole command", examples / wall, acc, wall, "imports, tokenizing, per-epoch validation, saving")
    return loop, command, model_dir, meta


def bench_bertcli_predict(work: Path, model_dir: Path, texts: list[str], gold: list[str]) -> tuple[Row, Row]:
    log("bertcli predict bertcli-model test.txt")
    wall, out = bertcli("predict", str(model_dir), str(work / "test.txt"))
    labels = [json.loads(line)["label"] for line in out.splitlines()]
    if len(labels) != len(texts):
        sys.exit(f"bertcli predict returned {len(labels)} records for {len(texts)} lines")
    command = Row("bertcli predict: whole command", len(texts) / wall, accuracy(labels, gold), wall, "imports and model load included")

    from bertcli.classification import Classifier

    log("bertcli Classifier.scores (in-process)")
    start = time.perf_counter()
    classifier = Classifier(str(model_dir))
    load = time.perf_counter() - start
    classifier.scores(texts[:8])  # warm-up, as for the pipelines
    start = time.perf_counter()
    probs, _ = classifier.scores(texts)
    seconds = time.perf_counter() - start
    predicted = [classifier.spec.names[i] for i in probs.argmax(-1)]
    core = Row("bertcli Classifier.scores (in-process)", len(texts) / seconds, accuracy(predicted, gold), seconds, f"+{load:.1f}s model load, batch 32")
    return command, core


# --- transformers ----------------------------------------------------------------------------------------


def bench_pipeline(model_dir: Path, texts: list[str], gold: list[str], batch_size: int | None) -> Row:
    from transformers import pipeline

    what = "defaults (batch 1)" if batch_size is None else f"batch_size={batch_size}"
    log(f"pipeline('text-classification') {what} on {len(texts)} sentences")
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    start = time.perf_counter()
    classify = pipeline("text-classification", model=str(model_dir))
    load = time.perf_counter() - start
    classify(texts[:8], **kwargs)
    start = time.perf_counter()
    outputs = classify(texts, **kwargs)
    seconds = time.perf_counter() - start
    labels = [o["label"] for o in outputs]
    return Row(f"pipeline text-classification, {what}", len(texts) / seconds, accuracy(labels, gold), seconds, f"{len(texts)} sentences, +{load:.1f}s load")


def bench_trainer(base_model: str, data: tuple, epochs: float, tuned: bool, work: Path) -> Row:
    """HF Trainer, same model/data/epochs: run_classification defaults, or tuned (dynamic padding, length groups)."""
    import datasets
    import numpy as np
    import transformers
    from transformers import (
        AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments,
        default_data_collator, set_seed,
    )  # fmt: skip

    transformers.logging.set_verbosity_error()
    name = "Trainer tuned (dynamic padding, group_by_length)" if tuned else f"Trainer run_classification defaults (pad to {HF_MAX_LENGTH})"
    log(name)
    train_texts, train_labels, test_texts, test_labels = data
    names = sorted(set(train_labels))
    start = time.perf_counter()
    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    padding = "do_not_pad" if tuned else "max_length"

    def dataset(texts: list[str], labels: list[str]) -> datasets.Dataset:
        raw = datasets.Dataset.from_dict({"text": texts, "label": [names.index(label) for label in labels]})
        return raw.map(
            lambda batch: tokenizer(batch["text"], padding=padding, max_length=HF_MAX_LENGTH, truncation=True),
            batched=True, remove_columns=["text"],
        )  # fmt: skip

    train_set, test_set = dataset(train_texts, train_labels), dataset(test_texts, test_labels)
    args = TrainingArguments(
        output_dir=str(work / ("trainer-tuned" if tuned else "trainer-default")),
        num_train_epochs=epochs,
        seed=SEED,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if tuned else "random",  # v5's spelling of group_by_length=True
    )
    collator = DataCollatorWithPadding(tokenizer) if tuned else default_data_collator
    trainer = Trainer(model=model, args=args, train_dataset=train_set, data_collator=collator, processing_class=tokenizer)
    metrics = trainer.train().metrics
    wall = time.perf_counter() - start
    predictions = trainer.predict(test_set)  # label_ids come back in the sampler's order, aligned with predictions
    acc = float((np.argmax(predictions.predictions, axis=-1) == predictions.label_ids).mean())
    note = f"{trainer.state.global_step} steps, batch {args.per_device_train_batch_size}, lr {args.learning_rate:g}"
    return Row(name, metrics["train_samples_per_second"], acc, wall, note + "; wall: load+tokenize+train")


# --- report ----------------------------------------------------------------------------------------------


def speedup(rate: float, baseline: Row | None) -> str:
    return f"{rate / baseline.rate:.2f}x" if baseline and baseline.rate else "n/a"


def table(sections: list[tuple[str, str, list[tuple[Row, str]]]]) -> str:
    lines = ["| method | rate | speedup | test accuracy | wall s | notes |", "|---|---:|---|---:|---:|---|"]
    for title, unit, rows in sections:
        lines.append(f"| **{title}** | {unit} | | | | |")
        for row, ratio in rows:
            acc = "n/a" if row.accuracy is None else f"{row.accuracy:.4f}"
            lines.append(f"| {row.method} | {row.rate:.1f} | {ratio} | {acc} | {row.wall:.1f} | {row.note} |")
    return "\n".join(lines)


def verdict(label: str, ratio: float, goal: float, extra: str = "") -> str:
    return f"- {label}: {ratio:.2f}x (goal >= {goal}x) {'MET' if ratio >= goal else 'NOT MET'}{extra}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about 2 minutes) to check the script runs")
    parser.add_argument("--train-size", type=int, help="training snippets [default: 2000; quick: 200]")
    parser.add_argument("--test-size", type=int, help="test snippets [default: 1000; quick: 100]")
    parser.add_argument("--epochs", type=float, help="epochs for bertcli and both Trainers [default: 2; quick: 1]")
    parser.add_argument("--pipeline-sample", type=int, help="test sentences for the batch-1 pipeline [default: 500; quick: 50]")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    quick = args.quick
    train_size = args.train_size or (200 if quick else 2000)
    test_size = args.test_size or (100 if quick else 1000)
    epochs = args.epochs or (1.0 if quick else 2.0)
    sample = args.pipeline_sample or (50 if quick else 500)

    load_before = os.getloadavg()
    started = time.perf_counter()
    env = environment()
    from bertcli.modeling import default_model

    base_model = default_model()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-classify-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = write_data(work, train_size, test_size)
        _, _, test_texts, test_labels = data
        ft_loop, ft_command, model_dir, meta = bench_bertcli_finetune(work, epochs)
        pr_command, pr_core = bench_bertcli_predict(work, model_dir, test_texts, test_labels)
        pipe_default = bench_pipeline(model_dir, test_texts[:sample], test_labels[:sample], None)
        pipe_batched = bench_pipeline(model_dir, test_texts, test_labels, 32)
        trainer_default = bench_trainer(base_model, data, epochs, tuned=False, work=work)
        trainer_tuned = bench_trainer(base_model, data, epochs, tuned=True, work=work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    def both(rate: float, default: Row, batched: Row) -> str:
        return f"{speedup(rate, default)} vs default / {speedup(rate, batched)} vs batched"

    sections = [
        ("finetune", "train examples/s", [
            (ft_loop, f"{speedup(ft_loop.rate, trainer_tuned)} vs tuned / {speedup(ft_loop.rate, trainer_default)} vs defaults"),
            (ft_command, f"{speedup(ft_command.rate, trainer_tuned)} vs tuned"),
            (trainer_default, "baseline"),
            (trainer_tuned, f"{speedup(trainer_tuned.rate, trainer_default)} vs defaults"),
        ]),
        ("predict", "sentences/s", [
            (pr_command, both(pr_command.rate, pipe_default, pipe_batched)),
            (pr_core, both(pr_core.rate, pipe_default, pipe_batched)),
            (pipe_default, "baseline"),
            (pipe_batched, f"{speedup(pipe_batched.rate, pipe_default)} vs default"),
        ]),
    ]  # fmt: skip
    flags = ", ".join(env["cpu_flags"]) or "none found"
    gap = ft_loop.accuracy - trainer_tuned.accuracy
    train_rows = round(train_size * (1 - meta["config"]["val_split"]))
    print(f"## bertcli vs transformers: sequence classification ({Path(base_model).name}, Rotten Tomatoes)\n")
    print(f"- data: {train_size} training / {test_size} test snippets (movie-disjoint), {epochs:g} epoch(s) for every trainer")
    print(f"- bertcli used its defaults: batch 32, lr 1e-4, 10% warmup, {meta['config']['val_split']:.0%} held out for validation "
          f"(trains on {train_rows} rows, keeps the best epoch); Trainer trains on all {train_size}")
    print(f"- threads: torch {env['torch_threads']} of {env['cores']} cores (OMP_NUM_THREADS={env['omp_num_threads']}); "
          f"torch {env['torch']}, transformers {env['transformers']}")
    print(f"- CPU flags: {flags}; a bf16 matmul takes {env['bf16_matmul_vs_fp32']:.1f}x the fp32 time here, so "
          f"`--precision auto` chose {env['auto_precision']!r} ({'fast bf16 found' if env['fast_bf16'] else 'no AVX512-BF16/AMX: bf16 would be emulated'})")
    print(f"- load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, after "
          f"{'/'.join(f'{x:.2f}' for x in load_after)}; other processes may have been running; total {time.perf_counter() - started:.0f}s\n")
    print(table(sections))
    print("\nGoals:")
    print(verdict("predict vs default pipeline (whole command)", pr_command.rate / pipe_default.rate, GOALS["predict_vs_default"]))
    print(verdict("predict vs batched pipeline (whole command)", pr_command.rate / pipe_batched.rate, GOALS["predict_vs_batched"]))
    print(verdict("predict vs batched pipeline (in-process)", pr_core.rate / pipe_batched.rate, GOALS["predict_vs_batched"]))
    equal = gap >= -EQUAL_ACCURACY
    print(verdict("finetune vs tuned Trainer (training loop)", ft_loop.rate / trainer_tuned.rate, GOALS["finetune_vs_tuned"],
                  f"; accuracy {gap * 100:+.1f} points ({'equal or better' if equal else 'WORSE'} within {EQUAL_ACCURACY * 100:.0f} point)"))  # fmt: skip
    if args.json:
        results = {"environment": env, "load_before": load_before, "load_after": load_after, "sizes": [train_size, test_size, epochs],
                   "rows": [row.__dict__ for _, _, rows in sections for row, _ in rows]}  # fmt: skip
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
