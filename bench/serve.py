"""Serving speed on loopback, in two parts.

embeddings: `bertcli serve` (torch, ONNX) answering single-text `/v1/embeddings` requests from 1, 8 and 64 concurrent
clients, as a share of what `bertcli.Embedder` reaches offline on the same texts in the same run (the ceiling: the
median of 3 passes, measured before and after the servers' runs and averaged), on two real corpora: short snippets
(Rotten Tomatoes critics, nearly uniform in length) and long-tail statements (the 2016 US debates: tokens p50 20,
p95 about 300, capped at the model's 256), with all-MiniLM-L6-v2. Each load also reports the cores each side used
meanwhile (from /proc): the server's forward threads, its event loop, and the client, which shares the machine.

classifier: a fine-tuned classifier's `/predict` (1 and 16 inputs per request) against the server people write by
hand (FastAPI calling `transformers.pipeline` per request) and against offline predict.

`--before DIR` serves from another checkout too (e.g. `git archive <commit> | tar -x -C DIR`), in the same run, so a
change is measured against the code before it on the same machine load. Every request goes to 127.0.0.1; request
counts and each scenario's time are bounded.

    python bench/serve.py --part embeddings --before /tmp/base   # about 6 minutes on 2 idle cores
    python bench/serve.py --part classifier                      # about 6 minutes
    python bench/serve.py --part embeddings --repeats 3 --before /tmp/base   # medians of 3 runs: about 11 minutes
    python bench/serve.py --part embeddings --scenarios "long tail"          # one corpus
    python bench/serve.py --quick                                # fewer requests: checks that everything runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"vs_hand_written_64": 3.0, "of_offline": 0.70, "long_tail_64": 0.80, "long_tail_8": 0.60}
SCENARIOS = ("short snippets", "long tail")  # the embeddings part's corpora (see corpora)
DEADLINE_SECONDS = 120  # no load run lasts longer, whatever the server does
HAND_WRITTEN = """
import os
from fastapi import FastAPI
from transformers import pipeline

classify = pipeline("text-classification", model=os.environ["MODEL_DIR"], device="cpu")
app = FastAPI()


@app.post("/predict")
def predict(body: dict):
    return classify(body["inputs"])
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, threads: int, model: Path, root: Path = ROOT) -> subprocess.Popen:
    """The server in a subprocess (bertcli imported from `root`), once /health or a first /predict answers."""
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MODEL_DIR": str(model), "PYTHONPATH": str(root)}
    # cwd: `python -m` puts the working directory ahead of PYTHONPATH, so the server would import the checkout it was
    # started from, not `root`
    process = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{' '.join(command)} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return process
            httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": "warm up"}, timeout=5).raise_for_status()
            return process  # the hand-written server has no /health
        except Exception:
            time.sleep(0.3)
    process.kill()
    sys.exit(f"{' '.join(command)} did not answer within 180 s")


async def load(url: str, bodies: list[str], clients: int, per_request: int = 1) -> dict:
    """POST `bodies` from `clients` concurrent clients on open connections (one warm-up request each first);
    latency per request, throughput over the whole run. The client is aiohttp's: on 2 shared cores, httpx's own
    ~6 ms of CPU per request would decide the result more than either server does."""
    import aiohttp

    pending = list(reversed(bodies))
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    headers = {"content-type": "application/json"}

    async def post(http: aiohttp.ClientSession, body: str) -> int:
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal failures
        while pending and time.monotonic() < deadline:
            body = pending.pop()
            start = time.perf_counter()
            try:
                status = await post(http, body)
            except (aiohttp.ClientError, asyncio.TimeoutError):  # a dropped connection is a failure, not the end
                status = 0
            latencies.append(time.perf_counter() - start)
            failures += status != 200

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=DEADLINE_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(post(http, bodies[i % len(bodies)]) for i in range(clients)))  # open the connections
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    done = len(latencies)
    return {"requests/s": done / wall, "inputs/s": done * per_request / wall, "p50": percentile(0.5), "p95": percentile(0.95),
            "p99": percentile(0.99), "done": done, "failures": failures}  # fmt: skip


def median_run(results: list[dict]) -> dict:
    """Each measure's median over repeated runs of one load; failures summed, so that none is hidden."""
    median = {key: sorted(r[key] for r in results)[len(results) // 2] for key in results[0]}
    return {**median, "failures": sum(r["failures"] for r in results)}


def bertcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bertcli", *args]  # imports bertcli from the PYTHONPATH `start` sets


# --- embeddings: short snippets and a long tail, as a share of the offline rate ----------------------------------


def corpora(tokenizer_dir: str, size: int) -> dict[str, list[str]]:
    """The two scenarios' texts, `size` of each, shuffled (seeded) so that long ones come at random through the run."""
    import pandas as pd
    from tokenizers import Tokenizer

    from bertcli.corpora import debates, rotten_tomatoes

    _, snippets = rotten_tomatoes()
    statements = pd.concat(debates())
    scenarios = dict(zip(SCENARIOS, (list(snippets["text"]), list(statements["text"]))))
    tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir, "tokenizer.json")))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    for name, texts in scenarios.items():
        random.Random(0).shuffle(texts)
        del texts[size:]
        lengths = sorted(len(e.ids) for e in tokenizer.encode_batch(texts))
        shape = ", ".join(f"p{q} {lengths[int(q / 100 * (len(lengths) - 1))]}" for q in (50, 95, 99))
        log(f"{name}: {len(texts)} texts, tokens {shape}")
    return scenarios


def offline_embed_rate(model: Path, texts: list[str], backend: str, threads: int, passes: int = 3) -> float:
    """`bertcli.Embedder` on all the texts at once (in-process, loaded, warmed up on them): the ceiling a server can
    approach, since it sorts every text by length before batching. The median of `passes` timed passes: one pass
    moved by up to 25% within a run on 2 shared cores."""
    from bertcli import Embedder
    from bertcli.tasks.embedding.embedder import sentence_transformers_pooling

    embedder = Embedder(str(model), backend=backend, threads=threads, **sentence_transformers_pooling(model))
    embedder.embed(texts)  # a first pass meets every batch shape once (oneDNN builds kernels per shape)
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        embedder.embed(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def thread_seconds(pid: int) -> dict[str, float]:
    """CPU seconds a process has used so far: its first thread (the event loop) and all others together (forward
    threads and their intra-op workers); empty where /proc is missing."""
    used = {"loop": 0.0, "forwards": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for task in tasks:
        try:
            fields = Path(f"/proc/{pid}/task/{task}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended
            continue
        used["loop" if task == str(pid) else "forwards"] += (int(fields[11]) + int(fields[12])) / tick
    return used


async def measured_load(url: str, bodies: list[str], clients: int, server: int) -> dict:
    """`load`, with the cores each side used meanwhile: the server's forward threads and event loop, and this
    process (the client). On 2 cores a share of the offline rate is bounded by what the forwards get."""
    before, client_before = thread_seconds(server), time.process_time()
    start = time.perf_counter()
    result = await load(url, bodies, clients)
    wall = time.perf_counter() - start
    after = thread_seconds(server)
    cores = {f"{k} cores": (after[k] - before[k]) / wall for k in after.keys() & before.keys()}
    return {**result, **cores, "client cores": (time.process_time() - client_before) / wall}


def serve_encoder(
    directory: Path, backend: str, root: Path, texts: list[str], args: argparse.Namespace
) -> tuple[int, subprocess.Popen]:
    """`bertcli serve` of the encoder from `root`'s code, warmed up on the texts (as the offline rate is)."""
    port = free_port()
    command = bertcli(
        "serve", f"m={directory}", "--backend", backend.lower(), "--port", str(port), "--threads", str(args.threads)
    )  # fmt: skip
    process = start(command, port, args.threads, directory, root)
    warm_up = [json.dumps({"model": "m", "input": text}) for text in texts[: 32 if args.quick else 256]]
    asyncio.run(load(f"http://127.0.0.1:{port}/v1/embeddings", warm_up, 64))
    return port, process


def embeddings_part(args: argparse.Namespace, work: Path) -> list[tuple]:
    from bertcli.hub import resolve_model

    model = Path(resolve_model(args.encoder)).resolve()
    onnx = work / "onnx-encoder"
    subprocess.run(
        bertcli("export", str(model), "-o", str(onnx), "--overwrite"),
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    roots = {"now": ROOT, **({"before": Path(args.before)} if args.before else {})}
    rows = []
    scenarios = corpora(str(model), 400 if args.quick else 1000)
    for scenario in args.scenarios.split(","):
        texts = scenarios[scenario]
        for backend, directory in (("torch", model), ("ONNX", onnx)):
            before = offline_embed_rate(directory, texts, backend.lower(), args.threads)
            servers = {version: serve_encoder(directory, backend, root, texts, args) for version, root in roots.items()}
            measured = []
            try:
                for clients in (1, 8, 64):
                    count = (48 if args.quick else 512) // (2 if clients == 1 else 1)
                    bodies = [json.dumps({"model": "m", "input": texts[i % len(texts)]}) for i in range(count)]
                    runs: dict[str, list[dict]] = {version: [] for version in servers}
                    for _repeat in range(args.repeats):  # now and before alternate: the machine's speed drifts
                        for version, (port, process) in servers.items():
                            url = f"http://127.0.0.1:{port}/v1/embeddings"
                            result = asyncio.run(measured_load(url, bodies, clients, process.pid))
                            runs[version].append(result)
                            log(
                                f"{scenario}, {backend}, {version}: {clients} clients: {result['requests/s']:.1f} req/s"
                            )
                    measured += [(version, clients, median_run(results)) for version, results in runs.items()]
            finally:
                for _, process in servers.values():
                    process.terminate()
                    process.wait(timeout=60)
            # the ceiling on either side of the load runs, so that a drift of the machine's speed during them (it
            # moved by up to 25% within one run here) weighs on the ceiling as it does on the servers
            after = offline_embed_rate(directory, texts, backend.lower(), args.threads)
            offline = (before + after) / 2
            log(f"{scenario}, {backend}: offline {before:.1f} texts/s before the servers, {after:.1f} after")
            rows += [(scenario, backend, version, clients, offline, result) for version, clients, result in measured]
    return rows


def embeddings_report(rows: list[tuple]) -> None:
    print(
        "\n| scenario | backend | server | clients | requests/s | of offline | p50 ms | p99 ms | non-200 "
        "| cores: forwards / event loop / client |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for scenario, backend, version, clients, offline, r in rows:
        cores = " / ".join(f"{r[k]:.2f}" if k in r else "-" for k in ("forwards cores", "loop cores", "client cores"))
        print(
            f"| {scenario} | {backend} | {version} | {clients} | {r['requests/s']:.1f} | {r['requests/s'] / offline:.0%} "
            f"| {r['p50']:.0f} | {r['p99']:.0f} | {r['failures']} | {cores} |"
        )
    print("\n| scenario | backend | offline texts/s (bertcli.Embedder, same texts) |\n|---|---|---:|")
    for scenario, backend, offline in dict.fromkeys((s, b, o) for s, b, _, _, o, _ in rows):
        print(f"| {scenario} | {backend} | {offline:.1f} |")
    found = {(s, b, v, c): r for s, b, v, c, _, r in rows}
    lines = []
    for backend in ("torch", "ONNX"):
        line = f"{backend}"
        if ("long tail", backend, "now", 64) in found:
            share = {c: found["long tail", backend, "now", c]["requests/s"] / next(
                o for s, b, _, _, o, _ in rows if (s, b) == ("long tail", backend)) for c in (8, 64)}  # fmt: skip
            line += (
                f", long tail: {share[64]:.0%} of offline at 64 clients (goal >= {GOALS['long_tail_64']:.0%}), "
                f"{share[8]:.0%} at 8 (goal >= {GOALS['long_tail_8']:.0%})"
            )
        if ("long tail", backend, "before", 64) in found:
            now, before = found["long tail", backend, "now", 64], found["long tail", backend, "before", 64]
            line += f"; p99 at 64 clients {now['p99']:.0f} ms vs {before['p99']:.0f} before"
        if ("short snippets", backend, "before", 64) in found:
            snippets = [found["short snippets", backend, v, 64]["requests/s"] for v in ("now", "before")]
            line += f"; short snippets at 64 clients {snippets[0]:.1f} vs {snippets[1]:.1f} req/s before"
        if line != backend:
            lines.append(line)
    print("\n" + "\n".join(lines))


# --- classifier: against the hand-written server -----------------------------------------------------------------


def offline_predict_rate(model: Path, texts: list[str], threads: int) -> float:
    """bertcli's offline predict on the same texts (in-process, model loaded): the ceiling a server can approach."""
    from bertcli import load as load_model

    predictor = load_model(str(model), threads=threads)
    predictor.predict(texts[:8])
    start = time.perf_counter()
    predictor.predict(texts)
    return len(texts) / (time.perf_counter() - start)


def classifier_part(args: argparse.Namespace, work: Path) -> None:
    import pandas as pd

    from bertcli.corpora import write_rotten_tomatoes

    train, test = write_rotten_tomatoes(str(work / "rt"), 400 if args.quick else 2000, 1000)
    texts = [" ".join(str(t).split()) for t in pd.read_csv(test)["text"]]
    model = Path(args.model).resolve() if args.model else work / "clf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not args.model:
        log("fine-tuning the classifier to serve")
        command = bertcli("finetune", str(train), "-o", str(model), "--epochs", "1")
        subprocess.run(command, check=True, capture_output=True, env=env)
    command = bertcli("export", str(model), "-o", str(work / "onnx"), "--overwrite")
    subprocess.run(command, check=True, capture_output=True, env=env)
    (work / "hand_written.py").write_text(HAND_WRITTEN)
    servers = {
        "hand-written FastAPI + pipeline": lambda port: [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(work),
            "hand_written:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],  # fmt: skip
        "bertcli serve (torch)": lambda port: bertcli(
            "serve", str(model), "--backend", "torch", "--port", str(port), "--threads", str(args.threads)
        ),
        "bertcli serve (ONNX fp32)": lambda port: bertcli(
            "serve", str(work / "onnx"), "--port", str(port), "--threads", str(args.threads)
        ),
    }
    per_scenario = 64 if args.quick else 1536
    rows = []
    for name, command in servers.items():
        port = free_port()
        process = start(command(port), port, args.threads, model)
        try:
            for clients, size in [(1, 1), (8, 1), (64, 1), (8, 16), (64, 16)]:
                requests = max(clients, per_scenario // size)
                bodies = [json.dumps({"inputs": texts[(i * size) % len(texts)] if size == 1 else
                          [texts[(i * size + j) % len(texts)] for j in range(size)]}) for i in range(requests)]  # fmt: skip
                result = asyncio.run(load(f"http://127.0.0.1:{port}/predict", bodies, clients, size))
                rows.append((name, clients, size, result))
                log(f"{name}: {clients} clients x {size}: {result['requests/s']:.1f} req/s, p99 {result['p99']:.0f} ms")
        finally:
            process.terminate()
            process.wait(timeout=60)
    ceilings = {
        "torch": offline_predict_rate(model, texts, args.threads),
        "ONNX fp32": offline_predict_rate(work / "onnx", texts, args.threads),
    }
    classifier_report(rows, ceilings)


def classifier_report(rows: list, ceilings: dict[str, float]) -> None:
    print("\n| server | clients | inputs/request | requests/s | inputs/s | p50 ms | p95 ms | p99 ms | non-200 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, clients, size, r in rows:
        print(
            f"| {name} | {clients} | {size} | {r['requests/s']:.1f} | {r['inputs/s']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['failures']} |"
        )
    print("\n| offline (in-process predict, same texts) | inputs/s |\n|---|---:|")
    for name, rate in ceilings.items():
        print(f"| bertcli {name} | {rate:.1f} |")
    hand = next(r for n, c, s, r in rows if n.startswith("hand") and c == 64 and s == 1)
    lines = []
    for backend in ("torch", "ONNX fp32"):
        ours = next(r for n, c, s, r in rows if n == f"bertcli serve ({backend})" and c == 64 and s == 1)
        best = max(r["inputs/s"] for n, c, s, r in rows if n == f"bertcli serve ({backend})")
        lines.append(
            f"{backend}: 64 single-text clients {ours['requests/s'] / hand['requests/s']:.2f}x the hand-written server's "
            f"requests/s (goal >= {GOALS['vs_hand_written_64']}), p99 {ours['p99']:.0f} vs {hand['p99']:.0f} ms; "
            f"best inputs/s {best / ceilings[backend]:.0%} of offline (goal >= {GOALS['of_offline']:.0%})"
        )
    print("\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("embeddings", "classifier", "all"), default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", help="also serve from this checkout of an earlier commit (embeddings part)")
    parser.add_argument("--encoder", help="the encoder of the embeddings part [default: all-MiniLM-L6-v2]")
    parser.add_argument("--model", help="a fine-tuned classifier [default: fine-tune one on Rotten Tomatoes]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each load (embeddings part); medians reported")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="the embeddings part's, comma-separated")
    args = parser.parse_args()
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}: choose from {', '.join(SCENARIOS)}")
    work = Path(tempfile.mkdtemp(prefix="bertcli-bench-serve-"))
    try:
        if args.part in ("embeddings", "all"):
            embeddings_report(embeddings_part(args, work))
        if args.part in ("classifier", "all"):
            classifier_part(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
