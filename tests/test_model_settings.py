"""What the loop sets on a model before it trains: the attention dropout (--attention-dropout), and on a CPU eager
attention and random-bits dropout for training forwards, which must compute what sdpa computes."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import sentiment_rows, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.errors import UsageError
from bertcli.training.dropout import ATTENTION
from bertcli.training.model_settings import cpu_training_kernels, set_attention_dropout

runner = CliRunner()


def _classifier(tiny_model):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=2)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding, as real batches have
    return {"input_ids": ids, "attention_mask": mask}


def _implementations_seen(model) -> list[str]:
    """The attention implementation each forward of the first self-attention module ran with."""
    seen: list[str] = []
    attention = model.bert.encoder.layer[0].attention.self
    attention.register_forward_pre_hook(lambda module, args: seen.append(module.config._attn_implementation))
    return seen


def test_attention_dropout_reaches_every_self_attention_module_and_the_saved_config(tiny_model):
    model = _classifier(tiny_model)
    set_attention_dropout(model, 0.0)
    for layer in model.bert.encoder.layer:
        assert layer.attention.self.dropout.p == 0.0
        assert layer.attention.output.dropout.p == 0.1  # hidden-state dropout is not attention dropout
    assert model.config.attention_probs_dropout_prob == 0.0 and model.config.hidden_dropout_prob == 0.1
    with pytest.raises(UsageError, match="no self-attention dropout"):
        set_attention_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.0)


def test_training_forwards_run_eager_attention_on_a_cpu_and_compute_what_sdpa_computes(tiny_model):
    model, reference = _classifier(tiny_model), _classifier(tiny_model)
    reference.load_state_dict(model.state_dict())  # the same (randomly initialised) head
    for m in (model, reference):  # no dropout anywhere: train-mode forwards are then deterministic
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    seen = _implementations_seen(model)
    undo = cpu_training_kernels(model, torch.device("cpu"))
    batch = _batch()
    model.train()
    reference.train()
    trained = model(**batch).logits
    model.eval()
    reference.eval()
    with torch.no_grad():
        evaluated = model(**batch).logits
        expected = reference(**batch).logits
    assert seen == [ATTENTION, "sdpa"]
    assert reference.config._attn_implementation == "sdpa"
    torch.testing.assert_close(trained.detach(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(evaluated, expected, atol=1e-6, rtol=1e-6)
    undo()
    model.train()
    model(**batch)
    assert seen[-1] == "sdpa" and model.config._attn_implementation == "sdpa"  # the hook is gone


def test_on_an_accelerator_training_keeps_the_models_own_attention(tiny_model):
    model = _classifier(tiny_model)
    seen = _implementations_seen(model)
    cpu_training_kernels(model, torch.device("cuda"))  # only the device's type is read: no GPU needed
    model.train()
    model(**_batch())
    assert seen == ["sdpa"]
    assert all("forward" not in vars(m) for m in model.modules())  # torch's own dropout


def test_on_a_cpu_training_forwards_drop_with_random_bits_and_the_undo_restores_torchs_dropout(tiny_model):
    model = _classifier(tiny_model)
    undo = cpu_training_kernels(model, torch.device("cpu"))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all("forward" in vars(m) for m in dropouts)
    model.train()
    torch.manual_seed(3)
    first = model(**_batch()).logits
    torch.manual_seed(3)
    again = model(**_batch()).logits
    other = model(**_batch()).logits
    torch.testing.assert_close(first, again, atol=0, rtol=0)  # torch's generator: a seeded run repeats itself
    assert not torch.allclose(first, other)  # and each forward draws new masks
    undo()
    assert all("forward" not in vars(m) for m in dropouts)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**_batch()).logits, model(**_batch()).logits)


def _saved(directory) -> tuple[float, float | None]:
    """The saved model's attention dropout, and the one its run record says was asked for."""
    config = json.loads((directory / "config.json").read_text())
    record = json.loads((directory / "bertcli.json").read_text())["config"]["training"]
    return config["attention_probs_dropout_prob"], record["attention_dropout"]


@pytest.mark.parametrize(
    ("flag", "expected"), [([], (0.1, None)), (["--attention-dropout", "0.05"], (0.05, 0.05))], ids=["default", "set"]
)
def test_finetune_trains_with_the_attention_dropout_asked_for(tmp_path, tiny_model, flag, expected):
    data = write_csv(tmp_path / "train.csv", sentiment_rows(32))
    out = tmp_path / "model"
    args = ["finetune", str(data), "-m", str(tiny_model), "-o", str(out), "--epochs", "1", "--precision", "no"]
    result = runner.invoke(app, [*args, *flag])
    assert result.exit_code == 0, result.stderr
    assert _saved(out) == expected
    assert "attn_implementation" not in (out / "config.json").read_text()


def test_an_attention_dropout_out_of_range_is_a_usage_error(tmp_path, tiny_model):
    data = write_csv(tmp_path / "train.csv", sentiment_rows(32))
    args = ["finetune", str(data), "-m", str(tiny_model), "-o", str(tmp_path / "m"), "--attention-dropout", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--attention-dropout must be in [0, 1), got 1" in result.stderr
    assert not (tmp_path / "m").exists()
