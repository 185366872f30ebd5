"""Fine-tuning an embedding model on (query, positive[, negatives]) pairs for the shared finetune skeleton: in-batch
negatives, batches without duplicate texts, optional mined hard negatives, Matryoshka prefixes and the cached loss;
validated by retrieving each held-out query among all held-out positives. The result is a bundle and a
sentence-transformers model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.config import TASK_DEFAULTS, DataOptions, EmbedOptions, FinetuneConfig
from bertcli.config.embedding import EMBEDDING_NEGATIVES, TRAIN_LENGTH_CAP
from bertcli.data.retrieval import PairColumns, pair_texts, pairs_table
from bertcli.errors import DataError, UsageError
from bertcli.inference.encoding import TextEncoder
from bertcli.inference.scores import unit_rows
from bertcli.training.batches import NoDuplicateBatches
from bertcli.training.finetune import FinetuneResult, Finished, Prepared, held_out, train_task

log = logging.getLogger("bertcli")
ROTATION_SAMPLE = 20_000  # training pairs the Matryoshka rotation is fitted on, at most
CLAIMED_POSITIVES, CLAIMED_QUERIES = ("positive", "pos"), ("query", "anchor", "question")


def is_pairs_table(names: Sequence[str]) -> bool:
    """A table finetune trains an embedding model on without --task: a query (or anchor) and a positive column."""
    lowered = {name.lower() for name in names}
    return bool(lowered & set(CLAIMED_POSITIVES)) and bool(lowered & set(CLAIMED_QUERIES))


@dataclass
class PairData:
    columns: PairColumns
    rows: int
    train: tuple[list[str], list[str], list[list[str]]]  # queries, positives, each row's given negatives
    validation: tuple[list[str], list[str]]


def read_pairs_table(path: str, options: DataOptions) -> tuple[PairColumns, list[str], list[str], list[list[str]]]:
    table, columns = pairs_table(path, options)
    if columns is None:
        raise DataError(
            "no query and positive columns",
            file=path,
            hint=f"columns are: {', '.join(table.dataset.column_names)}; name them query (or anchor) and positive, "
            "or pass --text-column and --text-pair-column",
        )
    queries, positives, negatives = pair_texts(table, columns)
    return columns, queries, positives, [list(row) for row in zip(*negatives)] if negatives else [[]] * len(queries)


class EmbeddingTraining:
    defaults = TASK_DEFAULTS["embedding"]

    def read(self, cfg: FinetuneConfig) -> PairData:
        columns, queries, positives, negatives = read_pairs_table(cfg.train, cfg.data)
        log.info("%s: %d rows, columns %s", cfg.train, len(queries), columns.describe())
        train, val = held_out(cfg, len(queries))
        validation = ([queries[i] for i in val], [positives[i] for i in val])
        if cfg.validation:
            _, val_queries, val_positives, _ = read_pairs_table(cfg.validation, cfg.data)
            validation = (val_queries, val_positives)
        picked = ([queries[i] for i in train], [positives[i] for i in train], [negatives[i] for i in train])
        return PairData(columns, len(queries), picked, validation)

    def kind(self, data: PairData) -> str:
        return "embedding"

    def load_model(self, path: str, data: PairData) -> Any:
        from transformers import AutoModel

        from bertcli.hub import quiet_transformers

        quiet_transformers()
        model = AutoModel.from_pretrained(path)
        pooler = getattr(model, "pooler", None)
        if pooler is not None:  # pooling the token vectors never reaches it; under DDP it would wait for its gradients
            pooler.requires_grad_(False)
        return model

    def prepare(self, cfg: FinetuneConfig, data: PairData, tokenizer: Any, model: Any, accelerator: Any) -> Prepared:
        from bertcli.tasks.embedding.contrastive import cached_loss, collate_pairs, encoder, plain_loss, ranking_loss
        from bertcli.tasks.embedding.embedder import default_max_length, sentence_transformers_pooling

        opts, emb = cfg.training, cfg.embedding
        path = model.name_or_path
        pooling = sentence_transformers_pooling(path).get("pooling", "mean")
        inference_length = default_max_length(path)
        if opts.max_length is not None and opts.max_length > inference_length:
            raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {inference_length}")
        max_length = opts.max_length or min(TRAIN_LENGTH_CAP, inference_length)
        dims = emb.dims()
        hidden = model.config.hidden_size
        if dims and dims[0] > hidden:
            raise UsageError(f"--matryoshka-dims {dims[0]} exceeds the model's {hidden} dimensions")
        queries, positives, negatives = data.train
        negatives, mined = _negatives(cfg, path, pooling, max_length, queries, positives, negatives)
        encode = TextEncoder.of(tokenizer, max_length).encode
        texts = [(q, p, *n) for q, p, n in zip(queries, positives, negatives)]
        examples = _examples(encode, texts)
        objective = encoder(pooling)
        loss = ranking_loss(emb.loss_scale, emb.symmetric, dims)
        cached = emb.mini_batch_size is not None and emb.mini_batch_size < opts.batch_size
        batch_loss = cached_loss(objective, loss, emb.mini_batch_size) if cached else plain_loss(objective, loss)
        evaluate = None
        val = _examples(encode, [(q, p) for q, p in zip(*data.validation)])
        if val:
            evaluate = _evaluator(val, objective, tokenizer.pad_token_id or 0, opts.batch_size * 2, dims)
        smaller = [k for k in dims if k < hidden]  # the sizes a rotation could help
        rotation = None
        if smaller and val:
            rotation = RotationChoice(
                smaller, val, objective, tokenizer.pad_token_id or 0, opts.batch_size * 2, emb.loss_scale,
                opts.batch_size, opts.seed,
            )  # fmt: skip
        log.info(
            "%d training and %d validation pairs, %s pooling, max length %d (in training)",
            len(examples),
            len(data.validation[0]),
            pooling,
            max_length,
        )
        facts = {"task": "encoder", "max_length": max_length, "matryoshka_dims": dims or None}
        described = {
            "rows": data.rows,
            "columns": data.columns.describe(),
            "negatives": _describe_negatives(data, mined, cfg.mining),
            "loss": _describe_loss(emb, dims, cached, opts.batch_size),
        }
        return Prepared(
            examples, collate_pairs(tokenizer.pad_token_id or 0), batch_loss, evaluate, facts, described, cfg,
            unit="pairs", sampler=lambda size, seed: NoDuplicateBatches(texts, size, seed),
            finish=lambda model, accelerator, metric, best: Finished(
                {}, _st_writer(hidden, pooling, inference_length, rotation and rotation.kept(model, accelerator, examples))
            ),
        )  # fmt: skip


def train_embedding(cfg: FinetuneConfig, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune an encoder contrastively on pairs and save a bundle that is also a sentence-transformers model."""
    return train_task(cfg, EmbeddingTraining(), callbacks)


def _examples(encode: Any, texts: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Each row's query as the input, its positive and negatives as the documents."""
    width = max((len(t) for t in texts), default=2)
    columns = [encode([t[j] if j < len(t) else "" for t in texts]).input_ids for j in range(width)]
    return [
        {"input_ids": columns[0][i], "docs": [columns[j][i] for j in range(1, len(t))]} for i, t in enumerate(texts)
    ]


def _negatives(cfg, path, pooling, max_length, queries, positives, given) -> tuple[list[list[str]], Any]:
    """Each row's negatives: those the data gives, then --hard-negatives mined with the starting model."""
    emb = cfg.mining
    if not (EMBEDDING_NEGATIVES if emb.hard_negatives is None else emb.hard_negatives):
        return given, None
    from bertcli.tasks.embedding.embedder import Embedder
    from bertcli.training.negatives import mine

    pool = list(dict.fromkeys([*positives, *(n for row in given for n in row)]))
    position = {text: i for i, text in enumerate(pool)}
    # at the training's precision: bf16 and fp32 rank near-ties differently, and a resumed run must mine the same
    embedder = Embedder(
        path, EmbedOptions(pooling=pooling, normalize=True, max_length=max_length, precision=cfg.training.precision)
    )
    mined = mine(
        embedder.embed(queries).vectors,
        embedder.embed(pool).vectors,
        [position[p] for p in positives],
        emb.hard_negatives,
        emb.negative_skip,
        emb.negative_margin,
    )
    log.info("%s", mined.describe(emb.hard_negatives))
    return [list(row) + [pool[i] for i in found] for row, found in zip(given, mined.negatives)], mined


@dataclass(frozen=True)
class RotationChoice:
    """What choosing a Matryoshka rotation after training needs: the smaller sizes, the validation pairs, and how
    training encoded (`encode`, `pad_id`, `batch_size`) and scored (`scale`, `train_batch`, `seed`) them."""

    sizes: list[int]
    validation: list[dict[str, Any]]
    encode: Any
    pad_id: int
    batch_size: int
    scale: float
    train_batch: int
    seed: int

    def kept(self, model: Any, accelerator: Any, examples: list[dict[str, Any]]) -> np.ndarray | None:
        """The rotation (a 2_Dense module) that makes the smaller Matryoshka sizes retrieve best on validation, or
        None when the trained cut does: the principal axes of the trained vectors of the training pairs, or those axes
        refined on the Matryoshka loss. Measured on the docstrings set (all-MiniLM-L6-v2, --matryoshka-dims
        384,256,128,64, one epoch), NDCG@10 of 800 test queries at 128 of 384 dimensions: 0.7433 cut, 0.7621 principal
        axes, 0.7636 kept refined axes in another run (full size 0.783-0.784); the axes alone lost to the cut on a
        small model that training changes a lot, so validation decides."""
        from bertcli.tasks.embedding.matryoshka import distinct_pairs, prefix_ndcg, principal_axes, refined

        picked = examples[:: max(1, len(examples) // ROTATION_SAMPLE)]  # a rotation needs a sample, not every pair
        picked = [picked[i] for i in distinct_pairs([e["input_ids"] for e in picked], [e["docs"][0] for e in picked])]
        queries = self._vectors(model, accelerator, [e["input_ids"] for e in picked])
        positives = self._vectors(model, accelerator, [e["docs"][0] for e in picked])
        axes = principal_axes(np.concatenate([queries, positives]))
        candidates = {
            "principal axes": axes,
            "refined axes": refined(queries, positives, axes, self.sizes, self.scale, self.train_batch, self.seed),
        }
        val_queries = self._vectors(model, accelerator, [e["input_ids"] for e in self.validation])
        val_documents = self._vectors(model, accelerator, [e["docs"][0] for e in self.validation])
        scores = {"as trained": prefix_ndcg(val_queries, val_documents, self.sizes)}
        scores |= {name: prefix_ndcg(val_queries @ r, val_documents @ r, self.sizes) for name, r in candidates.items()}
        best = max(scores, key=lambda name: (scores[name], name == "as trained"))
        log.info(
            "Matryoshka sizes %s on validation, NDCG@10: %s; %s",
            ",".join(map(str, self.sizes)), ", ".join(f"{name} {score:.4f}" for name, score in scores.items()),
            "no rotation" if best == "as trained" else f"kept the {best} (2_Dense)",
        )  # fmt: skip
        return candidates.get(best)

    def _vectors(self, model: Any, accelerator: Any, ids: list[Any]) -> np.ndarray:
        return _vectors(model, accelerator, ids, self.encode, self.pad_id, self.batch_size)


def _st_writer(hidden: int, pooling: str, length: int, rotation: np.ndarray | None):
    from bertcli.tasks.embedding.st_files import write_sentence_transformers

    def write(staging: Any) -> None:
        write_sentence_transformers(staging, hidden, pooling, length, rotation)

    return write


def _describe_negatives(data: PairData, mined: Any, emb: Any) -> str:
    parts = ["in-batch (every other row's positive and negatives), no text twice in a batch"]
    if data.columns.negatives:
        parts.append(f"{len(data.columns.negatives)} given per row ({', '.join(data.columns.negatives)})")
    if mined is not None:
        parts.append(
            f"{emb.hard_negatives} mined per row with the starting model (skipping the top {emb.negative_skip} and"
            f" those within {emb.negative_margin} of the positive; mean cosine {mined.negative_score:.3f} vs"
            f" {mined.positive_score:.3f})"
        )
    return "; ".join(parts)


def _describe_loss(emb: Any, dims: list[int], cached: bool, batch_size: int) -> str:
    text = f"multiple-negatives ranking loss, scale {emb.loss_scale:g}{', symmetric' if emb.symmetric else ''}"
    if dims:
        text += (
            f", Matryoshka over {','.join(map(str, dims))} dimensions (then a rotation, 2_Dense: the principal"
            " axes or those axes refined on the loss, where one helps the smaller sizes on validation)"
        )
    if cached:
        text += f", cached (batch {batch_size} embedded {emb.mini_batch_size} at a time)"
    return text


def _evaluator(pairs: list[dict[str, Any]], encode: Any, pad_id: int, batch_size: int, dims: list[int]):
    """NDCG@10, MRR@10 and Recall@10 of each validation query against every validation positive (and NDCG@10 at
    each smaller Matryoshka size)."""
    from bertcli.reports.retrieval import validation_metrics

    queries = [p["input_ids"] for p in pairs]
    documents = [p["docs"][0] for p in pairs]

    def evaluate(model: Any, accelerator: Any) -> dict[str, float]:
        q = _vectors(model, accelerator, queries, encode, pad_id, batch_size)
        d = _vectors(model, accelerator, documents, encode, pad_id, batch_size)
        metrics = validation_metrics(unit_rows(q), unit_rows(d))
        for dim in dims[1:]:
            metrics[f"ndcg@10@{dim}"] = validation_metrics(unit_rows(q[:, :dim]), unit_rows(d[:, :dim]))["ndcg@10"]
        return {**metrics, "examples": len(queries)}

    return evaluate


def _vectors(
    model: Any, accelerator: Any, rows: list[list[int]], encode: Any, pad_id: int, batch_size: int
) -> np.ndarray:
    """The pooled vectors of token-id rows, computed once across the launch's processes, in input order."""
    import torch

    from bertcli.runtime.distributed import gather_in_order, shard_batches
    from bertcli.tasks.embedding.contrastive import collate_pairs

    pad = collate_pairs(pad_id)
    batches = shard_batches([len(r) for r in rows], batch_size, accelerator.process_index, accelerator.num_processes)
    model.eval()
    indices, vectors = [], []
    with torch.inference_mode(), accelerator.autocast():
        for batch in batches:
            features = pad([{"input_ids": rows[i], "docs": [rows[i]]} for i in batch.indices])
            out = encode(
                model, features["input_ids"].to(accelerator.device), features["attention_mask"].to(accelerator.device)
            )
            if batch.real:
                indices.extend(batch.indices)
                vectors.extend(out.float().cpu().numpy())
    return np.stack(gather_in_order(accelerator, indices, vectors))
