"""The training loop itself (bertcli.training.train), driven directly with a small job."""

from __future__ import annotations

import pytest
import torch

from bertcli import training
from bertcli.runtime.accelerator import make_accelerator
from bertcli.config import TrainOptions
from bertcli.training import TrainJob, train


def regression_job(accuracies: list[float], snapshots: list[dict[str, torch.Tensor]]) -> TrainJob:
    """A linear model on 32 examples; its evaluation reports the scripted accuracies and keeps the weights it saw."""
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randn(4, generator=generator), "target": torch.randn(1, generator=generator)} for _ in range(32)]

    def collate(batch):
        return {"input_ids": torch.stack([r["input_ids"] for r in batch]), "target": torch.stack([r["target"] for r in batch])}

    def loss(model, batch):
        return torch.nn.functional.mse_loss(model(batch["input_ids"]), batch["target"])

    def evaluate(model, accelerator):
        snapshots.append({k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()})
        return {"loss": 1.0, "accuracy": accuracies[len(snapshots) - 1]}

    torch.manual_seed(0)
    return TrainJob(model=torch.nn.Linear(4, 1), dataset=rows, lengths=[4] * 32, collate=collate, loss=loss,
                    evaluate=evaluate, metric="accuracy")  # fmt: skip


@pytest.mark.parametrize("sharded", [False, True], ids=["whole-weights", "accelerate-state"])
def test_the_best_evaluation_s_weights_are_what_the_run_leaves(tmp_path, monkeypatch, sharded):
    """The second of three evaluations is best: job.model and job.weights end with its weights, not the last step's,
    both where the weights are saved whole and where (as under FSDP/DeepSpeed) Accelerate's state save/load is used."""
    monkeypatch.setattr(training, "_weights_sharded", lambda accelerator: sharded)
    snapshots: list[dict[str, torch.Tensor]] = []
    job = regression_job([0.5, 0.9, 0.7], snapshots)
    opts = TrainOptions(epochs=3, lr=0.05, batch_size=8, precision="no")
    state = train(job, opts, make_accelerator("no"), tmp_path / "run")

    assert [h["accuracy"] for h in state.history] == [0.5, 0.9, 0.7]
    assert state.best_step == 8 and state.global_step == 12
    assert not torch.equal(snapshots[1]["weight"], snapshots[2]["weight"])  # training moved on after the best
    for name, best in snapshots[1].items():
        torch.testing.assert_close(job.weights[name], best, rtol=0, atol=0)
        torch.testing.assert_close(job.model.state_dict()[name], best, rtol=0, atol=0)
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
        training._restore_best(make_accelerator("no"), model, tmp_path, training.TrainState(global_step=10, best_step=5))
    finally:
        logger.removeHandler(caplog.handler)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert any("best evaluation's weights (step 5) are gone" in r.getMessage() for r in caplog.records)
