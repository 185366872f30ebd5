"""Model directories written by earlier versions keep loading and predicting the same.

tests/fixtures/legacy/ holds a tiny classifier (with its ONNX export) and a tiny NER model saved by bertcli 0.1.0
before the typed bundle (commit 38c804a), with the predictions that version made (fp32) on the texts beside them.
And the weights fingerprint that tells one model's files from another's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bertcli
from bertcli.bundle import weights_fingerprint

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def expected(name: str) -> list[dict]:
    return [json.loads(line) for line in (LEGACY / name).read_text(encoding="utf-8").splitlines()]


def texts(name: str) -> list[str]:
    return (LEGACY / name).read_text(encoding="utf-8").splitlines()


def close(got, want) -> bool:
    if isinstance(want, float):
        return got == pytest.approx(want, abs=2e-6)
    if isinstance(want, dict):
        return set(got) == set(want) and all(close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(close(g, w) for g, w in zip(got, want))
    return got == want


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_legacy_classifier_predicts_as_it_did(backend):
    classifier = bertcli.load(str(LEGACY / "clf"), backend=backend, precision="no" if backend == "torch" else "auto")
    got = classifier.predict(texts("texts.txt"))
    assert close(got, expected("clf.torch.jsonl"))


def test_a_legacy_tagger_predicts_as_it_did():
    tagger = bertcli.load(str(LEGACY / "ner"), precision="no")
    assert close(tagger.predict(texts("ner.txt")), expected("ner.torch.jsonl"))


def test_the_weights_fingerprint_tells_torch_weights_first_then_onnx_graphs(tmp_path):
    """An index built with an ONNX export directory (no torch weights) must still notice when that export changes."""
    (tmp_path / "model.onnx").write_bytes(b"graph" * 1000)
    (tmp_path / "model.int8.onnx").write_bytes(b"small" * 300)
    export = weights_fingerprint(tmp_path)
    assert export["file"] == "model.int8.onnx, model.onnx" and export["bytes"] == 6500
    (tmp_path / "model.int8.onnx").write_bytes(b"SMALL" * 300)  # same size, other weights
    assert weights_fingerprint(tmp_path)["sample_sha256"] != export["sample_sha256"]
    (tmp_path / "model.safetensors").write_bytes(b"tensors")
    assert weights_fingerprint(tmp_path)["file"] == "model.safetensors"
    assert weights_fingerprint(tmp_path / "nothing") is None
