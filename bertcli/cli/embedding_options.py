"""finetune's options for embedding models (contrastive training on query/positive pairs), declared once; `tune`
takes them with the rest of finetune's."""

from __future__ import annotations

from typing import Annotated

import typer

from bertcli.cli.options import default
from bertcli.config.embedding import EmbeddingOptions

EMBEDDING = "Embedding models (query/positive pairs)"

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
        help=f"Mine this many negatives per query with the starting model before training. {default(EmbeddingOptions.hard_negatives)}",
        rich_help_panel=EMBEDDING,
    ),
]
NegativeSkipOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Mining skips the candidates ranked this high (likely unlabelled positives). {default(EmbeddingOptions.negative_skip)}",
        rich_help_panel=EMBEDDING,
    ),
]
NegativeMarginOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Mining skips candidates scoring within this cosine of the positive. {default(EmbeddingOptions.negative_margin)}",
        rich_help_panel=EMBEDDING,
    ),
]
