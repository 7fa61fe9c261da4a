"""Micro-batching: requests that arrive together share one model call.

A model call on a batch of 16 costs little more than on one item, so under load the server gathers the items
of concurrent requests (up to ``max_batch`` items, waiting at most ``max_wait_ms`` after the first) and runs them
as one ``run(items)`` call. Model calls go through a ``ModelWorker``: one thread, so the event loop never blocks
on a model and the model never runs two calls at once (the Predictor's rule).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable


class ModelWorker:
    """The one thread every model call runs on (predict batches, generation steps, attention), in arrival order.

    The server loads its model on this thread too (``run_now``), so that one thread alone ever runs torch: each
    thread that runs torch ops gets its own OpenMP team, and once more OpenMP threads exist than cores, libgomp
    stops spinning between ops and every op waits on a wake-up (measured on MiniLM, 2 cores: 65 predictions/s
    at batch 1 with the model loaded on the main thread, 120/s with it loaded on this one)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sora-model")

    async def call(self, fn: Callable, *args) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def run_now(self, fn: Callable, *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` on the model thread, waited for here (outside an event loop: start-up)."""
        return self._pool.submit(fn, *args, **kwargs).result()

    def post(self, fn: Callable, *args) -> None:
        """Run ``fn`` after the calls already queued, without waiting for it (clean-up)."""
        try:
            self._pool.submit(fn, *args)
        except RuntimeError:  # shut down already: nothing left to clean up for
            pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class _Job:
    items: list
    done: asyncio.Future  # set to this job's results (or the call's exception)


class MicroBatcher:
    """Gathers the items of concurrent ``submit`` calls into batches for ``run`` (a list in, one result per item
    out, in order). ``on_batch(size, seconds)`` hears of every model call (the /metrics figures).

    ``in_flight()``, when given, counts the requests in the server: once every one of them is in the batch being
    gathered, nobody can join it, and it runs at once instead of waiting out ``max_wait_ms`` (a lone request then
    costs no wait; measured on a tiny model: 8 ms a request with the wait, 3 ms without).

    Only a model that was idle waits for company: requests that queued while the model ran have waited one call
    already and run as soon as it is free, so under load the model never sits out ``max_wait_ms`` between calls
    (MiniLM, 32 clients, 2 cores: 254 requests/s against 236/s)."""

    def __init__(
        self,
        run: Callable[[list], list],
        worker: ModelWorker,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        self.run, self.worker = run, worker
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.on_batch, self.in_flight = on_batch, in_flight
        self._pending: deque[_Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """Items queued for a model call that has not started yet."""
        return sum(len(job.items) for job in self._pending)

    def start(self) -> None:
        """Start gathering; call from the running event loop (the app's start-up)."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="sora-batcher")

    async def stop(self) -> None:
        """Stop gathering. Jobs still queued or running fail; the server stops the batcher only once no request
        is in flight, so in practice there are none."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        _fail(self._pending, RuntimeError("the server is shutting down"))
        self._pending.clear()

    async def submit(self, items: list) -> list:
        """The results for ``items``, computed in a batch with whatever else arrived at the same time."""
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if not items:
            return []
        job = _Job(list(items), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._arrived.set()
        return await job.done

    async def _loop(self) -> None:
        while True:
            jobs = await self._gather()
            await self._run(jobs)

    async def _gather(self) -> list[_Job]:
        """The first waiting job, then the next ones until ``max_batch`` items or ``max_wait`` after the first.
        A job is never split: one that does not fit waits for the next batch, and one larger than ``max_batch``
        runs alone (the Predictor cuts it into batches itself)."""
        backlog = bool(self._pending)  # queued while the model ran: they have waited one model call already
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        jobs = [self._pending.popleft()]
        size = len(jobs[0].items)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch:
            if self._pending:
                if size + len(self._pending[0].items) > self.max_batch:
                    break
                jobs.append(self._pending.popleft())
                size += len(jobs[-1].items)
                continue
            left = deadline - time.perf_counter()
            if backlog or left <= 0 or (self.in_flight is not None and self.in_flight() <= len(jobs)):
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if not j.done.cancelled()]  # a client that went away needs no answer
        items = [item for job in jobs for item in job.items]
        if not items:
            return
        start = time.perf_counter()
        try:
            results = await self.worker.call(self.run, items)
            if len(results) != len(items):
                raise RuntimeError(f"the model returned {len(results)} results for {len(items)} items")
        except Exception as e:  # every request of the batch hears of it
            _fail(jobs, e)
            return
        except asyncio.CancelledError:  # stopped mid-call
            _fail(jobs, RuntimeError("the server is shutting down"))
            raise
        finally:
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - start)
        at = 0
        for job in jobs:
            if not job.done.done():
                job.done.set_result(results[at : at + len(job.items)])
            at += len(job.items)


def _fail(jobs, error: BaseException) -> None:
    for job in jobs:
        if not job.done.done():
            job.done.set_exception(error)
