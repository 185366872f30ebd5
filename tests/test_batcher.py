"""The server's batcher, directly: concurrent requests merge into batches, results go back to their own inputs,
the token budget cuts batches, and a full queue refuses at once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from bertcli.serve.batcher import Batcher, Overloaded


def run_batcher(scenario, max_tokens=1000, max_wait_ms=50.0, max_queue=100):
    """Run `scenario(batcher)` on a batcher whose model upper-cases its inputs; the batches it ran, and the result."""
    batches: list[list[str]] = []

    def model(inputs: list[str]) -> list[str]:
        batches.append(list(inputs))
        return [text.upper() for text in inputs]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(model, executor, max_tokens, max_wait_ms, max_queue)
            batcher.start()
            try:
                return await scenario(batcher)
            finally:
                await batcher.stop()

    result = asyncio.run(main())
    return batches, result


async def request(batcher: Batcher, texts: list[str], tokens: int = 1) -> list[str]:
    return list(await asyncio.gather(*batcher.submit(texts, [tokens] * len(texts))))


def test_concurrent_requests_merge_into_one_batch_and_each_gets_its_own_results():
    async def scenario(batcher):
        return await asyncio.gather(*(request(batcher, [f"r{i}a", f"r{i}b"]) for i in range(6)))

    batches, answers = run_batcher(scenario)
    assert answers == [[f"R{i}A", f"R{i}B"] for i in range(6)]
    assert batches == [[f"r{i}{part}" for i in range(6) for part in "ab"]]  # 6 requests, one forward pass


def test_the_token_budget_cuts_batches_and_a_large_request_is_split_and_reassembled():
    async def scenario(batcher):
        return await request(batcher, [f"t{i}" for i in range(10)], tokens=30)

    batches, answer = run_batcher(scenario, max_tokens=100)
    assert answer == [f"T{i}" for i in range(10)]
    assert [len(b) for b in batches] == [3, 3, 3, 1]  # 100 tokens hold 3 inputs of 30


def test_one_input_over_the_budget_still_runs_alone():
    batches, answer = run_batcher(lambda b: request(b, ["long"], tokens=500), max_tokens=100)
    assert answer == ["LONG"] and batches == [["long"]]


def test_a_full_queue_refuses_the_whole_request_at_once():
    async def scenario(batcher):
        first = batcher.submit(["a", "b", "c"], [1, 1, 1])
        with pytest.raises(Overloaded, match="3 inputs are queued"):
            batcher.submit(["d", "e"], [1, 1])
        return [await f for f in first], batcher.depth

    batches, (answer, depth) = run_batcher(scenario, max_queue=4, max_wait_ms=200)
    assert answer == ["A", "B", "C"] and depth == 0 and batches == [["a", "b", "c"]]


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def model(inputs):
        calls.append(list(inputs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [text.upper() for text in inputs]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(model, executor, 1000, 1.0, 100)
            batcher.start()
            try:
                with pytest.raises(RuntimeError, match="boom"):
                    await request(batcher, ["x"])
                return await request(batcher, ["y"])
            finally:
                await batcher.stop()

    assert asyncio.run(main()) == ["Y"] and calls == [["x"], ["y"]]
