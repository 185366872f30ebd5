"""How a configuration is declared, checked and built: field checks, `validate()`, recipes and the CLI's values.

Precedence: dataclass default < recipe file (`--config run.toml|yaml|json`) < options given on the command line.
The CLI passes every option as None unless the user typed it, so a recipe is never silently overridden.
A field's metadata says how it is checked (`POSITIVE`, `SHARE`, `choices`, ...); `validate()` checks every field
of a configuration, nested sections included, with one wording.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from bertcli.errors import UsageError

Check = tuple[Callable[[Any], bool], str]
POSITIVE: Check = (lambda v: v > 0, "must be positive")
NON_NEGATIVE: Check = (lambda v: v >= 0, "must be 0 or more")
SHARE: Check = (lambda v: 0 <= v < 1, "must be in [0, 1)")
OPEN_SHARE: Check = (lambda v: 0 < v < 1, "must be between 0 and 1")


def checked(
    default: Any = None, check: Check | None = None, *, choices: tuple | None = None, arg: str | None = None
) -> Any:
    """A field with its check: a range (POSITIVE, SHARE, ...) or `choices`; `arg` names a positional argument."""
    return field(default=default, metadata={"check": check, "choices": choices, "arg": arg})


def required(arg: str) -> Any:
    """A field the command needs (a positional argument, or an option such as -o), with no default."""
    return field(default=None, metadata={"arg": arg, "required": True})


def validate(config: Any) -> None:
    """Check every field of `config` (and its nested sections) against its metadata; None means unset and passes."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            validate(value)
            continue
        flag = "--" + f.name.replace("_", "-")
        if value is None:
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UsageError(f"unknown {flag} {value!r}", hint=f"choose one of {', '.join(str(c) for c in choices)}")
        check = f.metadata.get("check")
        if check is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{flag} must be a number, got {value!r}")
        if check is not None and not check[0](value):
            raise UsageError(f"{flag} {check[1]}, got {value:g}")


C = TypeVar("C")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON recipe into a dict."""
    path = Path(path)
    if not path.is_file():
        raise UsageError("recipe file not found", file=path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
        if path.suffix == ".json":
            return json.loads(text)
    except Exception as exc:  # parser errors carry their own position
        raise UsageError(f"cannot parse recipe: {exc}", file=path) from None
    raise UsageError("recipe must be .toml, .yaml/.yml or .json", file=path)


def build_config(cls: type[C], recipe: str | Path | None = None, **cli: Any) -> C:
    """Merge defaults, a recipe and CLI values into `cls`, and validate the result.

    Recipe keys may be flat (`lr = 3e-5`) or grouped in the nested sections (`[training] lr = 3e-5`);
    unknown keys are an error so a typo never goes unnoticed.
    """
    values: dict[str, Any] = {}
    if recipe:
        for key, value in read_recipe(recipe).items():
            if isinstance(value, dict):
                values.update({k.replace("-", "_"): v for k, v in value.items()})
            else:
                values[key.replace("-", "_")] = value
    values.update({k: v for k, v in cli.items() if v is not None})
    config = _instantiate(cls, values, str(recipe) if recipe else "command line")
    config.validate()
    return config


def _instantiate(cls: type[C], values: dict[str, Any], source: str) -> C:
    nested = {f.name: f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default_factory)}
    own = {f.name for f in dataclasses.fields(cls)} - set(nested)
    kwargs = {k: values.pop(k) for k in list(values) if k in own}
    for name, f in nested.items():
        sub_fields = {sf.name for sf in dataclasses.fields(f.default_factory)}
        kwargs[name] = f.default_factory(**{k: values.pop(k) for k in list(values) if k in sub_fields})
    if values:
        raise UsageError(f"unknown setting(s) {', '.join(sorted(values))}", file=source)
    missing = [
        f.metadata["arg"]
        for f in dataclasses.fields(cls)
        if f.metadata.get("required") and kwargs.get(f.name) in (None, [])
    ]
    if missing:
        raise UsageError(
            f"missing {', '.join(missing)}", hint="give it on the command line or in the recipe (--config)"
        )
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
