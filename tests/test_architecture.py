"""The layout's rules, checked on the source: no task imports another task, the core imports no task, and no module
or function grows past what one reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bertcli"
TASKS = sorted(p.name for p in (PACKAGE / "tasks").iterdir() if (p / "__init__.py").is_file())
CORE = (
    "config",
    "bundle.py",
    "errors.py",
    "io.py",
    "progress.py",
    "vocab.py",
    "data",
    "inference",
    "runtime",
    "training",
    "reports",
)


def modules(*parts: str) -> list[Path]:
    root = PACKAGE.joinpath(*parts)
    return [root] if root.suffix == ".py" else sorted(root.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every bertcli module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("bertcli")}


def test_the_layout_has_every_task():
    assert TASKS == ["classification", "embedding", "ner", "pretraining", "rerank", "search", "tokenization"]


@pytest.mark.parametrize("task", TASKS)
def test_no_task_imports_another_task(task):
    others = {f"bertcli.tasks.{other}" for other in TASKS if other != task}
    edges = {
        (path.name, name)
        for path in modules("tasks", task)
        for name in imported(path)
        if any(name == o or name.startswith(o + ".") for o in others)
    }
    assert not edges


@pytest.mark.parametrize("part", CORE)
def test_the_core_imports_no_task(part):
    edges = {(path.name, name) for path in modules(part) for name in imported(path) if name.startswith("bertcli.tasks")}
    assert not edges


def test_the_cli_never_picks_between_classification_and_ner():
    """Commands call the registry (`bertcli.tasks`), which picks the task; the CLI imports nothing of the fine-tuning
    tasks (their defaults, --help's included, live in config/)."""
    reached = {name for path in modules("cli") for name in imported(path)}
    assert not {name for name in reached if name.startswith(("bertcli.tasks.classification", "bertcli.tasks.ner"))}
    assert {"bertcli.tasks.predict", "bertcli.tasks.evaluate", "bertcli.tuning.seeds.finetune_seeds"} <= reached


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 400
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
            assert node.end_lineno - body[0].lineno + 1 <= 60, (
                f"{node.name} is {node.end_lineno - body[0].lineno + 1} lines"
            )


def _calls(path: Path):
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)]


def _name(node: ast.AST) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def test_no_task_is_looked_up_by_a_module_path_string():
    """The task table names each task's object in code a reader (and an IDE) can follow."""
    dynamic = {
        (str(path.relative_to(PACKAGE)), call.lineno)
        for path in modules()
        for call in _calls(path)
        if _name(call.func) in ("import_module", "__import__")
    }
    assert not dynamic


KINDS = {"single_label", "multi_label", "regression", "ner", "encoder", "pretraining", "classifier", "tagger"}


@pytest.mark.parametrize("part", ["serve", "export", "tuning"])
def test_serve_export_and_tuning_never_compare_a_task_kind(part):
    """They ask the task (routes, head, gate metric, default space and metric) instead of branching on what it is.
    (The exported graph's shape follows the head the task names: comparing a `head` is not asking for a kind.)"""
    branches = set()
    for path in modules(part):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                constants = {o.value for o in operands if isinstance(o, ast.Constant)}
                names = {_name(o) for o in operands}
                by_name = names & {"task", "kind"} and constants != {None}  # `task is None` is no branch on a kind
                if "head" not in names and (constants & KINDS or by_name):
                    branches.add((path.name, node.lineno))
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in KINDS for k in node.keys):
                branches.add((path.name, node.lineno))  # a table keyed by kind is a branch too
    assert not branches


def test_only_the_bundle_module_writes_bertcli_json():
    def names_the_file(node: ast.AST) -> bool:
        return any(
            (isinstance(n, ast.Constant) and n.value == "bertcli.json") or _name(n) == "BUNDLE_FILE"
            for n in ast.walk(node)
        )

    writers = {
        (str(path.relative_to(PACKAGE)), call.lineno)
        for path in modules()
        if path.name != "bundle.py"
        for call in _calls(path)
        if ("write" in _name(call.func) or _name(call.func) == "open") and any(map(names_the_file, call.args))
    }
    assert not writers


def test_every_task_in_the_table_has_its_package_and_contract():
    from bertcli.tasks import TABLE

    assert {entry.name for entry in TABLE} == {"classification", "ner", "embedding", "rerank", "search"}
    for entry in TABLE:
        task = entry.task()
        assert task.name == entry.name and (PACKAGE / "tasks" / entry.name / "__init__.py").is_file()
        for method in ("trains", "gate_metric", "evaluate", "predict", "load"):
            assert callable(getattr(task, method))


def test_benchmarks_import_nothing_from_the_tests():
    bench = PACKAGE.parent / "bench"
    reached = {
        (path.name, name)
        for path in bench.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        if name.split(".")[0] in ("tests", "conftest", "helpers")
    }
    assert not reached and not any("tests/" in path.read_text(encoding="utf-8") for path in bench.glob("*.py"))


def test_every_name_a_benchmark_imports_from_bertcli_exists():
    """Benchmarks run by hand, outside the suite: a name moved in a refactor must not break them unnoticed."""
    import importlib

    missing = [
        f"{path.name}:{node.lineno} {node.module}.{alias.name}"
        for path in sorted((PACKAGE.parent / "bench").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bertcli"
        for alias in node.names
        if not hasattr(importlib.import_module(node.module), alias.name)
    ]
    assert not missing
