"""Masked-LM pretraining speed: bertcli's `pretrain()` against the HF `Trainer` with run_mlm's setup.

Same corpus (Rotten Tomatoes critic snippets, one document per movie), same model (the `mini` preset,
4 layers x 256, from the same initial weights), same 30,522-token BERT vocabulary (all-MiniLM-L6-v2's
tokenizer), same blocks of 128 tokens, batch, steps, optimizer settings and schedule. The HF side is what
run_mlm.py does without --line_by_line: tokenize each line, concatenate, cut into 128-token blocks,
`DataCollatorForLanguageModeling(mlm_probability=0.15)`, `BertForMaskedLM` (its head over every position).

Reported: training tokens/s of each loop, and the validation MLM loss / masked-token accuracy of both final
models, scored the same way (`evaluate_mlm`, same held-out movies, same masks), so "equal quality after the
same number of tokens" can be checked next to the speed-up.

    python bench/pretrain.py                 # 12 steps of 32 x 128 tokens each side: ~6 min on a busy 2-core CPU
    python bench/pretrain.py --steps 200     # a longer run where the losses mean more

The table goes to stdout (markdown), progress to stderr. Timings are wall-clock on a machine that may be
shared, so the load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

GOAL = 1.5
SEED = 42
BLOCK = 128


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def environment() -> dict:
    import torch
    import transformers

    from bertcli.runtime.precision import fast_bf16_available, resolve_precision

    flags = set()
    if Path("/proc/cpuinfo").is_file():
        line = next((row for row in Path("/proc/cpuinfo").read_text().splitlines() if row.startswith("flags")), "")
        flags = set(line.split()) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": sorted(flags),
        "fast_bf16": fast_bf16_available(),
        "auto_precision": resolve_precision("auto"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average": os.getloadavg(),
    }


def write_corpus(work: Path, val_lines: int) -> tuple[Path, Path]:
    """train.txt (documents = movies, blank line between) and val.txt from movies not in train."""
    from bertcli.corpora import rotten_tomatoes

    train, test = rotten_tomatoes()
    docs = ["\n".join(" ".join(t.split()) for t in group.text) for _, group in train.groupby("movie_name", sort=False)]
    (work / "train.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    (work / "val.txt").write_text(
        "".join(" ".join(t.split()) + "\n" for t in test.text.head(val_lines)), encoding="utf-8"
    )
    return work / "train.txt", work / "val.txt"


def initial_model(tokenizer, preset: str):
    """The preset's BERT as bertcli creates it (same seed, same construction), for the HF side's start."""
    from accelerate.utils import set_seed
    from transformers import BertForMaskedLM, BertForPreTraining

    from bertcli.tasks.pretraining.models import preset_config

    set_seed(SEED)
    pretraining = BertForPreTraining(preset_config(preset, len(tokenizer), BLOCK, tokenizer.pad_token_id))
    model = BertForMaskedLM(pretraining.config)
    missing, _ = model.load_state_dict(pretraining.state_dict(), strict=False)
    assert not missing, missing
    return model


def run_bertcli(work: Path, corpus: Path, tokenizer_dir: str, preset: str, steps: int, batch: int) -> dict:
    from bertcli.config import PretrainConfig, build_config
    from bertcli.tasks.pretraining.pretrain import pretrain

    cfg = build_config(
        PretrainConfig,
        None,
        inputs=[str(corpus)],
        output=str(work / "bertcli"),
        preset=preset,
        tokenizer=tokenizer_dir,
        max_length=BLOCK,
        batch_size=batch,
        max_steps=steps,
        val_split=0.0,
        seed=SEED,
        lr=1e-4,
    )
    start = time.perf_counter()
    meta = pretrain(cfg).meta
    return {"tokens": meta["train_tokens"], "seconds": meta["train_seconds"], "wall": time.perf_counter() - start}


def run_hf(work: Path, corpus: Path, tokenizer, preset: str, steps: int, batch: int, bf16: bool) -> dict:
    """run_mlm.py's recipe: tokenize lines, concatenate, group into blocks, collator masks, Trainer trains."""
    from datasets import load_dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    lines = load_dataset("text", data_files=str(corpus), split="train")
    lines = lines.filter(lambda r: len(r["text"].strip()) > 0)
    tokenized = lines.map(
        lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True, remove_columns=["text"]
    )

    def group_texts(examples):
        joined = {k: list(chain.from_iterable(examples[k])) for k in examples}
        total = len(joined["input_ids"]) // BLOCK * BLOCK
        return {k: [v[i : i + BLOCK] for i in range(0, total, BLOCK)] for k, v in joined.items()}

    blocks = tokenized.map(group_texts, batched=True)
    args = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-4,
        warmup_steps=int(0.1 * steps),
        weight_decay=0.01,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        seed=SEED,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=bf16,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=initial_model(tokenizer, preset), args=args, train_dataset=blocks, data_collator=collator)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its metrics; stdout is for the table
        output = trainer.train()
    wall = time.perf_counter() - start
    trainer.save_model(str(work / "hf-model"))
    tokenizer.save_pretrained(str(work / "hf-model"))
    return {
        "tokens": steps * batch * BLOCK,
        "seconds": output.metrics["train_runtime"],
        "wall": wall,
        "optim": str(args.optim),
        "blocks": len(blocks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--val-lines", type=int, default=400)
    args = parser.parse_args()

    from bertcli.hub import default_model, load_tokenizer
    from bertcli.tasks.pretraining.pretrain import evaluate_mlm

    env = environment()
    log(f"environment: {json.dumps(env)}")
    work = Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    try:
        corpus, val = write_corpus(work, args.val_lines)
        tokenizer_dir = default_model()
        tokenizer = load_tokenizer(tokenizer_dir)
        log(f"bertcli pretrain: preset {args.preset}, {args.steps} steps of {args.batch} x {BLOCK} tokens")
        ours = run_bertcli(work, corpus, tokenizer_dir, args.preset, args.steps, args.batch)
        log(
            f"HF Trainer + DataCollatorForLanguageModeling: same model, steps, batch (bf16 {env['auto_precision'] == 'bf16'})"
        )
        theirs = run_hf(
            work, corpus, tokenizer, args.preset, args.steps, args.batch, bf16=env["auto_precision"] == "bf16"
        )
        log("scoring both on held-out movies (same blocks, same masks)")
        scores = {
            name: evaluate_mlm(str(work / d), [str(val)], max_length=BLOCK, seed=0)
            for name, d in (("ours", "bertcli"), ("hf", "hf-model"))
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {name: r["tokens"] / r["seconds"] for name, r in (("ours", ours), ("hf", theirs))}
    speedup = rate["ours"] / rate["hf"]
    print(
        f"## Pretraining ({args.preset} preset, vocabulary {len(tokenizer):,}, {BLOCK}-token blocks, batch {args.batch}, {args.steps} steps)\n"
    )
    print(
        f"CPU: {env['cpu']}, {env['cores']} cores ({', '.join(env['cpu_flags'])}), torch threads {env['torch_threads']}, "
        f"load average {env['load_average'][0]:.1f} before; precision: {'bf16' if env['auto_precision'] == 'bf16' else 'fp32 (auto: this CPU has no fast bf16)'}\n"
    )
    print("| loop | train tokens | tokens/s | val MLM loss | val masked-token acc | train s | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(
        f"| bertcli pretrain | {ours['tokens']:,} | {rate['ours']:,.0f} | {scores['ours']['loss']:.3f} | {scores['ours']['accuracy']:.3f} | "
        f"{ours['seconds']:.0f} | head at masked positions only, packed blocks, fused AdamW; whole call {ours['wall']:.0f}s |"
    )
    print(
        f"| HF Trainer + DataCollatorForLanguageModeling | {theirs['tokens']:,} | {rate['hf']:,.0f} | {scores['hf']['loss']:.3f} | "
        f"{scores['hf']['accuracy']:.3f} | {theirs['seconds']:.0f} | run_mlm grouping ({theirs['blocks']} blocks), optim {theirs['optim']} |"
    )
    verdict = "meets" if speedup >= GOAL else "misses"
    print(
        f"\nSpeed-up {speedup:.2f}x ({verdict} the {GOAL}x goal); validation loss {scores['ours']['loss']:.3f} vs {scores['hf']['loss']:.3f} "
        f"on {scores['ours']['examples']} held-out blocks. Load average after: {os.getloadavg()[0]:.1f}."
    )


if __name__ == "__main__":
    main()
