"""The manager: which versions are loaded, and handles that keep one alive during a request.

Desired state comes from the registry (the source): every model's default version (alias
``production``, else the newest), plus versions asked for on demand. RepositoryModelLoad
loads a model's default version (retrying a FAILED one). Loads run in the background; a new
default is swapped in only once READY, and the old one is unloaded once its in-flight
requests finish. A version that fails to load is FAILED with the reason while the others
keep serving.

A new default with the architecture and serving options of the one it replaces (a
weights-only version) is swapped in place: its weights are read beside the serving model,
then, between requests, assigned into it. Requests for the old version are held at a gate
while the ones running finish and the weights are assigned; every request therefore runs on
one version's weights, old or new, and is answered as that version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from kerve.registry.database import ModelInfo, VersionInfo
from kerve.registry.errors import (
    DataLossError,
    FailedPreconditionError,
    KerveError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from kerve.registry.memory import memory_need
from kerve.registry.names import VersionRef
from kerve.registry.registry import Registry
from kerve.server.load_priority import lower_thread_priority, sharing_the_gil
from kerve.server.loader import LoadedModel, StagedWeights
from kerve.server.states import VersionState as State

log = logging.getLogger(__name__)


@dataclass
class Served:
    """One version's life in this server."""

    name: str
    version: int
    state: State = State.LOADING
    reason: str = ""
    error: type[KerveError] = FailedPreconditionError  # what a FAILED one answers
    loaded: LoadedModel | None = None
    runner: object | None = None  # the version's Batcher
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    memory_bytes: int = 0  # the memory it is counted for: its estimate (kerve.registry.memory)
    loading_bytes: int = 0  # and besides that, until it is READY or FAILED
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # READY or FAILED
    gate: asyncio.Event | None = None  # set while its model takes another version's weights
    replacing: "Served | None" = None  # the default it may take the model of, in place


Loader = Callable[[VersionInfo], LoadedModel]
RunnerFactory = Callable[[LoadedModel], object]
Stager = Callable[[LoadedModel, VersionInfo], StagedWeights | None]
Assigner = Callable[[LoadedModel, StagedWeights], LoadedModel]


class ModelManager:
    def __init__(self, registry: Registry, load: Loader, make_runner: RunnerFactory, *,
                 poll_interval_s: float, idle_unload_s: float, load_workers: int = 1,
                 memory_budget_bytes: int | None = None,
                 on_loaded: Callable[[Served], None] | None = None,
                 stage: Stager | None = None, assign: Assigner | None = None,
                 device_free_bytes: Callable[[], int | None] | None = None) -> None:
        self._registry = registry
        self._load = load
        self._make_runner = make_runner
        self._poll_interval_s = poll_interval_s
        self._idle_unload_s = idle_unload_s
        self._memory_budget = memory_budget_bytes
        self._device_free_bytes = device_free_bytes
        self._on_loaded = on_loaded
        self._pool = ThreadPoolExecutor(load_workers, thread_name_prefix="kerve-load",
                                        initializer=lower_thread_priority)
        self._background_load = sharing_the_gil(load)
        # In-place weight swaps where both are given (kerve.server.loader.stage_weights).
        self._stage = sharing_the_gil(stage) if stage is not None and assign else None
        self._assign = assign
        self._served: dict[tuple[str, int], Served] = {}
        self._models: dict[str, ModelInfo] = {}
        self._defaults: dict[str, int] = {}  # the version default requests go to now
        self._unloaded: set[str] = set()  # RepositoryModelUnload'ed, until loaded again
        self._tasks: set[asyncio.Task] = set()
        self._sync_lock = asyncio.Lock()
        self._sync_waiting = False
        self._initial_sync_done = asyncio.Event()
        self._been_ready = False  # start-up waits for every default to settle, once
        self._poller: asyncio.Task | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._registry.on_change(self._changed_here)
        await self.sync()
        self._initial_sync_done.set()
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.sync()
                self._unload_idle()
            except Exception:  # noqa: BLE001 - a bad poll must not stop polling
                log.exception("registry sync failed")

    async def _changed_here(self, name: str) -> None:
        """A write through this server: re-read before it is answered, so that the next
        request here (a status, a load on demand) already knows it."""
        await self.sync()

    def sync_soon(self) -> None:
        """Re-read the registry soon: a change was made here or announced by another
        replica. Announcements that arrive while a re-read waits to start share it."""
        if self._sync_waiting:
            return
        self._sync_waiting = True

        async def run() -> None:
            async with self._sync_lock:
                self._sync_waiting = False
            await self.sync()
        self._spawn(run())

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- desired state --------------------------------------------------------------

    async def sync(self) -> None:
        """Re-read the registry; load new default versions; unload what is gone."""
        async with self._sync_lock:
            models = {m.name: m for m in await self._registry.list_models()}
            self._models = models
            for name, info in models.items():
                if name in self._unloaded:
                    continue
                want = info.default_version
                served = self._served.get((name, want))
                if _startable(served):
                    served = self._start_load(name, want, _need(info, want))
                    served.replacing = self._default_served(name)
                elif served.state is State.READY:
                    self._promote(name, want)
            for key, served in list(self._served.items()):
                name, version = key
                info = models.get(name)
                if info is None or version not in info.versions:
                    if info is not None and self._successor_loading(name, version, info):
                        continue  # _promote retires it once its successor is READY
                    self._begin_unload(served)

    def _default_served(self, name: str) -> Served | None:
        """The READY version default requests go to now, if any."""
        version = self._defaults.get(name)
        served = self._served.get((name, version)) if version is not None else None
        return served if served is not None and served.state is State.READY else None

    def _successor_loading(self, name: str, version: int, info: ModelInfo) -> bool:
        """Whether ``version``, deleted from the registry, is the default requests still go
        to while the new default loads: it keeps answering them until then (found by the
        soak: a rollout that deletes the old version at once must not fail requests)."""
        successor = self._served.get((name, info.default_version))
        return (self._defaults.get(name) == version and successor is not None
                and successor.state is State.LOADING)

    def _start_load(self, name: str, version: int, need: tuple[int, int]) -> Served:
        """Admit a version and start loading it; one refused is FAILED with
        RESOURCE_EXHAUSTED (tried again when next asked for)."""
        # The size is counted from the start, before any await, so that room made for
        # another version meanwhile counts this one too.
        served = Served(name, version, memory_bytes=need[0], loading_bytes=need[1])
        try:
            self._admit(served)
        except ResourceExhaustedError as exc:
            prev = self._served.get((name, version))
            again = prev is not None and prev.error is ResourceExhaustedError
            served.state, served.reason, served.error = State.FAILED, exc.message, type(exc)
            served.loading_bytes = 0
            served.settled.set()
            (log.debug if again else log.warning)("version %s:%d not loaded: %s", name,
                                                  version, exc.message)
        self._served[(name, version)] = served
        if served.state is State.LOADING:
            self._spawn(self._load_one(served))
        return served

    async def _need(self, name: str, version: int) -> tuple[int, int]:
        """What a version is counted for, loaded and besides that while loading: from the
        cached listing, else from the registry."""
        known = self._models.get(name)
        if known is not None and version in known.memory_bytes:
            return _need(known, version)
        return memory_need(await self._registry.resolve(VersionRef(name, version)))

    async def _load_one(self, served: Served) -> None:
        try:
            info = await self._registry.resolve(VersionRef(served.name, served.version))
            if await self._swapped_in_place(served, info):
                return
            loaded = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._background_load, info)
            if served.state is State.UNLOADING:  # unloaded or deleted while it loaded
                return
            self._ready(served, loaded)
        except KerveError as exc:
            served.state, served.reason = State.FAILED, exc.message
            served.error = DataLossError if isinstance(exc, DataLossError) else \
                FailedPreconditionError
            log.warning("version %s:%d failed to load: %s", served.name, served.version, exc.message)
            return
        except Exception as exc:  # noqa: BLE001
            served.state = State.FAILED
            served.reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            log.exception("version %s:%d failed to load", served.name, served.version)
            return
        finally:
            served.settled.set()
            served.replacing = None
            served.loading_bytes = 0
        info = self._models.get(served.name)
        if info is not None and info.default_version == served.version:
            self._promote(served.name, served.version)

    def _ready(self, served: Served, loaded: LoadedModel) -> None:
        served.loaded = loaded
        served.runner = self._make_runner(loaded)
        served.state = State.READY
        if self._on_loaded:
            self._on_loaded(served)

    def _can_swap_into(self, served: Served, old: Served | None) -> bool:
        """Whether ``old`` is still the READY default that ``served`` may take over."""
        return (old is not None and old.state is State.READY and old.gate is None
                and self._defaults.get(old.name) == old.version and served.state is State.LOADING)

    async def _swapped_in_place(self, served: Served, info: VersionInfo) -> bool:
        """Swap ``info``'s weights into the model of the default it replaces, if it can
        (same architecture and serving options): True once done, or once it failed with
        the reason recorded; False to load it in full."""
        old = served.replacing
        if self._stage is None or not self._can_swap_into(served, old):
            return False
        loop = asyncio.get_running_loop()
        staged = await loop.run_in_executor(self._pool, self._stage, old.loaded, info)
        if staged is None or not self._can_swap_into(served, old):
            return False
        old.gate = gate = asyncio.Event()  # requests for the old version wait here
        try:
            if old.in_flight:
                await old.drained.wait()  # the batches running on the old weights finish
            # Nothing runs on the model now. The assignment is short and in the default
            # pool (not the low-priority load thread): requests wait for it.
            try:
                loaded = await loop.run_in_executor(None, self._assign, old.loaded, staged)
            except KerveError:
                raise  # the old weights are back (kerve.server.loader.assign_staged)
            except BaseException:
                # The model's weights are in an unknown state: it serves neither version.
                self._begin_unload(old)
                raise
            # The model now holds the new weights: the old version must not answer again.
            self._begin_unload(old)
            if served.state is State.LOADING:  # not deleted or unloaded meanwhile
                self._ready(served, loaded)
                self._promote(served.name, served.version)
            return True
        finally:
            old.gate = None
            gate.set()  # waiters resolve again: to the new version, or to the old one

    def _promote(self, name: str, version: int) -> None:
        """Send default requests to ``version``; retire the previous default."""
        previous = self._defaults.get(name)
        self._defaults[name] = version
        if previous is not None and previous != version:
            old = self._served.get((name, previous))
            if old is not None:
                self._begin_unload(old)

    def _begin_unload(self, served: Served) -> None:
        if served.state is State.UNLOADING:
            return
        served.state = State.UNLOADING
        if self._defaults.get(served.name) == served.version:
            del self._defaults[served.name]
        self._spawn(self._finish_unload(served))

    async def _finish_unload(self, served: Served) -> None:
        if served.in_flight:
            await served.drained.wait()  # a handle keeps the version alive
        if self._served.get((served.name, served.version)) is served:
            del self._served[(served.name, served.version)]
        served.loaded = served.runner = None
        log.info("unloaded %s:%d", served.name, served.version)

    def _admit(self, incoming: Served) -> None:
        """Make room for a version within the memory budget (the estimates of versions
        loaded and loading), unloading on-demand versions no request holds, least recently
        used first; defaults stay. RESOURCE_EXHAUSTED, naming the figures and unloading
        nothing, where it cannot fit, or where it needs more than the device has free."""
        if self._memory_budget is not None:
            budget = self._memory_budget
            others = [s for s in self._served.values() if s is not incoming
                      and s.state in (State.READY, State.LOADING)]
            held = sum(s.memory_bytes + s.loading_bytes for s in others)
            candidates = sorted((s for s in others if s.state is State.READY
                                 and s.in_flight == 0
                                 and self._defaults.get(s.name) != s.version),
                                key=lambda s: s.last_used)
            need = incoming.memory_bytes + incoming.loading_bytes
            victims, used = [], held + need
            for victim in candidates:
                if used <= budget:
                    break
                victims.append(victim)
                used -= victim.memory_bytes
            if used > budget:
                raise ResourceExhaustedError(
                    f"model {incoming.name} version {incoming.version} needs about "
                    f"{_mib(need)} MiB while it loads ({_mib(incoming.memory_bytes)} MiB once "
                    f"loaded: its estimate) and the memory budget "
                    f"is {_mib(budget)} MiB, of which {_mib(held)} MiB are held by "
                    f"{len(others)} loaded or loading versions; the ones that could be "
                    f"unloaded free {_mib(sum(v.memory_bytes for v in candidates))} MiB. "
                    "Unload a model, or raise --memory-budget-mb")
            for victim in victims:
                log.info("unloading %s:%d to make room for %s:%d", victim.name,
                         victim.version, incoming.name, incoming.version)
                self._begin_unload(victim)
        free = self._device_free_bytes() if self._device_free_bytes else None
        need = incoming.memory_bytes + incoming.loading_bytes
        if free is not None and need > free:
            raise ResourceExhaustedError(
                f"model {incoming.name} version {incoming.version} needs about "
                f"{_mib(need)} MiB while it loads (its estimate) and the device has "
                f"{_mib(free)} MiB free")

    def _unload_idle(self) -> None:
        now = time.monotonic()
        for served in list(self._served.values()):
            if (served.state is State.READY and served.in_flight == 0
                    and self._defaults.get(served.name) != served.version
                    and now - served.last_used > self._idle_unload_s):
                self._begin_unload(served)

    # --- requests -------------------------------------------------------------------

    async def resolve(self, ref: VersionRef) -> int:
        """The version number a reference means, from the cached listing when possible."""
        info = self._models.get(ref.name)
        if ref.version is not None and info is not None and ref.version in info.versions:
            return ref.version
        if ref.alias is not None and info is not None and ref.alias in info.aliases:
            return info.aliases[ref.alias]
        if ref.version is None and ref.alias is None and ref.name in self._defaults:
            return self._defaults[ref.name]
        # Not in the cache: maybe created by another replica a moment ago.
        return (await self._registry.resolve(ref)).version

    async def version_info(self, ref: VersionRef) -> VersionInfo:
        """The stored version a reference means, loaded or not."""
        return await self._registry.resolve(VersionRef(ref.name, await self.resolve(ref)))

    @asynccontextmanager
    async def acquire(self, ref: VersionRef) -> AsyncIterator[Served]:
        """A handle on a READY version: it is not unloaded while the handle is held."""
        if ref.name in self._unloaded:
            raise UnavailableError(f"model {ref.name!r} is unloaded (RepositoryModelLoad it)")
        while True:
            version = await self.resolve(ref)
            served = self._served.get((ref.name, version))
            if served is None or served.gate is None:
                break
            await served.gate.wait()  # its model is taking new weights: then resolve again
        if _startable(served):
            need = await self._need(ref.name, version)
            served = self._served.get((ref.name, version))  # another request may have won
            if _startable(served):
                served = self._start_load(ref.name, version, need)
            if served.state is not State.FAILED:
                raise UnavailableError(
                    f"model {ref.name} version {version} is loading; retry shortly")
        if served.state is State.LOADING:
            raise UnavailableError(f"model {ref.name} version {version} is loading; retry shortly")
        if served.state is State.FAILED:
            raise served.error(
                f"model {ref.name} version {version} failed to load: {served.reason}")
        served.in_flight += 1
        served.last_used = time.monotonic()
        served.drained.clear()
        try:
            yield served
        finally:
            served.in_flight -= 1
            if served.in_flight == 0:
                served.drained.set()

    # --- repository API (RepositoryModelLoad/Unload, status) ---------------------------

    async def load_model(self, name: str) -> None:
        """Load a model's default version and return once it is READY (KServe
        RepositoryModelLoad); FAILED_PRECONDITION with the reason if it fails to load."""
        self._unloaded.discard(name)
        await self.sync()
        info = self._models.get(name)
        if info is None:
            raise NotFoundError(f"model {name!r} not found")
        version = info.default_version
        await self._registry.record_write(name, "load", version)
        served = self._served.get((name, version))
        if served is None or served.state in (State.FAILED, State.UNLOADING):
            # a FAILED one is retried
            served = self._start_load(name, version, _need(info, version))
        await served.settled.wait()
        if served.state is State.FAILED:
            raise served.error(
                f"model {name} version {served.version} failed to load: {served.reason}")

    async def unload_model(self, name: str) -> None:
        if name not in self._models:
            raise NotFoundError(f"model {name!r} not found")
        self._unloaded.add(name)
        await self._registry.record_write(name, "unload")
        for served in [s for s in self._served.values() if s.name == name]:
            self._begin_unload(served)

    def status(self, name: str, version: int) -> Served | None:
        return self._served.get((name, version))

    def serving_default(self, name: str) -> int | None:
        """The version default requests go to: promoted only once READY."""
        return self._defaults.get(name)

    def knows(self, name: str) -> bool:
        return name in self._models

    def models(self) -> dict[str, ModelInfo]:
        """Every stored model, as of the last registry read."""
        return dict(self._models)

    def memory(self) -> list[Served]:
        """Versions loaded or loading, each with the memory it is counted for."""
        return [s for s in self._served.values() if s.state in (State.READY, State.LOADING)]

    def loaded_count(self) -> int:
        return sum(1 for s in self._served.values() if s.state is State.READY)

    def ready(self, strict: bool = True) -> bool:
        """Whether this server is ready: at start, once every model's default version has
        settled (READY or FAILED); then, while no default is FAILED with no version
        answering in its place (``strict``, Triton's strict readiness: a model that answers
        nothing makes the server unready). A load in progress after start does not."""
        if not self._initial_sync_done.is_set():
            return False
        for name, info in self._models.items():
            if name in self._unloaded or name in self._defaults:
                continue  # a version answers its default requests
            served = self._served.get((name, info.default_version))
            if served is None or served.state is State.LOADING:
                if not self._been_ready:
                    return False
            elif strict and served.state is State.FAILED:
                return False
        self._been_ready = True
        return True

    def unserved_defaults(self) -> list[str]:
        """``NAME:VERSION (why)`` of each model whose default FAILED with nothing answering."""
        out = []
        for name, info in sorted(self._models.items()):
            served = self._served.get((name, info.default_version))
            if name not in self._unloaded and name not in self._defaults and \
                    served is not None and served.state is State.FAILED:
                out.append(f"{name}:{info.default_version} ({served.reason})")
        return out


def _startable(served: Served | None) -> bool:
    """Whether a version must be (re)started: never loaded, on its way out, or refused for
    memory that may since have been freed."""
    return (served is None or served.state is State.UNLOADING
            or (served.state is State.FAILED and served.error is ResourceExhaustedError))


def _need(info: ModelInfo, version: int) -> tuple[int, int]:
    return info.memory_bytes.get(version, 0), info.load_bytes.get(version, 0)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"
