"""Helpers shared by the test modules: tiny models, toy data and file checks (fixtures live in conftest)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

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
        vocab_size=len(vocab.read_text().split()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Toy reviews whose label is given by a sentiment word: learnable by a tiny model in seconds."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        filler = rng.sample(
            ["the", "movie", "was", "really", "quite", "story", "acting", "film", "so"], k=rng.randint(1, 6)
        )
        words = filler[: len(filler) // 2] + [word] + filler[len(filler) // 2 :]
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


FILL = "the a was very and it we they of to in on with at by".split()
PER, LOC = ["guitar", "phone", "atom", "song"], ["election", "vote", "science"]


def toy_sentence(rng: random.Random, length: int) -> tuple[list[str], list[str]]:
    """Entities given by word identity (PER, LOC) and one two-word ORG: learnable by a tiny model in seconds."""
    words, tags = [], []
    while len(words) < length:
        r = rng.random()
        if r < 0.15:
            words, tags = words + [rng.choice(PER)], tags + ["B-PER"]
        elif r < 0.25:
            words, tags = words + [rng.choice(LOC)], tags + ["B-LOC"]
        elif r < 0.3:
            words, tags = words + ["code", "team"], tags + ["B-ORG", "I-ORG"]
        else:
            words, tags = words + [rng.choice(FILL)], tags + ["O"]
    return words, tags


def write_conll(path: Path, sentences, sep: str = "\t") -> Path:
    path.write_text("\n".join("".join(f"{w}{sep}{t}\n" for w, t in zip(*s)) for s in sentences), encoding="utf-8")
    return path


def toy_corpus(n: int, seed: int, lengths=(3, 9)):
    rng = random.Random(seed)
    return [toy_sentence(rng, rng.randint(*lengths)) for _ in range(n)]


def assert_png(path: Path, min_width: int = 300) -> None:
    """A valid, non-trivial PNG: the signature, a real size, and pixels that are not all one colour."""
    import matplotlib.image

    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5000
    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[1] >= min_width and pixels.shape[0] >= 150
    assert pixels[..., :3].std() > 0.05  # drawn lines and text, not a blank canvas


def front_matter(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def assert_same_weights(first: Path, second: Path, atol: float = 1e-6) -> None:
    """Two saved models hold the same tensors (resume tests: an interrupted and resumed run equals an uninterrupted one)."""
    import numpy as np
    from safetensors.numpy import load_file

    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=key)


def post_in_process(model_dir: Path, route: str, requests: list[dict], **options) -> list:
    """The server's answers to `requests` on `route`, in process (httpx over ASGI, lifespan and batcher running), for
    one served directory; `options` are serve's (ServeConfig)."""
    import asyncio

    import httpx

    from bertcli.config import ServeConfig
    from bertcli.serve.app import create_app
    from bertcli.serve.models import load_model

    cfg = ServeConfig(models=[str(model_dir)], precision="no", **options)
    model = load_model(str(model_dir), cfg)
    guarded = create_app({model.name: model}, cfg)

    async def scenario():
        transport = httpx.ASGITransport(app=guarded)
        async with (
            guarded.app.router.lifespan_context(guarded.app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            return [await client.post(route, json=body) for body in requests]

    return asyncio.run(scenario())
