"""An encoder plus a pooling recipe: texts in, vectors out (or token vectors with their tokens and offsets).

Pooling follows sentence-transformers (a masked mean over the real tokens, [CLS] and [SEP] included), so
all-MiniLM-L6-v2 with `--pooling mean --normalize` reproduces its `encode(normalize_embeddings=True)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.bundle import Bundle
from bertcli.config import BATCH_TOKENS, EmbedOptions
from bertcli.errors import ModelError, UsageError
from bertcli.inference.batching import batches_for, run_batches
from bertcli.inference.encoding import Encoded
from bertcli.inference.scores import unit_rows


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """'-1', '-4:', '-2,-1', '0:3' -> indices into hidden_states (0 = embedding output, num_layers = last layer)."""
    count = num_layers + 1
    picked: list[int] = []
    try:
        for part in (p.strip() for p in spec.split(",")):
            if ":" in part:
                start, _, stop = part.partition(":")
                picked.extend(range(count)[slice(int(start) if start else None, int(stop) if stop else None)])
            else:
                index = int(part)
                if not -count <= index < count:
                    raise IndexError(part)
                picked.append(index % count)
    except (ValueError, IndexError):
        raise UsageError(
            f"bad --layers {spec!r}",
            hint=f"e.g. -1, -4: or -2,-1; this model has layers 0 (embeddings) to {num_layers}",
        ) from None
    if not picked:
        raise UsageError(
            f"--layers {spec!r} selects no layer", hint=f"this model has layers 0 (embeddings) to {num_layers}"
        )
    return picked


def default_max_length(path: str | Path) -> int:
    """The model's limit, or the max_seq_length a sentence-transformers model was trained with (as encode() uses)."""
    from bertcli.bundle import model_max_length

    limit = model_max_length(path)
    st_config = Path(path, "sentence_bert_config.json")
    if st_config.is_file():
        trained = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(trained, int) and 0 < trained < limit:
            return trained
    return limit


def sentence_transformers_pooling(path: str | Path) -> dict[str, Any]:
    """The pooling and normalisation a sentence-transformers model was trained with (1_Pooling, modules.json)."""
    options: dict[str, Any] = {}
    pooling = Path(path, "1_Pooling", "config.json")
    if pooling.is_file():
        modes = json.loads(pooling.read_text(encoding="utf-8"))
        chosen = [
            mode
            for key, mode in (
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_mean_tokens", "mean"),
            )
            if modes.get(key)
        ]
        if len(chosen) == 1:
            options["pooling"] = chosen[0]
    modules = Path(path, "modules.json")
    if modules.is_file():
        options["normalize"] = any(
            m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text(encoding="utf-8"))
        )
    return options


def sentence_transformers_dense(path: str | Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The linear Dense modules a sentence-transformers model applies after pooling, in order: (weight, bias). Read
    with safetensors' numpy loader, so the ONNX path stays torch-free."""
    modules = Path(path, "modules.json")
    if not modules.is_file():
        return []
    layers = []
    for module in json.loads(modules.read_text(encoding="utf-8")):
        if not module.get("type", "").endswith("Dense"):
            continue
        folder = Path(path, module.get("path", ""))
        files = (folder / "config.json", folder / "model.safetensors")
        missing = next((file for file in files if not file.is_file()), None)
        if missing is not None:
            raise ModelError(
                "a sentence-transformers Dense module without this file (bertcli reads safetensors weights)",
                file=missing, hint="re-save the model with a recent sentence-transformers",
            )  # fmt: skip
        config = json.loads(files[0].read_text(encoding="utf-8"))
        activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
        if not activation.endswith("Identity"):
            raise ModelError(
                f"a Dense module with activation {activation} is not supported (only linear ones)", file=folder
            )
        from safetensors.numpy import load_file

        weights = load_file(str(folder / "model.safetensors"))
        bias = weights.get("linear.bias")
        layers.append((weights["linear.weight"].astype(np.float32), None if bias is None else bias.astype(np.float32)))
    return layers


@dataclass
class Embedded:
    """One call's results in input order: pooled `vectors` (n, dim), or per-token arrays with their tokens and offsets."""

    vectors: np.ndarray | list[np.ndarray]
    truncated: list[bool]
    tokens: list[list[str]] | None = None
    offsets: list[list[tuple[int, int]]] | None = None


class Embedder:
    """A loaded encoder plus the pooling recipe: texts in, vectors out.

    `Embedder(model, pooling="cls", normalize=True)` takes the options `bertcli embed` takes, or one EmbedOptions.
    """

    labels: list[str] = []
    kind = "encoder"  # what /info calls it
    routes = frozenset({"embeddings"})
    takes_pairs = False
    request_options: frozenset[str] = frozenset()

    def __init__(
        self,
        model: Bundle | str | None = None,
        opts: EmbedOptions | None = None,
        onnx_file: str | None = None,
        **options: Any,
    ) -> None:
        from bertcli.hub import resolve_model
        from bertcli.inference.loading import open_model

        self.opts = opts = opts or EmbedOptions(**options)
        opts.validate()
        bundle = model if isinstance(model, Bundle) else Bundle.open(resolve_model(model))
        self.path = str(bundle.directory)
        config, limit = bundle.config, bundle.limit
        if opts.max_length is not None and opts.max_length > limit:
            raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {limit}")
        self.max_length = opts.max_length or default_max_length(self.path)
        self.matryoshka_dims = tuple(bundle.meta.matryoshka_dims or ())  # sizes a request may truncate to
        needs = ("pooler_output",) if opts.pooling == "pooler" else ()
        self.backend, self.encoder = open_model(
            bundle, "encoder", self.max_length, opts.backend, opts.precision, opts.threads, needs, onnx_file
        )
        if opts.pooling == "pooler" and not self.backend.provides("pooler_output"):
            raise ModelError(
                "this model has no trained pooler layer", file=self.path, hint="use --pooling mean (or cls, max)"
            )
        num_layers = config["num_hidden_layers"]
        self.layers = [num_layers] if opts.pooling == "pooler" else parse_layers(opts.layers, num_layers)
        concat = opts.layer_agg == "concat" and len(self.layers) > 1
        self.dim = config["hidden_size"] * (len(self.layers) if concat else 1)
        # a sentence-transformers Dense module after pooling (bertcli's Matryoshka models: a PCA rotation)
        self.dense = [] if opts.token_level or opts.pooling == "pooler" else sentence_transformers_dense(self.path)
        if self.dense and (self.layers != [num_layers] or concat):
            raise UsageError(
                "this model's Dense module reads the last layer's pooled vector; --layers picks other layers",
                hint="drop --layers and --layer-agg",
            )
        if self.dense:
            self.dim = self.dense[-1][0].shape[0]
        if opts.pooling == "pooler":
            self.outputs: tuple[str, ...] = ("pooler_output",)
        elif self.layers == [num_layers]:
            self.outputs = ("last_hidden_state",)
        else:
            self.outputs = ("hidden_states",)

    def describe(self) -> str:
        if self.opts.pooling == "pooler":
            return "the pooler output"
        kind = "token vectors" if self.opts.token_level else f"{self.opts.pooling} pooling"
        if len(self.layers) == 1:
            return f"{kind} of layer {self.layers[0]}"
        return f"{kind} of layers {','.join(map(str, self.layers))} ({self.opts.layer_agg})"

    def embed(
        self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None, encoded: Encoded | None = None
    ) -> Embedded:
        """Embed `texts` in length-sorted, dynamically padded batches; results come back in input order.
        `encoded`: the texts as `self.encoder.encode` already tokenized them (token vectors need their offsets too)."""
        if encoded is None or (self.opts.token_level and encoded.offsets is None):
            encoded = self.encoder.encode(texts, None, offsets=self.opts.token_level)
        unpadded = self.backend.unpadded and "hidden_states" not in self.outputs  # every layer's output runs padded
        budget = self.backend.batch_tokens if unpadded == self.backend.unpadded else BATCH_TOKENS["cpu"]
        batches = batches_for(encoded.lengths, self.opts.batch_size, budget, unpadded)
        results = run_batches(
            self.backend, encoded, self.encoder.specials.pad, batches, self.outputs, self._reduce, on_batch
        )
        if self.opts.token_level:
            tokens = [self.encoder.tokens(ids) for ids in encoded.input_ids]
            return Embedded(results, encoded.truncated, tokens, encoded.offsets)
        vectors = np.stack(results) if results else np.zeros((0, self.dim), dtype=np.float32)
        return Embedded(vectors, encoded.truncated)

    def run(
        self, inputs: Sequence[tuple[str, str | None]], encoded: Encoded | None = None
    ) -> list[tuple[np.ndarray, bool]]:
        """The batch entry: (vector, truncated) per input text, in order."""
        embedded = self.embed([text for text, _ in inputs], encoded=encoded)
        return list(zip(embedded.vectors, embedded.truncated))

    def records(self, results: Sequence[tuple[np.ndarray, bool]]) -> list[np.ndarray]:
        return [vector for vector, _ in results]

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[np.ndarray]:
        """One vector per text (the contract every predictor shares; `embed` gives the batch as one array)."""
        if pairs is not None:
            raise UsageError("an encoder embeds single texts; pairs are for classifiers")
        return self.records(self.run([(text, None) for text in texts]))

    def _token_states(self, out: dict[str, np.ndarray]) -> np.ndarray:
        """(batch, seq, dim) token vectors from the selected layers, averaged or concatenated."""
        if "last_hidden_state" in out:
            return out["last_hidden_state"]
        stacked = out["hidden_states"][:, self.layers]
        if len(self.layers) == 1:
            return stacked[:, 0]
        if self.opts.layer_agg == "mean":
            return stacked.mean(axis=1)
        return np.concatenate(list(stacked.transpose(1, 0, 2, 3)), axis=-1)

    def _reduce(self, out: dict[str, np.ndarray], features: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Pool one batch to one vector per input (or keep each input's real tokens), padding excluded."""
        mask = features["attention_mask"]
        if self.opts.pooling == "pooler":
            return unit_rows(out["pooler_output"]) if self.opts.normalize else out["pooler_output"]
        states = self._token_states(out)
        if self.opts.token_level:
            rows = [states[i, :n] for i, n in enumerate(mask.sum(axis=1))]
            return [unit_rows(r) for r in rows] if self.opts.normalize else [np.ascontiguousarray(r) for r in rows]
        weights = mask.astype(states.dtype)
        if self.opts.pooling == "mean":
            pooled = np.einsum("bs,bsd->bd", weights, states) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        elif self.opts.pooling == "cls":
            pooled = states[:, 0]
        else:
            pooled = np.where(mask[:, :, None] > 0, states, -np.inf).max(axis=1)
        pooled = pooled.astype(np.float32, copy=False)
        for weight, bias in self.dense:
            pooled = pooled @ weight.T if bias is None else pooled @ weight.T + bias
        return unit_rows(pooled) if self.opts.normalize else pooled


def embed_shared(embedder: Embedder, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> Embedded:
    """`embedder.embed` with the texts dealt out among a launch's processes (`across_processes`); every process gets
    all results in input order. Progress counts every process's batches alike."""
    from bertcli.runtime.device import processes
    from bertcli.runtime.distributed import across_processes

    world = processes().num_processes
    if world == 1:
        return embedder.embed(texts, on_batch)
    scaled = None if on_batch is None else lambda n: on_batch(n * world)

    def embed_rows(own: list[str]) -> list[tuple[Any, ...]]:
        if not own:
            return []
        part = embedder.embed(own, scaled)
        if embedder.opts.token_level:
            return list(zip(part.vectors, part.truncated, part.tokens, part.offsets))
        return list(zip(part.vectors, part.truncated))

    columns = list(zip(*across_processes(embed_rows, list(texts))))
    if embedder.opts.token_level:
        return Embedded(*(list(column) for column in columns))
    return Embedded(np.stack(columns[0]), list(columns[1]))
