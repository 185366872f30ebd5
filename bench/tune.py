"""Does tuning pay? bertcli's defaults against `bertcli tune --timeout` (about 10 minutes) on Rotten Tomatoes
(2,000 train / 1,000 test snippets, split by movie), test accuracy as mean +- std over 3 seeds each.

* defaults: `bertcli finetune` with --seed 1, 2, 3, then `bertcli evaluate A B C test.csv`;
* tuned: `bertcli tune --timeout 10m` (its best trial's model on the test set), then its best parameters
  re-trained with --seed 1, 2, 3 and evaluated the same way.

    python bench/tune.py              # about 20 minutes on 2 idle cores
    python bench/tune.py --quick      # a 1-minute search and small data: checks that everything runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify import bertcli, log  # noqa: E402


def evaluate_seeds(directories: list[Path], test: Path) -> dict:
    _, out = bertcli("evaluate", *map(str, directories), str(test), "--json")
    return json.loads(out)["summary"]["accuracy"]


def train_seeds(train: Path, root: Path, flags: list[str]) -> tuple[list[Path], float]:
    directories, start = [], time.perf_counter()
    for seed in (1, 2, 3):
        directory = root / f"seed-{seed}"
        log(f"bertcli finetune {' '.join(flags) or '(defaults)'} --seed {seed}")
        bertcli("finetune", str(train), "-o", str(directory), "--seed", str(seed), "--overwrite", *flags)
        directories.append(directory)
    return directories, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", default="10m", help="tune's time budget [default: 10m; quick: 1m]")
    args = parser.parse_args()
    from bertcli.corpora import write_rotten_tomatoes

    work = Path(tempfile.mkdtemp(prefix="bertcli-bench-tune-"))
    train, test = write_rotten_tomatoes(str(work / "rt"), 300 if args.quick else 2000, 200 if args.quick else 1000)
    timeout = "1m" if args.quick else args.timeout
    defaults, defaults_wall = train_seeds(train, work / "defaults", [])
    default_accuracy = evaluate_seeds(defaults, test)

    log(f"bertcli tune --timeout {timeout}")
    start = time.perf_counter()
    bertcli("tune", str(train), "-o", str(work / "tuned"), "--timeout", timeout, "--trials", "100")
    search_wall = time.perf_counter() - start
    search = json.loads((work / "tuned" / "bertcli.json").read_text())["search"]
    _, out = bertcli("evaluate", str(work / "tuned"), str(test), "--json")
    best_model_accuracy = json.loads(out)["accuracy"]
    params = [f"--{k.replace('_', '-')}={v}" for k, v in search["best_params"].items()]
    tuned, tuned_wall = train_seeds(train, work / "retrained", params)
    tuned_accuracy = evaluate_seeds(tuned, test)

    print(
        f"\nRotten Tomatoes, all-MiniLM-L6-v2; tune: {search['trials']} trials {search['states']} in {search_wall:.0f}s over {search['space']}\n"
    )
    print("| | test accuracy (3 seeds) | wall s | notes |\n|---|---:|---:|---|")
    print(
        f"| bertcli finetune, defaults | {default_accuracy['mean']:.4f} +- {default_accuracy['std']:.4f} | {defaults_wall:.0f} | 3 runs |"
    )
    print(
        f"| bertcli tune --timeout {timeout}: best trial's model | {best_model_accuracy:.4f} | {search_wall:.0f} | validation {search['metric']} {search['best_value']:.4f} |"
    )
    print(
        f"| tune's best parameters, re-trained | {tuned_accuracy['mean']:.4f} +- {tuned_accuracy['std']:.4f} | {tuned_wall:.0f} | {' '.join(params)} |"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
