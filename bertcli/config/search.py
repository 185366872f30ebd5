"""The options of `bertcli index` and `bertcli search`, and their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertcli.config.common import BACKENDS, PRECISIONS, DataOptions
from bertcli.config.fields import POSITIVE, checked, required, validate
from bertcli.errors import UsageError

# what the ANN index stores per vector: f32 (exact scores), f16 (half), i8 (a quarter, rescored from the full-precision
# copy on disk), i6 (6 bits a dimension, rescored likewise) or binary (1/32, one bit per dimension, rescored likewise).
# The graph's links take about 140 bytes a vector whatever the dtype, so i6 is the finest dtype that fits in a third
# of the float32 matrix: at 200k x 384 (bench/search.py) an i8 searcher kept 110 MB resident (0.38x), an i6 one
# 92 MB (0.31x), and rescored, both found 0.994 of the exact top 10
INDEX_DTYPES = ("f32", "f16", "i8", "i6", "binary")
RESCORED = ("i8", "i6", "binary")  # --rescore is their default: they keep a full-precision copy for it
# HNSW graph (FAISS): links per node, and the candidate lists while adding and searching. At 200k docstring
# paragraphs (bench/search.py), i8 rescored from 40 candidates (20 find as many, below) found 0.987 of the exact top
# 10 at efSearch 128, 0.993 at 192 and 0.995 at 256 (0.62 / 0.80 / 1.10 ms a query, the exact scan 15.8 ms)
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 192
# --rescore reads this many candidates per wanted hit from the index, then orders them by full-precision cosine
# (binary codes rank coarsely, so they fetch more). At 200k, i8 and i6 found as many of the exact top 10 from 20
# candidates as from 40 (the graph's search decides what is missed): 0.71 / 0.70 ms a query instead of 0.98 / 0.92,
# measured back to back
RESCORE_FACTOR = {"f32": 1, "f16": 2, "i8": 2, "i6": 2, "binary": 20}
RRF_K = 60  # reciprocal rank fusion: a hit at rank r adds 1 / (RRF_K + r) (Cormack et al.)
HYBRID_DEPTH = 100  # --hybrid fuses this many hits of each retriever (at least k)
INDEX_CHUNK = 8192  # vectors read, normalised, written and added at a time: memory stays bounded while building
SEARCH_K = 10


@dataclass
class IndexConfig:
    """`bertcli index`: vectors from `embed` (or texts embedded here) into an approximate nearest-neighbour index."""

    input: str | None = required("VECTORS_OR_DATA")
    output: str | None = required("--output")
    model: str | None = None  # the model that made (or makes) the vectors; None: the default model
    dtype: str = checked("f32", choices=INDEX_DTYPES)
    dim: int | None = checked(None, POSITIVE)  # keep the leading dimensions (a Matryoshka model), renormalised
    add: bool = False  # add to the existing index at --output instead of building a new one
    texts: bool = True  # keep the texts (search prints them, --hybrid needs them) when the input has them
    chunk_size: int = checked(INDEX_CHUNK, POSITIVE)
    batch_size: int | None = checked(None, POSITIVE)  # embedding data: None batches by padded tokens
    precision: str = checked("auto", choices=PRECISIONS)
    backend: str = checked("auto", choices=BACKENDS)
    threads: int | None = checked(None, POSITIVE)
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)


@dataclass
class SearchConfig:
    """`bertcli search`: the top-k hits of each query, encoded with the index's own model."""

    index_dir: str = required("INDEX_DIR")
    query: str | None = None  # one query; else queries from the input file or stdin, one per line or record
    input: str | None = None
    output: str | None = None  # None: stdout
    k: int = checked(SEARCH_K, POSITIVE)
    rescore: bool | None = None  # None: for RESCORED indexes
    exact: bool = False  # a brute-force scan of the full-precision vectors: the reference
    hybrid: bool = False  # fuse BM25 over the stored texts with the dense hits (reciprocal rank fusion)
    texts: bool = True  # print each hit's stored text
    model: str | None = None  # only to check: a model other than the index's is refused
    batch_size: int | None = checked(None, POSITIVE)
    precision: str = checked("auto", choices=PRECISIONS)
    backend: str = checked("auto", choices=BACKENDS)
    threads: int | None = checked(None, POSITIVE)
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        if self.query is not None and not self.query.strip():
            raise UsageError("the query is empty", hint='bertcli search INDEX_DIR "what to look for"')
        if self.query is not None and self.input is not None:
            raise UsageError("give a query or an input file of queries, not both")
        if self.exact and self.hybrid:
            raise UsageError("--exact is the dense reference; it takes no --hybrid")
