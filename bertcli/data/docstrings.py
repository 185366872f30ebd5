"""A retrieval corpus from the docstrings of installed Python packages (`python -m bertcli.corpora docstrings DIR`).

Each public function, method or class with a docstring of at least two paragraphs gives a pair: its summary line is
the query, the rest of its docstring (parameters, notes, examples; cut at DOC_CHARS) the document to find. The
source files are parsed, never imported, in sorted order, so the same package versions give the same pairs. Split by
package: the test packages' pairs never share a library with the training pairs.
"""

from __future__ import annotations

import ast
import importlib.util
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

# bertcli's own dependencies, so every machine that runs bertcli has them
TRAIN_PACKAGES = ("torch", "transformers", "pandas", "datasets", "accelerate", "matplotlib")
TEST_PACKAGES = ("numpy", "scipy", "sklearn")
DOC_CHARS = 600  # a document is the docstring's start: its topic, not a page of examples
MIN_SUMMARY_WORDS, MIN_DOC_CHARS = 4, 80


def package_sources(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        from bertcli.errors import DataError

        raise DataError(f"package {package!r} is not installed", hint=f"pip install {package}")
    root = Path(spec.submodule_search_locations[0])
    return sorted(
        p
        for p in root.rglob("*.py")
        if not any(part.startswith(("_", "test")) for part in p.relative_to(root).parts[:-1])
    )


def docstring_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """(summary line, rest of the docstring) of each public definition in one source file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        text = ast.get_docstring(node, clean=True)
        if not text:
            continue
        summary, _, rest = text.strip().partition("\n\n")
        summary, rest = " ".join(summary.split()), rest.strip()
        if "\n" in text.strip().split("\n\n")[0] or len(summary.split()) < MIN_SUMMARY_WORDS:
            continue  # a summary that runs over several lines is a paragraph, not a summary line
        if len(rest) >= MIN_DOC_CHARS:
            yield summary, rest[:DOC_CHARS].rsplit(" ", 1)[0] if len(rest) > DOC_CHARS else rest


def package_pairs(packages: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of the packages, with ambiguous ones dropped: a summary or a document that occurs twice (an
    inherited or copied docstring) has no single right answer."""
    pairs = [pair for package in packages for path in package_sources(package) for pair in docstring_pairs(path)]
    summaries, documents = _counts(q for q, _ in pairs), _counts(d for _, d in pairs)
    return [(q, d) for q, d in pairs if summaries[q] == 1 and documents[d] == 1]


def _counts(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def write_docstrings(directory: str, train_size: int | None = None, test_size: int | None = None) -> tuple[Path, ...]:
    """train.csv (query, positive) from TRAIN_PACKAGES, and test/ in the BEIR layout from TEST_PACKAGES; seeded
    samples of `train_size` and `test_size` pairs (default: all)."""
    import csv
    import json

    from bertcli.io import atomic_write

    out = Path(directory)
    (out / "test" / "qrels").mkdir(parents=True, exist_ok=True)
    train, test = (
        _sample(package_pairs(p), size) for p, size in ((TRAIN_PACKAGES, train_size), (TEST_PACKAGES, test_size))
    )
    paths = (
        out / "train.csv",
        out / "test" / "corpus.jsonl",
        out / "test" / "queries.jsonl",
        out / "test" / "qrels" / "test.tsv",
    )
    with atomic_write(paths[0], encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "positive"])
        writer.writerows(train)
    lines = {
        paths[1]: (json.dumps({"_id": f"d{i}", "title": "", "text": d}) for i, (_, d) in enumerate(test)),
        paths[2]: (json.dumps({"_id": f"q{i}", "text": q}) for i, (q, _) in enumerate(test)),
        paths[3]: iter(["query-id\tcorpus-id\tscore", *(f"q{i}\td{i}\t1" for i in range(len(test)))]),
    }
    for path, rows in lines.items():
        with atomic_write(path, encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
    print(
        f"{len(train)} training pairs from {', '.join(TRAIN_PACKAGES)}; {len(test)} test queries from {', '.join(TEST_PACKAGES)}"
    )
    return paths


def _sample(pairs: list[tuple[str, str]], size: int | None) -> list[tuple[str, str]]:
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    return [pairs[i] for i in order[: size or len(pairs)]]
