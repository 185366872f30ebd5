"""Atomic writes: a failed or interrupted write leaves the old file (or nothing), never a partial one."""

from __future__ import annotations

import json

import pytest

from bertcli.io import RecordWriter, atomic_write, replace_dir


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left


def test_record_writer_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "pred.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with RecordWriter(str(target)) as writer:
            writer.write([{"label": "a"}])
            raise KeyboardInterrupt
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with RecordWriter(str(target)) as writer:
        writer.write([{"label": "a", "scores": {"a": 1.0}}])
        writer.write([{"label": "b", "scores": {"b": 1.0}}])
    assert [json.loads(line)["label"] for line in target.read_text().splitlines()] == ["a", "b"]


def test_record_writer_csv_serialises_nested_values(tmp_path):
    target = tmp_path / "pred.tsv"
    with RecordWriter(str(target), "tsv") as writer:
        writer.write([{"id": 1, "label": None, "scores": {"x": 0.5}}])
    import csv

    rows = list(csv.DictReader(target.read_text().splitlines(), delimiter="\t"))
    assert rows == [{"id": "1", "label": "", "scores": '{"x": 0.5}'}]


def test_replace_dir_swaps_complete_directories(tmp_path):
    old, new = tmp_path / "model", tmp_path / "staging"
    old.mkdir()
    (old / "weights").write_text("v1")
    new.mkdir()
    (new / "weights").write_text("v2")
    replace_dir(new, old)
    assert (old / "weights").read_text() == "v2" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
