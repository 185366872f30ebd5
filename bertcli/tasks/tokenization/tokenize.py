"""The tokenize core: what a tokenizer makes of each input, token-length statistics of a dataset, and vocabulary training.

The statistics answer the question asked before fine-tuning or embedding: which --max-length keeps
nearly every example whole without padding everything to 512.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.config import DataOptions, TokenizeConfig
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.formats import FORMATS
from bertcli.data.records import chunked, iter_records
from bertcli.errors import DataError, UsageError
from bertcli.inference.encoding import percentiles, suggest_max_length

COMMON_LENGTHS = (128, 256, 512)
CHUNK = 2000


def _tokenizer(model: str | None) -> tuple[Any, int]:
    """The tokenizer of --model and the longest input its model accepts."""
    from bertcli.bundle import model_max_length
    from bertcli.hub import load_tokenizer, resolve_model

    given = Path(model).expanduser() if model else None
    # a tokenizer directory (e.g. from --train-vocab) is enough here; it has no model config.json
    path = str(given) if given is not None and (given / "tokenizer_config.json").is_file() else resolve_model(model)
    return load_tokenizer(path), model_max_length(path)


def _records(source: str | None, data: DataOptions) -> tuple[Iterator[dict[str, Any]], str]:
    """Records of a file or stdin; a SOURCE that is neither is tokenized as literal text."""
    if source in (None, "-"):
        return iter_records(source, data), "<stdin>"
    path = Path(source)
    if path.is_file():
        return iter_records(source, data), source
    if path.suffix.lower() in FORMATS and " " not in source:
        raise DataError(
            "file not found", file=source, hint="to tokenize this string itself, add a space or pipe it through stdin"
        )
    return iter([{"text": source}]), "<argument>"


def _texts(chunk: list[dict[str, Any]], columns: Columns) -> tuple[list[str], list[str] | None]:
    texts = [cell_text(r.get(columns.text)) for r in chunk]
    pairs = [cell_text(r.get(columns.pair)) for r in chunk] if columns.pair else None
    return texts, pairs


def inspect_tokens(cfg: TokenizeConfig) -> Iterator[dict[str, Any]]:
    """One record per input: text, tokens, ids, character offsets (into the text) and word ids, as the model sees them."""
    tokenizer, _ = _tokenizer(cfg.model)
    records, name = _records(cfg.input, cfg.data)
    data, max_length = cfg.data, cfg.max_length
    columns = None
    row = 0
    for chunk in chunked(records, CHUNK):
        columns = columns or record_columns(chunk[0], data, name)
        texts, pairs = _texts(chunk, columns)
        encoded = tokenizer(
            texts,
            pairs,
            truncation=max_length is not None,
            max_length=max_length,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=pairs is not None,
        )
        for i, record in enumerate(chunk):
            row += 1
            out: dict[str, Any] = {}
            if columns.id is not None:
                out["id"] = record.get(columns.id)
            out["text"] = texts[i]
            if pairs is not None:
                out["text_pair"] = pairs[i]
            ids = encoded["input_ids"][i]
            out["tokens"] = tokenizer.convert_ids_to_tokens(ids)
            out["ids"] = ids
            out["offsets"] = [list(o) for o in encoded["offset_mapping"][i]]
            out["word_ids"] = encoded.word_ids(i)
            if pairs is not None:
                out["sequence_ids"] = encoded.sequence_ids(i)
            yield out


def length_stats(cfg: TokenizeConfig) -> dict[str, Any]:
    """Token-length distribution, truncation shares and [UNK] rate of a dataset (streamed; 4 bytes per example held)."""
    from bertcli.hub import DEFAULT_HUB_ID

    tokenizer, limit = _tokenizer(cfg.model)
    records, name = _records(cfg.input, cfg.data)
    if name == "<argument>":
        raise DataError("file not found", file=cfg.input, hint="--stats reads a data file or stdin")
    data, max_length = cfg.data, cfg.max_length
    unk_id = tokenizer.unk_token_id
    lengths, unk_counts = array("i"), array("i")
    columns = None
    for chunk in chunked(records, CHUNK):
        columns = columns or record_columns(chunk[0], data, name)
        texts, pairs = _texts(chunk, columns)
        encoded = tokenizer(texts, pairs, truncation=False, return_attention_mask=False, return_token_type_ids=False)
        for ids in encoded["input_ids"]:
            lengths.append(len(ids))
            unk_counts.append(ids.count(unk_id) if unk_id is not None else 0)
    if not lengths:
        raise DataError("no input records", file=name)
    n = np.frombuffer(lengths, dtype=np.int32)
    unk = np.frombuffer(unk_counts, dtype=np.int32)
    # nearest-rank percentiles: p90 = the length that 90% of examples do not exceed
    spread = percentiles(n)
    cutoffs = sorted({*COMMON_LENGTHS, *([max_length] if max_length else [])})
    suggested = suggest_max_length(spread["p99"], limit)
    real_tokens = int(n.sum()) - tokenizer.num_special_tokens_to_add(pair=columns.pair is not None) * len(n)
    return {
        "source": name,
        "model": cfg.model or DEFAULT_HUB_ID,
        "text_column": columns.text,
        "count": len(n),
        "tokens": int(n.sum()),
        "length": {"mean": round(float(n.mean()), 2), "min": int(n.min()), **spread, "max": int(n.max())},
        "truncated": {str(c): round(float((n > c).mean()), 6) for c in cutoffs},
        "unk_rate": round(float(unk.sum()) / real_tokens, 6) if real_tokens else 0.0,
        "examples_with_unk": round(float((unk > 0).mean()), 6),
        "model_max_length": limit,
        "suggested_max_length": suggested,
        "truncated_at_suggested": round(float((n > suggested).mean()), 6),
    }


def train_vocab(cfg: TokenizeConfig) -> dict[str, Any]:
    """Train a BERT WordPiece vocabulary on a corpus (streamed) into a directory AutoTokenizer loads."""
    from bertcli.vocab import SPECIAL_TOKENS, train_wordpiece

    if cfg.vocab_size < len(SPECIAL_TOKENS) + 1:
        raise UsageError(f"--vocab-size must be more than {len(SPECIAL_TOKENS)} (the special tokens)")
    target = Path(cfg.output)
    if target.exists():
        if not target.is_dir():
            raise UsageError("-o names a file; a tokenizer is saved as a directory", file=cfg.output)
        if not cfg.overwrite:
            raise UsageError("output directory exists", file=cfg.output, hint="pass --overwrite to replace it")
        if any(target.iterdir()) and not (target / "tokenizer_config.json").is_file():
            raise UsageError(
                "refusing to replace a directory that holds no tokenizer",
                file=cfg.output,
                hint="choose a new -o directory",
            )
    records, name = _records(cfg.input, cfg.data)
    if name == "<argument>":
        raise DataError("file not found", file=cfg.input, hint="--train-vocab reads a corpus file or stdin")
    counted = {"texts": 0}

    def texts() -> Iterator[str]:
        columns = None
        for record in records:
            columns = columns or record_columns(record, cfg.data, name)
            text = record.get(columns.text)
            if text is not None and str(text).strip():
                counted["texts"] += 1
                yield str(text)

    corpus = texts()
    first = next(corpus, None)
    if first is None:
        raise DataError("no text to train on", file=name)
    tokenizer = train_wordpiece(
        itertools.chain([first], corpus),
        target,
        cfg.vocab_size,
        cfg.lowercase,
        cfg.min_frequency,
        cfg.max_length or 512,
    )
    return {"output": str(target), "texts": counted["texts"], "vocab_size": len(tokenizer), "lowercase": cfg.lowercase}
