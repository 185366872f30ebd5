"""The training loop itself (bertcli.training.loop.train), driven directly with a small job."""

from __future__ import annotations

import pytest
import torch

from bertcli.config import TrainOptions
from bertcli.runtime.accelerator import make_accelerator
from bertcli.training import checkpoints
from bertcli.training.checkpoints import TrainState
from bertcli.training.loop import Callbacks, TrainJob, train


def regression_job(accuracies: list[float], snapshots: list[dict[str, torch.Tensor]]) -> TrainJob:
    """A linear model on 32 examples; its evaluation reports the scripted accuracies and keeps the weights it saw."""
    generator = torch.Generator().manual_seed(0)
    rows = [
        {"input_ids": torch.randn(4, generator=generator), "target": torch.randn(1, generator=generator)}
        for _ in range(32)
    ]

    def collate(batch):
        return {
            "input_ids": torch.stack([r["input_ids"] for r in batch]),
            "target": torch.stack([r["target"] for r in batch]),
        }

    def loss(model, batch):
        return torch.nn.functional.mse_loss(model(batch["input_ids"]), batch["target"])

    def evaluate(model, accelerator):
        snapshots.append({k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()})
        return {"loss": 1.0, "accuracy": accuracies[len(snapshots) - 1]}

    torch.manual_seed(0)
    return TrainJob(
        model=torch.nn.Linear(4, 1),
        dataset=rows,
        lengths=[4] * 32,
        collate=collate,
        loss=loss,
        evaluate=evaluate,
        metric="accuracy",
    )


@pytest.mark.parametrize("sharded", [False, True], ids=["whole-weights", "accelerate-state"])
def test_the_best_evaluation_s_weights_are_what_the_run_leaves(tmp_path, monkeypatch, sharded):
    """The second of three evaluations is best: the result's model and weights are its weights, not the last step's,
    both where the weights are saved whole and where (as under FSDP/DeepSpeed) Accelerate's state save/load is used."""
    monkeypatch.setattr(checkpoints, "weights_sharded", lambda accelerator: sharded)
    snapshots: list[dict[str, torch.Tensor]] = []
    job = regression_job([0.5, 0.9, 0.7], snapshots)
    opts = TrainOptions(epochs=3, lr=0.05, batch_size=8, precision="no")
    result = train(job, opts, make_accelerator("no"), tmp_path / "run")
    state = result.state

    assert [h["accuracy"] for h in state.history] == [0.5, 0.9, 0.7]
    assert state.best_step == 8 and state.global_step == 12
    assert not torch.equal(snapshots[1]["weight"], snapshots[2]["weight"])  # training moved on after the best
    for name, best in snapshots[1].items():
        torch.testing.assert_close(result.weights[name], best, rtol=0, atol=0)
        torch.testing.assert_close(result.model.state_dict()[name], best, rtol=0, atol=0)
    kept = sorted(p.name for p in (tmp_path / "run").iterdir() if "best" in p.name)
    assert kept == ["best-step-0000008"]  # the first evaluation's weights were dropped once the second's were in place
    saved = sorted(p.name for p in (tmp_path / "run" / kept[0]).iterdir())
    assert "model.safetensors" in saved and ("optimizer.bin" in saved) == sharded  # a state keeps the optimizer too


def test_missing_best_weights_leave_the_last_step_s_with_a_warning(tmp_path, caplog, monkeypatch):
    import logging

    logger = logging.getLogger("bertcli")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    try:
        model = torch.nn.Linear(4, 1)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        checkpoints.restore_best(make_accelerator("no"), model, tmp_path, TrainState(global_step=10, best_step=5))
    finally:
        logger.removeHandler(caplog.handler)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert any("best evaluation's weights (step 5) are gone" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "options, evaluated_at",
    [
        ({"epochs": 3}, [4, 8, 12]),  # each epoch's end
        ({"epochs": 3, "eval_steps": 5}, [5, 10, 12]),  # every 5 steps, and the last step once more
        ({"epochs": 3, "eval_steps": 4}, [4, 8, 12]),  # the last step is on the cadence: evaluated once
        ({"max_steps": 6}, [4, 6]),  # an epoch's end, and where --max-steps cuts the second epoch
        ({"epochs": 3, "patience": 1}, [4, 8]),  # the second evaluation does not improve: stop
    ],
)
def test_the_evaluation_cadence(tmp_path, options, evaluated_at):
    """32 examples in batches of 8: 4 steps an epoch. The hook sees every evaluation, in order, with its metrics."""
    seen: list[tuple[int, float]] = []
    job = regression_job([0.5, 0.4, 0.9, 0.8], [])
    opts = TrainOptions(lr=0.05, batch_size=8, precision="no", **options)
    callbacks = Callbacks(on_evaluate=lambda step, metrics: seen.append((step, metrics["accuracy"])))
    result = train(job, opts, make_accelerator("no"), tmp_path / "run", callbacks)
    assert [h["step"] for h in result.state.history] == evaluated_at
    assert seen == [(h["step"], h["accuracy"]) for h in result.state.history]
    assert result.state.stopped_early == ("patience" in options)


def test_a_hook_that_raises_stops_the_run_at_that_evaluation(tmp_path):
    """What tuning's pruning relies on: an exception from on_evaluate ends train() there, with nothing trained after."""
    steps: list[int] = []

    def prune(step: int, metrics: dict[str, float]) -> None:
        if step == 8:
            raise RuntimeError("pruned")

    opts = TrainOptions(epochs=3, lr=0.05, batch_size=8, precision="no")
    with pytest.raises(RuntimeError, match="pruned"):
        train(
            regression_job([0.5, 0.9, 0.7], []),
            opts,
            make_accelerator("no"),
            tmp_path / "run",
            Callbacks(on_step=steps.append, on_evaluate=prune),
        )
    assert steps == list(range(1, 9))


def test_per_group_sampling_takes_at_most_k_of_each_text_afresh_every_epoch():
    from bertcli.training.batches import LengthGroupedBatches

    groups = [0] * 5 + [1] * 3 + [2]  # texts of 5, 3 and 1 windows
    sampler = LengthGroupedBatches([10] * 9, batch_size=2, seed=3, groups=groups, per_group=2)
    picks = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        chosen = sorted(i for batch in sampler for i in batch)
        assert [sum(groups[i] == g for i in chosen) for g in (0, 1, 2)] == [2, 2, 1]  # at most 2 of each text
        assert len(list(sampler)) == len(sampler) == 3  # 5 examples in batches of 2: the schedule's length holds
        picks.append(tuple(chosen))
    sampler.set_epoch(1)
    assert tuple(sorted(i for batch in sampler for i in batch)) == picks[1]  # deterministic per (seed, epoch)
    assert len(set(picks)) > 1  # the windows take turns
