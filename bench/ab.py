"""A/B: the same bertcli commands run by two checkouts of bertcli, interleaved in one run, on the same real data.

For a refactor that must not cost speed or change results: `finetune` (Rotten Tomatoes, default options),
`predict` of the test snippets with that model, `embed` of the snippets with the default model, and `evaluate`, each
as the whole command (process start and model load included), alternating A and B so that a machine shared with
other work slows both alike. Prints a markdown table: per command the median wall time of each side, their ratio,
and the accuracy / first vector each side gives (the same numbers are expected).

    python bench/ab.py --a /path/to/old/checkout --b .            # 2 rounds, 2,000 / 1,000 snippets, 1 epoch
    python bench/ab.py --a ../before --b . --quick                # 200 / 100 snippets: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def log(message: str) -> None:
    print(f"[ab {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def run(tree: Path, *args: str) -> tuple[float, str]:
    """`python -m bertcli ARGS` with `tree`'s bertcli first on the path; wall time and stdout."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bertcli", "-q", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{tree}: bertcli {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def write_data(work: Path, n_train: int, n_test: int) -> tuple[Path, Path, Path]:
    from bertcli.corpora import rotten_tomatoes

    train, test = rotten_tomatoes()
    train = train.sample(n=min(n_train, len(train)), random_state=0)[["text", "label"]]
    test = test.sample(n=min(n_test, len(test)), random_state=0)[["text", "label"]]
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    (work / "test.txt").write_text("\n".join(test["text"].str.replace("\n", " ")) + "\n", encoding="utf-8")
    return work / "train.csv", work / "test.csv", work / "test.txt"


def one_round(tree: Path, work: Path, data: tuple[Path, Path, Path], epochs: float) -> dict[str, tuple[float, str]]:
    train, test, texts = data
    model = work / f"model-{tree.resolve().name}"
    results = {}
    results["finetune"] = run(tree, "finetune", str(train), "-o", str(model), "--epochs", str(epochs), "--overwrite")
    wall, out = run(tree, "evaluate", str(model), str(test), "--json")
    results["evaluate"] = (wall, f"accuracy {json.loads(out)['accuracy']:.4f}")
    wall, out = run(tree, "predict", str(model), str(texts))
    results["predict"] = (wall, f"{sum(1 for _ in out.splitlines())} records, first {json.loads(out.splitlines()[0])}")
    vectors = work / f"v-{tree.resolve().name}.npy"
    vectors.unlink(missing_ok=True)
    wall, _ = run(tree, "embed", str(texts), "-o", str(vectors), "--normalize")
    import numpy as np

    results["embed"] = (wall, f"first vector sum {float(np.load(vectors)[0].sum()):.6f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, type=Path, help="the checkout to compare against (e.g. the old one)")
    parser.add_argument("--b", required=True, type=Path, help="the checkout under test")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_train, n_test = (200, 100) if args.quick else (args.train_size, args.test_size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_data(work, n_train, n_test)
        walls: dict[tuple[str, str], list[float]] = {}
        outcome: dict[tuple[str, str], str] = {}
        for number in range(args.rounds):
            for side, tree in (("A", args.a), ("B", args.b)) if number % 2 == 0 else (("B", args.b), ("A", args.a)):
                log(f"round {number + 1}, {side} ({tree})")
                for command, (wall, seen) in one_round(tree, work, data, args.epochs).items():
                    walls.setdefault((command, side), []).append(wall)
                    outcome[(command, side)] = seen
                    log(f"  {side} {command}: {wall:.1f}s, {seen}")
    print(f"\nA = {args.a}, B = {args.b}; {n_train} / {n_test} Rotten Tomatoes snippets, {args.rounds} rounds\n")
    print("| command | A median s | B median s | B / A | A gives | B gives |")
    print("|---|---:|---:|---:|---|---|")
    for command in ("finetune", "evaluate", "predict", "embed"):
        a, b = statistics.median(walls[(command, "A")]), statistics.median(walls[(command, "B")])
        print(
            f"| {command} | {a:.1f} | {b:.1f} | {b / a:.2f} | {outcome[(command, 'A')]} | {outcome[(command, 'B')]} |"
        )


if __name__ == "__main__":
    main()
