"""A small batch's time: what a server pays per forward, where fixed costs weigh most.

`bertcli.Embedder.embed` against sentence-transformers' `encode` (what a hand-written server calls per request) on
the same texts, in one process, at 1, 8 and 32 Rotten Tomatoes snippets and 8 long-tail statements (2016 debates)
drawn at random per call, with all-MiniLM-L6-v2 on `--threads` threads. Each row is the median of `--calls` timed
calls after warm-up. `--before DIR` also times bertcli from another checkout (e.g. `git archive <commit> | tar -x -C
DIR`), in a subprocess of its own, so a change is measured against the code before it on the same machine load.

    python bench/forward.py                      # about 1 minute on 2 cores
    python bench/forward.py --before /tmp/base   # plus the earlier checkout
    python bench/forward.py --quick              # 10 calls a row: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

SIZES = (1, 8, 32)
LONG_TAIL = 8  # statements per long-tail call


def batches(calls: int) -> dict[str, list[list[str]]]:
    """Each row's inputs, one list per call (seeded): snippets repeat the same batch, long-tail calls draw anew."""
    import pandas as pd

    from bertcli.corpora import debates, rotten_tomatoes

    _, snippets = rotten_tomatoes()
    statements = list(pd.concat(debates())["text"])
    texts = list(snippets["text"])
    rng = random.Random(0)
    rows = {f"{n} snippet{'s' if n > 1 else ''}": [texts[:n]] * calls for n in SIZES}
    rows[f"{LONG_TAIL} long-tail statements"] = [rng.sample(statements, LONG_TAIL) for _ in range(calls)]
    return rows


def median_ms(encode, inputs: list[list[str]]) -> float:
    for batch in inputs[:5]:  # warm-up: oneDNN builds kernels per shape
        encode(batch)
    times = []
    for batch in inputs:
        start = time.perf_counter()
        encode(batch)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def time_bertcli(rows: dict[str, list[list[str]]], precisions: list[str], threads: int) -> dict[str, dict[str, float]]:
    """bertcli's row times per precision, from whichever bertcli this process imports."""
    import torch

    from bertcli import Embedder

    torch.set_num_threads(threads)
    found = {}
    for precision in precisions:
        embedder = Embedder(None, normalize=True, precision=precision, threads=threads)
        found[precision] = {row: median_ms(embedder.embed, inputs) for row, inputs in rows.items()}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="10 calls a row: checks that it runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--before", help="also time bertcli from this checkout of an earlier commit")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # --before's subprocess
    args = parser.parse_args()
    args.calls = 10 if args.quick else args.calls
    precisions = ["auto", "no"]
    if args.child:
        print(json.dumps(time_bertcli(batches(args.calls), precisions, args.threads)))
        return
    from sentence_transformers import SentenceTransformer

    from bertcli.hub import default_model
    from bertcli.runtime.precision import resolve_precision

    columns = {f"bertcli {resolve_precision('auto')}": "auto", "bertcli fp32": "no"}
    rows = batches(args.calls)
    now = time_bertcli(rows, precisions, args.threads)
    results = {f"{name} (now)": now[precision] for name, precision in columns.items()}
    if args.before:
        env = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
        command = [sys.executable, str(Path(args.before) / "bench" / "forward.py"), "--child", "--calls", str(args.calls),
                   "--threads", str(args.threads)]  # fmt: skip
        if not Path(command[1]).is_file():  # an older checkout without this bench: run this file's timing there
            command[1] = __file__
        out = subprocess.run(command, env=env, cwd=args.before, check=True, capture_output=True, text=True).stdout
        before = json.loads(out.strip().splitlines()[-1])
        results.update({f"{name} (before)": before[precision] for name, precision in columns.items()})
    peer = SentenceTransformer(default_model(), device="cpu")
    results["sentence-transformers encode, fp32"] = {
        row: median_ms(lambda b: peer.encode(b, batch_size=32, normalize_embeddings=True), inputs)
        for row, inputs in rows.items()
    }
    print(f"\nmedian ms per call, all-MiniLM-L6-v2, {args.threads} threads, {args.calls} calls each\n")
    print("| method | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for method, times in results.items():
        print(f"| {method} | " + " | ".join(f"{times[row]:.2f}" for row in rows) + " |")


if __name__ == "__main__":
    main()
