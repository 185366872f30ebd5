"""The options of the commands that run a model: evaluate, predict, embed and tokenize."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bertcli.config.common import (
    AGGREGATES,
    AGGREGATIONS,
    BACKENDS,
    BERT_VOCAB_SIZE,
    LAYER_AGGS,
    LONG_TEXT,
    POOLINGS,
    PRECISIONS,
    DataOptions,
)
from bertcli.config.fields import NON_NEGATIVE, OPEN_SHARE, POSITIVE, checked, required, validate
from bertcli.config.rerank import CANDIDATES
from bertcli.errors import UsageError

REPORT_FORMATS = ("table", "json")  # how evaluate prints its report on stdout; the first is the default


@dataclass
class EvaluateConfig:
    model_dir: str = required("MODEL_DIR")
    others: list[str] = field(default_factory=list)  # more models on the same data: their mean +- std (seeds)
    input: str = required("DATA")
    output: str | None = None
    plots: str | None = None
    errors: str | None = None
    output_format: str | None = checked(None, choices=REPORT_FORMATS)  # None: the first
    json: bool = False  # the older spelling of output_format json, kept working (recipes too)
    batch_size: int = checked(64, POSITIVE)
    precision: str = checked("auto", choices=PRECISIONS)
    backend: str = checked("auto", choices=BACKENDS)  # auto: the ONNX export when there is one
    threads: int | None = checked(None, POSITIVE)  # None: the cores this process may use
    scheme: str | None = None
    long_text: str | None = checked(None, choices=LONG_TEXT)  # None: the model's (classifiers, rerankers)
    stride: int | None = checked(None, NON_NEGATIVE)
    aggregate: str | None = checked(None, choices=AGGREGATES)
    onnx_file: str | None = None  # an export's other model file (export's int8 check); no command-line option
    retriever: str | None = None  # rerankers: the first-stage encoder (None: BM25)
    candidates: int = checked(CANDIDATES, POSITIVE)  # rerankers: first-stage candidates reranked per query
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        if self.others and (self.errors or self.plots):
            raise UsageError("--errors and --plots are for one model", hint="evaluate the models one by one for them")
        if self.json and self.output_format not in (None, "json"):
            raise UsageError(f"--json means --output-format json, not {self.output_format}")

    @property
    def report_format(self) -> str:
        """How the report is printed on stdout: --output-format (--json: json), else table."""
        return "json" if self.json else self.output_format or REPORT_FORMATS[0]

    @property
    def report_paths(self) -> tuple[str | None, str | None]:
        """(report JSON, plots directory): -o DIR/ (a directory) means DIR/report.json and the plots in DIR."""
        output, plots = self.output, self.plots
        if output and (output.endswith(("/", os.sep)) or Path(output).is_dir()):
            return str(Path(output) / "report.json"), plots or output
        return output, plots


@dataclass
class PredictConfig:
    model_dir: str = required("MODEL_DIR")
    input: str | None = None  # None or '-': stdin
    output: str | None = None  # None: stdout
    output_format: str | None = checked(None, choices=("jsonl", "csv", "tsv"))  # None: from the -o suffix, else jsonl
    top_k: int | None = checked(None, POSITIVE)
    threshold: float | None = checked(None, OPEN_SHARE)  # None: the model's
    include_text: bool = False
    batch_size: int = checked(32, POSITIVE)
    max_length: int | None = checked(None, POSITIVE)  # None: the model's
    precision: str = checked("auto", choices=PRECISIONS)
    backend: str = checked("auto", choices=BACKENDS)  # auto: the ONNX export when there is one
    threads: int | None = checked(None, POSITIVE)  # None: the cores this process may use
    aggregation: str = checked("first", choices=AGGREGATIONS)
    stride: int | None = checked(None, NON_NEGATIVE)  # None: the model's
    long_text: str | None = checked(None, choices=LONG_TEXT)  # None: the model's (classifiers, rerankers)
    aggregate: str | None = checked(None, choices=AGGREGATES)  # None: the model's
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)

    @property
    def format(self) -> str:
        """The output format: --output-format, else the -o suffix, else JSONL."""
        if self.output_format:
            return self.output_format
        suffix = Path(self.output).suffix.lower().lstrip(".") if self.output else ""
        return suffix if suffix in ("csv", "tsv") else "jsonl"


@dataclass
class RerankConfig:
    """`bertcli rerank`: one query's candidate texts (--query), or a JSONL file of {"query", "texts"} records."""

    model_dir: str = required("MODEL_DIR")
    input: str | None = None  # None or '-': stdin
    output: str | None = None  # None: stdout
    query: str | None = None
    raw_scores: bool = False  # the logits, not their sigmoid
    batch_size: int | None = checked(None, POSITIVE)  # None: batches of about BATCH_TOKENS padded tokens (by device)
    max_length: int | None = checked(None, POSITIVE)  # None: the length the model was trained with
    precision: str = checked("auto", choices=PRECISIONS)
    backend: str = checked("auto", choices=BACKENDS)
    threads: int | None = checked(None, POSITIVE)
    long_text: str | None = checked(None, choices=LONG_TEXT)  # None: the model's
    stride: int | None = checked(None, NON_NEGATIVE)  # None: the model's
    aggregate: str | None = checked(None, choices=AGGREGATES)  # None: the model's
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        if self.query is not None and not self.query.strip():
            raise UsageError("--query is empty", hint="give the text to rank the candidates for")


@dataclass
class EmbedOptions:
    """How to turn a model's hidden states into vectors, and how to batch the forward passes."""

    pooling: str = checked("mean", choices=POOLINGS)
    layers: str = "-1"
    layer_agg: str = checked("mean", choices=LAYER_AGGS)
    normalize: bool = False
    token_level: bool = False
    max_length: int | None = checked(None, POSITIVE)  # None: the model's (or its sentence-transformers max_seq_length)
    batch_size: int | None = checked(None, POSITIVE)  # None: batches of about BATCH_TOKENS padded tokens (by device)
    precision: str = checked("auto", choices=PRECISIONS)
    backend: str = checked("auto", choices=BACKENDS)
    threads: int | None = checked(None, POSITIVE)

    def validate(self) -> None:
        validate(self)
        if self.pooling == "pooler" and self.layers.strip() != "-1":
            raise UsageError(
                "--pooling pooler reads the pooler output and takes no --layers", hint="use --pooling mean, cls or max"
            )
        if self.pooling == "pooler" and self.token_level:
            raise UsageError("--token-level exports token vectors; it takes no --pooling pooler")


@dataclass
class VectorOptions:
    """Where and how the vectors are written."""

    output_format: str | None = checked(None, choices=("npy", "parquet", "jsonl"))  # None: from the -o suffix
    dtype: str = checked("float32", choices=("float32", "float16"))
    include_text: bool = False
    chunk_size: int | None = checked(None, POSITIVE)  # None: CHUNK_SIZE, or TOKEN_CHUNK_SIZE with --token-level
    resume: bool = False


@dataclass
class EmbedConfig:
    input: str | None = None  # None or '-': stdin
    output: str | None = None  # None: '-' (JSONL on stdout) when stdout is piped; a terminal needs -o
    model: str | None = None
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    vectors: VectorOptions = field(default_factory=VectorOptions)
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        self.embed.validate()
        if self.output is None:
            if sys.stdout.isatty():
                raise UsageError("missing --output", hint="-o vectors.npy, or pipe stdout for JSONL")
            self.output = "-"


@dataclass
class TokenizeConfig:
    input: str | None = None  # a text, a file, or None / '-' for stdin
    model: str | None = None
    stats: bool = False
    train_vocab: bool = False
    output_format: str | None = checked(
        None, choices=("table", "jsonl", "json")
    )  # None: table on a terminal, else jsonl
    max_length: int | None = checked(None, POSITIVE)
    output: str | None = None
    vocab_size: int = checked(BERT_VOCAB_SIZE, POSITIVE)
    lowercase: bool = True
    min_frequency: int = checked(2, POSITIVE)
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        if self.stats and self.train_vocab:
            raise UsageError("--stats and --train-vocab are separate modes; pass one")
        if self.output is not None and not self.train_vocab:
            raise UsageError(
                "-o names the --train-vocab output directory", hint="redirect stdout to save tokens or stats"
            )
        if self.train_vocab and self.output is None:
            raise UsageError("--train-vocab needs -o DIR for the tokenizer")
