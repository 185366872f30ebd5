"""Long texts: accuracy and training time of truncating at 128/256/512 tokens against reading every token in windows,
on real long documents and on real long-tail data, and the defaults `bertcli finetune` picks (mean +- std over 3
seeds); against the HF Trainer with run_classification's settings (truncate and pad to 128, batch 8, lr 5e-5,
3 epochs; 3 seeds too).

* movie documents: every Rotten Tomatoes snippet of a movie in one document (fresh when >= 60% of them are), only
  movies past 512 tokens, split by movie (`python -m bertcli.corpora movie-documents`);
* debates: statements of the 2016 US debates labelled Democratic / Republican / Moderator, half under 20 tokens
  and a twentieth over 300 (`python -m bertcli.corpora debates`).

    python bench/long.py            # about 40 minutes on 2 idle cores
    python bench/long.py --quick    # 1 epoch, 1 seed, three settings per data set: checks that everything runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify import HF_MAX_LENGTH, Row, bench_trainer, bertcli, log  # noqa: E402  (a sibling benchmark's Trainer)

SETTINGS = {  # name: finetune flags
    "truncate 128": ["--long-text", "truncate", "--max-length", "128"],
    "truncate 256": ["--long-text", "truncate", "--max-length", "256"],
    "truncate 512": ["--long-text", "truncate", "--max-length", "512"],
    "window 128 (stride 32)": ["--long-text", "window", "--max-length", "128", "--stride", "32"],
    "window 256 (stride 64)": ["--long-text", "window", "--max-length", "256", "--stride", "64"],
}
TRAINER_EPOCHS = 3.0  # run_classification's default, and bertcli's


def accuracy_of(model: Path, test: Path) -> tuple[float, float]:
    _, out = bertcli("evaluate", str(model), str(test), "--json")
    report = json.loads(out)
    return report["accuracy"], report["f1_macro"]


def run_setting(work: Path, data: str, name: str, flags: list[str], train: Path, test: Path, epochs: float) -> dict:
    out = work / data / name.split(" (")[0].replace(" ", "-")
    log(f"{data}: bertcli finetune {' '.join(flags) or '(defaults)'}")
    wall, _ = bertcli("finetune", str(train), "-o", str(out), "--overwrite", "--epochs", str(epochs), *flags)
    meta = json.loads((out / "bertcli.json").read_text())
    accuracy, f1 = accuracy_of(out, test)
    log(f"  -> accuracy {accuracy:.4f}, {wall:.0f}s")
    return {
        "setting": name,
        "accuracy": accuracy,
        "f1_macro": f1,
        "wall": wall,
        "policy": meta["long_text"],
        "steps": meta["steps"],
    }


def default_policy(train: Path) -> dict:
    """What `bertcli finetune` without flags picks for this data (the same function, in-process)."""
    import pandas as pd

    from bertcli.bundle import model_max_length
    from bertcli.config import WindowOptions
    from bertcli.hub import default_model
    from bertcli.inference.encoding import TextEncoder
    from bertcli.tasks.classification.windows import choose_policy

    path = default_model()
    texts = pd.read_csv(train)["text"].astype(str).tolist()
    lengths = TextEncoder.load(path, model_max_length(path)).lengths(texts)
    return choose_policy(lengths, WindowOptions(), None, model_max_length(path)).meta()


def matches(policy: dict, setting: dict) -> bool:
    keys = ("mode", "max_length") if policy["mode"] == "truncate" else ("mode", "max_length", "stride")
    return all(policy[k] == setting["policy"][k] for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the defaults and of the Trainer [default: 3]")
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bertcli-bench-long-"))
    from bertcli.corpora import debates, movie_documents
    from bertcli.hub import default_model

    epochs = 1.0 if args.quick else TRAINER_EPOCHS
    settings = dict(list(SETTINGS.items())[::2]) if args.quick else SETTINGS
    seeds = range(1, (1 if args.quick else args.seeds) + 1)
    results = {}
    for data, make in (("movie documents", movie_documents), ("debates", debates)):
        name = data.replace(" ", "-")
        directory = work / name
        directory.mkdir(parents=True, exist_ok=True)
        train_frame, test_frame = make()
        train, test = directory / "train.csv", directory / "test.csv"
        train_frame.to_csv(train, index=False)
        test_frame.to_csv(test, index=False)
        rows = [run_setting(work, name, setting, flags, train, test, epochs) for setting, flags in settings.items()]
        defaults = [
            run_setting(work, name, f"defaults seed {seed}", ["--seed", str(seed)], train, test, epochs)
            for seed in seeds
        ]
        texts = (train_frame["text"].astype(str).tolist(), train_frame["label"].astype(str).tolist())
        tests = (test_frame["text"].astype(str).tolist(), test_frame["label"].astype(str).tolist())
        trainers: list[Row] = [
            bench_trainer(default_model(), (*texts, *tests), epochs, False, work, seed=seed) for seed in seeds
        ]
        results[data] = {
            "rows": rows,
            "defaults": defaults,
            "policy": default_policy(train),
            "trainers": trainers,
            "sizes": (len(train_frame), len(test_frame)),
        }
    report(results, epochs, len(seeds))


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.4f} +- {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def report(results: dict, epochs: float, seeds: int) -> None:
    print(
        f"\nall-MiniLM-L6-v2, {epochs:g} epochs, {os.cpu_count()} CPUs; bertcli: whole finetune command; Trainer: load+tokenize+train; "
        f"settings seed 42, defaults and Trainer: mean +- std over seeds 1..{seeds}\n"
    )
    lines = []
    for data, r in results.items():
        trainer_wall = statistics.mean(row.wall for row in r["trainers"])
        trainer_accuracy = [row.accuracy for row in r["trainers"]]
        default_wall = statistics.mean(row["wall"] for row in r["defaults"])
        default_accuracy = [row["accuracy"] for row in r["defaults"]]
        print(f"**{data}** ({r['sizes'][0]} train / {r['sizes'][1]} test; bertcli's defaults: {r['policy']})\n")
        print(
            "| setting | test accuracy | macro F1 | train wall s | vs Trainer | defaults |\n|---|---:|---:|---:|---:|---|"
        )
        for row in r["rows"]:
            mark = "same policy as the defaults" if matches(r["policy"], row) else ""
            print(
                f"| bertcli {row['setting']} | {row['accuracy']:.4f} | {row['f1_macro']:.4f} | {row['wall']:.0f} | {trainer_wall / row['wall']:.2f}x | {mark} |"
            )
        print(
            f"| **bertcli defaults** ({seeds} seeds) | {spread(default_accuracy)} | {spread([row['f1_macro'] for row in r['defaults']])} | {default_wall:.0f} | {trainer_wall / default_wall:.2f}x | <- defaults |"
        )
        print(
            f"| HF Trainer, run_classification (truncate+pad {HF_MAX_LENGTH}; {seeds} seeds) | {spread(trainer_accuracy)} | | {trainer_wall:.0f} | 1.00x | |\n"
        )
        lines.append(f"{data}: defaults {default_wall:.0f}s vs Trainer {trainer_wall:.0f}s ({trainer_wall / default_wall:.2f}x, goal >= 1.3x), "
                     f"accuracy {spread(default_accuracy)} vs {spread(trainer_accuracy)} (goal: >=)")  # fmt: skip
    movies = {row["setting"]: row["accuracy"] for row in results["movie documents"]["rows"]}
    best_window = max(v for k, v in movies.items() if k.startswith("window"))
    if "truncate 512" in movies:
        lines.append(
            f"movie documents: best window {best_window:.4f} vs truncate 512 {movies['truncate 512']:.4f} (goal: window beats it)"
        )
    print("\n".join(lines))
    print(f"\nfinished {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
