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


def test_replace_dir_syncs_every_file_before_the_rename_and_the_parent_after(tmp_path, monkeypatch):
    import os

    import bertcli.io as io_module

    staging, target = tmp_path / "staging", tmp_path / "model"
    (staging / "sub").mkdir(parents=True)
    (staging / "weights").write_text("v2")
    (staging / "sub" / "vocab").write_text("a")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "fsync", fsync)
    monkeypatch.setattr(io_module.os, "replace", replace)
    replace_dir(staging, target)
    rename = events.index(("rename", str(staging)))
    synced_before = {path for kind, path in events[:rename] if kind == "sync"}
    assert synced_before == {
        str(staging),
        str(staging / "sub"),
        str(staging / "weights"),
        str(staging / "sub" / "vocab"),
    }
    assert events[rename + 1 :] == [("sync", str(tmp_path))]
    assert (target / "sub" / "vocab").read_text() == "a"
