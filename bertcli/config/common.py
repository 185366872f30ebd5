"""Choices and sizes several commands share, and the one section every command reads data with."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("single_label", "multi_label", "regression", "ner", "embedding", "rerank")
PRECISIONS = ("auto", "no", "bf16", "fp16")
BACKENDS = ("auto", "torch", "onnx")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")
POOLINGS = ("mean", "cls", "max", "pooler")
LAYER_AGGS = ("mean", "concat")
AGGREGATIONS = ("first", "average", "max")  # how a word's sub-tokens decide its tag (NER)
LEXICAL = (
    "auto",
    "off",
    "only",
)  # classifiers: combine with the lexical baseline when it helps, never, or use it alone
LONG_TEXT = ("truncate", "window")  # what classifiers and rerankers do with inputs past --max-length
AGGREGATES = ("mean", "max")  # how a document's window logits become its own
# per task kind, when not given: a class is the evidence of the whole document; relevance is that of its best passage
# (MaxP: a document is as relevant as its most relevant window, whatever else it holds)
AGGREGATE_DEFAULTS = {"classifier": "mean", "reranker": "max"}
BERT_VOCAB_SIZE = 30522
# Padded tokens per inference batch when no batch size is given, by where the model runs (batches of short inputs
# hold more inputs). On CPU a batch's activations should stay in cache: 1024 measured faster than 4096 in every case
# tried (AMD EPYC, AVX512, 2 cores): ONNX int8 embedding +22% on Rotten Tomatoes snippets and +5% on docstrings, ONNX
# fp32 +5-9%, torch bf16 +2-6%; reranking 100 pairs of 128 tokens in 650 ms instead of 760 (int8). An accelerator
# wants large matrix products. Torch on a CPU runs unpadded (inference/unpadded.py) and counts real tokens: there 2048
# ran +20% (Rotten Tomatoes snippets) and +15% (long-tail statements) over padded 1024-token batches, and 1024 or
# 4096 real tokens less (all-MiniLM-L6-v2, bf16, Sapphire Rapids, 2 cores).
BATCH_TOKENS = {"cpu": 1024, "cpu-unpadded": 2048, "accelerator": 4096}
CHUNK_SIZE = 10_000  # inputs embed reads, sorts and writes at a time
TOKEN_CHUNK_SIZE = 1000  # the same with --token-level (every token's vector is kept)


@dataclass
class DataOptions:
    """How to read a table: format and which columns hold text, pair text, labels and ids."""

    format: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_sep: str | None = None
    id_column: str | None = None
