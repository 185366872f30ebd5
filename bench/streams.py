"""Forwards on two streams at once, as `bertcli serve` runs them under load, and what Python's GIL costs them.

The served all-MiniLM-L6-v2 (torch, `--precision`) answers random windows of `--window` long-tail statements (2016
debates, tokens p50 20, p95 about 300) on two one-thread forward threads, as its batcher hands them out. Three
loads: alone; beside a Python thread that holds the GIL 1.5 ms of every 5 (as a server's event loop does between
requests); and beside another process busy for the same share of a core (the same CPU taken, no GIL). Texts per
second over 1,000 statements, the best of `--rounds`. `--before DIR` runs the same loads on the code of an earlier
checkout (e.g. `git archive <commit> | tar -x -C DIR`) in a subprocess, in the same run. The peer is what a
hand-written server calls per batch: sentence-transformers' `encode` (fp32, its default on a CPU) on the same windows
and threads.

    python bench/streams.py                      # about 1 minute on 2 cores
    python bench/streams.py --before /tmp/base   # plus the earlier checkout
    python bench/streams.py --quick              # 200 statements: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

LOADS = ("alone", "beside a GIL holder", "beside a busy process")
BUSY, PERIOD = 0.0015, 0.005  # the competitor's busy time in each period, seconds


def busy_loop(stop) -> None:
    """Pure Python for BUSY seconds of every PERIOD: in a thread it holds the GIL meanwhile."""
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < BUSY:
            pass
        time.sleep(PERIOD - BUSY)


def measure(args: argparse.Namespace, peer: bool = False) -> dict[str, float]:
    """Texts/s under each load: bertcli's served model, or (`peer`) sentence-transformers."""
    import pandas as pd

    from bertcli.config import ServeConfig
    from bertcli.corpora import debates
    from bertcli.hub import default_model
    from bertcli.runtime.device import use_threads

    statements = list(pd.concat(debates())["text"])[: 200 if args.quick else 1000]
    if peer:
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(default_model(), device="cpu")
        inputs, run = statements, lambda window: encoder.encode(window, batch_size=len(window))
    else:
        from bertcli.serve.models import load_model

        config = ServeConfig(backend="torch", precision=args.precision)
        model = load_model(default_model(), config, thread_counts=[2, 1])
        inputs, run = [model.prepare([(text, None)])[0][0] for text in statements], lambda window: model.run(window, 1)
    rng = random.Random(0)
    windows = [[rng.choice(inputs) for _ in range(args.window)] for _ in range(0, len(inputs), args.window)]

    def streams() -> float:
        work: queue.Queue = queue.Queue()
        for window in windows:
            work.put(window)

        def stream() -> None:
            use_threads(1)
            while True:
                try:
                    window = work.get_nowait()
                except queue.Empty:
                    return
                run(window)

        threads = [threading.Thread(target=stream) for _ in range(2)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(map(len, windows)) / (time.perf_counter() - start)

    def under(load: str) -> float:
        stop = threading.Event() if load != LOADS[2] else multiprocessing.Event()
        competitor = None
        if load == LOADS[1]:
            competitor = threading.Thread(target=busy_loop, args=(stop,))
        elif load == LOADS[2]:
            competitor = multiprocessing.Process(target=busy_loop, args=(stop,))
        if competitor is not None:
            competitor.start()
        try:
            return streams()
        finally:
            stop.set()
            if competitor is not None:
                competitor.join()

    streams()  # warm-up: oneDNN builds its kernels
    return {load: max(under(load) for _ in range(args.rounds)) for load in LOADS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--window", type=int, default=8, help="statements per forward")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", help="also measure the code of this checkout of an earlier commit")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # --before's subprocess
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    if args.child:
        print(json.dumps(measure(args)))
        return
    results = {"bertcli (now)": measure(args)}
    if args.before:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", "--precision", args.precision, "--window", str(args.window),
                   "--rounds", str(args.rounds), *(["--quick"] if args.quick else [])]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
        out = subprocess.run(command, env=env, cwd=args.before, check=True, capture_output=True, text=True).stdout
        results["bertcli (before)"] = json.loads(out.strip().splitlines()[-1])
    results["sentence-transformers encode, fp32"] = measure(args, peer=True)
    print(f"\n| method | {' | '.join(LOADS)} |\n|---|{'---:|' * len(LOADS)}")
    for method, rates in results.items():
        print(f"| {method} | {' | '.join(f'{rates[load]:.0f}' for load in LOADS)} |")
    print(f"\ntexts/s, two one-thread streams, windows of {args.window} long-tail statements, bertcli {args.precision}")


if __name__ == "__main__":
    main()
