"""The server's batcher, directly: concurrent requests merge into batches, results go back to their own inputs,
the token budget cuts batches, a cut batch runs as length buckets (little padding, shortest first), nothing waits
past max_wait plus the forwards ahead of it, a full queue refuses at once, and the forwards share the cores: at once
in streams under load, alone on all of them."""

from __future__ import annotations

import asyncio
import time

import pytest

from bertcli.serve.batcher import QUIET_SECONDS, WIDE_TOKENS, Batcher, ForwardCost, Overloaded, buckets
from bertcli.serve.cores import Cores


def run_batcher(scenario, max_tokens=1000, max_wait_ms=50.0, max_queue=100, seconds_per_forward=0.0, unpadded=False):
    """Run `scenario(batcher)` on a batcher whose model upper-cases its inputs; the batches it ran, and the result."""
    batches: list[list[str]] = []

    def model(inputs: list[str], threads: int) -> list[str]:
        batches.append(list(inputs))
        time.sleep(seconds_per_forward)
        return [text.upper() for text in inputs]

    async def main():
        cores = Cores(1)
        batcher = Batcher(model, cores, max_tokens, max_wait_ms, max_queue, unpadded=unpadded)
        batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.stop()
            cores.shutdown()

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


def test_a_lone_request_after_a_quiet_moment_is_cut_at_once_and_overlapping_ones_wait_to_merge():
    async def scenario(batcher):
        start = time.perf_counter()
        lone = await request(batcher, ["lone"])
        lone_seconds = time.perf_counter() - start
        start = time.perf_counter()
        merged = await asyncio.gather(*(request(batcher, [f"m{i}"]) for i in range(3)))
        return lone, lone_seconds, merged, time.perf_counter() - start

    batches, (lone, lone_seconds, merged, merged_seconds) = run_batcher(scenario, max_wait_ms=300)
    assert lone == ["LONE"] and merged == [["M0"], ["M1"], ["M2"]]
    assert batches == [["lone"], ["m0", "m1", "m2"]]
    assert lone_seconds < 0.15 and merged_seconds >= 0.3  # the lone one did not wait max_wait; the merged ones did
    batches, (lone, lone_seconds, *_) = run_batcher(scenario, max_wait_ms=1000 * QUIET_SECONDS)
    assert lone_seconds >= QUIET_SECONDS  # a wait as long as the quiet while batches on purpose: it holds a lone one


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def model(inputs, threads):
        calls.append(list(inputs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [text.upper() for text in inputs]

    async def main():
        cores = Cores(1)
        batcher = Batcher(model, cores, 1000, 1.0, 100)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="boom"):
                await request(batcher, ["x"])
            return await request(batcher, ["y"])
        finally:
            await batcher.stop()
            cores.shutdown()

    assert asyncio.run(main()) == ["Y"] and calls == [["x"], ["y"]]


# a long-tail stream as the server sees it (token counts of 2016 debate statements: half under 20, a few capped at 256)
LONG_TAIL = [14, 22, 9, 256, 17, 31, 12, 20, 45, 11, 19, 256, 8, 26, 15, 88, 21, 13, 18, 140, 10, 23, 16, 37]


def padded(groups: list[list[int]], lengths: list[int]) -> int:
    return sum(len(group) * max(lengths[i] for i in group) for group in groups)


def test_buckets_split_a_long_tail_batch_where_padding_costs_more_than_a_forward():
    assert buckets([256, 20, 18, 22, 19], overhead=32) == [[2, 4, 1, 3], [0]]  # shortest first, the long one alone
    assert buckets([256, 20, 18, 22, 19], overhead=10_000) == [[2, 4, 1, 3, 0]]  # a forward costs more: merge
    assert buckets([7, 7, 7], overhead=1) == [[0, 1, 2]]  # equal lengths never split
    assert buckets([300], overhead=32) == [[0]] and buckets([], overhead=32) == []  # a lone input; a cut gone away
    groups = buckets(LONG_TAIL, overhead=32)
    assert [[LONG_TAIL[i] for i in group] for group in groups] == [
        [8, 9, 10, 11, 12, 13, 14, 15], [16, 17, 18, 19, 20, 21, 22, 23], [26, 31, 37, 45], [88], [140], [256, 256],
    ]  # fmt: skip
    real, one_forward = sum(LONG_TAIL), len(LONG_TAIL) * max(LONG_TAIL)
    assert (real, one_forward, padded(groups, LONG_TAIL)) == (1127, 6144, 1224)  # padding: 82% of one forward, 8% here
    assert padded(groups, LONG_TAIL) + 32 * len(groups) < 0.25 * (one_forward + 32)  # the estimated cost: 4x lower


def test_the_forward_cost_is_fitted_from_the_forwards_seen_and_a_slow_one_does_not_move_it():
    cost = ForwardCost(prior=32)
    assert cost.overhead == 32
    for tokens in (100, 400, 1600, 50, 3000, 800, 200, 1200, 60, 2400):
        cost.observe(tokens, 0.010 + 0.0001 * tokens)  # 10 ms fixed, 0.1 ms a token: the fixed cost is 100 tokens
    assert abs(cost.overhead - 100) < 1e-6
    cost.observe(300, 0.5)  # another process took the cores for half a second
    for tokens in (150, 900, 2000, 70, 500, 1000, 30):
        cost.observe(tokens, 0.010 + 0.0001 * tokens)
    assert abs(cost.overhead - 100) < 10
    alike = ForwardCost(prior=32)
    for _ in range(10):
        alike.observe(500, 0.06)
    assert alike.overhead == 32  # nothing to fit on: the prior stays


def test_a_cut_batch_runs_as_length_buckets_shortest_first_and_every_input_gets_its_own_result():
    async def scenario(batcher):
        return await asyncio.gather(
            asyncio.gather(*batcher.submit(["long-a", "s1", "s2"], [250, 10, 12])),
            asyncio.gather(*batcher.submit(["s3", "long-b"], [11, 240])),
        )

    batches, answers = run_batcher(scenario)
    assert [list(a) for a in answers] == [["LONG-A", "S1", "S2"], ["S3", "LONG-B"]]
    assert batches == [["s1", "s3", "s2"], ["long-b", "long-a"]]  # one cut, two forwards: no short input padded to 250


def test_nothing_waits_past_max_wait_plus_the_forwards_ahead_and_long_inputs_do_not_starve():
    """Short requests arrive every 5 ms for 0.3 s around two long ones, on a model whose forward takes 5 ms plus
    0.1 ms per padded token: every input is answered within max_wait plus two cuts (the one running when it came,
    and its own) of at most two forwards each."""
    max_wait, tokens = 0.01, {}
    forwards: list[tuple[list[str], float]] = []
    latencies: dict[str, float] = {}

    def model(inputs: list[str], threads: int) -> list[str]:
        start = time.perf_counter()
        time.sleep(0.005 + 0.0001 * len(inputs) * max(tokens[text] for text in inputs))
        forwards.append((list(inputs), time.perf_counter() - start))
        return [text.upper() for text in inputs]

    async def timed(batcher, text, count):
        tokens[text] = count
        start = time.perf_counter()
        (answer,) = await asyncio.gather(*batcher.submit([text], [count]))
        latencies[text] = time.perf_counter() - start
        return answer

    async def main():
        cores = Cores(1)
        batcher = Batcher(model, cores, 8192, max_wait * 1000, 1000)
        batcher.start()
        try:
            tasks = []
            for i in range(60):
                if i in (0, 30):
                    tasks.append(asyncio.create_task(timed(batcher, f"long{i}", 250)))
                tasks.append(asyncio.create_task(timed(batcher, f"short{i}", 10 + i % 3)))
                await asyncio.sleep(0.005)
            return await asyncio.gather(*tasks)
        finally:
            await batcher.stop()
            cores.shutdown()

    answers = asyncio.run(main())
    assert answers == [text.upper() for text in tokens] and len(answers) == 62  # in submission order
    bound = max_wait + 4 * max(seconds for _, seconds in forwards) + 0.05  # 50 ms for a loaded machine's scheduling
    assert max(latencies.values()) < bound, (bound, sorted(latencies.items(), key=lambda kv: -kv[1])[:3])
    assert {len({text.startswith("long") for text in inputs}) for inputs, _ in forwards} == {1}  # never padded together
    assert len(forwards) < 45  # short inputs still merge


def streamed(models: dict[str, bool], scenario, total=2, streams=2, seconds=0.05, unpadded=False):
    """Run `scenario(batchers)` with one batcher per model (name: whether it streams) sharing `total` cores; each
    forward (name, inputs, threads) with its start and end, and the scenario's result."""
    forwards: list[tuple[str, list[str], int, float, float]] = []

    def model(name):
        def run(inputs, threads):
            start = time.perf_counter()
            time.sleep(seconds)
            forwards.append((name, list(inputs), threads, start, time.perf_counter()))
            return [text.upper() for text in inputs]

        return run

    async def main():
        cores = Cores(total, streams)
        batchers = {
            name: Batcher(model(name), cores, 1000, 1.0, 100, streams=streams_, unpadded=unpadded)
            for name, streams_ in models.items()
        }
        for batcher in batchers.values():
            batcher.start()
        try:
            return await scenario(batchers), cores.free
        finally:
            for batcher in batchers.values():
                await batcher.stop()
            cores.shutdown()

    result, free = asyncio.run(main())
    assert free == total  # every forward gave its threads back
    return forwards, result


def overlapping(forwards) -> int:
    """The most threads in use at one moment."""
    events = sorted(
        [(start, threads) for *_, threads, start, _ in forwards] + [(end, -t) for *_, t, _, end in forwards]
    )
    busy = peak = 0
    for _, change in events:
        busy += change
        peak = max(peak, busy)
    return peak


def test_under_load_forwards_run_at_once_on_a_share_of_the_cores_and_a_lone_one_takes_them_all():
    """One request at a time: each forward takes both threads. Overlapping requests: one-thread forwards at once,
    and a lone request right after them still gets one thread (a second request may be on its way); after a quiet
    moment, all of them again."""

    async def scenario(batchers):
        lone = await request(batchers["m"], ["lone"])
        loaded = await asyncio.gather(*(request(batchers["m"], [f"t{i}"], tokens=600) for i in range(4)))
        after = await request(batchers["m"], ["after"])
        await asyncio.sleep(QUIET_SECONDS)
        return lone, loaded, after, await request(batchers["m"], ["quiet"])

    forwards, (lone, loaded, after, quiet) = streamed({"m": True}, scenario)
    assert [lone, after, quiet] == [["LONE"], ["AFTER"], ["QUIET"]] and loaded == [[f"T{i}"] for i in range(4)]
    threads = {inputs[0]: count for _, inputs, count, *_ in forwards}
    assert len(forwards) == 7 and threads == {"lone": 2, **{f"t{i}": 1 for i in range(4)}, "after": 1, "quiet": 2}
    assert overlapping(forwards) == 2  # two one-thread forwards at once, never more than the cores


def test_under_load_a_long_bucket_runs_alone_on_every_thread_and_short_ones_on_shares():
    """A forward padded to WIDE_TOKENS or more takes both threads even under load (the long-tail's slowest requests
    are its long ones); it waits for the forward running on the other stream and overlaps none."""

    async def scenario(batchers):
        short = [request(batchers["m"], [f"s{i}"], tokens=600) for i in range(4)]
        return await asyncio.gather(*short[:2], request(batchers["m"], ["long"], tokens=WIDE_TOKENS), *short[2:])

    forwards, answers = streamed({"m": True}, scenario)
    assert answers == [["S0"], ["S1"], ["LONG"], ["S2"], ["S3"]]
    threads = {inputs[0]: count for _, inputs, count, *_ in forwards}
    assert threads == {"long": 2, **{f"s{i}": 1 for i in range(4)}}
    (long,) = [(start, end) for _, inputs, _, start, end in forwards if inputs == ["long"]]
    assert not [f for f in forwards if f[1] != ["long"] and f[3] < long[1] and f[4] > long[0]]  # it ran alone
    assert overlapping(forwards) == 2


def test_a_take_of_every_thread_goes_before_smaller_takes_that_come_while_it_waits():
    """Otherwise models that keep taking one-thread shares could hold off a wide forward for ever."""

    async def main():
        cores = Cores(2, 2)
        running = await cores.take(1)
        taken: list[tuple[str, int]] = []

        async def take(name, count):
            taken.append((name, await cores.take(count)))

        wide = asyncio.create_task(take("every thread", 2))
        await asyncio.sleep(0)
        share = asyncio.create_task(take("a share", 1))
        await asyncio.sleep(0.01)
        held = list(taken)  # one thread is free, but it is kept for the take of every thread
        cores.give(running, 1)
        await wide
        cores.give(0, 2)
        await share
        cores.shutdown()
        return held, taken, cores.free

    held, taken, free = asyncio.run(main())
    assert held == [] and taken == [("every thread", 0), ("a share", 0)] and free == 1


def test_a_model_that_cannot_share_takes_every_core_and_models_never_exceed_them_together():
    """An ONNX Runtime session fixed its threads: its forwards take all the cores, one at a time, beside a torch
    model's streams, and together the two never use more threads than there are."""

    async def scenario(batchers):
        return await asyncio.gather(
            *(request(batchers[name], [f"{name}{i}"], tokens=600) for i in range(3) for name in ("onnx", "torch"))
        )

    forwards, answers = streamed({"onnx": False, "torch": True}, scenario)
    assert answers == [[f"{name.upper()}{i}"] for i in range(3) for name in ("onnx", "torch")]
    assert {threads for name, _, threads, *_ in forwards if name == "onnx"} == {2}
    assert overlapping(forwards) == 2 and len(forwards) == 6


def test_an_unpadded_model_runs_a_cut_batch_whole_when_its_forwards_cannot_share_the_cores():
    """Its forward costs the inputs' real tokens, so a long-tail batch gains nothing from length buckets."""

    async def scenario(batcher):
        return await asyncio.gather(
            asyncio.gather(*batcher.submit(["long-a", "s1", "s2"], [250, 10, 12])),
            asyncio.gather(*batcher.submit(["s3", "long-b"], [11, 240])),
        )

    batches, answers = run_batcher(scenario, unpadded=True)
    assert [list(a) for a in answers] == [["LONG-A", "S1", "S2"], ["S3", "LONG-B"]]
    assert batches == [["long-a", "s1", "s2", "s3", "long-b"]]  # in arrival order


def test_an_unpadded_cut_batch_runs_as_one_part_per_free_stream_of_about_equal_tokens_at_once():
    """So that both streams have work; and no part runs on every thread under load, however many tokens it holds."""

    async def scenario(batchers):
        tokens = {"long-a": 300, "long-b": 250, "s1": 200, "s2": 150, "s3": 50}  # one cut batch (1000 tokens)
        return await asyncio.gather(*batchers["m"].submit(list(tokens), list(tokens.values())))

    forwards, _ = streamed({"m": True}, scenario, unpadded=True)
    parts = sorted(sorted(inputs) for _, inputs, _, _, _ in forwards)
    assert parts == [["long-a", "s2", "s3"], ["long-b", "s1"]]  # 500 and 450 tokens
    assert {threads for _, _, threads, _, _ in forwards} == {1} and overlapping(forwards) == 2


def test_an_unpadded_cut_batch_is_split_only_among_the_streams_free_now():
    """A part for a busy stream would wait for it, and what queued meanwhile would wait for that part."""
    from bertcli.serve.batcher import Job

    async def main():
        cores = Cores(2, 2)
        try:
            batcher = Batcher(lambda inputs, threads: inputs, cores, 1000, 1.0, 100, streams=True, unpadded=True)
            jobs = [Job(name, tokens, None) for name, tokens in [("a", 30), ("b", 20), ("c", 10)]]
            busy = await cores.take(1)  # another forward runs on one stream
            mine = await cores.take(1)  # the stream this cut runs on
            alone = [[job.payload for job in part] for part in batcher._forwards(jobs)]
            cores.give(busy, 1)  # that forward ended: two streams are free for the next cut
            shared = [[job.payload for job in part] for part in batcher._forwards(jobs)]
            cores.give(mine, 1)
            return alone, shared
        finally:
            cores.shutdown()

    alone, shared = asyncio.run(main())
    assert alone == [["a", "b", "c"]]  # whole, in arrival order, on the free stream
    assert shared == [["a"], ["b", "c"]]  # 30 and 30 tokens, one part per free stream


def test_balanced_parts_take_each_input_once_and_never_outnumber_it():
    from bertcli.serve.batcher import Job, balanced

    jobs = [Job(name, tokens, None) for name, tokens in [("a", 5), ("b", 50), ("c", 20), ("d", 30), ("e", 10)]]
    parts = balanced(jobs, 2)
    assert sorted(job.payload for part in parts for job in part) == list("abcde")
    assert [[job.payload for job in part] for part in parts] == [["b", "e"], ["a", "c", "d"]]  # 60 and 55 tokens
    assert [[job.payload for job in part] for part in balanced(jobs[:1], 2)] == [["a"]]
    assert balanced([], 2) == []


@pytest.mark.parametrize(("unpadded", "wide"), [(False, True), (True, False)])
def test_a_padded_forward_of_many_tokens_takes_every_thread_and_an_unpadded_one_never(unpadded, wide):
    """One input of 1500 tokens among three of 10: padded, 6000 tokens (WIDE_TOKENS is 2048), wide; unpadded, never
    wide (its parts run at once, one per stream)."""
    from bertcli.serve.batcher import Job

    cores = Cores(2)
    try:
        batcher = Batcher(lambda inputs, threads: inputs, cores, 8192, 1.0, 100, streams=True, unpadded=unpadded)
        assert batcher._wide([Job(None, tokens, None) for tokens in (1500, 10, 10, 10)]) is wide
    finally:
        cores.shutdown()
