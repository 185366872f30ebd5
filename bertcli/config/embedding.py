"""The options of contrastive embedding training (finetune on query/positive pairs), hard-negative mining (embedding
models and rerankers), and their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from bertcli.config.fields import NON_NEGATIVE, POSITIVE, checked, validate
from bertcli.errors import UsageError

# finetune on pairs when the user sets nothing: one pass (a second one overfits small pair sets: the loss has
# nothing left to push once every in-batch negative is far), a rate above sentence-transformers' 2e-5 since the
# whole command stays at one epoch, and batches of 64 (more in-batch negatives per step). Measured with
# bench/embed_train.py on the docstrings corpus.
EMBEDDING_DEFAULTS = {"lr": 5e-5, "batch_size": 64, "epochs": 1.0}
# the similarity scale of the ranking loss (sentence-transformers' MultipleNegativesRankingLoss: 20, fixed)
LOSS_SCALE = 20.0
# training reads at most this many tokens of a text (a document's start carries its topic; 4x fewer tokens than
# all-MiniLM-L6-v2's 256 cut the step time to about a third); evaluation and `embed` read the model's full length
TRAIN_LENGTH_CAP = 128
# hard-negative mining: skip the candidates ranked this high by the starting model, and those scoring within this
# cosine margin of the positive (both are likely unlabelled positives: near-duplicate texts, paraphrases)
NEGATIVE_SKIP, NEGATIVE_MARGIN = 3, 0.05
# a Matryoshka model's rotation: its principal axes refined on the Matryoshka loss (frozen vectors, orthogonal) for
# this many passes at this rate. On the docstrings set, NDCG@10 at 128 of 384 dimensions over the axes alone: +0.4 to
# +0.7 points after 4-10 passes for one trained model, -0.1 to +0.1 for another, and more passes overfit (a dim² map
# fitted to a few thousand pairs), so validation chooses between them
REFINE_EPOCHS, REFINE_LR = 5, 1e-3
EMBEDDING_NEGATIVES = 0  # --hard-negatives for an embedding model: in-batch negatives alone


@dataclass
class EmbeddingOptions:
    """Contrastive training of an encoder on (query, positive[, negatives]) rows."""

    loss_scale: float = checked(LOSS_SCALE, POSITIVE)
    symmetric: bool = False  # also rank the queries for each positive
    mini_batch_size: int | None = checked(None, POSITIVE)  # the cached (gradient-cache) loss's forward chunk
    matryoshka_dims: str | None = None  # "384,256,128,64": prefixes trained to work alone

    def validate(self) -> None:
        validate(self)
        self.dims()

    def dims(self) -> list[int]:
        """--matryoshka-dims as numbers, largest first ([] when not given)."""
        if not self.matryoshka_dims:
            return []
        try:
            dims = [int(part) for part in str(self.matryoshka_dims).split(",")]
        except ValueError:
            dims = []
        if not dims or min(dims) <= 0 or len(set(dims)) != len(dims):
            raise UsageError(
                f"--matryoshka-dims takes distinct positive sizes such as 384,256,128,64, got {self.matryoshka_dims!r}"
            )
        return sorted(dims, reverse=True)


@dataclass
class MiningOptions:
    """Hard negatives mined per query with a first-stage encoder, for embedding models and rerankers."""

    hard_negatives: int | None = checked(None, NON_NEGATIVE)  # None: the task's (embedding 0, reranker 3)
    negative_skip: int = checked(NEGATIVE_SKIP, NON_NEGATIVE)
    negative_margin: float = checked(NEGATIVE_MARGIN, NON_NEGATIVE)
