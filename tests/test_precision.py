"""Precision choice: what 'auto' resolves to, the probe override, and the warning for a bf16 that would run emulated."""

from __future__ import annotations

import logging

import pytest

from bertcli.runtime import precision


@pytest.fixture
def bertcli_log(caplog, monkeypatch):
    """Records of the 'bertcli' logger, caught at the logger itself (the CLI may have turned its propagation off)."""
    logger = logging.getLogger("bertcli")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="bertcli")
    yield caplog
    logger.removeHandler(caplog.handler)


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
