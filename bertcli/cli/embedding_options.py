"""finetune's options for embedding models (contrastive training on query/positive pairs) and rerankers, and the
first-stage options evaluate shares with them, declared once; `tune` takes them with the rest of finetune's."""

from __future__ import annotations

from typing import Annotated

import typer

from bertcli.cli.options import default
from bertcli.config.embedding import EMBEDDING_NEGATIVES, EmbeddingOptions, MiningOptions
from bertcli.config.rerank import CANDIDATES, RERANK_NEGATIVES, RerankOptions

EMBEDDING = "Embedding models and rerankers (query/positive pairs)"

LossScaleOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Scale of the cosine similarities in the ranking loss (in-batch negatives). {default(EmbeddingOptions.loss_scale)}",
        rich_help_panel=EMBEDDING,
    ),
]
SymmetricOpt = Annotated[
    bool | None,
    typer.Option(
        "--symmetric",
        help="Also rank each batch's queries for every positive (the loss averaged over both directions).",
        rich_help_panel=EMBEDDING,
        show_default=False,
    ),
]
MiniBatchSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Embed the batch in chunks of this many rows and cache the gradients (gradient cache): a large "
        "--batch-size, so more in-batch negatives, in the memory of a small one. Plain --grad-accum does NOT add "
        "negatives: each accumulated batch only sees its own. [default: the whole batch at once]",
        rich_help_panel=EMBEDDING,
    ),
]
MatryoshkaDimsOpt = Annotated[
    str | None,
    typer.Option(
        help="Train these leading dimensions to work alone, e.g. 384,256,128,64 (serve answers `dimensions`).",
        rich_help_panel=EMBEDDING,
    ),
]
HardNegativesOpt = Annotated[
    int | None,
    typer.Option(
        help="Mine this many negatives per query before training: with the starting model (embedding) or the "
        f"--retriever (rerank). [default: embedding {EMBEDDING_NEGATIVES}, rerank {RERANK_NEGATIVES}]",
        rich_help_panel=EMBEDDING,
    ),
]
NegativeSkipOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Mining skips the candidates ranked this high (likely unlabelled positives). {default(MiningOptions.negative_skip)}",
        rich_help_panel=EMBEDDING,
    ),
]
NegativeMarginOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Mining skips candidates scoring within this cosine of the positive. {default(MiningOptions.negative_margin)}",
        rich_help_panel=EMBEDDING,
    ),
]
RerankLossOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Rerankers: listwise (softmax over each query's positive and negatives) or bce (each pair alone). "
        f"{default(RerankOptions.rerank_loss)}",
        rich_help_panel=EMBEDDING,
    ),
]
RetrieverOpt = Annotated[
    str | None,
    typer.Option(
        help="Rerankers: the first-stage encoder (a model directory) that mines training negatives, or that evaluate "
        "retrieves the candidates with. [default: finetune: the base model; evaluate: BM25]",
        rich_help_panel=EMBEDDING,
    ),
]
CandidatesOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Rerankers: how many first-stage candidates per query are reranked. [default: {CANDIDATES}]",
        rich_help_panel=EMBEDDING,
    ),
]
