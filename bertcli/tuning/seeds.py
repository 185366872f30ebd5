"""Results you can trust: one finetune per seed on the same split, mean +- std of every validation metric, the best
run kept as the bundle (`bertcli evaluate A B C data` gives the same summary on test data).

Fine-tuning small models on small data is noisy: a point between two runs is often the seed. The standard
deviation is the sample one (n - 1), as papers report it.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from bertcli.bundle import BundleMeta
from bertcli.config import FinetuneConfig, seed_list
from bertcli.reports.metrics import summarize

log = logging.getLogger("bertcli")


def finetune_seeds(cfg: FinetuneConfig, callbacks: Any = None) -> Any:
    """`bertcli finetune`: one run, or with --seeds one per seed and the best kept (its bertcli.json records all)."""
    from bertcli import tasks

    if cfg.seeds is None:
        return tasks.finetune(cfg, callbacks)
    from bertcli.reports.metrics import greater_is_better
    from bertcli.training.run import check_output

    cfg.validate()
    out = check_output(cfg.output, cfg.overwrite)
    seeds = seed_list(str(cfg.seeds), cfg.training.seed)
    area = out.with_name(out.name + ".seeds")
    runs: list[tuple[int, Any, dict[str, Any]]] = []
    for number, seed in enumerate(seeds, 1):
        run = dataclasses.replace(
            cfg, output=str(area / f"seed-{seed}"), seeds=None, overwrite=True, split_seed=cfg.validation_seed,
            training=dataclasses.replace(cfg.training, seed=seed),
        )  # fmt: skip
        result = tasks.finetune(run, callbacks)
        best = _best_record(result.meta)
        runs.append((seed, result, best))
        shown = ", ".join(f"{k} {best[k]:.4f}" for k in (result.meta.metric, "loss") if isinstance(best.get(k), float))
        log.info("seed %d (%d of %d): %s, %.0fs", seed, number, len(seeds), shown, result.meta.run["train_seconds"])
    metric = runs[0][1].meta.metric
    higher = greater_is_better(metric)
    chosen = (max if higher else min)(
        runs, key=lambda run: run[2].get(metric, float("-inf") if higher else float("inf"))
    )
    record = {
        "seeds": seeds, "split_seed": cfg.validation_seed, "metric": metric, "best_seed": chosen[0],
        "runs": [{"seed": seed, **best} for seed, _, best in runs], "summary": summarize([best for _, _, best in runs]),
    }  # fmt: skip
    meta = _keep(chosen[1].output, out, record, cfg)
    shutil.rmtree(area, ignore_errors=True)
    return dataclasses.replace(chosen[1], output=out, meta=meta)


def _best_record(meta: BundleMeta) -> dict[str, Any]:
    """The validation metrics at the run's best step (the weights it keeps)."""
    history = meta.history
    step = meta.best["step"]
    return next((dict(h) for h in history if h["step"] == step), dict(history[-1]) if history else {})


def _keep(directory: Path, out: Path, record: dict[str, Any], cfg: FinetuneConfig) -> BundleMeta:
    """Move the best seed's bundle to `out`, its bertcli.json and model card telling every seed's results."""
    from bertcli.bundle import read_meta, write_meta
    from bertcli.io import replace_dir
    from bertcli.reports.model_card import document_run

    meta = dataclasses.replace(read_meta(directory), seeds=record).moved_to(cfg.output)
    write_meta(directory, meta)
    document_run(directory, out.name)
    replace_dir(directory, out)
    return meta
