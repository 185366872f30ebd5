"""Sequence classification speed: bertcli against transformers' Trainer and text-classification pipeline.

One run, one model (all-MiniLM-L6-v2), one data set (Rotten Tomatoes snippets, split by movie):

* finetune: `bertcli finetune` run as a user would (default hyperparameters) against the HF `Trainer`
  with run_classification's defaults (every example padded to 128 tokens) and tuned (dynamic padding,
  length-grouped batches), same epochs; training examples/s and test accuracy.
* predict: `bertcli predict` (the whole command, and `Classifier.scores` in-process to separate start-up)
  against `pipeline("text-classification")` with its defaults (batch 1) and with batch_size=32,
  all on the model bertcli just fine-tuned; sentences/s.

    python bench/classify.py            # about 15 minutes on 2 idle cores, 9 of them the padded Trainer
    python bench/classify.py --quick    # tiny sizes, about 2 minutes: checks that everything runs

The table goes to stdout (markdown); progress to stderr. Timings are wall-clock on a machine that may be
shared, so the load average before and after is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # 1-minute load average as it ended

    def __post_init__(self) -> None:
        # logged as soon as measured: a run cut short (a long one on a shared machine) still shows its numbers
        acc = "n/a" if self.accuracy is None else f"{self.accuracy:.4f}"
        log(f"  -> {self.method}: {self.rate:.1f}/s, accuracy {acc}, {self.wall:.1f}s ({self.note})")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


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

    from bertcli.runtime.precision import fast_bf16_available, resolve_precision

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
    """Run the installed `bertcli` command as a user would; its wall time and stdout."""
    found = shutil.which("bertcli")
    command = [found, *args] if found else [sys.executable, "-m", "bertcli", *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def bench_bertcli_finetune(work: Path, epochs: float) -> tuple[Row, Row, Path, dict]:
    """`bertcli finetune` with its defaults; the loop's own rate from bertcli.json, accuracy from `bertcli evaluate`."""
    model_dir = work / "bertcli-model"
    log(f"bertcli finetune train.csv -o {model_dir.name} --epochs {epochs:g}")
    wall, _ = bertcli("finetune", str(work / "train.csv"), "-o", str(model_dir), "--epochs", f"{epochs:g}")
    meta = json.loads((model_dir / "bertcli.json").read_text())
    log("bertcli evaluate bertcli-model test.csv --json")
    _, report = bertcli("evaluate", str(model_dir), str(work / "test.csv"), "--json")
    acc = json.loads(report)["accuracy"]
    rate, seconds = meta["train_examples_per_second"], meta["train_seconds"]
    training = meta["config"]["training"]
    loop_note = f"{meta['steps']} steps, batch {training['batch_size']}, lr {training['lr']:g}"
    loop = Row("bertcli finetune: training loop (bertcli.json)", rate, acc, seconds, loop_note)
    whole_note = "same examples over the command's wall time (imports, tokenizing, validation, saving)"
    command = Row("bertcli finetune: whole command", rate * seconds / wall, acc, wall, whole_note)
    return loop, command, model_dir, meta


def bench_bertcli_predict(work: Path, model_dir: Path, texts: list[str], gold: list[str]) -> tuple[Row, Row]:
    """The whole `bertcli predict` command over test.txt, then `Classifier.scores` in-process (start-up apart)."""
    from bertcli.tasks.classification.predictor import Classifier

    log("bertcli predict bertcli-model test.txt")
    wall, out = bertcli("predict", str(model_dir), str(work / "test.txt"))
    labels = [json.loads(line)["label"] for line in out.splitlines()]
    if len(labels) != len(texts):
        sys.exit(f"bertcli predict returned {len(labels)} records for {len(texts)} lines")
    acc = accuracy(labels, gold)
    command = Row("bertcli predict: whole command", len(texts) / wall, acc, wall, "imports, model load")

    log("bertcli Classifier.scores (in-process)")
    start = time.perf_counter()
    classifier = Classifier(str(model_dir))
    load = time.perf_counter() - start
    classifier.scores(texts[:8])  # warm-up, as for the pipelines
    start = time.perf_counter()
    probs = classifier.scores(texts).probs
    seconds = time.perf_counter() - start
    predicted = [classifier.spec.names[i] for i in probs.argmax(-1)]
    note = f"batch {classifier.batch_size}; model load {load:.1f}s apart"
    core = Row("bertcli Classifier.scores (in-process)", len(texts) / seconds, accuracy(predicted, gold), seconds, note)
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
    note = f"{len(texts)} sentences; load {load:.1f}s apart"
    return Row(f"pipeline text-classification, {what}", len(texts) / seconds, accuracy(labels, gold), seconds, note)


PIPELINE_SCRIPT = """
import json, sys
from transformers import pipeline
classify = pipeline("text-classification", model=sys.argv[1])
texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
for out in classify(texts, batch_size=32):
    print(json.dumps({"label": out["label"], "score": out["score"]}))
"""


def bench_pipeline_script(model_dir: Path, work: Path, gold: list[str]) -> Row:
    """The batched pipeline as a whole process (imports, model load, file in, JSONL out): like for like with the command."""
    log("pipeline batch_size=32 as a script over test.txt")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PIPELINE_SCRIPT, str(model_dir), str(work / "test.txt")], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"pipeline script failed:\n{done.stderr[-3000:]}")
    labels = [json.loads(line)["label"] for line in done.stdout.splitlines()]
    return Row(
        "pipeline batch_size=32, whole script", len(gold) / wall, accuracy(labels, gold), wall, "imports, model load"
    )


def bench_trainer(base_model: str, data: tuple, epochs: float, tuned: bool, work: Path, seed: int = SEED) -> Row:
    """HF Trainer, same model/data/epochs: run_classification defaults, or tuned (dynamic padding, length groups)."""
    import datasets
    import numpy as np
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    name = "Trainer tuned (dynamic padding, group_by_length)" if tuned else f"Trainer defaults (pad to {HF_MAX_LENGTH})"
    log(name)
    train_texts, train_labels, test_texts, test_labels = data
    names = sorted(set(train_labels))
    start = time.perf_counter()
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    id2label = dict(enumerate(names))
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(names), id2label=id2label, label2id={n: i for i, n in id2label.items()}
    )
    padding = "do_not_pad" if tuned else "max_length"

    def dataset(texts: list[str], labels: list[str]) -> datasets.Dataset:
        raw = datasets.Dataset.from_dict({"text": texts, "label": [names.index(label) for label in labels]})
        return raw.map(
            lambda batch: tokenizer(batch["text"], padding=padding, max_length=HF_MAX_LENGTH, truncation=True),
            batched=True,
            remove_columns=["text"],
        )

    train_set, test_set = dataset(train_texts, train_labels), dataset(test_texts, test_labels)
    args = TrainingArguments(
        output_dir=str(work / ("trainer-tuned" if tuned else "trainer-default")),
        num_train_epochs=epochs,
        seed=seed,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if tuned else "random",  # v5's spelling of group_by_length=True
    )
    collator = DataCollatorWithPadding(tokenizer) if tuned else default_data_collator
    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, data_collator=collator, processing_class=tokenizer
    )
    metrics = trainer.train().metrics
    wall = time.perf_counter() - start
    predictions = trainer.predict(test_set)  # label_ids come back in the sampler's order, aligned with predictions
    acc = float((np.argmax(predictions.predictions, axis=-1) == predictions.label_ids).mean())
    note = f"{trainer.state.global_step} steps, batch {args.per_device_train_batch_size}, lr {args.learning_rate:g}"
    return Row(name, metrics["train_samples_per_second"], acc, wall, note + "; wall: load+tokenize+train")


# --- report ----------------------------------------------------------------------------------------------


def ratio(row: Row, baseline: Row, name: str) -> str:
    return f"{row.rate / baseline.rate:.2f}x vs {name}"


def markdown(sections: list[tuple[str, str, list[tuple[Row, str]]]]) -> str:
    lines = [
        "| method | rate | speedup | test accuracy | wall s | load 1m | notes |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for title, unit, rows in sections:
        lines.append(f"| **{title}** | {unit} | | | | | |")
        for row, speed in rows:
            acc = "n/a" if row.accuracy is None else f"{row.accuracy:.4f}"
            cells = [row.method, f"{row.rate:.1f}", speed, acc, f"{row.wall:.1f}", f"{row.load:.2f}", row.note]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal(label: str, value: float, target: float, extra: str = "") -> str:
    return f"- {label}: {value:.3f}x (goal >= {target}x) {'MET' if value >= target else 'NOT MET'}{extra}"


def loads(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def report(r: dict) -> str:
    """The markdown report: setup, environment, the table and the goals."""
    env, meta = r["environment"], r["meta"]
    loop, command, t_default, t_tuned = r["finetune"]
    p_command, p_core, p_default, p_batched, p_script = r["predict"]
    sections = [
        (
            "finetune",
            "train examples/s",
            [
                (loop, f"{ratio(loop, t_tuned, 'tuned')}, {ratio(loop, t_default, 'defaults')}"),
                (command, ratio(command, t_tuned, "tuned")),
                (t_default, "baseline"),
                (t_tuned, ratio(t_tuned, t_default, "defaults")),
            ],
        ),
        (
            "predict",
            "sentences/s",
            [
                (
                    p_command,
                    f"{ratio(p_command, p_default, 'default')}, {ratio(p_command, p_batched, 'batched')}, "
                    f"{ratio(p_command, p_script, 'batched script')}",
                ),
                (p_core, f"{ratio(p_core, p_default, 'default')}, {ratio(p_core, p_batched, 'batched')}"),
                (p_default, "baseline"),
                (p_batched, ratio(p_batched, p_default, "default")),
                (p_script, ratio(p_script, p_default, "default")),
            ],
        ),
    ]
    train_size, test_size, epochs = r["sizes"]
    held_out = meta["config"]["val_split"]
    training = meta["config"]["training"]
    # our own threads count in the load: beyond them, other processes were taking the cores
    rows = [*r["finetune"], *r["predict"]]
    busy = r["load_before"][0] > 0.5 * env["cores"] or max(row.load for row in rows) > env["torch_threads"] + 1
    bf16 = "fast bf16 found" if env["fast_bf16"] else "no AVX512-BF16/AMX, so bf16 would be emulated"
    gap = loop.accuracy - t_tuned.accuracy
    same = "equal" if abs(gap) <= EQUAL_ACCURACY else "better" if gap > 0 else "WORSE"
    lines = [
        f"## bertcli vs transformers: sequence classification ({meta['base_model']}, Rotten Tomatoes)",
        "",
        f"- data: {train_size} training / {test_size} test snippets (split by movie); {epochs:g} epoch(s) for all",
        f"- bertcli with its defaults: batch {training['batch_size']}, lr {training['lr']:g}, "
        f"warmup {training['warmup_ratio']:.0%}, {held_out:.0%} held out for validation (trains on "
        f"{round(train_size * (1 - held_out))}, keeps the best epoch); the Trainers train on all {train_size}",
        f"- threads: torch {env['torch_threads']} on {env['cores']} cores (OMP_NUM_THREADS={env['omp_num_threads']}); "
        f"torch {env['torch']}, transformers {env['transformers']}",
        f"- CPU bf16: flags {', '.join(env['cpu_flags']) or 'none of avx2/avx512/amx'}; a bf16 matmul took "
        f"{env['bf16_matmul_vs_fp32']:.1f}x the fp32 time; {bf16}: `--precision auto` chose {env['auto_precision']!r}",
        f"- load average (1/5/15 min): before {loads(r['load_before'])}, after {loads(r['load_after'])}"
        + (" - BUSY: other processes shared the cores (see the load column), timings are noisy" if busy else "")
        + f"; benchmark took {r['seconds']:.0f}s",
        "",
        markdown(sections),
        "",
        "Goals:",
        goal("predict vs default pipeline (command)", p_command.rate / p_default.rate, GOALS["predict_vs_default"]),
        goal("predict vs batched pipeline (command)", p_command.rate / p_batched.rate, GOALS["predict_vs_batched"]),
        goal("predict vs batched pipeline (in-process)", p_core.rate / p_batched.rate, GOALS["predict_vs_batched"]),
        goal(
            "predict vs batched pipeline (both whole processes)",
            p_command.rate / p_script.rate,
            GOALS["predict_vs_batched"],
        ),
        goal(
            "finetune vs tuned Trainer (training loop)",
            loop.rate / t_tuned.rate,
            GOALS["finetune_vs_tuned"],
            f"; accuracy {gap * 100:+.1f} points: {same} (equal = within {EQUAL_ACCURACY * 100:g} point)",
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about 2 minutes) to check the script runs")
    parser.add_argument("--train-size", type=int, help="training snippets [default: 2000; quick: 200]")
    parser.add_argument("--test-size", type=int, help="test snippets [default: 1000; quick: 100]")
    parser.add_argument("--epochs", type=float, help="epochs for bertcli and both Trainers [default: 2; quick: 1]")
    parser.add_argument("--pipeline-sample", type=int, help="sentences for the batch-1 pipeline [500; quick: 50]")
    parser.add_argument("--threads", type=int, help="torch threads here and in the bertcli commands [default: torch's]")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", help="work in this directory and keep it [default: a temporary one]")
    args = parser.parse_args(argv)
    quick = args.quick
    train_size = args.train_size or (200 if quick else 2000)
    test_size = args.test_size or (100 if quick else 1000)
    epochs = args.epochs or (1.0 if quick else 2.0)
    sample = args.pipeline_sample or (50 if quick else 500)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported, here and in the subprocesses

    load_before = os.getloadavg()
    started = time.perf_counter()
    env = environment()
    from bertcli.hub import default_model

    base_model = default_model()
    keep = contextlib.nullcontext(args.keep) if args.keep else None
    workspace = keep or tempfile.TemporaryDirectory(prefix="bench-classify-")
    with workspace as where, contextlib.redirect_stdout(sys.stderr):  # the Trainer prints logs: stdout is the table's
        work = Path(where)
        work.mkdir(parents=True, exist_ok=True)
        data = write_data(work, train_size, test_size)
        test_texts, test_labels = data[2], data[3]
        loop, command, model_dir, meta = bench_bertcli_finetune(work, epochs)
        predict = bench_bertcli_predict(work, model_dir, test_texts, test_labels)
        pipelines = (
            bench_pipeline(model_dir, test_texts[:sample], test_labels[:sample], None),
            bench_pipeline(model_dir, test_texts, test_labels, 32),
            bench_pipeline_script(model_dir, work, test_labels),
        )
        trainers = (
            bench_trainer(base_model, data, epochs, tuned=False, work=work),
            bench_trainer(base_model, data, epochs, tuned=True, work=work),
        )
    results = {
        "environment": env,
        "meta": meta,
        "sizes": (train_size, test_size, epochs),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds": time.perf_counter() - started,
        "finetune": (loop, command, *trainers),
        "predict": (*predict, *pipelines),
    }
    print(report(results))
    if args.json:
        rows = {key: [row.__dict__ for row in results[key]] for key in ("finetune", "predict")}
        Path(args.json).write_text(json.dumps({**results, **rows}, indent=2))


if __name__ == "__main__":
    main()
