"""`bertcli predict` for token classifiers, streamed in input order.

Raw text (txt lines, or a text column) gives one JSONL record of entities per input; pre-tokenized input comes
back in its own format with the predicted tags added (CoNLL: a last column; JSONL: `pred_tags`), rewritten as
the entities they spell (conlleval's reading) so the column is a valid sequence that evaluate and strict scorers
accept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bertcli.bundle import Bundle
from bertcli.config import DataOptions, PredictConfig
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.formats import detect_format
from bertcli.data.records import iter_records
from bertcli.errors import DataError, UsageError
from bertcli.inference.streaming import input_batches
from bertcli.io import Prediction
from bertcli.runtime.device import processes, use_threads
from bertcli.runtime.distributed import across_processes
from bertcli.tasks.contract import options_for
from bertcli.tasks.ner.entities import entity_records
from bertcli.tasks.ner.formats import iter_sentences, ner_format
from bertcli.tasks.ner.predictor import Tagger, text_sentence
from bertcli.tasks.ner.schemes import convert
from bertcli.tasks.ner.sentence import Sentence


def predict_entities(cfg: PredictConfig, bundle: Bundle) -> Prediction:
    if cfg.output_format not in (None, "jsonl"):
        raise UsageError("NER predictions are JSONL (CoNLL for CoNLL input)", hint="drop --output-format")
    fmt = _input_format(cfg.input, cfg.data.format)
    tagger = Tagger(bundle, **options_for(Tagger, cfg))
    use_threads(cfg.threads)
    if fmt == "conll":
        return Prediction("conll", _conll(tagger, cfg))
    return Prediction("jsonl", _records(tagger, cfg, fmt))


def _input_format(source: str | None, explicit: str | None) -> str:
    if explicit is not None and explicit.lower() in ("conll", "iob", "bio"):
        return "conll"
    if explicit is None and source not in (None, "-") and ner_format(source) == "conll":
        return "conll"
    return detect_format(source or "", explicit or (None if source not in (None, "-") else "txt"))


def _conll(tagger: Tagger, cfg: PredictConfig) -> Iterator[str]:
    launch = processes()
    for batch in input_batches(iter_sentences(cfg.input, "conll", need_tags=False), cfg.batch_size * 8, launch):
        tags = [t for t, _ in across_processes(tagger.tag_rows, [s.words for s in batch])]
        if not launch.is_main_process:
            yield ""
            continue
        tags = [convert(t, tagger.scheme) for t in tags]
        yield "".join(
            "".join("\t".join([*row, tag]) + "\n" for row, tag in zip(s.columns, t)) + "\n" for s, t in zip(batch, tags)
        )


def _records(tagger: Tagger, cfg: PredictConfig, fmt: str) -> Iterator[list[dict[str, Any]]]:
    launch = processes()
    where = cfg.input if cfg.input not in (None, "-") else "<stdin>"
    columns: Columns | None = None
    for batch in input_batches(
        iter_records(cfg.input, DataOptions(**{**cfg.data.__dict__, "format": fmt})), cfg.batch_size * 8, launch
    ):
        if columns is None and not _pretokenized(batch[0], cfg.data):
            columns = record_columns(batch[0] or {"text": ""}, cfg.data, where)
        sentences = [_sentence(record, columns, where) for record in batch]
        rows = across_processes(tagger.tag_rows, [s.words for s in sentences])
        tags, scores = [t for t, _ in rows], [sc for _, sc in rows]
        if not launch.is_main_process:
            yield []
            continue
        yield [_output(r, s, t, sc, tagger.scheme, columns, cfg) for r, s, t, sc in zip(batch, sentences, tags, scores)]


def _pretokenized(record: dict[str, Any], data: DataOptions) -> bool:
    return isinstance(record.get("tokens"), list) and data.text_column is None


def _sentence(record: dict[str, Any], columns: Columns | None, where: str) -> Sentence:
    if columns is None:
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t.strip() for t in tokens):
            raise DataError("tokens must be a list of non-empty strings", file=where)
        return Sentence(tokens, None, 0)
    return text_sentence(cell_text(record.get(columns.text)))


def _output(
    record: dict[str, Any], sentence: Sentence, tags, scores, scheme: str, columns: Columns | None, cfg: PredictConfig
) -> dict[str, Any]:
    if columns is None:
        return {**record, "pred_tags": convert(tags, scheme)}
    out: dict[str, Any] = {}
    if columns.id:
        out["id"] = record.get(columns.id)
    if cfg.include_text:
        out["text"] = sentence.text
    out["entities"] = entity_records(tags, sentence, scores)
    return out
