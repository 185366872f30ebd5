"""Dynamic batching: one batcher per model merges the inputs of concurrent requests into batches.

Each input waits in a bounded queue with its own future. A batch is cut when its inputs reach the token budget,
or when the oldest input has waited `max_wait`; the model then runs it on the one forward thread (off the event
loop, one forward at a time, so intra-op threads never compete) and every input's result goes back to its own
request, which reassembles them in order. The model's own batching length-sorts and pads inside the batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any


class Overloaded(Exception):
    """The queue cannot take a request's inputs: the server answers 503 with Retry-After at once."""


@dataclass
class Job:
    payload: Any
    tokens: int
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self, run: Callable[[list[Any]], list[Any]], executor: Executor, max_tokens: int, max_wait_ms: float,
        max_queue: int, observe: Callable[[int, int], None] | None = None,
    ) -> None:  # fmt: skip
        self.run, self.executor = run, executor
        self.max_tokens, self.max_wait, self.max_queue = max_tokens, max_wait_ms / 1000, max_queue
        self.observe = observe  # (inputs in the batch, inputs still queued) after each forward
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
        self.jobs.extend(jobs)
        self.arrived.set()
        return [job.future for job in jobs]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.jobs:
                self.arrived.clear()
                await self.arrived.wait()
            await self._fill()
            batch = self._cut()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.run, [job.payload for job in batch])
            except Exception as exc:  # the requests of this batch fail; the batcher and the server go on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
            else:
                for job, result in zip(batch, results):
                    if not job.future.done():
                        job.future.set_result(result)
            if self.observe is not None:
                self.observe(len(batch), self.depth)

    async def _fill(self) -> None:
        """Wait, at most until the oldest input has waited max_wait, for the queue to hold a full batch."""
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
