"""Tokenizing through `tokenizers` alone reproduces transformers' fast tokenizer call exactly (the ONNX path relies
on it), and the one batch loop returns results in input order whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest

from bertcli.inference.batching import length_sorted_batches, run_batches, token_budget_batches
from bertcli.inference.encoding import TextEncoder, pad


@pytest.fixture(scope="module")
def real_texts():
    from bertcli.corpora import rotten_tomatoes

    texts = rotten_tomatoes()[1]["text"].tolist()[:400]
    long = [" ".join(texts[i : i + 30]) for i in range(0, 120, 30)]  # hundreds of tokens: truncated
    odd = ["", "   ", "café naïve résumé", "emoji 👍🏽 and 中文", "[SEP] literal [MASK] tokens", "tab\there\x00nul"]
    return texts + long + odd


@pytest.mark.parametrize("which", ["tiny", "minilm"])
@pytest.mark.parametrize("max_length", [16, 128, 512])
def test_single_texts_and_pairs_match_transformers(tiny_model, real_texts, which, max_length):
    from transformers import AutoTokenizer

    from bertcli.hub import default_model

    directory = str(tiny_model) if which == "tiny" else default_model()
    reference = AutoTokenizer.from_pretrained(directory)
    ours = TextEncoder.load(directory, max_length)
    want = reference(
        real_texts, truncation=True, max_length=max_length, return_offsets_mapping=True, return_overflowing_tokens=False
    )
    got = ours.encode(real_texts, offsets=True)
    assert got.input_ids == want["input_ids"] and got.token_type_ids == want["token_type_ids"]
    assert [list(map(tuple, o)) for o in got.offsets] == [list(map(tuple, o)) for o in want["offset_mapping"]]
    assert got.truncated == [len(e.overflowing) > 0 for e in want.encodings] and any(got.truncated) == (
        max_length < 600
    )
    firsts, seconds = real_texts[:200], real_texts[200:400]
    pairs = reference(firsts, seconds, truncation=True, max_length=max_length)
    got = ours.encode(firsts, seconds)
    assert got.input_ids == pairs["input_ids"] and got.token_type_ids == pairs["token_type_ids"]
    assert ours.specials.pad == reference.pad_token_id and (ours.specials.cls, ours.specials.sep) == (
        reference.cls_token_id,
        reference.sep_token_id,
    )


def test_words_match_transformers_is_split_into_words(tiny_model, real_texts):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tiny_model))
    sentences = [text.split() for text in real_texts if text.split()]
    want = reference(sentences, is_split_into_words=True, add_special_tokens=False)
    got = TextEncoder.load(str(tiny_model), 128).encode_words(sentences)
    assert [ids for ids, _ in got] == want["input_ids"]
    assert [words for _, words in got] == [want.word_ids(i) for i in range(len(sentences))]


class Doubler:
    """A backend that returns each row's first token id twice: results must come back to their own input."""

    inputs = frozenset({"input_ids", "attention_mask"})

    def forward(self, features, outputs):
        return {"logits": np.stack([features["input_ids"][:, 0], features["attention_mask"].sum(1)], axis=1) * 2}


@pytest.mark.parametrize(
    "make", [lambda n: length_sorted_batches(n, 3), lambda n: token_budget_batches(n, max_tokens=12, min_equal=2)]
)
def test_one_batch_loop_restores_input_order(make):
    from bertcli.inference.encoding import Encoded

    ids = [[7 + i] + [1] * (i % 5) for i in range(17)]
    encoded = Encoded(ids, [[0] * len(x) for x in ids], [False] * 17)
    seen: list[int] = []
    rows = run_batches(Doubler(), encoded, 0, make(encoded.lengths), on_batch=seen.append)
    assert [list(r) for r in rows] == [[2 * (7 + i), 2 * (1 + i % 5)] for i in range(17)]
    assert sum(seen) == 17


def test_pad_pads_to_the_longest_of_the_batch_only():
    from bertcli.inference.encoding import Encoded

    encoded = Encoded([[5, 6, 7], [5], [5, 6, 7, 8, 9]], [[0, 0, 1], [0], [0] * 5], [False] * 3)
    features = pad(encoded, [0, 1], pad_id=3)
    assert features["input_ids"].tolist() == [[5, 6, 7], [5, 3, 3]]
    assert features["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]] and features["token_type_ids"].tolist() == [
        [0, 0, 1],
        [0, 0, 0],
    ]


def test_encoded_rows_subset_and_joined_give_back_the_same_inputs():
    """The server queues each input's own row and joins a forward's rows: nothing is lost or reordered."""
    from bertcli.inference.encoding import Encoded, joined

    encoded = Encoded([[1, 5, 2], [1, 2], [1, 7, 8, 2]], [[0, 0, 0], [0, 0], [0, 0, 1, 1]], [False, False, True])
    rows = encoded.rows()
    assert (
        [len(row) for row in rows] == [1, 1, 1] and rows[2].input_ids == [[1, 7, 8, 2]] and rows[2].truncated == [True]
    )
    assert joined(rows) == encoded
    assert joined([rows[2], rows[0]]) == encoded.subset([2, 0])
    assert encoded.subset([2, 0]).token_type_ids == [[0, 0, 1, 1], [0, 0, 0]]
    untyped = Encoded([[1, 2]], None, [False])
    assert joined([untyped, rows[0]]).token_type_ids is None and joined([]) == Encoded([], [], [], [])
