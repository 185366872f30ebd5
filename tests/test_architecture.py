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
    assert TASKS == ["classification", "embedding", "ner", "pretraining", "tokenization"]


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
    assert {"bertcli.tasks.predict", "bertcli.tasks.evaluate", "bertcli.tuning.seeds.finetune"} <= reached


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
