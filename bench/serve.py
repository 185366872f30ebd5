"""Serving speed on loopback: `bertcli serve` (torch, ONNX) against the server people write by hand (FastAPI calling
`transformers.pipeline` per request), and against bertcli's offline predict on the same texts (the ceiling).

Clients: 1, 8 and 64 concurrent, sending single texts or batches of 16, a fixed number of requests each; every
request goes to 127.0.0.1 and the loops are bounded in count and time. Reported: requests/s, inputs/s and
p50/p95/p99 latency. The model is all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes (or --model).

    python bench/serve.py               # about 6 minutes on 2 idle cores
    python bench/serve.py --quick       # fewer requests: checks that everything runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"vs_hand_written_64": 3.0, "of_offline": 0.70}
DEADLINE_SECONDS = 120  # no scenario runs longer, whatever the server does
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


def start(command: list[str], port: int, threads: int, model: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MODEL_DIR": str(model)}  # the hand-written app reads it
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{' '.join(command)} exited with {process.returncode}")
        try:
            httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": "warm up"}, timeout=5).raise_for_status()
            return process
        except Exception:
            time.sleep(0.3)
    process.kill()
    sys.exit(f"{' '.join(command)} did not answer within 180 s")


async def load(port: int, texts: list[str], clients: int, per_request: int, requests: int) -> dict:
    """`requests` POSTs from `clients` concurrent clients on open connections (one warm-up request each first);
    latency per request, throughput over the whole run. The client is aiohttp's: on 2 shared cores, httpx's own
    ~6 ms of CPU per request would decide the result more than either server does."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/predict"
    bodies = [json.dumps({"inputs": texts[(i * per_request) % len(texts)] if per_request == 1 else
               [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]}) for i in range(requests)]  # fmt: skip
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
            status = await post(http, body)
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


def offline_rate(model: Path, texts: list[str], threads: int) -> float:
    """bertcli's offline predict on the same texts (in-process, model loaded): the ceiling a server can approach."""
    from bertcli import load as load_model

    predictor = load_model(str(model), threads=threads)
    predictor.predict(texts[:8])
    start = time.perf_counter()
    predictor.predict(texts)
    return len(texts) / (time.perf_counter() - start)


def bertcli(*args: str) -> list[str]:
    found = shutil.which("bertcli")
    return [found, *args] if found else [sys.executable, "-m", "bertcli", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="a fine-tuned classifier [default: fine-tune one on Rotten Tomatoes]")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bertcli-bench-serve-"))
    import pandas as pd

    from bertcli.corpora import write_rotten_tomatoes

    train, test = write_rotten_tomatoes(str(work / "rt"), 400 if args.quick else 2000, 1000)
    texts = [" ".join(str(t).split()) for t in pd.read_csv(test)["text"]]
    model = Path(args.model) if args.model else work / "clf"
    if not args.model:
        log("fine-tuning the classifier to serve")
        subprocess.run(
            bertcli("finetune", str(train), "-o", str(model), "--epochs", "1"), check=True, capture_output=True
        )
    subprocess.run(
        bertcli("export", str(model), "-o", str(work / "onnx"), "--overwrite"), check=True, capture_output=True
    )
    script = work / "hand_written.py"
    script.write_text(HAND_WRITTEN)
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
        ],
        "bertcli serve (torch)": lambda port: bertcli(
            "serve", str(model), "--backend", "torch", "--port", str(port), "--threads", str(args.threads)
        ),
        "bertcli serve (ONNX fp32)": lambda port: bertcli(
            "serve", str(work / "onnx"), "--port", str(port), "--threads", str(args.threads)
        ),
    }
    scenarios = [(1, 1), (8, 1), (64, 1), (8, 16), (64, 16)]
    per_scenario = 64 if args.quick else 1536
    rows = []
    for name, command in servers.items():
        port = free_port()
        process = start(command(port), port, args.threads, model)
        try:
            for clients, size in scenarios:
                requests = max(clients, per_scenario // size)
                result = asyncio.run(load(port, texts, clients, size, requests))
                rows.append((name, clients, size, result))
                log(
                    f"{name}: {clients} clients x {size} inputs: {result['requests/s']:.1f} req/s, p99 {result['p99']:.0f} ms"
                )
        finally:
            process.terminate()
            process.wait(timeout=60)
    ceilings = {
        "torch": offline_rate(model, texts, args.threads),
        "ONNX fp32": offline_rate(work / "onnx", texts, args.threads),
    }
    report(rows, ceilings)
    shutil.rmtree(work, ignore_errors=True)


def report(rows: list, ceilings: dict[str, float]) -> None:
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


if __name__ == "__main__":
    main()
