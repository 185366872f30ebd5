"""Dynamic batching: one batcher per model merges the inputs of concurrent requests into batches.

Each input waits in a bounded queue with its own future. A batch is cut, oldest inputs first, when its inputs reach
the token budget or when the oldest has waited `max_wait`. A forward pads every input to the batch's longest, so on
real long-tail text (a few statements of 300 tokens among many of 20) one padded forward mostly computes padding;
the cut batch is therefore split into length buckets, the split that minimises the forwards' estimated cost
(`buckets`), and the buckets run shortest first on the forward threads, off the event loop. A backend that runs
unpadded (torch on a CPU: inference/unpadded.py) costs its real tokens whatever their lengths: its cut batch runs as
one part per free stream, of about equal tokens, so that every free stream has work and no part waits for a busy one
(what came meanwhile joins the next cut instead, on whichever stream frees first). Every input's result
goes back to its own request, which reassembles them in order. The forwards share the cores (`cores.Cores`): a
forward alone takes them all, and under load forwards run at once in streams, each on its share, but for a forward of
many padded tokens, which takes them all.

The guarantees: batches are cut in arrival order and a cut batch's buckets all start before the next is cut, so
nothing starves; and since the buckets together cost no more than the batch as one forward, no input waits longer
than `max_wait` plus the forwards of the batch ahead of it and of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertcli.serve.cores import Cores

PRIOR_OVERHEAD_TOKENS = 32.0  # a forward's fixed cost in tokens until measured (CPU, all-MiniLM-L6-v2: 10 to 60)
OVERHEAD_RANGE = (8.0, 4096.0)  # a fit outside it is noise: 8 keeps lengths a few tokens apart in one forward
FITTED_ON = 64  # the latest forwards the fit uses: it follows a machine whose load changes
# forwards between fits: a fit over 64 forwards took 90 us of the event loop, which at one request at a time (12 ms
# each, ONNX, short snippets) was a visible share of each request's time
REFIT_EVERY = 8
# after this long without overlapping requests, a lone request is cut at once (no max_wait) and its forward takes
# every thread: one request at a time then runs about 30% faster, but at 8 clients a widened forward kept the next
# requests from the other stream
QUIET_SECONDS = 0.5
# a bucket of at least this many padded tokens runs on every thread, even under load: large forwards use two threads
# well, and on long-tail text the slowest requests are the long ones. Long-tail statements, torch, 64 clients, medians
# of 5-7 loads (p99 ms / requests/s): one share each 982 / 171; from 2048 tokens 935 / 170; from 1024 866 / 152 (the
# wide forward waits for the other stream, and two threads on one forward do less than one each on two)
WIDE_TOKENS = 2048


class Overloaded(Exception):
    """The queue cannot take a request's inputs: the server answers 503 with Retry-After at once."""


@dataclass
class Job:
    payload: Any
    tokens: int
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


def buckets(lengths: Sequence[int], overhead: float) -> list[list[int]]:
    """Indices of `lengths` in length-sorted groups, shortest first, that minimise the sum over groups of
    `overhead + size x longest`: what forwards cost when each pads to its longest input and has a fixed cost
    (`overhead`, in tokens). Exact, by dynamic programming over the distinct lengths (equal lengths never split).
    One input (a lone request) skips the numpy work: 20 us of the event loop per request."""
    if len(lengths) == 1:
        return [[0]]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    values, counts = np.unique(np.asarray(lengths, dtype=np.float64), return_counts=True)
    before = np.concatenate([[0], np.cumsum(counts)])  # inputs shorter than values[j]
    best, cut = np.zeros(len(values) + 1), np.zeros(len(values) + 1, dtype=int)
    for j in range(1, len(values) + 1):  # the last group ends with values[j - 1]; it starts at some distinct value i
        costs = best[:j] + overhead + (before[j] - before[:j]) * values[j - 1]
        cut[j] = int(np.argmin(costs))
        best[j] = costs[cut[j]]
    ends, j = [], len(values)
    while j > 0:
        ends.append(int(before[j]))
        j = cut[j]
    starts = [0, *reversed(ends[1:])]
    return [order[start:end] for start, end in zip(starts, reversed(ends))]


def balanced(jobs: list[Job], parts: int) -> list[list[Job]]:
    """`jobs` in at most `parts` groups of about equal tokens (longest first, each to the lightest group so far),
    each group in arrival order."""
    groups: list[list[int]] = [[] for _ in range(min(parts, len(jobs)))]
    loads = [0] * len(groups)
    for index in sorted(range(len(jobs)), key=lambda i: -jobs[i].tokens):
        lightest = loads.index(min(loads))
        groups[lightest].append(index)
        loads[lightest] += jobs[index].tokens
    return [[jobs[i] for i in sorted(group)] for group in groups]


class ForwardCost:
    """A forward's fixed cost in tokens, fitted online: seconds = fixed + per_token x padded tokens over the latest
    forwards, by Theil-Sen (the median of pairwise slopes), so that forwards slowed by other work on the machine do
    not move it. On a CPU the fixed cost is a few dozen tokens' worth, on a GPU thousands: the same rule then splits
    a batch on one and keeps it whole on the other. It is refitted every REFIT_EVERY forwards."""

    def __init__(self, prior: float = PRIOR_OVERHEAD_TOKENS) -> None:
        self.prior = prior
        self.seen: deque[tuple[float, float]] = deque(maxlen=FITTED_ON)
        self.overhead, self.unfitted = prior, 0  # the latest fit, and the forwards seen since

    def observe(self, padded_tokens: int, seconds: float) -> None:
        self.seen.append((float(padded_tokens), seconds))
        self.unfitted += 1
        if self.unfitted >= REFIT_EVERY:
            self.overhead, self.unfitted = self._fit(), 0

    def _fit(self) -> float:
        if len(self.seen) < 8:
            return self.prior
        x, y = np.array(self.seen).T
        dx, dy = x[None, :] - x[:, None], y[None, :] - y[:, None]
        apart = dx > 0.1 * np.maximum(x[None, :], x[:, None])  # pairs of clearly different sizes, each counted once
        if apart.sum() < 8:  # the forwards seen were all alike in size: nothing to fit on
            return self.prior
        slope = float(np.median(dy[apart] / dx[apart]))
        if slope <= 0:
            return self.prior
        return float(np.clip(np.median(y - slope * x) / slope, *OVERHEAD_RANGE))


class Batcher:
    def __init__(
        self, run: Callable[[list[Any], int], list[Any]], cores: Cores, max_tokens: int, max_wait_ms: float,
        max_queue: int, observe: Callable[[int, int], None] | None = None, streams: bool = False,
        unpadded: bool = False,
    ) -> None:  # fmt: skip
        """`run(payloads, threads)`: one forward on `threads` CPU threads, run on one of `cores`' forward threads
        (the cores every served model's batcher shares). `streams`: whether this model's forwards may run at once,
        each on a share of the cores (a backend that runs on its caller's thread count: torch on a CPU, ONNX Runtime).
        `unpadded`: whether a forward costs its inputs' real tokens (a cut batch then runs as one part per stream)."""
        self.run, self.cores, self.streams, self.unpadded = run, cores, streams, unpadded
        self.running = 0  # inputs in forwards now
        self.overlapped = -float("inf")  # when a request last came while others were queued or running
        self.max_tokens, self.max_wait, self.max_queue = max_tokens, max_wait_ms / 1000, max_queue
        self.observe = observe  # (inputs in the forward, inputs still queued) after each forward
        self.cost = ForwardCost()
        self.jobs: deque[Job] = deque()
        self.arrived = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return len(self.jobs)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def submit(self, payloads: Sequence[Any], tokens: Sequence[int]) -> list[asyncio.Future]:
        """Queue a request's inputs (all or none); their futures resolve to the results, in order."""
        if self.depth + len(payloads) > self.max_queue:
            raise Overloaded(f"{self.depth} inputs are queued (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [Job(payload, max(1, count), loop.create_future()) for payload, count in zip(payloads, tokens)]
        if self.jobs or self.running:
            self.overlapped = jobs[0].queued
        self.jobs.extend(jobs)
        self.arrived.set()
        return [job.future for job in jobs]

    async def _serve(self) -> None:
        pending: deque[list[Job]] = deque()  # the cut batch's buckets not yet started, shortest first
        forwards: set[asyncio.Task] = set()
        try:
            while True:
                while not pending and not self.jobs:  # an idle model holds no cores
                    self.arrived.clear()
                    await self.arrived.wait()
                share = (
                    self.cores.total if not self.streams or (pending and self._wide(pending[0])) else self.cores.share
                )
                stream = await self.cores.take(share)  # a stream is free: only now is the next batch cut
                if not pending:
                    await self._fill()
                    pending.extend(self._forwards(self._cut()))
                if not pending or (share < self.cores.total and self._wide(pending[0])):
                    self.cores.give(stream, share)  # every input of the cut went away, or the next takes every thread
                    continue
                if (
                    len(pending) == 1
                    and not self.jobs
                    and self._quiet()
                    and self.cores.free + share == self.cores.total > share
                ):
                    self.cores.widen(self.cores.total - share)  # nothing else runs or waits: it takes every thread
                    share = self.cores.total
                forward = asyncio.get_running_loop().create_task(self._forward(pending.popleft(), stream, share))
                forwards.add(forward)
                forward.add_done_callback(forwards.discard)
        finally:
            for forward in forwards:
                forward.cancel()

    def _forwards(self, batch: list[Job]) -> list[list[Job]]:
        """A cut batch as the forwards to run: unpadded, one part per free stream (the one just taken and those
        idle), of about equal tokens; else its length buckets, shortest first. A part for a busy stream would wait
        for it while the inputs queued meanwhile wait for the part: short snippets, torch, 8 clients, 318-324
        against 248-251 requests/s with one part per stream."""
        if self.unpadded:
            return balanced(batch, 1 + len(self.cores.idle) if self.streams else 1)
        return [[batch[i] for i in group] for group in buckets([job.tokens for job in batch], self.cost.overhead)]

    def _wide(self, bucket: list[Job]) -> bool:
        """Whether a forward over `bucket` pads to enough tokens to run on every thread (WIDE_TOKENS); an unpadded
        model's parts never do: they run at once, one per stream."""
        return not self.unpadded and len(bucket) * max(job.tokens for job in bucket) >= WIDE_TOKENS

    def _quiet(self) -> bool:
        """Whether requests have come one at a time for a while (QUIET_SECONDS)."""
        return time.perf_counter() - self.overlapped > QUIET_SECONDS

    async def _forward(self, jobs: list[Job], stream: int, threads: int) -> None:
        """One forward pass over `jobs` on `stream`'s forward thread, with `threads` of the cores (given back when it
        ends); each result (or the failure) goes to its own future."""
        try:
            await self._run(jobs, stream, threads)
        finally:
            self.cores.give(stream, threads)

    async def _run(self, jobs: list[Job], stream: int, threads: int) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # a request that went away needs no forward
        if not jobs:
            return
        start = time.perf_counter()
        self.running += len(jobs)
        try:
            results = await self.cores.run(stream, self.run, [job.payload for job in jobs], threads)
        except Exception as exc:  # the requests of this forward fail; the batcher and the server go on
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            self.cost.observe(len(jobs) * max(job.tokens for job in jobs), time.perf_counter() - start)
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)
        finally:
            self.running -= len(jobs)
        if self.observe is not None:
            self.observe(len(jobs), self.depth)

    async def _fill(self) -> None:
        """Wait, at most until the oldest input has waited max_wait, for the queue to hold a full batch; not at all
        when requests have come one at a time for a while and none is running (no company is on its way), unless
        max_wait is as long as that while (QUIET_SECONDS), which batches on purpose. One client, ONNX, short
        snippets: 151 against 82 requests/s, p50 6.3 against 12.2 ms."""
        if self.max_wait < QUIET_SECONDS and self._quiet() and not self.running:
            return
        deadline = self.jobs[0].queued + self.max_wait
        while sum(job.tokens for job in self.jobs) < self.max_tokens:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _cut(self) -> list[Job]:
        """The oldest inputs up to the token budget (one input even when it alone is over it)."""
        batch, used = [], 0
        while self.jobs and (not batch or used + self.jobs[0].tokens <= self.max_tokens):
            job = self.jobs.popleft()
            if job.future.cancelled():  # its request went away
                continue
            batch.append(job)
            used += job.tokens
        return batch
