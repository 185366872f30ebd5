"""--gradient-checkpointing trades compute for memory; it must not change what is learned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import sentiment_rows, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

runner = CliRunner()


def _weights(directory):
    from safetensors.numpy import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_gradient_checkpointing_learns_the_same_model(tmp_path, tiny_model, command):
    if command == "finetune":
        data = write_csv(tmp_path / "train.csv", sentiment_rows(64))
        args = ["finetune", str(data), "--epochs", "2", "-b", "16", "--lr", "5e-3"]
    else:
        data = tmp_path / "corpus.txt"
        data.write_text("\n".join(row["text"] + " ." for row in sentiment_rows(200, seed=5)) + "\n")
        args = [
            "pretrain",
            str(data),
            "--max-steps",
            "6",
            "--eval-steps",
            "3",
            "-b",
            "8",
            "--max-length",
            "32",
            "--val-split",
            "0.2",
        ]
    common = [*args, "-m", str(tiny_model), "--precision", "no"]
    plain = runner.invoke(app, [*common, "-o", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.stderr
    checkpointed = runner.invoke(app, [*common, "-o", str(tmp_path / "ckpt"), "--gradient-checkpointing"])
    assert checkpointed.exit_code == 0, checkpointed.stderr
    assert "gradient checkpointing: activations are recomputed" in checkpointed.stderr
    assert "gradient checkpointing" not in plain.stderr
    history = [json.loads((tmp_path / d / "bertcli.json").read_text())["history"] for d in ("plain", "ckpt")]
    assert len(history[0]) == len(history[1]) >= 2
    for a, b in zip(*history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "ckpt")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-4, err_msg=key)
    # the flag is training-time only: nothing of it is saved into the model's config
    assert not json.loads((tmp_path / "ckpt" / "config.json").read_text()).get("gradient_checkpointing")
