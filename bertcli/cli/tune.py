"""`bertcli tune`: search finetune's options with Optuna within a trial count and a time budget."""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any

import typer

from bertcli.cli import finetune
from bertcli.cli.options import default, output_option
from bertcli.config import DEFAULT_SPACES, TuneConfig

NAME = "tune"
SEARCH = "Search"
# finetune's options that tune does not pass on to its trials, on purpose (said in --help and the README)
LEFT_OUT = {
    "seeds": "each trial trains once, with --seed; give the best parameters to finetune --seeds for mean +- std",
    "resume": "here --resume continues the search; every trial trains from the start",
}
# tune's own options, shown first: -o (what it holds), the search, and the search's --resume; finetune's follow
OWN = {
    "output": output_option("Output directory: the best trial's model, study.db, trials.csv, tuning.png."),
    "trials": Annotated[
        int | None, typer.Option(help=f"Trials at most. {default(TuneConfig.trials)}", rich_help_panel=SEARCH)
    ],
    "timeout": Annotated[
        str | None,
        typer.Option(
            help="Time budget: 600, 90s, 30m, 2h; a trial running when it ends stops there. [default: none]",
            rich_help_panel=SEARCH,
        ),
    ],
    "space": Annotated[
        str | None,
        typer.Option(
            help="Options to search: lr=1e-5..5e-4:log (a range, log-scaled), epochs=1..5 (integers), batch_size=16|32 (a choice). [default: the task's, below]",
            rich_help_panel=SEARCH,
        ),
    ],
    "resume": Annotated[
        bool | None,
        typer.Option(
            "--resume",
            help="Continue an interrupted search (OUTPUT.incomplete/study.db), or add trials to a finished one.",
            show_default=False,
            rich_help_panel=SEARCH,
        ),
    ],
}
EXAMPLES = f"""\b
Examples:
  bertcli tune train.csv -o runs/tuned --timeout 30m
  bertcli tune train.csv -o runs/tuned --trials 40 --space 'lr=1e-5..5e-4:log,epochs=2..4'
  bertcli tune train.csv -o runs/tuned --timeout 30m --resume   # continue an interrupted search
  bertcli tune train.conll -o runs/ner-tuned --validation dev.conll --metric strict_f1
\b
Default spaces:
  classification: {DEFAULT_SPACES["classification"]}
  NER:            {DEFAULT_SPACES["ner"]}
\b
Every finetune option applies to every trial, except:
{chr(10).join(f"  --{name}: {reason}" for name, reason in LEFT_OUT.items())}
"""


def command(**values: Any) -> None:
    """Search finetune's options (Optuna: TPE sampling, median pruning) and keep the best trial's model."""
    config = values.pop("config")
    from bertcli.config import build_config
    from bertcli.tuning.search import tune

    result = tune(build_config(TuneConfig, config, **values))
    _summary(result)


def signature() -> inspect.Signature:
    """tune's own options, then every finetune option but LEFT_OUT, each as finetune declares it."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [inspect.Parameter(name, keyword, default=None, annotation=option) for name, option in OWN.items()]
    taken = [
        parameter.replace(kind=keyword)
        for name, parameter in finetune.parameters().items()
        if name not in OWN and name not in LEFT_OUT
    ]
    return inspect.Signature([*own, *taken], return_annotation=None)


command.__signature__ = signature()  # what Typer reads (inspect.signature) to build the command's options


def _summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    search = result.meta.search
    table = Table(title=f"tune: {result.output} ({search['metric']}, {search['direction']})", title_justify="left")
    names = list(search["best_params"])
    for column in ("trial", *names, search["metric"], "state"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for row in result.trials:
        shown = row["value"] if row["value"] is not None else row["last"]
        cells = [
            f"{row['params'].get(n):.3g}" if isinstance(row["params"].get(n), float) else str(row["params"].get(n, ""))
            for n in names
        ]
        best = row["trial"] == search["best_trial"]
        table.add_row(
            str(row["trial"]),
            *cells,
            "" if shown is None else f"{shown:.4f}",
            row["state"],
            style="bold green" if best else None,
        )
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"best: trial {search['best_trial']}, {search['metric']} {search['best_value']:.4f}; saved to [bold]{result.output}[/bold] (trials.csv, tuning.png)",
        highlight=False,
    )
    sys.stderr.flush()
