"""The model card: a README.md in the Hugging Face Hub's format, written into every saved model directory.

It is built from the bundle's bertcli.json alone (labels, data fingerprint, configuration, evaluation
history, the launch command), so it always says what that directory's own metadata says.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
PIPELINE_TAGS = {
    "single_label": "text-classification",
    "multi_label": "text-classification",
    "regression": "text-classification",
    "ner": "token-classification",
    "pretraining": "fill-mask",
}
TASK_NAMES = {
    "single_label": "single-label text classification",
    "multi_label": "multi-label text classification",
    "regression": "text regression",
    "ner": "named-entity recognition (token classification)",
    "pretraining": "masked-language-model pretraining",
    "reranker": "reranking (a cross-encoder scoring query/document pairs)",
}
# the headline metrics named in the front matter (the full set is in the evaluation table and bertcli.json)
_CARD_METRICS = (
    "accuracy",
    "f1_macro",
    "f1_micro",
    "mcc",
    "f1",
    "precision",
    "recall",
    "strict_f1",
    "mse",
    "mae",
    "pearson",
    "spearman",
    "perplexity",
    "loss",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def launch_command() -> str | None:
    """The exact command line this process was started with, when it was started as bertcli (else None)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None:
        return None
    if program.name == "bertcli" or (program.name == "__main__.py" and program.parent.name == "bertcli"):
        return shlex.join(["bertcli", *sys.argv[1:]])
    return None


def equivalent_command(meta: dict[str, Any]) -> str:
    """A command that reruns the same configuration: every setting that differs from its default, as a flag."""
    from bertcli.config import FinetuneConfig, PretrainConfig, to_dict

    pretraining = meta.get("task") == "pretraining"
    config = meta.get("config") or {}
    defaults = to_dict(PretrainConfig([], "") if pretraining else FinetuneConfig("", ""))
    args = ["bertcli", "pretrain" if pretraining else "finetune"]
    args += list(config.get("inputs") or []) if pretraining else [str(config.get("train", ""))]
    for key, value, default in _flat(config, defaults):
        if key in ("train", "inputs", "resume") or value == default:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value not in (False, None):
            args += [flag, str(value)]
    return shlex.join(args)


def _flat(config: dict[str, Any], defaults: dict[str, Any]):
    for key, value in config.items():
        default = defaults.get(key)
        if isinstance(value, dict):
            yield from _flat(value, default if isinstance(default, dict) else {})
        else:
            yield key, value, default


def hub_base_model(meta: dict[str, Any]) -> str | None:
    """The base model as a hub id, or None for local directories (the Hub only links ids)."""
    name = meta.get("base_model") or (meta.get("start") or {}).get("model")
    if not name or Path(name).expanduser().exists() or not _HUB_ID.match(name):
        return None
    return name


def _best_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    history = meta.get("history") or []
    best_step = (meta.get("best") or {}).get("step")
    for record in history:
        if record.get("step") == best_step:
            return record
    return history[-1] if history else None


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def front_matter(meta: dict[str, Any]) -> dict[str, Any]:
    task = meta.get("task", "single_label")
    matter: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAGS.get(task, "text-classification"),
    }
    base = hub_base_model(meta)
    if base:
        matter["base_model"] = base
    matter["tags"] = ["bertcli", "bert", task.replace("_", "-")]
    best = _best_record(meta) or {}
    metrics = [k for k in dict.fromkeys([meta.get("metric"), *_CARD_METRICS]) if isinstance(best.get(k), (int, float))]
    if metrics:
        matter["metrics"] = metrics
    return matter


def render_card(meta: dict[str, Any], name: str, curves: bool = False) -> str:
    """The card's text: YAML front matter, then what the model is, how it was trained and how it scored."""
    import yaml

    task = meta.get("task", "single_label")
    lines = ["---", yaml.safe_dump(front_matter(meta), sort_keys=False).strip(), "---", "", f"# {name}", ""]
    base = meta.get("base_model") or (meta.get("start") or {}).get("model") or (meta.get("start") or {}).get("preset")
    start = f"a BERT trained from scratch ({base} preset)" if (meta.get("start") or {}).get("preset") else f"`{base}`"
    version = (meta.get("versions") or {}).get("bertcli", "?")
    lines += [
        f"{TASK_NAMES.get(task, task).capitalize()} model, trained from {start} with [bertcli](https://pypi.org/project/bertcli/) {version}.",
        "",
    ]
    lines += (
        _labels(meta)
        + _data(meta)
        + _hyperparameters(meta)
        + _evaluation(meta, curves)
        + _baselines(meta)
        + _seeds(meta)
        + _search(meta)
        + _reproduce(meta)
        + _usage(meta, task)
    )
    return "\n".join(lines).rstrip() + "\n"


def _seeds(meta: dict[str, Any]) -> list[str]:
    """--seeds: every seed's validation metrics at its best step, and mean +- std (sample std)."""
    seeds = meta.get("seeds")
    if not seeds:
        return []
    keys = list(seeds["summary"])[:6]
    lines = [
        "## Seeds",
        "",
        f"{len(seeds['runs'])} runs on the same validation split (split seed {seeds['split_seed']}); this bundle is seed"
        f" {seeds['best_seed']}'s, the best by `{seeds['metric']}`.",
        "",
        "| seed | " + " | ".join(keys) + " |",
        "|---:|" + "---:|" * len(keys),
    ]
    for run in seeds["runs"]:
        lines.append(f"| {run['seed']} | " + " | ".join(_number(run.get(k)) for k in keys) + " |")
    lines.append(
        "| mean +- std | "
        + " | ".join(f"{seeds['summary'][k]['mean']:.4f} +- {seeds['summary'][k]['std']:.4f}" for k in keys)
        + " |"
    )
    return lines + [""]


def _search(meta: dict[str, Any]) -> list[str]:
    """bertcli tune: the space, the trials and the best parameters."""
    search = meta.get("search")
    if not search:
        return []
    states = ", ".join(f"{count} {state.lower()}" for state, count in search["states"].items())
    best = ", ".join(f"{k} {_number(v)}" for k, v in search["best_params"].items())
    return [
        "## Hyperparameter search",
        "",
        f"`bertcli tune`: {search['trials']} trials ({states}) over `{search['space']}`, Optuna {search['sampler']}"
        f" with a {search['pruner']}, by `{search['metric']}`. Best: {best} ({search['metric']} {_number(search['best_value'])}).",
        "",
    ]


def _labels(meta: dict[str, Any]) -> list[str]:
    labels = meta.get("labels") or []
    if meta.get("task") == "pretraining":
        arch = meta.get("architecture") or {}
        shape = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in arch.items())
        return ["## Model", "", f"Objective: {meta.get('objective', 'mlm')}; {shape}.", ""]
    if meta.get("task") == "regression":
        return ["## Output", "", "One score per input (regression).", ""]
    if not labels:
        return []
    extra = f" (tagging scheme {meta['scheme']})" if meta.get("scheme") else ""
    threshold = (
        f" A label is predicted when its probability is at least {meta['threshold']}." if meta.get("threshold") else ""
    )
    return [
        "## Labels",
        "",
        f"{len(labels)} labels{extra}: " + ", ".join(f"`{label}`" for label in labels) + "." + threshold,
        "",
    ]


def _data(meta: dict[str, Any]) -> list[str]:
    data = meta.get("train_data") or meta.get("corpus") or {}
    rows = ["## Training data", "", "| | |", "|---|---|"]
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(
                f"{Path(v['file']).name} (sha256 {v['sha256'][:16]})" if isinstance(v, dict) else str(v)
                for v in value[:5]
            )
        rows.append(f"| {key} | {value} |")
    validation = meta.get("validation_data")
    if isinstance(validation, dict) and "split" in validation:
        rows.append(f"| validation | {validation['split']:.0%} held out of the training data, seeded |")
    elif isinstance(validation, dict):
        rows.append(f"| validation | {validation.get('file', '')} (sha256 {str(validation.get('sha256', ''))[:16]}) |")
    return rows + [""]


def _hyperparameters(meta: dict[str, Any]) -> list[str]:
    training = (meta.get("config") or {}).get("training") or {}
    rows = ["## Hyperparameters", "", "| setting | value |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in training.items() if v is not None and k not in ("resume",)]
    if meta.get("max_length"):
        rows.append(f"| max_length (used) | {meta['max_length']} |")
    rows.append(f"| steps | {meta.get('steps')} |")
    return rows + [""]


def _evaluation(meta: dict[str, Any], curves: bool) -> list[str]:
    history = meta.get("history") or []
    if not history:
        return ["## Evaluation", "", "No validation data: the run was not evaluated.", ""] + (
            ["![training curves](training_curves.png)", ""] if curves else []
        )
    keys = list(
        dict.fromkeys(
            k
            for record in history
            for k, v in record.items()
            if k not in ("step", "epoch") and isinstance(v, (int, float))
        )
    )
    keys = keys[:8]
    best_step = (meta.get("best") or {}).get("step")
    lines = [
        "## Evaluation",
        "",
        f"On the validation data; the saved weights are those of the best step by `{meta.get('metric')}` (marked *).",
        "",
        "| step | epoch | " + " | ".join(keys) + " |",
        "|---:|---:|" + "---:|" * len(keys),
    ]
    shown = (
        history
        if len(history) <= 20
        else history[:5] + [r for r in history[5:-5] if r.get("step") == best_step] + history[-5:]
    )
    for record in shown:
        mark = "*" if record.get("step") == best_step else ""
        lines.append(
            f"| {record.get('step')}{mark} | {record.get('epoch', '')} | "
            + " | ".join(_number(record.get(k, "")) for k in keys)
            + " |"
        )
    lines.append("")
    return lines + (["![training curves](training_curves.png)", ""] if curves else [])


def _baselines(meta: dict[str, Any]) -> list[str]:
    """The lexical baseline beside the fine-tuned model on validation, what predictions apply, and a collapse."""
    lexical, collapse = meta.get("lexical") or {}, meta.get("degenerate")
    lines = ["## Baselines", ""] if lexical or collapse else []
    scores = lexical.get("validation")
    if scores:
        how = _regularisation(lexical.get("regularisation") or {})
        lines += [
            f"A TF-IDF + linear baseline{how} was fitted on the same training split. Validation `{scores['metric']}`: "
            f"fine-tuned model {_number(scores['bert'])}, lexical baseline {_number(scores['lexical'])}, "
            f"best mix {_number(scores['combined'])} at lexical weight {scores['weight']}.",
            "",
        ]
    if lexical.get("weight"):
        lines += [
            f"bertcli (`predict`, `evaluate`, `serve`, `bertcli.load`, the ONNX export) predicts with "
            f"{(1 - lexical['weight']):.2f} x the fine-tuned model's probabilities + {lexical['weight']:.2f} x the lexical"
            f" model's (`{lexical.get('file')}`, `--lexical {lexical.get('mode')}`). A plain `pipeline()` loads the"
            " fine-tuned model alone, without the lexical part.",
            "",
        ]
    if collapse:
        lines += [f"**Warning:** {collapse['warning']}.", ""]
    return lines


def _regularisation(chosen: dict[str, Any]) -> str:
    """The baseline's regularisation for the card, e.g. ' (C 2, chosen by cross-validation on the training split)',
    a range over a multi-label set's labels; empty when the baseline kept scikit-learn's defaults untuned."""
    if not chosen.get("chosen_by"):
        return ""
    name = "C" if "C" in chosen else "alpha"
    values, folds = chosen[name], chosen.get("folds", 0)
    values, folds = (values, folds) if isinstance(values, list) else ([values], [folds])
    low, high = min(values), max(values)
    setting = f"{name} {low:g}" + (f"-{high:g} over the labels" if low != high else "")
    if not any(folds):
        return f" ({setting}, scikit-learn's default: too few examples to cross-validate)"
    return f" ({setting}, chosen by cross-validation on the training split)"


def _reproduce(meta: dict[str, Any]) -> list[str]:
    command = meta.get("command")
    note = "The command this model was trained with:" if command else "Run from Python; an equivalent command:"
    return [
        "## Reproduce",
        "",
        note,
        "",
        "```",
        command or equivalent_command(meta),
        "```",
        "",
        "The full resolved configuration, library versions and data fingerprints are in `bertcli.json`.",
        "",
    ]


def _usage(meta: dict[str, Any], task: str) -> list[str]:
    pipeline = PIPELINE_TAGS.get(task, "text-classification")
    lines = [
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'model = pipeline("{pipeline}", model="path/to/this/directory")',
        "```",
        "",
    ]
    if task != "pretraining":
        lines += ["or `bertcli predict path/to/this/directory data.csv` (`bertcli evaluate` with labelled data).", ""]
    data = meta.get("train_data") or meta.get("corpus") or {}
    size = data.get("rows") or data.get("sentences") or data.get("train_examples")
    lines += [
        "## Intended use and limits",
        "",
        f"Made for inputs like its training data ({size if size else 'see above'} examples"
        f"{', ' + Path(data['file']).name if data.get('file') else ''}); expect lower quality on other domains, "
        "languages or text styles. The scores above come from its validation data, not an independent test set:"
        " evaluate on held-out data of your own before relying on it (`bertcli evaluate`).",
    ]
    policy = meta.get("long_text") or {}
    if policy.get("mode") == "window":
        lines.append(
            f"It reads long inputs whole, in windows of {policy['max_length']} tokens ({policy['stride']} shared), and decides"
            f" from the {policy['aggregate']} of the windows' logits: `bertcli predict`, `evaluate` and `serve` do this."
            f" A plain `pipeline()` truncates at {policy['max_length']} tokens and sees only the start of longer inputs."
        )
    elif meta.get("max_length"):
        lines.append(
            f"Inputs longer than {meta['max_length']} tokens are truncated"
            + (" (NER: split into overlapping windows)." if task == "ner" else ".")
        )
    lines.append(
        "It inherits the biases of its base model and training data; do not use it for decisions about people without a review of those."
    )
    return lines + [""]


def document_run(directory: Path, name: str) -> None:
    """Write training_curves.png and the README.md card into a bundle directory, from its bertcli.json."""
    from bertcli.bundle import read_meta
    from bertcli.io import atomic_write
    from bertcli.reports.plots import TRAINING_CURVES, training_curves

    directory = Path(directory)
    meta = read_meta(directory).to_json()  # the card renders the record as bertcli.json holds it
    curves = training_curves(meta, directory / TRAINING_CURVES) is not None
    with atomic_write(directory / CARD_FILE) as handle:
        handle.write(render_card(meta, name, curves))
