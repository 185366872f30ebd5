"""Shared fixtures: a tiny random BERT built offline, toy data, and a clean Accelerate state per test."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

# Tiny models spend their time in thread synchronisation, not math: one thread is faster, and it keeps
# tests from thrashing when other processes share the two cores. Real-model tests raise it again.
os.environ.setdefault("OMP_NUM_THREADS", "1")

WORDS = (
    "the a this that movie film story plot actor acting was is were very really quite so not "
    "good great excellent wonderful fun loved bad awful terrible boring dull hated "
    "and but it i we they of to in on with for at by an be have had "
    "sports news politics science music tech game team vote election atom song guitar code phone"
).split()
POSITIVE = ["good", "great", "excellent", "wonderful", "fun", "loved"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "hated"]


def write_vocab(path: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokens = list(dict.fromkeys(specials + WORDS + chars + pieces))
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def build_tiny_bert(directory: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide random BERT with a real WordPiece tokenizer, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(directory / "vocab.txt")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(vocab.read_text().split()), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Toy reviews whose label is given by a sentiment word: learnable by a tiny model in seconds."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        filler = rng.sample(["the", "movie", "was", "really", "quite", "story", "acting", "film", "so"], k=rng.randint(1, 6))
        words = filler[: len(filler) // 2] + [word] + filler[len(filler) // 2 :]
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


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
