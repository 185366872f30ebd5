"""`bertcli env`: the facts a bug report needs, as text and JSON."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bertcli import __version__
from bertcli.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("fast_bf16", ["1", "0"])
def test_env_json_reports_versions_devices_precision_and_launch(monkeypatch, fast_bf16):
    monkeypatch.setenv("BERTCLI_FAST_BF16", fast_bf16)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    result = runner.invoke(app, ["env", "--output-format", "json"])
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["bertcli"] == __version__
    assert info["packages"]["torch"] == torch.__version__
    assert set(info["packages"]) >= {"transformers", "accelerate", "datasets", "evaluate", "tokenizers"}
    assert info["cpu"]["torch_threads"] == torch.get_num_threads() and info["cpu"]["cores"] >= 1
    expected_type = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else None
    assert info["accelerator"]["type"] == expected_type
    assert info["precision"]["auto_resolves_to"] == ("bf16" if fast_bf16 == "1" else "no")
    assert info["precision"]["bf16_fast"] is (fast_bf16 == "1")
    assert info["distributed"]["launch"] == {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1"}
    if torch.distributed.is_available():
        assert "gloo" in info["distributed"]["backends"]


def test_env_text_shows_the_accelerate_config(tmp_path, monkeypatch):
    from accelerate.commands.config import config_args

    config = tmp_path / "default_config.yaml"
    config.write_text("distributed_type: MULTI_GPU\nnum_processes: 4\nmixed_precision: bf16\n")
    monkeypatch.setattr(config_args, "default_config_file", str(config))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"bertcli {__version__}, python ")
    assert any(line.split() == ["torch", torch.__version__] for line in lines)
    assert f"accelerate config: {config} (distributed_type=MULTI_GPU, num_processes=4, mixed_precision=bf16)" in lines
    assert any(line.startswith("precision: bf16 ") for line in lines)
    assert any(line.startswith("distributed: ") and line.endswith("not launched") for line in lines)


def test_env_rejects_an_unknown_format():
    result = runner.invoke(app, ["env", "--output-format", "xml"])
    assert result.exit_code == 2 and "unknown --output-format 'xml'" in result.stderr
