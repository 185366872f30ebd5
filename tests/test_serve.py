"""bertcli serve over real HTTP on a loopback port, the server in a subprocess: results equal the CLI's, batching is
real, every error is one JSON body, overload answers 503, SIGTERM loses no accepted request, the key guards all
but /health. Request loops are bounded in count and time."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import sentiment_rows, toy_corpus, write_conll, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
TEXTS = ["the movie was great fun", "boring and dull , i hated it", "we met guitar in science with the code team", "ok"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`bertcli serve ARGS` on 127.0.0.1:PORT in a subprocess, up once /health answers 200."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
        command = [sys.executable, "-m", "bertcli", "serve", *args, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stderr.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not become healthy within 120 s")

    def post(self, route: str, body, **kwargs) -> httpx.Response:
        return httpx.post(self.url + route, json=body, timeout=60, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(f"{name}{{{wanted}}} ") or line.startswith(f"{name} ") and not labels:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture(scope="module")
def bundles(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    for data, name in (
        (write_csv(root / "train.csv", sentiment_rows(96)), "clf"),
        (write_conll(root / "train.conll", toy_corpus(160, seed=0)), "ner"),
    ):
        result = runner.invoke(
            app,
            [
                "finetune",
                str(data),
                "-o",
                str(root / name),
                "-m",
                str(tiny_model),
                "--epochs",
                "3",
                "--lr",
                "5e-3",
                "-b",
                "16",
            ],
        )
        assert result.exit_code == 0, result.stderr
    (root / "texts.txt").write_text("".join(t + "\n" for t in TEXTS))
    return {"clf": root / "clf", "ner": root / "ner", "enc": tiny_model, "texts": root / "texts.txt"}


@pytest.fixture(scope="module")
def server(bundles):
    started = Server(
        f"clf={bundles['clf']}",
        f"ner={bundles['ner']}",
        f"enc={bundles['enc']}",
        "--precision",
        "no",
        "--max-wait-ms",
        "20",
    )
    yield started
    code, err = started.stop()
    assert code == 0, err[-2000:]


def cli_records(*args: str) -> list[dict]:
    result = runner.invoke(app, [*args, "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("kind", ["clf", "ner"])
def test_predict_equals_the_cli(server, bundles, kind):
    want = cli_records("predict", str(bundles[kind]), str(bundles["texts"]))
    response = server.post("/predict", {"inputs": TEXTS, "model": kind})
    assert response.status_code == 200 and response.json() == want
    one = server.post("/predict", {"inputs": TEXTS[0], "model": kind})
    assert one.json() == want[0]


def test_predict_options_and_pairs(server, bundles):
    top = server.post("/predict", {"inputs": TEXTS[:2], "model": "clf", "top_k": 1}).json()
    assert [list(r["scores"]) for r in top] == [[r["label"]] for r in top]
    pairs = server.post(
        "/predict", {"inputs": [["a great film", "it was great"], ["dull", "it was awful"]], "model": "clf"}
    )
    assert pairs.status_code == 200 and len(pairs.json()) == 2 and {"label", "score", "scores"} <= set(pairs.json()[0])


def test_embeddings_equal_the_cli_through_raw_http_and_clients(server, bundles, tmp_path):
    out = tmp_path / "v.npy"
    result = runner.invoke(
        app, ["embed", str(bundles["texts"]), "-m", str(bundles["enc"]), "-o", str(out), "--precision", "no"]
    )
    assert result.exit_code == 0, result.stderr
    want = np.load(out)

    def cosine(vectors) -> float:
        got = np.asarray(vectors, dtype=np.float32)
        return float(((got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))).min())

    raw = server.post("/v1/embeddings", {"model": "enc", "input": TEXTS}).json()
    assert raw["object"] == "list" and raw["model"] == "enc" and [d["index"] for d in raw["data"]] == [0, 1, 2, 3]
    assert raw["usage"]["prompt_tokens"] == raw["usage"]["total_tokens"] > len(TEXTS)
    assert cosine([d["embedding"] for d in raw["data"]]) >= 0.9999

    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    default = client.embeddings.create(model="enc", input=TEXTS)  # the client asks for base64 and decodes it itself
    assert cosine([d.embedding for d in default.data]) >= 0.9999
    floats = client.embeddings.create(model="enc", input=TEXTS, encoding_format="float")
    assert cosine([d.embedding for d in floats.data]) >= 0.9999
    packed = client.embeddings.create(model="enc", input=TEXTS, encoding_format="base64")
    assert cosine([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in packed.data]) >= 0.9999
    assert len(client.embeddings.create(model="enc", input=TEXTS[0]).data[0].embedding) == want.shape[1]

    from langchain_openai import OpenAIEmbeddings

    langchain = OpenAIEmbeddings(
        model="enc", base_url=server.url + "/v1", api_key="unused", check_embedding_ctx_length=False
    )
    assert cosine(langchain.embed_documents(TEXTS)) >= 0.9999
    assert cosine([langchain.embed_query(TEXTS[0])] + [want[i] for i in range(1, 4)]) >= 0.9999


def test_tokenize_info_and_health(server):
    tokens = server.post("/tokenize", {"inputs": "hello world", "model": "enc"}).json()
    assert tokens[0] == {"id": 2, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert [t["text"] for t in tokens if not t["special"]][:2] == ["h", "##e"] and tokens[1]["start"] == 0
    info = httpx.get(server.url + "/info").json()
    kinds = {m["id"]: (m["kind"], m["task"]) for m in info["models"]}
    assert kinds == {"clf": ("classifier", "single_label"), "ner": ("tagger", "ner"), "enc": ("encoder", "encoder")}
    assert next(m for m in info["models"] if m["id"] == "clf")["labels"] == ["neg", "pos"]
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, bundles):
    texts = [row["text"] for row in sentiment_rows(32, seed=9)]
    (bundles["texts"].parent / "batch.txt").write_text("".join(t + "\n" for t in texts))
    want = cli_records("predict", str(bundles["clf"]), str(bundles["texts"].parent / "batch.txt"))
    before = server.metric("bertcli_batch_inputs_count", model="clf")
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda t: server.post("/predict", {"inputs": t, "model": "clf"}).json(), texts))
    forwards = server.metric("bertcli_batch_inputs_count", model="clf") - before
    assert answers == want
    assert 1 <= forwards < len(texts)  # fewer forward passes than requests: they were merged


@pytest.mark.parametrize(
    "body, status, code",
    [
        ('{"inputs": ', 400, "invalid_json"),
        ({"inputs": 3, "model": "clf"}, 422, "invalid_request"),
        ({"text": "hi", "model": "clf"}, 422, "invalid_request"),
        ({"inputs": "", "model": "clf"}, 422, "empty_input"),
        ({"inputs": [], "model": "clf"}, 422, "empty_input"),
        ({"inputs": "hi", "model": "nope"}, 404, "model_not_found"),
        ({"inputs": "hi"}, 422, "model_required"),
        ({"inputs": "hi", "model": "enc"}, 422, "wrong_model_kind"),
        ({"inputs": ["x"] * 300, "model": "clf"}, 413, "too_many_inputs"),
        ({"inputs": "x" * 3_000_000, "model": "clf"}, 413, "body_too_large"),
        ({"inputs": "hi", "model": "ner", "top_k": 1}, 422, "unsupported_option"),
    ],
)
def test_every_error_is_one_json_body(server, body, status, code):
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(
        server.url + "/predict", content=content, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] and "Traceback" not in response.text
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.parametrize(
    "route, key, model",
    [("/v1/embeddings", "input", "enc"), ("/predict", "inputs", "clf"), ("/predict", "inputs", "ner"),
     ("/tokenize", "inputs", "enc")],
)  # fmt: skip
def test_a_lone_surrogate_is_answered_as_u_fffd_on_every_route(server, route, key, model):
    """JSON allows "\\ud800"; the input is answered as if it held U+FFFD (as the CLI reads it), never a 500."""

    def post(inputs):
        content = json.dumps({"model": model, key: inputs})  # ASCII: the surrogate travels as its escape
        return httpx.post(server.url + route, content=content, headers={"content-type": "application/json"}, timeout=60)

    raw, replaced = post(["fine", "bad \ud800 text"]), post(["fine", "bad \ufffd text"])
    assert b"\\ud800" in raw.request.content
    assert raw.status_code == replaced.status_code == 200, raw.text
    if route == "/v1/embeddings":
        got, want = ([d["embedding"] for d in r.json()["data"]] for r in (raw, replaced))
        assert np.allclose(got, want, atol=1e-5) and raw.json()["usage"] == replaced.json()["usage"]
    else:
        assert raw.json() == replaced.json()
    if model == "clf":
        pair, whole = post([["ok", "half \udc00"]]), post([["ok", "half \ufffd"]])
        assert pair.status_code == 200 and pair.json() == whole.json()


@pytest.mark.parametrize(
    "route, body",
    [("/tokenize", {"model": "enc", "inputs": []}), ("/v1/embeddings", {"model": "enc", "input": []})],
)
def test_every_route_checks_the_input_count(server, route, body):
    assert server.post(route, body).json()["error"]["code"] == "empty_input"
    key = "inputs" if route == "/tokenize" else "input"
    over = server.post(route, {**body, key: ["x"] * 300})
    assert over.status_code == 413 and over.json()["error"]["code"] == "too_many_inputs"


def test_embeddings_errors(server):
    tokens = server.post("/v1/embeddings", {"model": "enc", "input": [[1, 2, 3]]})
    assert tokens.status_code == 422 and "token-id input" in tokens.json()["error"]["message"]
    assert server.post("/v1/embeddings", {"model": "clf", "input": "x"}).status_code == 422
    assert (
        server.post("/v1/embeddings", {"model": "enc", "input": "x", "dimensions": 7}).json()["error"]["code"]
        == "unsupported_dimensions"
    )
    assert httpx.get(server.url + "/nowhere").json()["error"]["code"] == "not_found"


def test_metrics_count_requests_inputs_tokens_and_the_queue(server):
    server.post("/predict", {"inputs": TEXTS, "model": "clf"})
    text = httpx.get(server.url + "/metrics").text
    assert 'bertcli_requests_total{route="/predict",status="200"}' in text
    assert 'bertcli_request_seconds_bucket{le="0.005",route="/predict"}' in text
    assert 'bertcli_queue_depth{model="clf"} 0.0' in text
    assert server.metric("bertcli_inputs_total", model="clf") >= len(TEXTS)
    assert server.metric("bertcli_tokens_total", model="clf") > server.metric("bertcli_inputs_total", model="clf")


def test_an_api_key_guards_every_route_but_health(bundles):
    server = Server(str(bundles["clf"]), "--precision", "no", env={"BERTCLI_API_KEY": "s3cret"})
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        for route in ("/info", "/metrics"):
            assert httpx.get(server.url + route).status_code == 401
        missing = server.post("/predict", {"inputs": "hi"})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert server.post("/predict", {"inputs": "hi"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = server.post("/predict", {"inputs": "hi"}, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200 and good.json()["label"] in ("neg", "pos")
        assert server.post("/predict", {"inputs": "hi"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    finally:
        code, err = server.stop()
    assert code == 0 and "POST /predict 401 inputs=- " in err and "POST /predict 200 inputs=1 " in err


def test_a_full_queue_answers_503_with_retry_after_at_once(bundles):
    server = Server(
        str(bundles["clf"]), "--precision", "no", "--max-queue", "4", "--max-wait-ms", "500", "--log-format", "json"
    )
    try:
        start = time.monotonic()
        over = server.post("/predict", {"inputs": TEXTS + TEXTS[:1]})  # 5 inputs, room for 4
        assert (
            over.status_code == 503
            and over.headers["retry-after"] == "1"
            and over.json()["error"]["code"] == "overloaded"
        )
        assert time.monotonic() - start < 0.4  # at once, not after the batch wait
        with concurrent.futures.ThreadPoolExecutor(3) as pool:  # 3 x 3 inputs into a 4-input queue that waits 500 ms
            statuses = sorted(
                r.status_code for r in pool.map(lambda _: server.post("/predict", {"inputs": TEXTS[:3]}), range(3))
            )
        assert statuses[0] == 200 and 503 in statuses
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        code, err = server.stop()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert code == 0 and {"method": "POST", "route": "/predict", "status": 503, "inputs": 5} in [
        {k: v for k, v in r.items() if k != "ms"} for r in lines
    ]


def test_sigterm_during_load_answers_every_accepted_request_and_exits_0(bundles):
    """8 requests wait in the batcher (1 s) when SIGTERM comes: all 8 are answered, later ones are refused (503, or
    no connection once the listener is closed), and the process exits 0 by itself."""
    server = Server(str(bundles["clf"]), "--precision", "no", "--max-wait-ms", "1000")

    def call(i: int) -> int | str:
        try:
            return server.post("/predict", {"inputs": f"request {i} was great"}).status_code
        except httpx.TransportError as exc:
            return type(exc).__name__

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        accepted = [pool.submit(call, i) for i in range(8)]
        deadline = time.monotonic() + 10
        while server.metric("bertcli_queue_depth", model="clf") < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.metric("bertcli_queue_depth", model="clf") == 8
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        late = [pool.submit(call, i) for i in range(8, 12)]
        answered = [f.result(timeout=60) for f in accepted]
        refused = [f.result(timeout=60) for f in late]
    code = server.process.wait(timeout=60)
    err = server.process.stderr.read()
    assert code == 0, err[-2000:]
    assert answered == [200] * 8
    assert all(r in (503, "ConnectError") for r in refused), refused
    assert "stopped: every accepted request was answered" in err


def test_exposure_warning():
    from bertcli.serve.run import exposure_warning

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("0.0.0.0", "key") is None
    assert "without an API key" in exposure_warning("0.0.0.0", None)


def test_an_internal_failure_is_one_json_500_and_the_server_goes_on(bundles):
    """A model whose forward raises: that request gets a JSON 500; the next one is served."""
    import asyncio

    from bertcli.config import ServeConfig
    from bertcli.serve.app import create_app
    from bertcli.serve.models import load_model

    cfg = ServeConfig(models=[str(bundles["clf"])], precision="no")
    model = load_model(str(bundles["clf"]), cfg)
    calls = {"n": 0}
    real = model.run

    def flaky(inputs, threads=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(inputs, threads)

    model.run = flaky
    guarded = create_app({model.name: model}, cfg)

    async def scenario():
        transport = httpx.ASGITransport(app=guarded)
        async with (
            guarded.app.router.lifespan_context(guarded.app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            first = await client.post("/predict", json={"inputs": "hi"})
            second = await client.post("/predict", json={"inputs": "hi"})
            return first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 500 and first.json()["error"]["code"] == "internal_error" and "boom" not in first.text
    assert second.status_code == 200 and second.json()["label"] in ("neg", "pos")


def test_a_forward_reads_the_tokens_its_requests_were_counted_with(bundles):
    """Each request is tokenized once, on the event loop, as its own shape asks (text, or pair); the forward reads
    those tokens. So a single text batched with a request of pairs is read as a single text: its answer equals the
    one it gets alone (it was read as a pair with an empty second text, one [SEP] longer)."""
    import asyncio

    from bertcli.config import ServeConfig
    from bertcli.serve.app import create_app
    from bertcli.serve.models import load_model

    # one stream: the cut batch runs as one forward (an unpadded model's splits among the free streams)
    cfg = ServeConfig(models=[str(bundles["clf"])], precision="no", max_wait_ms=500, streams=1)
    model = load_model(str(bundles["clf"]), cfg)
    model.predictor.lexical = None  # the BERT part alone: this bundle's lexical part (weight 1) would hide it
    encodes, forwards = [], []
    real_encode, real_run = model.encoder.encode, model.run
    model.encoder.encode = lambda *args, **kwargs: encodes.append(args[0]) or real_encode(*args, **kwargs)
    model.run = lambda queued, threads: forwards.append([q.text for q in queued]) or real_run(queued, threads)
    guarded = create_app({model.name: model}, cfg)
    single, pairs = {"inputs": "a great film"}, {"inputs": [["dull", "it was awful"], ["fun", "it was great"]]}

    async def scenario():
        transport = httpx.ASGITransport(app=guarded)
        async with (
            guarded.app.router.lifespan_context(guarded.app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            together = await asyncio.gather(client.post("/predict", json=single), client.post("/predict", json=pairs))
            alone = [await client.post("/predict", json=body) for body in (single, pairs)]
            return together, alone

    together, alone = asyncio.run(scenario())
    assert forwards[0] == ["a great film", "dull", "fun"]  # one forward held both requests
    assert encodes == [["a great film"], ["dull", "fun"]] * 2  # each request once, the forwards never
    assert [r.json() for r in together] == [r.json() for r in alone]


def test_forwards_at_once_in_streams_answer_every_request_as_the_offline_embedder_does(bundles):
    """Under load two one-thread torch forwards run at once on the two forward threads, each setting its own thread
    count; every request still gets its own vectors, equal to the offline embedder's."""
    import asyncio
    import threading

    from bertcli import Embedder
    from bertcli.config import ServeConfig
    from bertcli.serve.app import create_app
    from bertcli.serve.models import load_model

    cfg = ServeConfig(models=[str(bundles["enc"])], precision="no", threads=2, streams=2, max_batch_tokens=64)
    model = load_model(f"m={bundles['enc']}", cfg)
    forwards, real_run = [], model.run

    def recorded(queued, threads):
        import torch

        result = real_run(queued, threads)
        forwards.append((threading.current_thread().name, threads, torch.get_num_threads()))
        return result

    model.run = recorded
    guarded = create_app({model.name: model}, cfg)
    texts = [" ".join(TEXTS[: 1 + i % 4]) * (1 + i % 5) for i in range(24)]

    async def scenario():
        transport = httpx.ASGITransport(app=guarded)
        async with (
            guarded.app.router.lifespan_context(guarded.app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            return await asyncio.gather(
                *(
                    client.post("/v1/embeddings", json={"model": "m", "input": text, "encoding_format": "float"})
                    for text in texts
                )
            )

    answers = asyncio.run(scenario())
    got = np.array([answer.json()["data"][0]["embedding"] for answer in answers], dtype=np.float32)
    np.testing.assert_allclose(got, Embedder(str(bundles["enc"]), precision="no").embed(texts).vectors, atol=1e-5)
    assert all(threads == used for _, threads, used in forwards)  # each forward ran on the threads it was given
    assert {threads for _, threads, _ in forwards} <= {1, 2} and 1 in {threads for _, threads, _ in forwards}
    assert len({name for name, threads, _ in forwards if threads == 1}) == 2  # both forward threads ran streams


def test_serve_loads_warms_up_and_runs_every_forward_on_its_forward_threads(bundles, monkeypatch):
    """Torch run first on another thread left the forward thread's forwards on about one core: `serve` loads and
    warms up each model on the first forward thread, and the app runs lone forwards there, on every core (uvicorn
    replaced by a stand-in that drives the app's lifespan and two requests)."""
    import asyncio
    import threading

    import bertcli.serve.models as served
    import bertcli.serve.run as run
    from bertcli.config import ServeConfig

    threads, answers = [], []
    real = served.ServedModel.run

    def recorded(self, inputs, count=None):
        threads.append((threading.current_thread(), count))
        return real(self, inputs, count)

    class Answering:
        def __init__(self, config, state):
            self.guarded = config.app

        def run(self):
            async def scenario():
                transport = httpx.ASGITransport(app=self.guarded)
                async with (
                    self.guarded.app.router.lifespan_context(self.guarded.app),
                    httpx.AsyncClient(transport=transport, base_url="http://test") as client,
                ):
                    for name in ("clf", "e"):
                        answers.append(await client.post("/predict", json={"model": name, "inputs": "hi"}))

            asyncio.run(scenario())

    monkeypatch.setattr(served.ServedModel, "run", recorded)
    monkeypatch.setattr(run, "draining_server", Answering)
    run.serve(ServeConfig(models=[str(bundles["clf"]), f"e={bundles['clf']}"], precision="no", threads=2))
    assert [a.status_code for a in answers] == [200, 200] and answers[1].json()["label"] in ("neg", "pos")
    assert [count for _, count in threads] == [2, 1, 2, 1, 2, 2]  # each model warmed up on all threads and on a
    # stream's share; then two forwards alone, on both threads
    (ran_on,) = {thread for thread, _ in threads}  # lone forwards run where the models were loaded
    assert ran_on.name.startswith("bertcli-forward-0") and not ran_on.is_alive()  # shut down with the app


def test_a_model_that_fails_to_load_stops_serve_with_its_error_and_the_forward_thread(tmp_path, monkeypatch):
    import bertcli.serve.app as served_app
    from bertcli.config import ServeConfig
    from bertcli.errors import ModelError
    from bertcli.serve.run import serve

    made = []
    real = served_app.forward_cores
    monkeypatch.setattr(served_app, "forward_cores", lambda cfg: made.append(real(cfg)) or made[-1])
    with pytest.raises(ModelError, match="missing"):
        serve(ServeConfig(models=[str(tmp_path / "missing")], precision="no"))
    assert len(made) == 1
    with pytest.raises(RuntimeError, match="shutdown"):  # the forward thread takes no more work
        made[0].submit(print)
