"""Evaluating a saved token classifier: entity-level scores on labelled CoNLL/JSONL data, and the errors file."""

from __future__ import annotations

import logging
from typing import Any

from bertcli.bundle import Bundle
from bertcli.config import EvaluateConfig
from bertcli.runtime.device import use_threads
from bertcli.runtime.distributed import across_processes
from bertcli.tasks.contract import options_for
from bertcli.tasks.ner.entities import entity_records, entity_report, sentence_text
from bertcli.tasks.ner.formats import format_name, read_corpus
from bertcli.tasks.ner.predictor import Tagger
from bertcli.tasks.ner.schemes import entities, in_scheme
from bertcli.tasks.ner.sentence import Sentence

log = logging.getLogger("bertcli")


def evaluate_tagger(cfg: EvaluateConfig, bundle: Bundle) -> dict[str, Any]:
    """Under a launch the sentences are dealt out among the processes and each is tagged once."""
    tagger = Tagger(bundle, **options_for(Tagger, cfg))
    use_threads(cfg.threads)
    corpus = read_corpus(cfg.input, format_name(cfg.data.format), cfg.scheme)
    gold = in_scheme(corpus.sentences, corpus.scheme, tagger.scheme)
    known = {label[2:] for label in tagger.labels if label != "O"}
    unknown = sorted({label for tags in gold for label, _, _ in entities(tags)} - known)
    if unknown:
        log.warning("entity types the model does not know (they count as missed): %s", ", ".join(unknown))
    rows = across_processes(tagger.tag_rows, [s.words for s in corpus.sentences])
    predicted, scores = [t for t, _ in rows], [sc for _, sc in rows]
    report = entity_report(gold, predicted, tagger.scheme)
    report.update(
        {
            "task": "ner",
            "unit": "sentences",
            "model": str(cfg.model_dir),
            "data": cfg.input,
            "words": sum(len(t) for t in gold),
            "scheme": tagger.scheme,
            "data_scheme": corpus.scheme,
        }
    )
    if cfg.errors:
        _write_errors(cfg.errors, corpus.sentences, gold, predicted, scores)
        report["errors_file"] = cfg.errors
    return report


def _write_errors(path: str, sentences: list[Sentence], gold, predicted, scores) -> None:
    """Sentences whose predicted entities differ from the gold ones, both as spans of the sentence text."""
    from bertcli.io import atomic_write, dumps

    with atomic_write(path) as handle:
        for sentence, g, p, s in zip(sentences, gold, predicted, scores):
            if entities(g) == entities(p):
                continue
            text, _ = sentence_text(sentence)
            record = {
                "line": sentence.line,
                "text": text,
                "gold": entity_records(g, sentence),
                "predicted": entity_records(p, sentence, s),
            }
            handle.write(dumps(record) + "\n")
