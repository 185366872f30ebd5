"""Scaling out: `bertcli finetune` examples/s in 1 process and N processes (torchrun, gloo on CPU), and on a GPU
with --precision no vs bf16 where torch sees one.

    python bench/scale.py                  # 1 vs 2 CPU processes, ~3 minutes on 2 idle cores
    python bench/scale.py --examples 256   # shorter

On 2 cores two processes each get one thread, so expect little gain: the point of the CPU rows is that the
2-process run trains on the same data with the same global batch and reaches a similar accuracy. The model is
all-MiniLM-L6-v2 and the data are Rotten Tomatoes snippets, as in the other benches (the dev extra).
Markdown table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_data(work: Path, n_train: int, n_val: int) -> None:
    """train.csv and val.csv: Rotten Tomatoes snippets (from the dev extra's corpus package, as every bench)."""
    import csv

    from bertcli.corpora import rotten_tomatoes

    train, test = rotten_tomatoes()
    rows = [(" ".join(t.split()), label) for t, label in zip(train["text"], train["label"])][:n_train]
    val = [(" ".join(t.split()), label) for t, label in zip(test["text"], test["label"])][:n_val]
    for name, data in (("train.csv", rows), ("val.csv", val)):
        with open(work / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(data)


def finetune(work: Path, model: str, processes: int, precision: str, args: argparse.Namespace, threads: int) -> dict:
    out = work / f"run-{processes}-{precision}"
    cli = [
        "finetune",
        str(work / "train.csv"),
        "--validation",
        str(work / "val.csv"),
        "-m",
        model,
        "-o",
        str(out),
        "--epochs",
        str(args.epochs),
        "-b",
        str(args.batch_size // processes),
        "--max-length",
        str(args.max_length),
        "--precision",
        precision,
        "--overwrite",
    ]
    if processes == 1:
        command = [sys.executable, "-m", "bertcli", *cli]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_port",
            str(free_port()),
            "-m",
            "bertcli",
            *cli,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    log(f"{processes} process(es), {threads} thread(s) each, precision {precision}")
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"run failed:\n{done.stderr[-3000:]}")
    meta = json.loads((out / "bertcli.json").read_text())
    last = meta["history"][-1]
    return {
        "processes": processes,
        "threads": threads,
        "precision": precision,
        "steps": meta["steps"],
        "examples_per_s": meta["train_examples_per_second"],
        "train_s": meta["train_seconds"],
        "wall_s": wall,
        "accuracy": last["accuracy"],
        "val_examples": last["examples"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1024, help="training examples")
    parser.add_argument("--val-examples", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (per process: this / processes)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU rows")
    args = parser.parse_args()

    import torch

    from bertcli.hub import default_model

    random.seed(0)
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_data(work, args.examples, args.val_examples)
        model = default_model()
        gpu = torch.accelerator.is_available()
        if not args.gpu_only:
            if gpu:  # keep the CPU rows on the CPU
                os.environ["CUDA_VISIBLE_DEVICES"] = ""
            rows.append(("cpu", finetune(work, model, 1, "no", args, cores)))
            rows.append(("cpu", finetune(work, model, args.processes, "no", args, max(1, cores // args.processes))))
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        if gpu:
            name = (
                torch.cuda.get_device_name(0)
                if torch.cuda.is_available()
                else torch.accelerator.current_accelerator().type
            )
            for precision in ("no", "bf16"):
                rows.append((name, finetune(work, model, 1, precision, args, cores)))
    print(
        f"\n`bertcli finetune`, all-MiniLM-L6-v2, Rotten Tomatoes: {args.examples} training / {args.val_examples} validation examples, "
        f"global batch {args.batch_size}, max length {args.max_length}, {args.epochs:g} epoch(s); {cores} CPU cores\n"
    )
    print(
        "| device | processes x threads | precision | steps | train examples/s | train s | wall s | val accuracy | val examples |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for device, r in rows:
        print(
            f"| {device} | {r['processes']} x {r['threads']} | {r['precision']} | {r['steps']} | {r['examples_per_s']:.1f} | "
            f"{r['train_s']:.1f} | {r['wall_s']:.1f} | {r['accuracy']:.4f} | {r['val_examples']} |"
        )


if __name__ == "__main__":
    main()
