"""Shared fixtures: a tiny random BERT built offline, toy data, and a clean Accelerate state per test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from helpers import build_tiny_bert, sentiment_rows, write_csv

# Tiny models spend their time in thread synchronisation, not math: one thread is faster, and it keeps
# tests from thrashing when other processes share the two cores. Real-model tests raise it again.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def bertcli_log(caplog, monkeypatch):
    """Records of the 'bertcli' logger from DEBUG up, caught at the logger itself (the CLI may have turned its
    propagation off)."""
    logger = logging.getLogger("bertcli")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="bertcli")
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "train.csv", sentiment_rows(96))


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps a process-wide singleton; each test (like each CLI run) starts from scratch."""
    yield
    try:
        from accelerate.state import AcceleratorState, GradientState, PartialState
    except ImportError:
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()
