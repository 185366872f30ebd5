"""bertcli: the command-line toolkit for BERT-family models, and its small Python API.

    import bertcli
    classifier = bertcli.load("runs/sentiment")        # or an NER model: the records `bertcli predict` writes
    classifier.predict(["A triumph.", "Two hours I will never get back."])
    bertcli.Embedder(normalize=True).embed(["first sentence", "second one"]).vectors   # what `bertcli embed` writes

Importing bertcli imports nothing heavy: torch and transformers load when a model does.
"""

from typing import Any

from bertcli.version import __version__

__all__ = ["Embedder", "__version__", "load"]


def load(model_dir: str, **options: Any) -> Any:
    """A predictor for a model directory (classifier, NER, encoder, reranker): `predict(texts)` gives `bertcli predict`'s
    records; for an index directory (`bertcli index`), a searcher: `search(queries, k)` gives each query's hits.

    Options, as the predict command takes them: precision, batch_size, max_length, backend (auto, torch, onnx),
    threads; classifiers and rerankers long_text, stride, aggregate (else the model's saved policy); NER stride,
    aggregation.
    """
    from bertcli.tasks import load as load_task

    return load_task(model_dir, **options)


def __getattr__(name: str) -> Any:
    if name == "Embedder":  # resolved on first use, so `import bertcli` stays light
        from bertcli.tasks.embedding.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'bertcli' has no attribute {name!r}")
