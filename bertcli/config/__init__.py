"""Every command's options as dataclasses: the one source of their defaults, their checks and the defaults their
help shows. `fields` says how a configuration is declared, checked and built from a recipe and the command line."""

from bertcli.config.common import (
    AGGREGATE_DEFAULTS,
    AGGREGATES,
    AGGREGATIONS,
    BACKENDS,
    BATCH_TOKENS,
    BERT_VOCAB_SIZE,
    CHUNK_SIZE,
    LAYER_AGGS,
    LEXICAL,
    LONG_TEXT,
    POOLINGS,
    PRECISIONS,
    TASKS,
    TOKEN_CHUNK_SIZE,
    TRACKERS,
    DataOptions,
)
from bertcli.config.deploy import QUANTIZATIONS, ExportConfig, ServeConfig
from bertcli.config.fields import build_config, read_recipe, to_dict, validate
from bertcli.config.inference import (
    REPORT_FORMATS,
    EmbedConfig,
    EmbedOptions,
    EvaluateConfig,
    PredictConfig,
    RerankConfig,
    TokenizeConfig,
    VectorOptions,
)
from bertcli.config.training import (
    BATCH_SIZE,
    DEFAULT_METRICS,
    DEFAULT_SPACES,
    EPOCHS,
    LENGTH_CAP,
    MIN_STEPS,
    PRESETS,
    PRETRAIN_LR,
    SMALL_DATA_BATCH_SIZE,
    TASK_DEFAULTS,
    VALIDATION_METRICS,
    WINDOW_SHARE,
    WINDOWS_PER_TEXT,
    FinetuneConfig,
    NerOptions,
    PretrainConfig,
    PretrainOptions,
    TrainOptions,
    TuneConfig,
    WindowOptions,
    budget_seconds,
    classification_batch_size,
    classification_epochs,
    seed_list,
    train_windows,
    with_defaults,
)

__all__ = [
    "AGGREGATE_DEFAULTS", "AGGREGATES", "AGGREGATIONS", "BACKENDS", "LONG_TEXT", "WindowOptions", "BATCH_TOKENS", "BERT_VOCAB_SIZE", "CHUNK_SIZE", "LAYER_AGGS", "LEXICAL", "POOLINGS", "PRECISIONS",
    "PRESETS", "PRETRAIN_LR", "TASK_DEFAULTS", "VALIDATION_METRICS", "DEFAULT_METRICS", "DEFAULT_SPACES", "LENGTH_CAP", "WINDOW_SHARE", "BATCH_SIZE", "SMALL_DATA_BATCH_SIZE", "MIN_STEPS", "WINDOWS_PER_TEXT", "train_windows", "classification_batch_size", "classification_epochs", "EPOCHS", "TASKS", "TOKEN_CHUNK_SIZE", "TRACKERS", "DataOptions", "EmbedConfig", "EmbedOptions", "EvaluateConfig",
    "FinetuneConfig", "NerOptions", "PredictConfig", "RerankConfig", "PretrainConfig", "PretrainOptions", "TokenizeConfig", "TrainOptions",
    "VectorOptions", "REPORT_FORMATS", "QUANTIZATIONS", "ExportConfig", "ServeConfig", "build_config", "read_recipe", "to_dict", "validate", "with_defaults", "seed_list", "TuneConfig", "budget_seconds",
]  # fmt: skip
