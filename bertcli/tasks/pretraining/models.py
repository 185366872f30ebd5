"""The model pretraining trains: a BERT miniature's shape or a config file from scratch, or an existing BERT with its
pretraining heads; and its tokenizer (the model's, --tokenizer, or a WordPiece vocabulary trained on the corpus)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bertcli.config import BERT_VOCAB_SIZE, PRESETS, PretrainConfig
from bertcli.errors import ModelError
from bertcli.tasks.pretraining.data import read_documents

log = logging.getLogger("bertcli")


def preset_config(preset: str, vocab_size: int, max_length: int, pad_token_id: int) -> Any:
    from transformers import BertConfig

    layers, hidden = PRESETS[preset]
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, max_length),
        pad_token_id=pad_token_id,
    )


def config_from_file(path: str, vocab_size: int, pad_token_id: int) -> Any:
    from transformers import BertConfig

    try:
        config = BertConfig.from_json_file(path)
    except Exception as exc:
        raise ModelError(f"cannot read the model config: {exc}", file=path) from None
    if config.model_type != "bert":
        raise ModelError(f"expected a BERT config, got model_type {config.model_type!r}", file=path)
    config.vocab_size, config.pad_token_id = vocab_size, pad_token_id
    return config


def load_pretraining_model(path: str, nsp: bool) -> Any:
    """An existing BERT with its pretraining heads; heads the checkpoint lacks are initialised, and said so."""
    from transformers import AutoConfig, BertForPreTraining

    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except Exception as exc:
        raise ModelError(f"cannot read the model config: {exc}", file=path) from None
    if model_type != "bert":
        raise ModelError(f"pretrain continues BERT models; this one is {model_type!r}", file=path)
    try:
        model, info = BertForPreTraining.from_pretrained(path, output_loading_info=True)
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", file=path) from None
    missing = set(info["missing_keys"])
    name = Path(path).name
    if any(k.startswith("cls.predictions") for k in missing):
        tied = model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
        how = "its output projection tied to the input embeddings" if tied else "untied (tie_word_embeddings is false)"
        log.info("%s has no masked-LM head: initialised one, %s", name, how)
    if nsp and any(k.startswith("cls.seq_relationship") for k in missing):
        log.info("%s has no next-sentence head: initialised one", name)
    if any(k.startswith("bert.pooler") for k in missing):
        log.info("%s has no pooler (used by NSP and by classifiers fine-tuned later): initialised one", name)
    encoder = sorted(k for k in missing if not k.startswith(("cls.", "bert.pooler")))
    if encoder:
        log.warning("weights not found in %s were initialised at random: %s", name, ", ".join(encoder[:5]))
    return model


def load_or_train_tokenizer(cfg: PretrainConfig, files: list[Path], run_dir: Path, model_path: str | None) -> Any:
    """The model's tokenizer, --tokenizer, or a WordPiece vocabulary trained on the corpus (kept for --resume)."""
    from bertcli.hub import load_tokenizer
    from bertcli.vocab import train_wordpiece

    if model_path or cfg.tokenizer:
        return load_tokenizer(model_path or cfg.tokenizer)
    trained = run_dir / "tokenizer"
    if (trained / "tokenizer_config.json").is_file():
        log.info("reusing the vocabulary trained at the start of this run (%s)", trained)
        return load_tokenizer(str(trained))
    size = cfg.vocab_size or BERT_VOCAB_SIZE
    log.info("training a WordPiece vocabulary of up to %d tokens on the corpus", size)
    lines = (line for doc in read_documents(files, cfg.data, cfg.streaming) for line in doc)
    tokenizer = train_wordpiece(lines, trained, vocab_size=size, lowercase=True)
    log.info("vocabulary: %d tokens", len(tokenizer))
    return tokenizer


def build_model(cfg: PretrainConfig, tokenizer: Any, model_path: str | None, max_length: int) -> Any:
    from transformers import BertForPreTraining

    if model_path:
        return load_pretraining_model(model_path, cfg.nsp)
    if cfg.preset:
        config = preset_config(cfg.preset, len(tokenizer), max_length, tokenizer.pad_token_id)
    else:
        config = config_from_file(cfg.model_config, len(tokenizer), tokenizer.pad_token_id)
    model = BertForPreTraining(config)
    log.info(
        "new BERT: %d layers, hidden %d, %d heads, vocabulary %d, %.1fM parameters",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.vocab_size,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return model
