"""The CPU threads that the forwards of every served model share, and the forward threads that run them.

Under load, forwards run at once in streams, each on its share (`total // streams`): on 2 cores, the long-tail
server's small batches (about 13 inputs) ran 15-25% more texts per second as two one-thread forwards at once than
as one two-thread forward at a time, which spends much of each small forward synchronising its threads. When
requests come one at a time, a forward takes every thread (the batcher decides: batcher.QUIET_SECONDS), and so does
a forward of many padded tokens even under load (batcher.WIDE_TOKENS), which large forwards repay. Each stream
has a thread of its own, and such a lone forward always runs on the first: a forward thread's intra-op threads
(OpenMP's team) are its own, and those of the thread that ran last keep spinning for a moment after a forward,
which cost a lone request a quarter of its speed when lone forwards moved between threads.

The count is kept on the event loop. Torch sets a forward's count on its thread; an ONNX backend keeps a session
per count. A backend that cannot run on a share (torch on a GPU) takes them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Cores:
    def __init__(self, total: int, streams: int = 1) -> None:
        self.total, self.share = total, max(1, total // streams)
        self.free = total
        self.threads = [ThreadPoolExecutor(1, thread_name_prefix=f"bertcli-forward-{i}") for i in range(streams)]
        self.idle = set(range(streams))  # streams with no forward running
        self.returned = asyncio.Event()
        self.waiting_for_all = 0  # takes of every thread now waiting: smaller takes let the threads drain to them

    @property
    def thread_counts(self) -> list[int]:
        """The counts a forward may run on: all of them, or a stream's share."""
        return sorted({self.total, self.share}, reverse=True)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn` on the first forward thread, where lone forwards run: `serve` loads and warms up models there."""
        return self.threads[0].submit(fn, *args)

    async def take(self, count: int) -> int:
        """Wait for `count` free threads and an idle stream; the stream (the first idle one). A take of every thread
        goes before smaller ones that come while it waits, so models that keep taking shares cannot starve it."""
        everything = count == self.total > self.share
        self.waiting_for_all += everything
        try:
            while self.free < count or not self.idle or (self.waiting_for_all and not everything):
                self.returned.clear()
                await self.returned.wait()
        finally:
            self.waiting_for_all -= everything
            if everything:
                self.returned.set()  # smaller takes held back for it look again
        self.free -= count
        stream = min(self.idle)
        self.idle.remove(stream)
        return stream

    def widen(self, count: int) -> None:
        """`count` more free threads for a stream just taken: its forward turned out to be alone. Nothing else runs
        then, so the stream is the first, where lone forwards run."""
        self.free -= count

    def give(self, stream: int, count: int) -> None:
        self.free += count
        self.idle.add(stream)
        self.returned.set()

    async def run(self, stream: int, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.threads[stream], fn, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        for thread in self.threads:
            thread.shutdown(wait=wait, cancel_futures=cancel_futures)
