"""The micro-batcher on its own: requests that wait together share one call, each gets its own results, a batch
never exceeds max_batch (a request is never split), calls never overlap, and a failed call fails only its own
requests. No timings: a call held on an event decides what waits together."""

import asyncio
import threading

import pytest

from sora.deploy.batcher import MicroBatcher, ModelWorker


class Model:
    """``run`` doubles each item; the first call waits for ``release`` (so that others queue behind it)."""

    def __init__(self, fail_on=None):
        self.calls, self.started, self.release = [], threading.Event(), threading.Event()
        self.active, self.overlapped, self.fail_on = 0, False, fail_on

    def run(self, items):
        self.active += 1
        self.overlapped |= self.active > 1
        try:
            if not self.calls:
                self.started.set()
                assert self.release.wait(10)
            self.calls.append(list(items))
            if self.fail_on in items:
                raise ValueError(f"cannot take {self.fail_on}")
            return [2 * x for x in items]
        finally:
            self.active -= 1


async def with_batcher(model, body, **options):
    worker = ModelWorker()
    batcher = MicroBatcher(model.run, worker, **options)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()
        worker.close()


async def queued_behind_first(batcher, model, later: list[list[int]]):
    """Submit [0] (held in the model), then ``later`` while it is held; release; every request's results."""
    first = asyncio.ensure_future(batcher.submit([0]))
    await asyncio.to_thread(model.started.wait, 10)
    rest = [asyncio.ensure_future(batcher.submit(items)) for items in later]
    for _ in range(1000):  # let every submit reach the queue (a few turns of the loop)
        if batcher.waiting == sum(map(len, later)):
            break
        await asyncio.sleep(0)
    assert batcher.waiting == sum(map(len, later))
    model.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_that_wait_together_share_one_call_and_get_their_own_results():
    model = Model()
    later = [[1, 2], [3], [4, 5, 6]]
    results = asyncio.run(
        with_batcher(model, lambda b: queued_behind_first(b, model, later), max_batch=32, max_wait_ms=0)
    )
    assert results == [[0], [2, 4], [6], [8, 10, 12]]
    assert model.calls == [[0], [1, 2, 3, 4, 5, 6]]
    assert not model.overlapped


def test_a_batch_stops_at_max_batch_and_never_splits_a_request():
    model = Model()
    later = [[1, 2], [3, 4], [5], [6, 7, 8, 9, 10, 11]]  # the last is larger than max_batch: it runs alone
    results = asyncio.run(
        with_batcher(model, lambda b: queued_behind_first(b, model, later), max_batch=5, max_wait_ms=0)
    )
    assert results[1:] == [[2, 4], [6, 8], [10], [12, 14, 16, 18, 20, 22]]
    assert model.calls == [[0], [1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]


def test_a_failed_call_fails_its_own_requests_only():
    model = Model(fail_on=3)
    later = [[1, 2], [3]]  # these two share the failing call
    results = asyncio.run(
        with_batcher(model, lambda b: queued_behind_first(b, model, later), max_batch=3, max_wait_ms=0)
    )
    assert results[0] == [0]
    assert all(isinstance(r, ValueError) for r in results[1:])

    async def after_failure(batcher):
        return await batcher.submit([7])

    model = Model()
    model.release.set()
    assert asyncio.run(with_batcher(model, after_failure)) == [14]


def test_a_lone_request_does_not_wait_for_company_past_max_wait():
    model = Model()
    model.release.set()

    async def lone(batcher):
        return await asyncio.wait_for(batcher.submit([1, 2]), 10)

    assert asyncio.run(with_batcher(model, lone, max_batch=32, max_wait_ms=1)) == [2, 4]


def test_a_request_alone_in_the_server_runs_without_waiting():
    """With ``in_flight`` saying nobody else is in the server, a 60 s max_wait is not waited out."""
    model = Model()
    model.release.set()

    async def lone(batcher):
        return await asyncio.wait_for(batcher.submit([3]), 10)

    assert asyncio.run(with_batcher(model, lone, max_wait_ms=60_000, in_flight=lambda: 1)) == [6]


def test_a_backlog_runs_as_soon_as_the_model_is_free():
    """Requests that queued while the model ran have waited one call already: with a 60 s max_wait and a server
    that says more requests are in flight (once the first call runs), they still run at once, together."""
    model = Model()
    later = [[1], [2, 3]]
    results = asyncio.run(
        asyncio.wait_for(
            with_batcher(
                model,
                lambda b: queued_behind_first(b, model, later),
                max_batch=32,
                max_wait_ms=60_000,
                in_flight=lambda: 100 if model.started.is_set() else 1,
            ),
            10,
        )
    )
    assert results == [[0], [2], [4, 6]]
    assert model.calls == [[0], [1, 2, 3]]


def test_the_worker_loads_and_runs_on_one_thread():
    """The server loads its model through ``run_now``: the same thread as every later call (one OpenMP team)."""
    worker = ModelWorker()
    try:
        loaded_on = worker.run_now(lambda: threading.current_thread())
        called_on = asyncio.run(worker.call(threading.current_thread))
    finally:
        worker.close()
    assert loaded_on is called_on is not threading.main_thread()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda x: x, ModelWorker(), max_batch=0)
