"""Runs upload validation away from the serving loop: in a separate worker process by
default (spawned, optionally memory-limited, restarted if it dies or hangs), or in a thread
of the server process when isolation is switched off (tests of the validator itself)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from kerve.registry import validation
from kerve.registry.errors import InvalidArgumentError
from kerve.registry.limits import UploadLimits
from kerve.registry.plugins import Plugins
from kerve.registry.validation import ValidationReport

log = logging.getLogger(__name__)


class ValidationWorker:
    """Validates (architecture, weights) files into a ValidationReport."""

    def __init__(self, plugins: Plugins, *, allow_unsafe_lambda: bool, isolated: bool,
                 timeout_s: float, memory_limit_bytes: int | None, workers: int = 1,
                 limits: UploadLimits | None = None) -> None:
        self._limits = limits or UploadLimits()
        self._plugins = plugins
        self._allow_unsafe = allow_unsafe_lambda
        self._isolated = isolated
        self._workers = workers
        self._timeout_s = timeout_s
        self._memory_limit = memory_limit_bytes
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | None = None

    def _new_pool(self):
        if not self._isolated:
            return ThreadPoolExecutor(self._workers, thread_name_prefix="kerve-validate")
        return ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=validation.init_worker,
            initargs=(self._plugins.modules, self._allow_unsafe, self._memory_limit,
                      self._limits))

    def start(self) -> None:
        """Start the workers and have them import TensorFlow now (the first upload does this,
        and a restart)."""
        self._pool = self._new_pool()
        if self._isolated:
            self._pool.submit(validation.warm_worker)

    async def validate(self, architecture: Path, weights: Path,
                       examples: Path | None = None) -> ValidationReport:
        if self._pool is None:
            self.start()
        loop = asyncio.get_running_loop()
        pool = self._pool
        if self._isolated:
            call = (validation.validate_in_worker, str(architecture), str(weights),
                    str(examples) if examples else None)
        else:
            call = (validation.validate_files, architecture, weights, self._plugins,
                    self._allow_unsafe, examples, self._limits)
        future = loop.run_in_executor(pool, *call)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except asyncio.TimeoutError:
            self._restart(pool, "timed out")
            raise InvalidArgumentError(
                f"validation took longer than {self._timeout_s:.0f} s and was stopped") from None
        except BrokenProcessPool:
            self._restart(pool, "crashed")
            raise InvalidArgumentError(
                "validation process died on this upload (out of memory, or a crash while "
                "deserializing it)") from None
        except MemoryError:
            raise InvalidArgumentError("validation ran out of memory on this upload") from None

    def _restart(self, failed, why: str) -> None:
        """Replace ``failed`` with a new pool, unless it was replaced already: several
        uploads fail together when a pool dies, and a late one must not kill the uploads
        queued on its successor."""
        if failed is not self._pool:
            return
        log.warning("validation worker %s; restarting it", why)
        self._pool = None
        _kill(failed)
        self.start()

    def close(self) -> None:
        if self._pool is not None:
            _kill(self._pool)
            self._pool = None


def _kill(pool) -> None:
    if isinstance(pool, ProcessPoolExecutor):
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
