"""Embedding throughput: `bertcli embed` vs sentence-transformers vs a plain Transformers loop, fp32 and bf16.

Same model (all-MiniLM-L6-v2), same corpus (Rotten Tomatoes critic snippets: real English sentences
of varied length), same process. The methods run in interleaved rounds and each keeps its best
round, so a burst of load from other processes on a shared machine hurts every method alike.
The FLOP bound is the corpus's exact (unpadded) matmul FLOPs divided into a measured matmul rate.

    python bench/embed.py                  # 2000 sentences, 3 rounds, 2 threads
    python bench/embed.py --n 5000 --bf16-n 512   # on a CPU with AVX512-BF16/AMX or a GPU
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def padded_loop(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """The naive baseline: input order, every batch padded to max_length, masked mean pooling."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size],
                padding="max_length",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).numpy())
    return np.concatenate(out)


def matmul_rate(bf16: bool, seconds: float = 1.0) -> float:
    """Best FLOP/s of the model's dense layers (2048 tokens, 384 <-> 1536), run as the model runs them (autocast for bf16)."""
    shapes = [(torch.randn(2048, 384), torch.randn(1536, 384)), (torch.randn(2048, 1536), torch.randn(384, 1536))]
    best, deadline = 0.0, time.perf_counter() + seconds
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        while time.perf_counter() < deadline:
            for x, w in shapes:
                start = time.perf_counter()
                torch.nn.functional.linear(x, w)
                best = max(best, 2 * x.shape[0] * x.shape[1] * w.shape[0] / (time.perf_counter() - start))
    return best


def corpus_flops(config, lengths: np.ndarray) -> float:
    """Matmul FLOPs of the encoder over unpadded inputs: the dense layers plus attention scores and mixing."""
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 2 * (4 * hidden * hidden + 2 * hidden * inter)  # per token per layer: q, k, v, out, two FFN matrices
    attention = 2 * 2 * hidden * lengths.astype(np.float64) ** 2  # per sentence per layer: QK^T and AV
    return float(layers * (dense * lengths.sum() + attention.sum()))


ST = "sentence-transformers encode(batch_size=32)"
PADDED = "Transformers loop, padded to 128, batch 32"
OURS = "bertcli embed (core, default batching)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="sentences for the fp32 methods")
    parser.add_argument("--bf16-n", type=int, default=32, help="sentences for bf16 (slow without AVX512-BF16/AMX)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers
    from sentence_transformers import SentenceTransformer

    from bertcli.config import EmbedOptions
    from bertcli.corpora import rotten_tomatoes
    from bertcli.hub import default_model
    from bertcli.runtime.precision import fast_bf16_available
    from bertcli.tasks.embedding.embedder import Embedder

    path = default_model()
    texts = [" ".join(t.split()) for t in rotten_tomatoes()[1]["text"].tolist()][: args.n]
    st = SentenceTransformer(path, device="cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    plain = transformers.AutoModel.from_pretrained(path).eval()
    embedder = Embedder(None, EmbedOptions(normalize=True, precision="no"))
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]])
    print(
        f"corpus: {len(texts)} Rotten Tomatoes snippets, tokens p50 {np.median(lengths):.0f} mean {lengths.mean():.1f} max {lengths.max()}"
    )
    print(
        f"torch {torch.__version__}, {args.threads} threads, fast bf16 on this CPU: {fast_bf16_available()}, "
        f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    def timed(fn, subset):
        start = time.perf_counter()
        result = fn(subset)
        return len(subset) / (time.perf_counter() - start), result

    fp32 = {
        ST: lambda s: st.encode(s, batch_size=32, normalize_embeddings=True),
        PADDED: lambda s: padded_loop(plain, tokenizer, s),
        OURS: lambda s: embedder.embed(s).vectors,
    }
    rates: dict[str, list[float]] = {name: [] for name in fp32}
    vectors: dict[str, np.ndarray] = {}
    rate32 = 0.0
    for fn in fp32.values():  # warm-up
        fn(texts[:64])
    for round_no in range(args.rounds):
        rate32 = max(rate32, matmul_rate(bf16=False))  # probed every round: the quietest moment gives the bound
        for name in list(fp32)[
            :: 1 if round_no % 2 == 0 else -1
        ]:  # alternate the order, so no method always runs first
            rate, vectors[name] = timed(fp32[name], texts)
            rates[name].append(rate)
        print(
            f"round {round_no + 1}: " + ", ".join(f"{name.split()[0]} {r[-1]:.0f}" for name, r in rates.items()),
            flush=True,
        )
    best = {name: max(r) for name, r in rates.items()}
    paired = float(np.median([o / s for o, s in zip(rates[OURS], rates[ST])]))
    cosine_st = float((vectors[OURS] * vectors[ST]).sum(1).min())

    # bf16: autocast on a subset (tens of times slower than fp32 on CPUs without AVX512-BF16/AMX)
    subset = texts[:: max(1, len(texts) // args.bf16_n)][: args.bf16_n]
    embedder16 = Embedder(None, EmbedOptions(normalize=True, precision="bf16"))

    def autocast(fn):
        def run(s):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(s)

        return run

    bf16 = {ST: autocast(fp32[ST]), PADDED: autocast(fp32[PADDED]), OURS: lambda s: embedder16.embed(s).vectors}
    best16: dict[str, float] = {}
    for name, fn in bf16.items():
        rate, result = timed(fn, subset)
        best16[name] = rate
        if name == OURS:
            base = embedder.embed(subset).vectors
            bf16_diff = float(np.abs(result - base).max())
            bf16_cos = float((result * base).sum(1).min())

    # end to end: the real command, process start and model load included
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp, "corpus.txt")
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        start = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cli = [
            sys.executable,
            "-m",
            "bertcli",
            "-q",
            "embed",
            str(corpus),
            "-o",
            str(Path(tmp, "v.npy")),
            "--normalize",
        ]
        subprocess.run(cli, check=True, env=env)
        cli_seconds = time.perf_counter() - start
        cli_cosine = float((np.load(Path(tmp, "v.npy")) * vectors[ST]).sum(1).min())

    flops_per_sentence = corpus_flops(plain.config, lengths) / len(lengths)
    sub_lengths = np.array([len(ids) for ids in tokenizer(subset, truncation=True, max_length=256)["input_ids"]])
    flops_per_sentence16 = corpus_flops(plain.config, sub_lengths) / len(sub_lengths)
    rate16 = matmul_rate(bf16=True)
    bound32, bound16 = rate32 / flops_per_sentence, rate16 / flops_per_sentence16
    print(
        f"\nmatmul rate: fp32 {rate32 / 1e9:.1f} GFLOP/s, bf16 {rate16 / 1e9:.1f} GFLOP/s; "
        f"{flops_per_sentence / 1e6:.0f} MFLOP per sentence -> bound fp32 {bound32:.0f}, bf16 {bound16:.0f} sentences/s\n"
    )
    st32, st16 = best[ST], best16[ST]
    print("| method | precision | sentences | sentences/s (best round) | vs sentence-transformers | of FLOP bound |")
    print("|---|---|---:|---:|---:|---:|")
    for name in fp32:
        print(
            f"| {name} | fp32 | {len(texts)} | {best[name]:.0f} | {best[name] / st32:.2f}x | {best[name] / bound32:.0%} |"
        )
    for name in bf16:
        print(
            f"| {name} | bf16 (autocast) | {len(subset)} | {best16[name]:.1f} | {best16[name] / st16:.2f}x | {best16[name] / bound16:.0%} |"
        )
    print(
        f"| `bertcli embed corpus.txt -o v.npy` (whole command, start-up and model load included) | fp32 | {len(texts)} | {len(texts) / cli_seconds:.0f} | | |"
    )
    ratio = min(paired, best[OURS] / st32)
    print(
        f"\nbertcli / sentence-transformers, fp32: {best[OURS] / st32:.2f}x best rounds, {paired:.2f}x median of paired rounds "
        f"({', '.join(f'{o / s:.2f}' for o, s in zip(rates[OURS], rates[ST]))})"
    )
    print(
        f"fp32 goal (>= 1.25x sentence-transformers): {'met' if ratio >= 1.25 else 'NOT met'} (the lower of the two: {ratio:.2f}x)"
    )
    print(
        f"bf16 goal (>= 2x sentence-transformers fp32): {best16[OURS] / st32:.2f}x -> {'met' if best16[OURS] >= 2 * st32 else 'NOT met'}"
        f"{'' if fast_bf16_available() else ' (this CPU has no AVX512-BF16/AMX: bf16 is emulated and slower than fp32; --precision auto picks fp32 here)'}"
    )
    print(f"bf16 vs fp32 vectors: max abs difference {bf16_diff:.4f}, min cosine {bf16_cos:.5f}")
    print(
        f"bertcli vs sentence-transformers (fp32): min cosine {cosine_st:.6f}; CLI output min cosine {cli_cosine:.6f}"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes on a shared machine slow every method)")


if __name__ == "__main__":
    main()
