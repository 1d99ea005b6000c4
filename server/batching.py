"""The scheduler: dynamic batching per loaded version.

Requests queue; whenever the model has a free instance, the queued requests (up to
max_batch_size rows) are merged along the batch dimension into one call, and the outputs
are split back. An idle model runs a lone request at once, so batching costs nothing at
concurrency 1 — inline on the event loop when the model's lone calls take under a
millisecond (no thread hop; nothing else is waiting then), in the executor otherwise: for a
slower model the hop is a small share of the call, and a loop blocked for milliseconds
would hide the requests piling up behind it from the batcher. Under load, requests gather while
the model is busy. With several instances
a free instance waits at most batch_timeout for a batch to fill. The queue is bounded; a
request whose deadline passed is dropped before it runs; a failing batch fails every
request in it with the reason.

Only requests whose arrays agree in every dimension but the first are merged: a model with a
free non-batch dimension (token sequences of any length) gets a batch per shape, and each
request answers exactly what it would alone. A request of another shape waits for the next
call, in arrival order among its own shape.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kerve.registry.errors import DeadlineExceededError, ResourceExhaustedError

PredictFn = Callable[[list[np.ndarray]], list[np.ndarray]]
# (rows in the call, seconds its oldest request queued, requests in it, their queued seconds)
Observer = Callable[[int, float, int, float], None]


@dataclass
class _Pending:
    arrays: list[np.ndarray]
    rows: int
    deadline: float | None
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def shape_key(self) -> tuple:
        """What must agree for two requests to share a model call."""
        return tuple(a.shape[1:] for a in self.arrays)


class Batcher:
    def __init__(self, predict: PredictFn, executor: Executor, *, batchable: bool,
                 max_batch_size: int, timeout_s: float, max_queue: int, instances: int = 1,
                 pad_to: tuple[int, ...] = (), observe: Observer | None = None,
                 inline_below_s: float = 0.001, idle_gap_s: float = 0.0003,
                 busy_window_s: float = 0.005) -> None:
        self._predict = predict
        self._executor = executor
        self._merge = batchable and max_batch_size > 1
        self._max_rows = max(1, max_batch_size)
        self._timeout_s = timeout_s
        self._max_queue = max_queue
        self._instances = max(1, instances)
        self._pad_to = tuple(sorted(pad_to))
        self._observe = observe
        self._inline_below_s = inline_below_s
        self._lone_cost_s = 0.0  # moving average of a lone request's model call
        self._idle_gap_s = idle_gap_s
        self._busy_window_s = busy_window_s
        self._last_done = 0.0  # when the last model call ended
        self._last_requests = 0  # how many requests it served
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task] = set()  # the loop keeps only weak references

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self, arrays: list[np.ndarray], deadline: float | None = None) -> list[np.ndarray]:
        """Predict ``arrays`` (one request), batched with others where possible.
        ``deadline`` is a time.monotonic() instant after which the request is dropped."""
        if len(self._queue) >= self._max_queue:
            raise ResourceExhaustedError(
                f"request queue is full ({self._max_queue} waiting); retry later")
        rows = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 1
        pending = _Pending(arrays, rows, deadline, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._dispatch()
        return await pending.future

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self._instances:
            if (self._merge and self._in_flight > 0 and self._queued_rows() < self._max_rows
                    and self._wait_left() > 0):
                self._arm_timer()
                return
            batch = self._take_batch()
            if not batch:
                continue
            if len(batch) == 1 and not self._queue and self._idle():
                self._run_inline(batch[0])
                continue
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _queued_rows(self) -> int:
        return sum(p.rows for p in self._queue)

    def _wait_left(self) -> float:
        return self._queue[0].enqueued + self._timeout_s - time.perf_counter()

    def _arm_timer(self) -> None:
        if self._timer is None:
            def fire() -> None:
                self._timer = None
                self._dispatch()
            self._timer = asyncio.get_running_loop().call_later(max(self._wait_left(), 0), fire)

    def _take_batch(self) -> list[_Pending]:
        """The oldest live request, and when merging, the next ones of its shape that fit."""
        now = time.monotonic()
        while self._queue and not self._live(self._queue[0], now):
            self._queue.popleft()
        if not self._queue:
            return []
        head = self._queue.popleft()
        batch, rows = [head], head.rows
        if not self._merge:
            return batch
        key, others = head.shape_key, deque()
        while self._queue and rows < self._max_rows:
            p = self._queue.popleft()
            if not self._live(p, now):
                continue
            if p.shape_key != key or rows + p.rows > self._max_rows:
                others.append(p)
                continue
            batch.append(p)
            rows += p.rows
        others.extend(self._queue)
        self._queue = others
        return batch

    @staticmethod
    def _live(p: _Pending, now: float) -> bool:
        """False for a request cancelled by its client or past its deadline (failed here)."""
        if p.future.done():
            return False
        if p.deadline is not None and p.deadline <= now:
            p.future.set_exception(DeadlineExceededError(
                "deadline passed while the request was queued"))
            return False
        return True

    def _idle(self) -> bool:
        """Whether a lone request may run inline: nothing in flight, the model is cheap,
        and no load in sight. Under load requests reach the batcher one at a time (the loop
        was busy), so "the queue is empty" alone would run each inline, unbatched: a call
        that ended just now, or a recent call that served several requests, means load."""
        if self._in_flight or self._pad_to or self._lone_cost_s >= self._inline_below_s:
            return False
        since = time.perf_counter() - self._last_done
        if since < self._idle_gap_s:
            return False
        return not (self._last_requests > 1 and since < self._busy_window_s)

    def _run_inline(self, pending: _Pending) -> None:
        started = time.perf_counter()
        try:
            if self._observe is not None:
                waited = started - pending.enqueued
                self._observe(pending.rows, waited, 1, waited)
            _resolve(pending.future, self._predict(pending.arrays))
        except Exception as exc:  # noqa: BLE001 - the request fails, the server goes on
            _fail(pending.future, exc)
        self._last_done = time.perf_counter()
        self._last_requests = 1
        self._note_lone_cost(self._last_done - started)

    def _note_lone_cost(self, seconds: float) -> None:
        self._lone_cost_s = 0.8 * self._lone_cost_s + 0.2 * seconds if self._lone_cost_s \
            else seconds

    async def _execute(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._observe is not None:
                now = time.perf_counter()
                self._observe(sum(p.rows for p in batch), now - batch[0].enqueued, len(batch),
                              sum(now - p.enqueued for p in batch))
            if len(batch) == 1 and not self._pad_to:
                started = time.perf_counter()
                outputs = await loop.run_in_executor(self._executor, self._predict, batch[0].arrays)
                self._note_lone_cost(time.perf_counter() - started)
                _resolve(batch[0].future, outputs)
                return
            merged = self._merge_inputs(batch)
            outputs = await loop.run_in_executor(self._executor, self._predict, merged)
            start = 0
            for p in batch:
                _resolve(p.future, [o[start:start + p.rows] for o in outputs])
                start += p.rows
        except Exception as exc:  # noqa: BLE001 - the batch fails, the server goes on
            for p in batch:
                _fail(p.future, exc)
        finally:
            self._in_flight -= 1
            self._last_done = time.perf_counter()
            self._last_requests = len(batch)
            self._dispatch()

    def _merge_inputs(self, batch: list[_Pending]) -> list[np.ndarray]:
        total = sum(p.rows for p in batch)
        target = next((s for s in self._pad_to if s >= total), total)
        merged = []
        for i in range(len(batch[0].arrays)):
            parts = [p.arrays[i] for p in batch]
            if target > total:
                pad = np.zeros((target - total, *parts[0].shape[1:]), dtype=parts[0].dtype)
                if pad.dtype == np.object_:
                    pad.fill(b"")  # string rows: zeros would be ints

                parts.append(pad)
            merged.append(np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0])
        return merged


def _resolve(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
