"""`bertcli tune`: an Optuna search over finetune's options, within a number of trials and a time budget.

TPE sampling (seeded) and a median pruner on the validation metric the training loop reports at every
evaluation: a trial worse than the median of earlier trials at the same evaluation stops there. Trials run
in-process, one at a time, through the same finetune core as `bertcli finetune`. A search works in
OUT.incomplete/ (study.db, SQLite, and the best trial's bundle so far), so --resume continues an interrupted
search with its finished trials and an earlier OUT stays whole until the new one replaces it: at the end OUT is the
best trial's model as a normal bundle, with study.db (resumable for more trials), trials.csv and tuning.png.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertcli.bundle import BundleMeta, has_meta
from bertcli.config import TuneConfig, budget_seconds
from bertcli.errors import BertcliError, Interrupted, ModelError, UsageError
from bertcli.progress import quieter
from bertcli.tuning.space import Dimension, parse_space

log = logging.getLogger("bertcli")
STUDY_FILE, TRIALS_DIR, TRIALS_CSV, PLOT = "study.db", "trials", "trials.csv", "tuning.png"
PRUNER = {
    "n_startup_trials": 2,
    "n_warmup_steps": 0,
}  # two finished trials give the median; prune from the first evaluation
FAILURES = (RuntimeError, MemoryError, FloatingPointError, ValueError)  # a trial's own failure (e.g. out of memory)


@dataclass
class TuneResult:
    output: Path
    meta: BundleMeta
    trials: list[dict[str, Any]]


def tune(cfg: TuneConfig) -> TuneResult:
    import optuna

    cfg.validate()
    from bertcli.tasks import training_task

    task = training_task(cfg)
    space_text = cfg.space or task.default_space
    if space_text is None:
        raise UsageError(f"{task.name} has no default search space", hint="give one, e.g. --space lr=1e-5..1e-4:log")
    space = parse_space(space_text)
    metric, higher = _metric(cfg, task)
    target = Path(cfg.output)
    out = _workspace(cfg, target)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="bertcli-tune", storage=f"sqlite:///{out / STUDY_FILE}", load_if_exists=cfg.resume,
        direction="maximize" if higher else "minimize", sampler=optuna.samplers.TPESampler(seed=cfg.training.seed),
        pruner=optuna.pruners.MedianPruner(**PRUNER),
    )  # fmt: skip
    done = len([t for t in study.trials if t.state.is_finished()])
    log.info(
        "tuning %s over %s (%d trials%s%s)",
        metric,
        space_text,
        cfg.trials,
        f", {cfg.timeout} budget" if cfg.timeout else "",
        f", {done} already done" if done else "",
    )
    budget = budget_seconds(cfg.timeout)
    deadline = time.monotonic() + budget if budget else None
    objective = _Objective(cfg, out, space, metric, deadline)
    try:
        study.optimize(
            objective, n_trials=max(0, cfg.trials - done), timeout=budget, catch=FAILURES, gc_after_trial=True
        )
    except Interrupted:
        raise Interrupted(
            f"search interrupted after {len(study.trials)} trials (kept in {out / STUDY_FILE})",
            hint="continue with the same command and --resume",
        ) from None
    return _finish(cfg, out, target, study, space_text, metric)


def _workspace(cfg: TuneConfig, target: Path) -> Path:
    """OUT.incomplete/, where the search works: new, the interrupted one --resume continues, or one seeded from a
    finished OUT (its study and best bundle) that --resume extends with more trials."""
    work = target.with_name(target.name + ".incomplete")
    if target.exists() and not target.is_dir():
        raise UsageError("-o names a file; a tuned model is saved as a directory", file=target)
    finished = (target / STUDY_FILE).is_file()
    if cfg.resume:
        if not (work / STUDY_FILE).is_file() and not finished:
            raise UsageError("no search to resume here (no study.db)", file=target, hint="start it without --resume")
        if not (work / STUDY_FILE).is_file():
            _seed_from_finished(target, work)
        return work
    if (work.exists() or (target.exists() and any(target.iterdir()))) and not cfg.overwrite:
        raise UsageError(
            "an interrupted search is in " + str(work) if work.exists() else "output directory already exists",
            file=target,
            hint="--resume continues its search; --overwrite starts over",
        )
    shutil.rmtree(work, ignore_errors=True)  # an earlier OUT stays until the new search replaces it
    work.mkdir(parents=True)
    return work


def _seed_from_finished(target: Path, work: Path) -> None:
    """A finished search resumed for more trials: its study, and its bundle as the best trial's so far."""
    from bertcli.bundle import read_meta

    best = read_meta(target).search["best_trial"]
    staging = work.with_name(work.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    bundle = staging / TRIALS_DIR / f"trial-{best:04d}"
    shutil.copytree(target, bundle, ignore=shutil.ignore_patterns(STUDY_FILE, TRIALS_CSV, PLOT))
    shutil.copy2(target / STUDY_FILE, staging / STUDY_FILE)
    staging.rename(work)


def _metric(cfg: TuneConfig, task: Any) -> tuple[str, bool]:
    """The validation metric to optimise and whether higher is better: --metric, else the task's default."""
    from bertcli.reports.metrics import greater_is_better

    metric = cfg.training.metric or task.default_metric(cfg)
    known = {name for names in task.metrics.values() for name in names}
    if metric not in known:
        raise UsageError(
            f"unknown --metric {metric!r} for {task.name}", hint=f"choose one of {', '.join(sorted(known))}"
        )
    return metric, greater_is_better(metric)


class _Objective:
    """One trial: finetune with the sampled options into OUT/trials/trial-N; its evaluations feed the pruner."""

    def __init__(self, cfg: TuneConfig, out: Path, space: list[Dimension], metric: str, deadline: float | None) -> None:
        self.cfg, self.out, self.space, self.metric, self.deadline = cfg, out, space, metric, deadline

    def __call__(self, trial: Any) -> float:
        import optuna

        from bertcli.training.loop import Callbacks
        from bertcli.tuning.seeds import finetune_seeds

        params = {d.name: d.suggest(trial) for d in self.space}
        directory = self.out / TRIALS_DIR / f"trial-{trial.number:04d}"
        run = _trial_config(self.cfg, params, directory)
        evaluations = {"n": 0}

        def on_evaluate(step: int, metrics: dict[str, float]) -> None:
            value = metrics.get(self.metric)
            if value is None:
                raise UsageError(f"--metric {self.metric!r} is not among the validation metrics: {', '.join(metrics)}")
            trial.report(float(value), evaluations["n"])
            evaluations["n"] += 1
            if trial.should_prune():
                raise optuna.TrialPruned(f"{self.metric} {value:.4f} below the median at evaluation {evaluations['n']}")

        def on_step(step: int) -> None:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise optuna.TrialPruned("the time budget ran out")

        start = time.perf_counter()
        try:
            with quieter(log, logging.WARNING):  # each trial's own log would drown the search's
                result = finetune_seeds(run, Callbacks(on_step=on_step, on_evaluate=on_evaluate))
        except BaseException as exc:
            _clean(directory)
            state = "pruned" if isinstance(exc, optuna.TrialPruned) else "failed"
            log.info(
                "trial %d %s: %s (%s) %.0fs",
                trial.number,
                state,
                _shown(params),
                exc if state == "pruned" else type(exc).__name__,
                time.perf_counter() - start,
            )
            raise
        value = _best_value(result.meta, self.metric)
        _keep_best(trial.study, self.out, directory, value)
        log.info(
            "trial %d: %s -> %s %.4f, %.0fs",
            trial.number,
            _shown(params),
            self.metric,
            value,
            time.perf_counter() - start,
        )
        return value


def _trial_config(cfg: TuneConfig, params: dict[str, Any], directory: Path) -> Any:
    from bertcli.config import FinetuneConfig

    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    training = dataclasses.replace(cfg.training, resume=None, **params)
    return FinetuneConfig(**{**base, "output": str(directory), "overwrite": True, "training": training, "seeds": None})


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _best_value(meta: BundleMeta, metric: str) -> float:
    value = meta.best.get(metric)
    if value is None:
        raise UsageError(
            f"the run has no validation {metric}", hint="tune needs validation data: --validation or --val-split > 0"
        )
    return float(value)


def _clean(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(directory.with_name(directory.name + ".incomplete"), ignore_errors=True)


def _keep_best(study: Any, out: Path, directory: Path, value: float) -> None:
    """Keep only the best finished trial's bundle (disk stays one model's size)."""
    finished = [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    better = not finished or (
        value > max(t.value for t in finished)
        if study.direction.name == "MAXIMIZE"
        else value < min(t.value for t in finished)
    )
    for other in (out / TRIALS_DIR).glob("trial-*"):
        if other != directory and (better or other.name.endswith(".incomplete")):
            shutil.rmtree(other, ignore_errors=True)
    if not better:
        _clean(directory)


def _best_bundle(out: Path, number: int) -> Path:
    source = out / TRIALS_DIR / f"trial-{number:04d}"
    if not has_meta(source):
        raise ModelError(
            f"the best trial's model (trial {number}) is gone from {source}",
            hint="rerun it: bertcli finetune with its parameters",
        )
    return source


def _finish(cfg: TuneConfig, out: Path, target: Path, study: Any, space: str, metric: str) -> TuneResult:
    """The best trial's bundle, with the search in its bertcli.json and card, trials.csv, tuning.png and the
    study, replaces OUT in one rename; the workspace goes."""
    from bertcli.bundle import read_meta, write_meta
    from bertcli.io import atomic_write, replace_dir
    from bertcli.reports.model_card import document_run
    from bertcli.tuning.report import plot_search, trial_rows

    rows = trial_rows(study)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise BertcliError(
            f"no trial finished ({len(study.trials)} pruned or failed)",
            file=out,
            hint="widen --space or raise --timeout; --resume continues",
        )
    best = study.best_trial
    bundle = _best_bundle(out, best.number)
    with atomic_write(bundle / TRIALS_CSV) as handle:
        study.trials_dataframe().to_csv(handle, index=False)
    shutil.copy2(out / STUDY_FILE, bundle / STUDY_FILE)
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    search = {
        "space": space, "trials": len(rows), "states": states, "metric": metric, "direction": study.direction.name.lower(),
        "best_trial": best.number, "best_params": best.params, "best_value": best.value, "sampler": "TPE",
        "pruner": "median pruner", "study": STUDY_FILE, "table": TRIALS_CSV, "plot": PLOT if plot_search(study, metric, bundle / PLOT) else None,
    }  # fmt: skip
    meta = dataclasses.replace(read_meta(bundle), search=search).moved_to(cfg.output)
    write_meta(bundle, meta)
    document_run(bundle, target.name)
    replace_dir(bundle, target)
    shutil.rmtree(out, ignore_errors=True)
    return TuneResult(target, meta, rows)
