"""The dynamic batcher on its own: merging, splitting, bounds, deadlines and failures."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kerve.registry.errors import DeadlineExceededError, ResourceExhaustedError
from kerve.server.batching import Batcher


class SlowDouble:
    """x -> [2x, sum over features], taking ``delay`` seconds a call; records batch sizes."""

    def __init__(self, delay: float = 0.02, fail_on: float | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, arrays):
        (x,) = arrays
        with self.lock:
            self.calls.append(x.shape[0])
        time.sleep(self.delay)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ValueError("poisoned row")
        return [x * 2, x.sum(axis=1)]


def _batcher(fn, **kw):
    args = dict(batchable=True, max_batch_size=8, timeout_s=0.002, max_queue=100,
                inline_below_s=0.0)  # executor only, unless a test says otherwise
    args.update(kw)
    return Batcher(fn, ThreadPoolExecutor(2), **args)


def _rows(n: int, start: int = 0) -> list[np.ndarray]:
    return [np.arange(start, start + n * 3, dtype=np.float32).reshape(n, 3)]


def test_lone_request_runs_at_once():
    fn = SlowDouble(delay=0)

    async def main():
        b = _batcher(fn, timeout_s=5.0)  # a long timeout must not delay an idle queue
        started = time.perf_counter()
        out = await b.run(_rows(1))
        return time.perf_counter() - started, out

    elapsed, out = asyncio.run(main())
    assert elapsed < 0.5
    np.testing.assert_array_equal(out[0], _rows(1)[0] * 2)


def test_concurrent_requests_are_merged_and_split_back():
    fn = SlowDouble()

    async def main():
        b = _batcher(fn)
        return await asyncio.gather(*(b.run(_rows(2, start=10 * i)) for i in range(12)))

    results = asyncio.run(main())
    for i, (doubled, summed) in enumerate(results):
        x = _rows(2, start=10 * i)[0]
        np.testing.assert_array_equal(doubled, x * 2)
        np.testing.assert_array_equal(summed, x.sum(axis=1))
    assert sum(fn.calls) == 24
    assert max(fn.calls) <= 8 and max(fn.calls) > 2  # merged, never past max rows
    assert len(fn.calls) < 12


def test_unbatchable_model_never_merges():
    fn = SlowDouble()

    async def main():
        b = _batcher(fn, batchable=False)
        await asyncio.gather(*(b.run(_rows(1, start=i)) for i in range(5)))

    asyncio.run(main())
    assert fn.calls == [1] * 5


def test_queue_is_bounded():
    fn = SlowDouble(delay=0.05)

    async def main():
        b = _batcher(fn, max_queue=3, batchable=False)
        return await asyncio.gather(*(b.run(_rows(1)) for _ in range(10)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    rejected = [r for r in results if isinstance(r, ResourceExhaustedError)]
    assert rejected and len(rejected) < 10
    assert all(isinstance(r, list) for r in results if r not in rejected)


def test_request_past_deadline_is_dropped_before_it_runs():
    fn = SlowDouble(delay=0.1)

    async def main():
        b = _batcher(fn, batchable=False)
        first = asyncio.ensure_future(b.run(_rows(1)))
        await asyncio.sleep(0)
        late = b.run(_rows(1, start=100), deadline=time.monotonic() + 0.01)
        return await asyncio.gather(first, late, return_exceptions=True)

    first, late = asyncio.run(main())
    assert isinstance(first, list)
    assert isinstance(late, DeadlineExceededError)
    assert fn.calls == [1]


def test_failing_batch_fails_every_request_in_it():
    fn = SlowDouble(fail_on=1000.0)

    async def main():
        b = _batcher(fn)
        blocker = asyncio.ensure_future(b.run(_rows(1, start=-50)))
        await asyncio.sleep(0)
        batch = [b.run(_rows(1, start=1000)), b.run(_rows(1, start=0))]
        return await asyncio.gather(blocker, *batch, return_exceptions=True)

    blocker, poisoned, bystander = asyncio.run(main())
    assert isinstance(blocker, list)
    assert isinstance(poisoned, ValueError) and isinstance(bystander, ValueError)
    assert "poisoned row" in str(bystander)


def test_padding_to_allowed_sizes():
    fn = SlowDouble()

    async def main():
        b = _batcher(fn, pad_to=(4, 8))
        blocker = asyncio.ensure_future(b.run(_rows(1)))
        await asyncio.sleep(0)
        return await asyncio.gather(blocker, b.run(_rows(2, start=5)), b.run(_rows(1, start=9)))

    results = asyncio.run(main())
    assert set(fn.calls) <= {4, 8}
    np.testing.assert_array_equal(results[1][0], _rows(2, start=5)[0] * 2)
    np.testing.assert_array_equal(results[2][0], _rows(1, start=9)[0] * 2)


@pytest.mark.parametrize("instances", [2])
def test_several_instances_wait_for_a_fuller_batch(instances):
    fn = SlowDouble(delay=0.05)

    async def main():
        b = _batcher(fn, instances=instances, timeout_s=0.02)
        return await asyncio.gather(*(b.run(_rows(1, start=i)) for i in range(10)))

    asyncio.run(main())
    assert sum(fn.calls) == 10 and len(fn.calls) < 10


def test_cheap_lone_request_runs_inline_and_slow_one_in_the_executor():
    loop_thread = []

    def record(arrays):
        loop_thread.append(threading.current_thread() is threading.main_thread())
        time.sleep(record.delay)
        return [arrays[0]]

    async def main(delay):
        record.delay = delay
        b = _batcher(record, inline_below_s=0.01)
        for _ in range(3):
            await b.run(_rows(1))
            await asyncio.sleep(0.002)  # a client's round trip: the model is idle again

    record.delay = 0.0
    asyncio.run(main(0.0))
    assert loop_thread == [True, True, True]
    loop_thread.clear()
    asyncio.run(main(0.05))  # the first call teaches it the model is slow
    assert loop_thread == [True, False, False]


def test_back_to_back_requests_after_an_inline_call_are_not_inline():
    """Under load a request arrives right as a call ends: it goes to the executor, where
    the requests behind it can gather into a batch."""
    fn = SlowDouble(delay=0.0)

    async def main():
        b = _batcher(fn, inline_below_s=1.0, idle_gap_s=0.5)
        await asyncio.sleep(0.6)
        await b.run(_rows(1))  # idle: inline
        return await asyncio.gather(*(b.run(_rows(1, start=i)) for i in range(6)))

    asyncio.run(main())
    assert fn.calls[0] == 1 and len(fn.calls) < 7  # the burst was batched


def test_requests_of_different_lengths_each_answer_as_alone():
    """A free non-batch dimension (sequences of any length): only requests whose shapes
    agree share a call, and each answers exactly what it would alone."""
    calls: list[tuple[int, ...]] = []

    def mean_over_time(arrays):
        (x,) = arrays
        calls.append(x.shape)
        time.sleep(0.01)
        return [x.mean(axis=1)]

    lengths = [3, 5, 3, 7, 5, 3, 1, 7, 5, 3, 2, 9]

    async def main():
        b = _batcher(mean_over_time)
        blocker = asyncio.ensure_future(b.run([np.ones((1, 4, 2), np.float32)]))
        await asyncio.sleep(0)
        requests = [np.random.default_rng(i).random((2, n, 2), dtype=np.float32)
                    for i, n in enumerate(lengths)]
        answers = await asyncio.gather(*(b.run([x]) for x in requests))
        await blocker
        return requests, answers

    requests, answers = asyncio.run(main())
    for x, (out,) in zip(requests, answers):
        np.testing.assert_array_equal(out, x.mean(axis=1))
    merged = [shape for shape in calls[1:] if shape[0] > 2]
    assert merged, "requests of one length should still be merged"
    assert len({shape[1] for shape in calls}) == len(set(lengths) | {4})


def test_an_observer_that_raises_fails_the_request_not_the_queue():
    def observe(rows, oldest, requests, queued):
        raise RuntimeError("observer broke")

    async def main(inline):
        b = _batcher(SlowDouble(delay=0), observe=observe,
                     inline_below_s=1.0 if inline else 0.0)
        return await asyncio.wait_for(
            asyncio.gather(b.run(_rows(1)), return_exceptions=True), 5)

    for inline in (True, False):
        (result,) = asyncio.run(main(inline))
        assert isinstance(result, RuntimeError)


def test_batches_in_flight_are_referenced():
    async def main():
        b = _batcher(SlowDouble(delay=0.05))
        first = asyncio.ensure_future(b.run(_rows(1)))
        await asyncio.sleep(0.01)
        assert len(b._running) == 1  # the loop itself keeps only a weak reference
        await first
        await asyncio.sleep(0)
        assert not b._running

    asyncio.run(main())
