"""The ready `accelerate` config files under recipes/accelerate/ load in Accelerate and say what their names promise."""

from __future__ import annotations

from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
EXPECTED = {
    "multi-cpu.yaml": ("MULTI_GPU", {"use_cpu": True, "num_machines": 1, "num_processes": 2}),
    "multi-gpu.yaml": ("MULTI_GPU", {"use_cpu": False, "num_machines": 1, "mixed_precision": "bf16"}),
    "multi-node.yaml": ("MULTI_GPU", {"num_machines": 2, "num_processes": 16, "main_process_ip": "10.0.0.1"}),
    "fsdp.yaml": ("FSDP", {"num_machines": 1}),
    "deepspeed-zero2.yaml": ("DEEPSPEED", {"num_machines": 1}),
    "deepspeed-zero3.yaml": ("DEEPSPEED", {"num_machines": 1}),
}


def test_every_recipe_is_covered():
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_loads_in_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(RECIPES / name))
    distributed_type, values = EXPECTED[name]
    assert config.distributed_type.name == distributed_type
    for key, value in values.items():
        assert getattr(config, key) == value, key
    assert "accelerate launch --config_file recipes/accelerate/" + name in (RECIPES / name).read_text()
    if name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "BertLayer"
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-6])
