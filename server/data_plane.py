"""The data plane: one transport-free core that both inference protocols call.

Servicers decode their wire format into numpy arrays keyed by input name, call
``DataPlane.infer``, and encode the arrays it returns. Input checking against the
signature happens here, once, for both protocols. Everything else the servicers answer
(readiness, the repository index, statistics, load and unload, version states) comes from
here too: no servicer reaches into the manager.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kerve.registry.errors import InvalidArgumentError, KerveError, NotFoundError
from kerve.registry.names import VersionRef
from kerve.registry.serving_options import ServingOptions, options_from_tags
from kerve.registry.signature import Signature, TensorSpec
from kerve.server.manager import ModelManager
from kerve.server.metrics import Metrics
from kerve.server.states import VersionState, VersionStatus


@dataclass
class VersionStats:
    """Per-version counters for KServe's ModelStatistics (Prometheus has the rest)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    inference_count: int = 0  # rows
    last_inference_ms: int = 0
    queue_count: int = 0  # requests that went through the batcher's queue
    queue_ns: int = 0  # the time they waited there
    execution_count: int = 0  # model calls


@dataclass
class InferResult:
    name: str
    version: int
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class ServingConfig:
    """How a version is served here: what Triton's ModelConfig describes."""

    version: int
    signature: Signature
    options: ServingOptions
    instances: int
    device: str


class DataPlane:
    def __init__(self, manager: ModelManager, metrics: Metrics, *,
                 defaults: ServingOptions | None = None, instances: int = 1,
                 device: str = "/CPU:0", strict_readiness: bool = True) -> None:
        self._manager = manager
        self._strict_readiness = strict_readiness
        self._metrics = metrics
        self._defaults = defaults
        self._instances = instances
        self._device = device
        self._stats: dict[tuple[str, int], VersionStats] = {}

    async def infer(self, ref: VersionRef, inputs: dict[str, np.ndarray], *, api: str,
                    outputs: list[str] | None = None,
                    deadline: float | None = None) -> InferResult:
        """Run one request; ``deadline`` is a time.monotonic() instant or None."""
        started = time.perf_counter()
        version: int | None = None
        rows = 0
        code = "OK"
        try:
            async with self._manager.acquire(ref) as served:
                version = served.version
                signature = served.loaded.signature
                arrays = order_inputs(signature, inputs)
                wanted = select_outputs(signature, outputs)
                rows = int(arrays[0].shape[0]) if arrays[0].ndim else 1
                results = await served.runner.run(arrays, deadline)
                named = {spec.name: arr for spec, arr in zip(signature.outputs, results)}
                return InferResult(ref.name, served.version, {n: named[n] for n in wanted})
        except KerveError as exc:
            code = exc.code.name
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            elapsed = time.perf_counter() - started
            # Only known names become label values: clients cannot grow the metrics.
            model = ref.name if self._manager.knows(ref.name) else "_unknown"
            self._metrics.requests.labels(model, "" if version is None else str(version),
                                         api, code).inc()
            self._metrics.request_duration.labels(model, api).observe(elapsed)
            if version is not None:
                self._count(ref.name, version, code == "OK", rows, elapsed)

    def note_queue(self, name: str, version: int, requests: int, queued_s: float) -> None:
        """One model call of ``requests`` requests that waited ``queued_s`` in all."""
        stats = self._stats.setdefault((name, version), VersionStats())
        stats.queue_count += requests
        stats.queue_ns += int(queued_s * 1e9)
        stats.execution_count += 1

    def _count(self, name: str, version: int, ok: bool, rows: int, elapsed: float) -> None:
        stats = self._stats.setdefault((name, version), VersionStats())
        ns = int(elapsed * 1e9)
        if ok:
            stats.success_count += 1
            stats.success_ns += ns
            stats.inference_count += rows
            stats.last_inference_ms = int(time.time() * 1000)
        else:
            stats.fail_count += 1
            stats.fail_ns += ns

    async def signature(self, ref: VersionRef) -> tuple[int, Signature]:
        """The signature of the version a reference means (loaded or not)."""
        info = await self._manager.version_info(ref)
        return info.version, info.signature

    async def serving_config(self, ref: VersionRef) -> ServingConfig:
        """The version a reference means, with the batching it gets here (its kerve.* tags
        over the server's settings)."""
        info = await self._manager.version_info(ref)
        options = options_from_tags(info.tags, self._defaults)
        return ServingConfig(info.version, info.signature, options, self._instances,
                             self._device)

    # --- readiness and the repository ---------------------------------------------------

    def ready(self) -> bool:
        """Whether this server is ready (kerve.server.manager.ModelManager.ready)."""
        return self._manager.ready(self._strict_readiness)

    async def model_ready(self, ref: VersionRef) -> bool:
        return self.version_status(ref.name, await self._manager.resolve(ref)).state \
            is VersionState.READY

    def version_status(self, name: str, version: int) -> VersionStatus:
        served = self._manager.status(name, version)
        if served is None:
            return VersionStatus(name, version, VersionState.STORED)
        return VersionStatus(name, version, served.state, served.reason)

    def serving_default(self, name: str) -> int | None:
        """The version answering requests for ``name``'s default here, if any."""
        return self._manager.serving_default(name)

    def index(self, ready_only: bool = False) -> list[VersionStatus]:
        """Every stored version of every model, with its state here."""
        statuses = [self.version_status(name, version)
                    for name, info in sorted(self._manager.models().items())
                    for version in info.versions]
        return [s for s in statuses if s.state is VersionState.READY or not ready_only]

    async def model_status(self, ref: VersionRef, every_version: bool) -> list[VersionStatus]:
        """The state of the version ``ref`` means, or of all the model's versions."""
        if every_version:
            return [self.version_status(ref.name, v) for v in self._versions(ref.name)]
        return [self.version_status(ref.name, await self._manager.resolve(ref))]

    def statistics(self, name: str = "", version: str = "") -> list[tuple[str, int, VersionStats]]:
        """Counters per stored version: all models (no name), one model, or one version."""
        names = [name] if name else sorted(self._manager.models())
        rows = []
        for model in names:
            for number in self._versions(model):
                if version and version != str(number):
                    continue
                rows.append((model, number, self._stats.get((model, number), VersionStats())))
        return rows

    def _versions(self, name: str) -> list[int]:
        info = self._manager.models().get(name)
        if info is None:
            raise NotFoundError(f"model {name!r} not found")
        return info.versions

    async def load(self, name: str) -> None:
        """Load a model's default version; returns once it is READY (FAILED_PRECONDITION
        with why if it fails)."""
        await self._manager.load_model(name)

    async def unload(self, name: str) -> None:
        await self._manager.unload_model(name)


def deadline_of(context) -> float | None:
    """A gRPC call's deadline as a time.monotonic() instant, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def order_inputs(signature: Signature, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The request's arrays in signature order, checked: names, dtypes, ranks, fixed
    dimensions, and one batch size across inputs. A single-input model takes its one input
    under any name."""
    specs = signature.inputs
    if len(specs) == 1 and len(inputs) == 1:
        (given,) = inputs.values()
        arrays = [given]
    else:
        expected = [s.name for s in specs]
        unknown = sorted(set(inputs) - set(expected))
        missing = [n for n in expected if n not in inputs]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown input(s) {', '.join(unknown)}")
            raise InvalidArgumentError(
                f"{'; '.join(parts)}; the model takes {', '.join(expected)}")
        arrays = [inputs[n] for n in expected]
    batch = None
    for spec, arr in zip(specs, arrays):
        _check_tensor(spec, arr)
        if spec.batched:
            if batch is not None and arr.shape[0] != batch:
                raise InvalidArgumentError(
                    f"input {spec.name!r}: batch size {arr.shape[0]} differs from the other "
                    f"inputs' {batch}")
            batch = arr.shape[0]
    return arrays


def _check_tensor(spec: TensorSpec, arr: np.ndarray) -> None:
    if arr.dtype != spec.np_dtype:
        raise InvalidArgumentError(
            f"input {spec.name!r}: expected dtype {spec.dtype}, got {arr.dtype}")
    expected = tuple(spec.shape)
    if arr.ndim != len(expected) or any(e != -1 and e != g for e, g in zip(expected, arr.shape)):
        shown = "[" + ", ".join("-1" if d == -1 else str(d) for d in expected) + "]"
        raise InvalidArgumentError(
            f"input {spec.name!r}: expected shape {shown}, got {list(arr.shape)}")
    if spec.batched and arr.shape[0] == 0:
        raise InvalidArgumentError(f"input {spec.name!r}: empty batch")


def select_outputs(signature: Signature, requested: list[str] | None) -> list[str]:
    names = [s.name for s in signature.outputs]
    if not requested:
        return names
    unknown = [n for n in requested if n not in names]
    if unknown:
        raise InvalidArgumentError(
            f"unknown output(s) {', '.join(unknown)}; the model gives {', '.join(names)}")
    return list(dict.fromkeys(requested))
