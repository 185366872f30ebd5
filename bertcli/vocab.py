"""WordPiece vocabulary training (the `tokenizers` library), shared by `tokenize train-vocab` and `pretrain`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(
    texts: Iterable[str],
    output_dir: str | Path,
    vocab_size: int,
    lowercase: bool = True,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> Any:
    """Train a BERT WordPiece tokenizer on `texts` and save it where `AutoTokenizer` loads it as a fast BERT tokenizer.

    The directory is written beside the target and renamed into place, so it is complete or absent.
    """
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    from bertcli.io import replace_dir

    trainer = BertWordPieceTokenizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    trainer.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        wordpieces_prefix="##",
        show_progress=False,
    )
    target = Path(output_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        trainer.save_model(str(staging))
        tokenizer = BertTokenizerFast(
            vocab=str(staging / "vocab.txt"),
            do_lower_case=lowercase,
            strip_accents=None,
            model_max_length=model_max_length,
        )
        tokenizer.save_pretrained(str(staging))
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BertTokenizerFast.from_pretrained(str(target))
