"""Options shared by several commands, each declared once. The defaults their help shows come from bertcli.config;
an option left out arrives as None and the configuration fills it in."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bertcli.config import (
    AGGREGATES,
    AGGREGATIONS,
    BACKENDS,
    BATCH_SIZE,
    BATCH_TOKENS,
    BERT_VOCAB_SIZE,
    EPOCHS,
    LENGTH_CAP,
    LEXICAL,
    LONG_TEXT,
    MIN_STEPS,
    PRECISIONS,
    REPORT_FORMATS,
    SMALL_DATA_BATCH_SIZE,
    TASK_DEFAULTS,
    TASKS,
    TRACKERS,
    WINDOWS_PER_TEXT,
    FinetuneConfig,
    PredictConfig,
    TrainOptions,
)

DATA = "Data"
TRAINING = "Training"
RUNTIME = "Runtime"
NER = "NER"


def shown(value: Any) -> str:
    """A default as help shows it (rates as 1e-4)."""
    if isinstance(value, float):
        return f"{value:.0e}".replace("e-0", "e-") if 0 < value < 1e-2 else f"{value:g}"
    return str(value)


def default(value: Any) -> str:
    return f"[default: {shown(value)}]"


def listed(values: tuple) -> str:
    return ", ".join(str(v) for v in values)


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model directory or hub id. [default: all-MiniLM-L6-v2]", show_default=False),
]
ModelDirArg = Annotated[
    str,
    typer.Argument(metavar="MODEL_DIR", help="A model directory written by `bertcli finetune`.", show_default=False),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Recipe file (.toml/.yaml/.json); options given here override it."),
]
OverwriteOpt = Annotated[
    bool | None, typer.Option("--overwrite", help="Replace an existing output directory.", show_default=False)
]


def output_option(help: str) -> Any:
    """-o/--output; `help` says what the command writes there."""
    return Annotated[str | None, typer.Option("--output", "-o", help=help, show_default=False)]


def output_format_option(formats: str, panel: str | None = None) -> Any:
    """--output-format: every command's one spelling for the form of what it writes; `formats` lists the choices
    and the command's default."""
    return Annotated[str | None, typer.Option(help=formats, rich_help_panel=panel)]


def texts_option(help: str, panel: str | None = None) -> Any:
    """--texts/--no-texts: whether an index's texts are used; `help` says how the command uses them."""
    return Annotated[
        bool | None,
        typer.Option(
            "--texts/--no-texts", help=f"{help} [default: --texts]", show_default=False, rich_help_panel=panel
        ),
    ]


# evaluate's report on stdout; --json is its older spelling of --output-format json, kept working
ReportFormatOpt = output_format_option(
    f"How the report is printed on stdout: {', '.join(REPORT_FORMATS)}. [default: {REPORT_FORMATS[0]}]"
)
JsonOpt = Annotated[
    bool | None,
    typer.Option("--json", help="The same as --output-format json (an older spelling).", show_default=False),
]
IncludeTextOpt = Annotated[
    bool | None,
    typer.Option("--include-text", help="Copy the input text into each output record.", show_default=False),
]


# data
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Input format: csv, tsv, jsonl, parquet, txt, conll. [default: from the suffix]",
        rich_help_panel=DATA,
    ),
]
TextColumnOpt = Annotated[
    str | None,
    typer.Option(help="Column with the text. [default: text, sentence, review, ...]", rich_help_panel=DATA),
]
TextPairColumnOpt = Annotated[
    str | None, typer.Option(help="Column with the second text of sentence pairs.", rich_help_panel=DATA)
]
LabelColumnOpt = Annotated[
    str | None,
    typer.Option(help="Column with the labels. [default: label, labels, category, ...]", rich_help_panel=DATA),
]
LabelSepOpt = Annotated[
    str | None,
    typer.Option(help="Separator of several labels in one cell (multi-label), e.g. ','.", rich_help_panel=DATA),
]
IdColumnOpt = Annotated[
    str | None, typer.Option(help="Column passed through to the output as `id`.", rich_help_panel=DATA)
]

# runtime
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        help=f"{listed(PRECISIONS[1:])} or auto (bf16 where the hardware runs it fast); no is full precision, never an "
        f"int8 export. {default(TrainOptions.precision)}",
        rich_help_panel=RUNTIME,
    ),
]


BackendOpt = Annotated[
    str | None,
    typer.Option(
        help=f"{listed(BACKENDS)}: auto runs the model's ONNX export (bertcli export) when it has one. {default(PredictConfig.backend)}",
        rich_help_panel=RUNTIME,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="CPU threads for the model. [default: the cores this process may use]", rich_help_panel=RUNTIME),
]


TOKEN_BUDGET = (
    f"[default: batches of about {BATCH_TOKENS['cpu-unpadded']} tokens for torch on a CPU (it skips padding), "
    f"{BATCH_TOKENS['cpu']} padded tokens for ONNX, {BATCH_TOKENS['accelerator']} for torch on a GPU]"
)


def batch_size_option(note: str) -> Any:
    """--batch-size/-b: inputs per forward pass (training: per optimizer step and process); `note` is the command's default."""
    return Annotated[
        int | None,
        typer.Option(
            "--batch-size", "-b", help=f"Examples per batch. {note}", rich_help_panel=RUNTIME, show_default=False
        ),
    ]


def vocab_size_option(panel: str) -> Any:
    """--vocab-size: the WordPiece vocabulary a command trains (tokenize train-vocab, pretrain from scratch)."""
    return Annotated[
        int | None,
        typer.Option(
            help=f"Size of the WordPiece vocabulary trained on the texts, special tokens included. {default(BERT_VOCAB_SIZE)}",
            rich_help_panel=panel,
        ),
    ]


LabelAllTokensOpt = Annotated[
    bool | None,
    typer.Option(
        "--label-all-tokens",
        help="NER: train on every sub-token of a word, not only the first.",
        rich_help_panel=NER,
        show_default=False,
    ),
]


def max_length_option(what: str) -> Any:
    """--max-length: the longest input in tokens; `what` says what happens past it and the command's default."""
    return Annotated[int | None, typer.Option(help=f"Longest input in tokens; {what}", rich_help_panel=RUNTIME)]


# training (finetune and pretrain)
FinetuneMaxLengthOpt = max_length_option(
    f"longer ones are truncated or windowed (--long-text; NER: windows). [default: from the data; classification: at most {LENGTH_CAP}]"
)
_CLS, _NER = TASK_DEFAULTS["classification"], TASK_DEFAULTS["ner"]
FinetuneBatchSizeOpt = batch_size_option(
    f"[default: {BATCH_SIZE}, or {SMALL_DATA_BATCH_SIZE} when that gives under {MIN_STEPS} steps; NER {_NER['batch_size']}]"
)
TaskOpt = Annotated[
    str | None,
    typer.Option(help=f"{listed(TASKS)}. [default: inferred from the labels / input format]", rich_help_panel=TRAINING),
]
ValidationOpt = Annotated[str | None, typer.Option(help="Validation data file.", rich_help_panel=DATA)]
ValSplitOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Share of training data held out when no --validation is given. {default(FinetuneConfig.val_split)}",
        rich_help_panel=DATA,
    ),
]
EpochsOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Passes over the training data. [default: {shown(EPOCHS)}, embedding {TASK_DEFAULTS['embedding']['epochs']:g}; classifiers on small data: more, so the run makes {MIN_STEPS} optimizer steps]",
        rich_help_panel=TRAINING,
    ),
]
LrOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Peak learning rate. [default: {shown(_CLS['lr'])}; NER {shown(_NER['lr'])}]", rich_help_panel=TRAINING
    ),
]
GradAccumOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Gradient accumulation steps (embedding models: adds no in-batch negatives, see --mini-batch-size). {default(TrainOptions.grad_accum)}",
        rich_help_panel=TRAINING,
    ),
]
WarmupOpt = Annotated[
    float | None,
    typer.Option(help=f"Warmup share of steps. {default(TrainOptions.warmup_ratio)}", rich_help_panel=TRAINING),
]
WeightDecayOpt = Annotated[
    float | None,
    typer.Option(help=f"AdamW weight decay. {default(TrainOptions.weight_decay)}", rich_help_panel=TRAINING),
]
AttentionDropoutOpt = Annotated[
    float | None,
    typer.Option(
        help="Dropout on the attention probabilities while training; 0 trains faster on a CPU, but may overfit. [default: the model's own, 0.1 for BERT]",
        rich_help_panel=TRAINING,
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Seed of initialisation, shuffling and the validation split. {default(TrainOptions.seed)}",
        rich_help_panel=TRAINING,
    ),
]
SeedsOpt = Annotated[
    str | None,
    typer.Option(
        help="Train once per seed (N: --seed, --seed + 1, ...; or a list 1,2,3) on the same split; report every validation metric's mean +- std and keep the best run.",
        rich_help_panel=TRAINING,
    ),
]
SplitSeedOpt = Annotated[
    int | None, typer.Option(help="Seed of the validation split alone. [default: --seed]", rich_help_panel=TRAINING)
]
MaxStepsOpt = Annotated[
    int | None,
    typer.Option(help="Stop after this many optimizer steps (overrides --epochs).", rich_help_panel=TRAINING),
]
EvalStepsOpt = Annotated[
    int | None, typer.Option(help="Evaluate every N steps. [default: each epoch]", rich_help_panel=TRAINING)
]
SaveStepsOpt = Annotated[
    int | None, typer.Option(help="Checkpoint every N steps. [default: each epoch]", rich_help_panel=TRAINING)
]
PatienceOpt = Annotated[
    int | None,
    typer.Option(help="Early stopping after N evaluations without improvement.", rich_help_panel=TRAINING),
]
MetricOpt = Annotated[
    str | None,
    typer.Option(
        help="Validation metric for the best model, e.g. f1_macro. [default: accuracy / f1_micro / mse; NER f1]",
        rich_help_panel=TRAINING,
    ),
]
ClassWeightsOpt = Annotated[
    str | None,
    typer.Option(
        help=f"'auto': weigh classes by inverse frequency (imbalanced labels). {default(TrainOptions.class_weights)}",
        rich_help_panel=TRAINING,
    ),
]
GradientCheckpointingOpt = Annotated[
    bool | None,
    typer.Option(
        "--gradient-checkpointing",
        help="Recompute activations in the backward pass: much less memory for long sequences, ~30% slower.",
        rich_help_panel=TRAINING,
        show_default=False,
    ),
]
ResumeOpt = Annotated[
    str | None,
    typer.Option(help="Continue an interrupted run: 'auto' or a checkpoint directory.", rich_help_panel=TRAINING),
]
ReportToOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Log metrics and the run's config to {listed(TRACKERS[1:])} (files under OUTPUT/logs). {default(TrainOptions.report_to)}",
        rich_help_panel=TRAINING,
    ),
]

# token classification (NER)
SchemeOpt = Annotated[
    str | None,
    typer.Option(
        help="Tagging scheme of the input: IO, BIO (IOB2), IOB1 or BIOES. [default: detected]", rich_help_panel=NER
    ),
]
LONG = "Long texts"
StrideOpt = Annotated[
    int | None,
    typer.Option(
        help="Tokens shared by the overlapping windows of inputs longer than --max-length (NER sentences, --long-text window). [default: max length / 4]",
        rich_help_panel=LONG,
    ),
]
LexicalOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Classifiers: also fit a TF-IDF + linear baseline on the training split and report it; {listed(LEXICAL)}: combine it with the fine-tuned model when that beats the model alone on validation by more than noise (the weight chosen there), never, or predict with the baseline alone. {default(FinetuneConfig.lexical)}",
        rich_help_panel=TRAINING,
    ),
]
LongTextOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Classifiers and rerankers, inputs past --max-length: {listed(LONG_TEXT)} (every token read, in overlapping windows; a reranker keeps the query whole and windows the document). [default: the model's; finetune: chosen from the data's lengths, rerankers truncate]",
        rich_help_panel=LONG,
    ),
]
TrainWindowsOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Windows of a long text trained on per epoch, drawn afresh every epoch; 0: all (prediction always reads them all). [default: all when the texts average at most {WINDOWS_PER_TEXT} windows, else 1]",
        rich_help_panel=LONG,
    ),
]
AggregateOpt = Annotated[
    str | None,
    typer.Option(
        help=f"How a windowed input's window logits decide: {listed(AGGREGATES)}. [default: the model's; finetune: mean, rerankers max (the best passage)]",
        rich_help_panel=LONG,
    ),
]
AggregationOpt = Annotated[
    str | None,
    typer.Option(
        help=f"How a word's sub-tokens decide its tag: {listed(AGGREGATIONS)}. {default(PredictConfig.aggregation)}",
        rich_help_panel=NER,
    ),
]
