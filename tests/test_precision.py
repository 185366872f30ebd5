"""Precision choice: what 'auto' resolves to, the probe override, and the warning for a bf16 that would run emulated."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bertcli.runtime import precision


@pytest.mark.parametrize("forced", ["1", "0"])
def test_the_environment_forces_the_bf16_probe(monkeypatch, forced):
    monkeypatch.setenv(precision.FAST_BF16_ENV, forced)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert precision.fast_bf16_available() is (forced == "1")
    assert precision.resolve_precision("auto") == ("bf16" if forced == "1" else "no")


@pytest.mark.parametrize("fast", [True, False])
def test_auto_picks_bf16_only_where_it_is_fast(monkeypatch, bertcli_log, fast):
    monkeypatch.setattr(precision, "fast_bf16_available", lambda: fast)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert precision.resolve_precision("auto") == ("bf16" if fast else "no")
    assert precision.resolve_precision("no") == "no"
    assert not bertcli_log.records


def test_a_launcher_precision_wins_over_the_probe(monkeypatch):
    monkeypatch.setattr(precision, "fast_bf16_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert precision.resolve_precision("auto") == "fp16"
    assert precision.resolve_precision("no") == "no"  # an explicit choice beats the launcher's default


@pytest.mark.parametrize("fast", [True, False])
def test_an_explicit_slow_bf16_is_kept_and_warned_about(monkeypatch, bertcli_log, fast):
    monkeypatch.setattr(precision, "fast_bf16_available", lambda: fast)
    assert precision.resolve_precision("bf16") == "bf16"
    warnings = [r.getMessage() for r in bertcli_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == (0 if fast else 1)
    if not fast:
        assert "emulated" in warnings[0] and "--precision auto" in warnings[0]


def test_a_bf16_torch_backend_casts_its_linear_weights_once_with_the_same_results(tiny_model):
    """Autocast casts fp32 weights on every call; the backend keeps them cast (and, where oneDNN runs bf16 natively,
    packed), and the outputs stay bit-identical."""
    import torch

    from bertcli.inference.encoding import TextEncoder, pad
    from bertcli.inference.torch_backend import TorchBackend, load_model
    from bertcli.inference.unpadded import UNPAD, unpad_encoder

    backend = TorchBackend(load_model(str(tiny_model), "encoder"), precision="bf16")
    linear = [m for m in backend.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(m.weight.dtype == torch.bfloat16 for m in linear)
    assert {"forward" in vars(m) for m in linear} == {precision.native_bf16_cpu() and backend.device.type == "cpu"}
    assert backend.model.embeddings.word_embeddings.weight.dtype == torch.float32  # autocast keeps embeddings fp32
    encoded = TextEncoder.load(tiny_model, 32).encode(["a short text", "and a somewhat longer second text here"])
    features = pad(encoded, [0, 1], 0)
    reference = load_model(str(tiny_model), "encoder").to(backend.device).eval()
    unpadded = {UNPAD: True} if backend.unpadded and unpad_encoder(reference) else {}  # the same shapes, uncast
    tensors = {k: torch.from_numpy(v).to(backend.device) for k, v in features.items()}
    with torch.inference_mode(), torch.autocast(backend.device.type, dtype=torch.bfloat16):
        expected = reference(**tensors, **unpadded).last_hidden_state.float().cpu().numpy()
    got = backend.forward(features, ("last_hidden_state",))["last_hidden_state"]
    real = features["attention_mask"].astype(bool)  # padding's outputs are not results (and unpadded, zero)
    assert np.array_equal(got[real], expected[real])
    for rows in ([1], [0, 1, 0]):  # other batch shapes than the first: a packed weight fits any
        batch = pad(encoded, rows, 0)
        got = backend.forward(batch, ("last_hidden_state",))["last_hidden_state"]
        real = batch["attention_mask"].astype(bool)
        assert np.array_equal(got[real], expected[rows][:, : got.shape[1]][real])
    fp32 = TorchBackend(load_model(str(tiny_model), "encoder"), precision="no")
    assert all(m.weight.dtype == torch.float32 for m in fp32.model.modules() if isinstance(m, torch.nn.Linear))
