"""The shared data layer, tested directly: formats, column detection, labels, validation errors."""

from __future__ import annotations

import json

import pytest

from bertcli.config import DataOptions
from bertcli.data.columns import record_columns
from bertcli.data.labels import LabelSpec, encode_labels, infer_labels, split_validation
from bertcli.data.records import iter_records
from bertcli.data.tables import load_table
from bertcli.errors import DataError, UsageError

ROWS = [
    {"review": "great film", "category": "pos"},
    {"review": "dull plot", "category": "neg"},
    {"review": "fun", "category": "pos"},
]


def _write(tmp_path, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        path.write_text("review" + sep + "category\n" + "".join(f"{r['review']}{sep}{r['category']}\n" for r in ROWS))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "parquet":
        import pandas as pd

        pd.DataFrame(ROWS).to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_loads_with_detected_columns(tmp_path, fmt):
    table = load_table(str(_write(tmp_path, fmt)))
    columns = table.columns(DataOptions(), need_label=True)
    assert (columns.text, columns.label) == ("review", "category")
    assert table.dataset["review"] == [r["review"] for r in ROWS]
    spec = infer_labels(table, "category", DataOptions())
    assert (spec.task, spec.names) == ("single_label", ["neg", "pos"])
    assert encode_labels(table, "category", spec, DataOptions()) == [1, 0, 1]


def test_txt_is_one_example_per_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("first line\nsecond line\n")
    table = load_table(str(path))
    assert table.dataset["text"] == ["first line", "second line"]


def test_format_flag_overrides_suffix(tmp_path):
    path = tmp_path / "data.dat"
    path.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="format"):
        load_table(str(path))
    assert load_table(str(path), DataOptions(format="csv")).dataset["label"] == ["b"]
    with pytest.raises(UsageError, match="unknown --format"):
        load_table(str(path), DataOptions(format="xml"))


def test_missing_column_lists_the_columns(tmp_path):
    table = load_table(str(_write(tmp_path, "csv")))
    with pytest.raises(DataError) as err:
        table.columns(DataOptions(text_column="body"), need_label=True)
    assert "column 'body' (from --text-column) not found" in str(err.value)
    assert "columns are: review, category" in str(err.value)


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        load_table(str(empty))
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_table(str(tmp_path / "nope.csv"))


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ngood,pos\ncaf\xe9 au lait,neg\n")
    with pytest.raises(DataError) as err:
        load_table(str(path))
    assert str(err.value).startswith(f"{path}:3: bytes are not valid UTF-8")
    assert "iconv" in str(err.value)


def test_empty_text_names_line_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\nfine,pos\n"  ",neg\n')
    table = load_table(str(path))
    with pytest.raises(DataError) as err:
        table.texts(table.columns(DataOptions(), need_label=True))
    assert str(err.value).startswith(f"{path}:3, column 'text': empty text")


def test_missing_label_names_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n')
    table = load_table(str(path))
    with pytest.raises(DataError) as err:
        infer_labels(table, "label", DataOptions())
    assert str(err.value).startswith(f"{path}:2, column 'label': missing label")


def test_unknown_labels_are_counted_and_named(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("text,label\na,pos\nb,neutral\nc,neutral\nd,mixed\n")
    table = load_table(str(path))
    with pytest.raises(DataError) as err:
        encode_labels(table, "label", LabelSpec("single_label", ["neg", "pos"]), DataOptions())
    message = str(err.value)
    assert "3 label(s) the model does not know: 'neutral' (2), 'mixed' (1)" in message
    assert "the model knows: neg, pos" in message
    assert message.startswith(f"{path}:3")


def test_multi_label_from_lists_and_separator(tmp_path):
    lists = tmp_path / "l.jsonl"
    lists.write_text('{"text": "a", "labels": ["x", "y"]}\n{"text": "b", "labels": ["y"]}\n')
    table = load_table(str(lists))
    spec = infer_labels(table, "labels", DataOptions())
    assert (spec.task, spec.names) == ("multi_label", ["x", "y"])
    assert encode_labels(table, "labels", spec, DataOptions()) == [[1.0, 1.0], [0.0, 1.0]]

    sep = tmp_path / "s.csv"
    sep.write_text('text,labels\na,"x|z"\nb,y\n')
    table = load_table(str(sep))
    options = DataOptions(label_sep="|")
    spec = infer_labels(table, "labels", options)
    assert (spec.task, spec.names) == ("multi_label", ["x", "y", "z"])
    assert encode_labels(table, "labels", spec, options) == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_float_labels_mean_regression_and_ints_sort_numerically(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,score\na,0.5\nb,3.25\n")
    table = load_table(str(path))
    assert infer_labels(table, "score", DataOptions()).task == "regression"
    ints = tmp_path / "i.csv"
    ints.write_text("text,label\na,10\nb,2\nc,1\n")
    table = load_table(str(ints))
    assert infer_labels(table, "label", DataOptions()).names == ["1", "2", "10"]


def test_sentence_pairs_are_detected(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("sentence1,sentence2,label\na b,c d,1\n")
    columns = load_table(str(path)).columns(DataOptions(), need_label=True)
    assert (columns.text, columns.pair) == ("sentence1", "sentence2")


def test_validation_split_is_stratified_and_seeded():
    labels = [0] * 80 + [1] * 20
    train, val = split_validation(labels, 0.1, seed=3, stratify=True)
    assert len(val) == 10 and sorted(train + val) == list(range(100))
    assert sum(labels[i] for i in val) == 2  # class balance kept
    assert split_validation(labels, 0.1, seed=3, stratify=True) == (train, val)


def test_iter_records_streams_every_format(tmp_path):
    for fmt in ("csv", "tsv", "jsonl"):
        records = list(iter_records(str(_write(tmp_path, fmt)), DataOptions()))
        assert [r["review"] for r in records] == [r["review"] for r in ROWS]
    txt = tmp_path / "t.txt"
    txt.write_text("one\n\nthree\n")
    assert [r["text"] for r in iter_records(str(txt), DataOptions())] == ["one", "", "three"]


def test_iter_records_reports_bad_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        list(iter_records(str(path), DataOptions()))


def test_a_header_without_rows_says_so(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError) as err:
        load_table(str(path))
    assert str(err.value) == f"{path}: the file has a header line but no rows (add rows below the header)"


def test_a_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n{"text": "c", "label": "y"}\n')
    with pytest.raises(DataError) as err:
        load_table(str(path))
    assert str(err.value).startswith(f"{path}:2: invalid JSON: Expecting value")


def test_a_device_is_not_a_data_file(tmp_path):
    with pytest.raises(DataError) as err:
        load_table("/dev/null", DataOptions(format="csv"))
    assert str(err.value).startswith("/dev/null: is not a regular file")


@pytest.mark.parametrize(
    "first, options, saved, expected",
    [
        ({"review": "x", "category": "pos"}, DataOptions(), None, ("review", None, "category")),
        ({"body": "x", "stars": "5"}, DataOptions(), None, ("body", None, "stars")),
        ({"notes": "x", "label": "pos"}, DataOptions(), None, ("notes", None, "label")),  # the one other text column
        ({"premise": "a", "hypothesis": "b", "label": "e"}, DataOptions(), None, ("premise", "hypothesis", "label")),
        (
            {"premise": "a", "hypothesis": "b", "label": "e"},
            DataOptions(),
            {"text": "premise", "pair": None},
            ("premise", None, "label"),
        ),
        ({"q": "a", "doc": "b", "y": "1"}, DataOptions(), {"text": "q", "pair": "doc"}, ("q", "doc", "y")),
        ({"a": "x", "b": "y", "y": "1"}, DataOptions(text_column="b"), None, ("b", None, "y")),
    ],
)
def test_one_column_resolver_for_streams_and_tables(tmp_path, first, options, saved, expected):
    streamed = record_columns(first, options, "s.jsonl", need_label=True, saved=saved)
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(first) + "\n")
    tabled = load_table(str(path)).columns(options, need_label=True, saved=saved)
    assert (streamed.text, streamed.pair, streamed.label) == expected == (tabled.text, tabled.pair, tabled.label)


@pytest.mark.parametrize(
    "first, options, message",
    [
        (
            {"a": "x", "b": "y", "label": "1"},
            DataOptions(),
            "s.jsonl: cannot tell which column holds the text (columns are: a, b, label; pass --text-column)",
        ),
        (
            {"text": "x", "y": "1"},
            DataOptions(id_column="id"),
            "s.jsonl: column 'id' (from --id-column) not found (columns are: text, y)",
        ),
        ({"text": "x"}, DataOptions(), "s.jsonl: no label column found (columns are: text; pass --label-column)"),
        (
            {"text": "x"},
            DataOptions(label_column="y"),
            "s.jsonl: column 'y' (from --label-column) not found (columns are: text)",
        ),
    ],
)
def test_column_errors_have_one_wording(first, options, message):
    with pytest.raises(DataError) as err:
        record_columns(first, options, "s.jsonl", need_label=True)
    assert str(err.value) == message
