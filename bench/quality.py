"""Quality on every real classification set: the lexical baseline alone, bertcli with `--lexical off`, bertcli's
defaults, and the HF Trainer with run_classification's settings (truncate and pad to 128, batch 8, lr 5e-5,
3 epochs); test accuracy, macro-F1 and train wall time, each as mean +- std over seeds.

Sets, all made by `python -m bertcli.corpora` (the lexical model and the Trainer read the same train.csv, and
everything is scored on the same test.csv):

* rotten-tomatoes (2000 / 1000 snippets), rt-pairs (2000 / 1000 pairs), moral-foundations (multi-label terms:
  subset accuracy in the accuracy column), word-affect (regression: Pearson's r and MSE in the two columns),
  movie-documents (long documents), debates (short-to-long statements);
* debates-long: the 189 longest Democratic and Republican statements of `debates` (60 to 1,500 words), split
  132 / 57 stratified with seed 0: a tiny set of long political documents, where a short schedule used to leave
  bertcli at the majority class.

`--lexical off` trains exactly the model the defaults train (the lexical baseline is fitted after training, and
only the weight that mixes it in differs), so each seed trains once: the `off` row evaluates a copy of the defaults'
bundle whose lexical weight is set to 0, and shares its train wall time. Rows that need a flag this bertcli lacks
(`--lexical`) are skipped with a note. bertcli runs as `python -m bertcli`, so PYTHONPATH picks the code under test.

    python bench/quality.py                       # every set, 3 seeds: hours on 2 CPU cores, fine on one GPU
    python bench/quality.py --quick               # debates-long, 1 seed, 1 epoch: checks that everything runs
    python bench/quality.py --sets debates-long --rows lexical,trainer --seeds 3
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify import HF_MAX_LENGTH, log  # noqa: E402  (a sibling benchmark's settings and log)

# name: (bertcli.corpora command, train size, test size, task, finetune data flags)
SETS = {
    "debates-long": ("debates", None, None, "single_label", []),
    "movie-documents": ("movie-documents", None, None, "single_label", []),
    "debates": ("debates", None, None, "single_label", []),
    "rotten-tomatoes": ("rotten-tomatoes", 2000, 1000, "single_label", []),
    "rt-pairs": ("rt-pairs", 2000, 1000, "single_label", ["--text-pair-column", "text_pair"]),
    "moral-foundations": ("moral-foundations", None, None, "multi_label", ["--label-sep", ","]),
    "word-affect": ("word-affect", None, None, "regression", []),
}
ROWS = {
    "lexical": "lexical baseline alone (TF-IDF + linear)",
    "off": "bertcli --lexical off",
    "defaults": "**bertcli defaults**",
    "trainer": f"HF Trainer, run_classification (pad {HF_MAX_LENGTH}, batch 8, lr 5e-5, 3 epochs)",
}
COLUMNS = {"single_label": ("accuracy", "f1_macro"), "multi_label": ("subset_accuracy", "f1_macro"),
           "regression": ("pearson", "mse")}  # fmt: skip


@dataclass
class Data:
    task: str
    train: pd.DataFrame
    test: pd.DataFrame
    paths: tuple[Path, Path]
    flags: list[str]

    def columns(self, frame: pd.DataFrame) -> tuple[list[str], list[str] | None]:
        pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
        return frame["text"].astype(str).tolist(), pairs

    def targets(self, frame: pd.DataFrame, names: list[str]) -> np.ndarray:
        if self.task == "regression":
            return frame["score"].to_numpy(dtype=np.float64)
        if self.task == "multi_label":
            return np.array([[int(n in str(c).split(",")) for n in names] for c in frame["labels"]])
        return np.array([names.index(str(v)) for v in frame["label"]])

    def names(self) -> list[str]:
        if self.task == "regression":
            return []
        if self.task == "multi_label":
            return sorted({n for c in self.train["labels"] for n in str(c).split(",")})
        return sorted(self.train["label"].astype(str).unique())


def make(name: str, work: Path) -> Data:
    command, train_size, test_size, task, flags = SETS[name]
    from bertcli.corpora import COMMANDS

    directory = work / name
    paths = COMMANDS[command](str(directory), train_size, test_size)
    if name == "debates-long":
        paths = long_political(paths, directory)
    train, test = (pd.read_csv(p, keep_default_na=False) for p in paths)
    return Data(task, train, test, paths, flags)


def long_political(paths: tuple[Path, Path], directory: Path) -> tuple[Path, Path]:
    from sklearn.model_selection import train_test_split

    frame = pd.concat([pd.read_csv(p) for p in paths])
    frame = frame[frame["label"] != "Moderator"].assign(words=lambda f: f["text"].str.split().str.len())
    frame = frame.sort_values("words", ascending=False, kind="stable").head(189)[["text", "label"]]
    train, test = train_test_split(frame, test_size=57, random_state=0, stratify=frame["label"])
    out = directory / "train.csv", directory / "test.csv"
    train.to_csv(out[0], index=False)
    test.to_csv(out[1], index=False)
    return out


def scores(data: Data, probs: np.ndarray, names: list[str]) -> dict[str, float]:
    from bertcli.reports.metrics import report_for_task
    from bertcli.tasks.classification.scores import decisions

    refs = data.targets(data.test, names)
    gold = refs.astype(float).tolist() if data.task == "regression" else refs.tolist()
    report = report_for_task(data.task, gold, decisions(data.task, probs, 0.5), names or None)
    return {k: report[k] for k in COLUMNS[data.task]} | {"one_class": one_class(report)}


def one_class(report: dict) -> bool:
    """Every test text predicted as one class (single-label): a majority-class model."""
    if "confusion_matrix" not in report:
        return False
    return bool((np.asarray(report["confusion_matrix"]).sum(0) > 0).sum() == 1)


def lexical_row(data: Data, seed: int) -> dict:
    from bertcli.tasks.classification import lexical

    names = data.names()
    start = time.perf_counter()
    model = lexical.fit(*data.columns(data.train), data.targets(data.train, names), data.task, max(1, len(names)))
    wall = time.perf_counter() - start
    return scores(data, model.probabilities(*data.columns(data.test)), names) | {"wall": wall}


def bertcli(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    # from the checkout this bench imported: `python -m` puts the working directory ahead of PYTHONPATH
    root = Path(importlib.util.find_spec("bertcli").origin).parents[1]
    done = subprocess.run([sys.executable, "-m", "bertcli", *args], capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        sys.exit(f"bertcli {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def has_lexical_flag() -> bool:
    return "--lexical" in bertcli("finetune", "--help")[1]


def bertcli_row(data: Data, seed: int, flags: list[str], out: Path) -> dict:
    wall, _ = bertcli(
        "finetune", str(data.paths[0]), "-o", str(out), "--overwrite", "--seed", str(seed), *data.flags, *flags
    )
    return evaluated(data, out, wall)


def evaluated(data: Data, out: Path, wall: float) -> dict:
    report = json.loads(bertcli("evaluate", str(out), str(data.paths[1]), "--json")[1])
    meta = json.loads((out / "bertcli.json").read_text())
    row = {k: report[k] for k in COLUMNS[data.task]} | {"wall": wall, "one_class": one_class(report)}
    return row | {"steps": meta.get("steps"), "lexical": (meta.get("lexical") or {}).get("weight")}


def without_lexical(data: Data, trained: Path, wall: float) -> dict:
    """`--lexical off`: the same fine-tuned model as the defaults' run, its lexical weight set to 0."""
    import dataclasses
    import shutil

    from bertcli.bundle import read_meta, write_meta

    copy = trained.with_name(trained.name + "-off")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(trained, copy)
    meta = read_meta(copy)
    if meta.lexical is not None:
        write_meta(copy, dataclasses.replace(meta, lexical={**meta.lexical, "mode": "off", "weight": 0.0}))
    return evaluated(data, copy, wall)


def trainer_row(data: Data, seed: int, work: Path, epochs: float = 3.0) -> dict:
    """transformers' Trainer as examples/pytorch/text-classification/run_classification.py sets it up by default."""
    import datasets
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from bertcli.hub import default_model

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    names, path = data.names(), default_model()
    start = time.perf_counter()
    transformers.set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    problem = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=max(1, len(names)), problem_type=problem.get(data.task, "regression")
    )

    def encode(frame: pd.DataFrame) -> datasets.Dataset:
        texts, pairs = data.columns(frame)
        targets = data.targets(frame, names)
        labels = targets.astype(np.float32) if data.task != "single_label" else targets
        encoded = tokenizer(texts, pairs, padding="max_length", max_length=HF_MAX_LENGTH, truncation=True)
        return datasets.Dataset.from_dict({**encoded, "label": labels.tolist()})

    args = TrainingArguments(
        output_dir=str(work / "trainer"), seed=seed, num_train_epochs=epochs, use_cpu=not _cuda(), report_to=[],
        save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=encode(data.train), processing_class=tokenizer)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its metrics; stdout is the table's
        trainer.train()
    wall = time.perf_counter() - start
    from bertcli.tasks.classification.scores import probabilities

    logits = trainer.predict(encode(data.test)).predictions
    return scores(data, probabilities(logits, data.task), names) | {"wall": wall}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def spread(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def table(name: str, data: Data, results: dict[str, list[dict]]) -> str:
    first, second = COLUMNS[data.task]
    lines = [
        f"**{name}** ({data.task}, {len(data.train)} train / {len(data.test)} test)\n",
        f"| method | {first} | {second} | train wall s | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for row, runs in results.items():
        if isinstance(runs, str):
            lines.append(f"| {ROWS[row]} | | | | {runs} |")
            continue
        notes = [f"{len(runs)} seed(s)"]
        if any(r["one_class"] for r in runs):
            notes.append(f"one-class predictions in {sum(r['one_class'] for r in runs)} run(s)")
        if runs[0].get("steps") is not None:
            notes.append(f"steps {'/'.join(str(r['steps']) for r in runs)}")
        if runs[0].get("lexical") is not None:
            notes.append(f"lexical weight {'/'.join(str(r['lexical']) for r in runs)}")
        cells = [
            spread([r[first] for r in runs]),
            spread([r[second] for r in runs]),
            spread([r["wall"] for r in runs], 1),
        ]
        lines.append(f"| {ROWS[row]} | {' | '.join(cells)} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def goals(name: str, data: Data, results: dict) -> list[str]:
    """The issue's goals for one set: defaults >= the better of the lexical model and BERT alone, within one std."""
    first = COLUMNS[data.task][0]
    runs = {k: v for k, v in results.items() if not isinstance(v, str)}
    if "defaults" not in runs:
        return []
    mean = {k: statistics.mean(r[first] for r in v) for k, v in runs.items()}
    std = statistics.stdev([r[first] for r in runs["defaults"]]) if len(runs["defaults"]) > 1 else 0.0
    best = max(mean.get("lexical", -1e9), mean.get("off", -1e9))
    lines = [f"- {name}: defaults {first} {mean['defaults']:.4f} vs the better part {best:.4f} (+- {std:.4f}): "
             f"{'MET' if mean['defaults'] >= best - std else 'NOT MET'}"]  # fmt: skip
    if any(r["one_class"] for r in runs["defaults"]):
        lines.append(f"- {name}: a default run predicts one class for every test text: NOT MET")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="debates-long, 1 seed, 1 epoch")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bertcli-bench-quality-")).resolve()  # bertcli runs elsewhere
    sets = ["debates-long"] if args.quick else args.sets.split(",")
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    rows = args.rows.split(",")
    epochs = ["--epochs", "1"] if args.quick else []  # a smoke run: every path once, not the defaults' quality
    lexical_flag = has_lexical_flag() if {"off", "defaults"} & set(rows) else False
    out, lines = [], []
    for name in sets:
        data = make(name, work)
        results: dict[str, list[dict] | str] = {}
        defaults: dict[int, dict] = {}  # per seed, the defaults' run
        for row in rows:
            log(f"{name}: {row}")
            if row == "off" and not lexical_flag:
                results[row] = "skipped: this bertcli has no --lexical"
                continue
            results[row] = []
            for seed in seeds:
                trained = work / name / f"defaults-{seed}"
                if row in ("off", "defaults") and seed not in defaults:  # one training serves both rows
                    defaults[seed] = bertcli_row(data, seed, epochs, trained)
                results[row].append(
                    lexical_row(data, seed) if row == "lexical"
                    else trainer_row(data, seed, work / name, 1.0 if args.quick else 3.0) if row == "trainer"
                    else without_lexical(data, trained, defaults[seed]["wall"]) if row == "off"
                    else defaults[seed]
                )  # fmt: skip
                log(f"  -> seed {seed}: {results[row][-1]}")  # a run cut short still shows what it measured
        out.append(table(name, data, results))
        lines += goals(name, data, results)
    load = os.getloadavg()
    print(f"\nall-MiniLM-L6-v2; seeds {seeds}; {os.cpu_count()} CPUs, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; "
          "bertcli's wall: the whole finetune command; the Trainer's: load + tokenize + train\n")  # fmt: skip
    print("\n".join(out))
    if lines:
        print("\n".join(lines))
    print(f"\nfinished {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
