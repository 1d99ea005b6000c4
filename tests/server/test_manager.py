"""The manager on its own, with a fake registry and loader: defaults, swaps, on-demand
loads, handles, idle unloading and the memory budget."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import grpc
import pytest

from kerve.registry.database import Blob, ModelInfo, VersionInfo
from kerve.registry.errors import KerveError, NotFoundError
from kerve.registry.signature import Signature
from kerve.server.manager import ModelManager, State


class FakeRegistry:
    def __init__(self, models: dict[str, ModelInfo], sizes: dict[tuple[str, int], int]):
        self.models = models
        self.sizes = sizes
        self.listeners = []

    def on_change(self, listener):
        self.listeners.append(listener)

    async def list_models(self):
        # As the database does: what each version is counted for comes with the listing.
        return [ModelInfo(m.name, m.versions, m.aliases,
                          {v: self.sizes.get((m.name, v), 1) for v in m.versions})
                for m in self.models.values()]

    async def resolve(self, ref):
        info = self.models.get(ref.name)
        if info is None:
            raise NotFoundError(f"model {ref.name!r} not found")
        version = ref.version or info.aliases.get(ref.alias or "production") or max(info.versions)
        if version not in info.versions:
            raise NotFoundError(f"no version {version}")
        size = self.sizes.get((ref.name, version), 1)
        return VersionInfo(ref.name, version, Blob("a" * 64, 1), Blob("b" * 64, size), "keras",
                           Signature(), [], [], "3", "2.21", 1, "", {},
                           datetime.now(timezone.utc))


class FakeLoaded:
    def __init__(self, info):
        self.info = info


def make_manager(models, sizes=None, **kw):
    registry = FakeRegistry(models, sizes or {})
    loads = []

    def load(info):
        loads.append((info.name, info.version))
        time.sleep(0.01)
        return FakeLoaded(info)

    manager = ModelManager(registry, load, lambda loaded: object(), poll_interval_s=3600,
                           idle_unload_s=kw.pop("idle_unload_s", 3600), **kw)
    return manager, registry, loads


async def settle(manager, name, version):
    for _ in range(200):
        served = manager.status(name, version)
        if served is not None and served.state in (State.READY, State.FAILED):
            return served
        await asyncio.sleep(0.01)
    raise AssertionError("never settled")


def test_default_swap_waits_for_handles():
    async def main():
        from kerve.registry.names import VersionRef

        models = {"m": ModelInfo("m", [1, 2], {"production": 1})}
        manager, registry, loads = make_manager(models)
        await manager.start()
        await settle(manager, "m", 1)
        assert manager.ready() and loads == [("m", 1)]
        async with manager.acquire(VersionRef("m")) as held:
            assert held.version == 1
            models["m"] = ModelInfo("m", [1, 2], {"production": 2})
            await manager.sync()
            await settle(manager, "m", 2)
            await asyncio.sleep(0.05)
            assert held.state is State.UNLOADING and manager.status("m", 1) is held  # alive
            async with manager.acquire(VersionRef("m")) as new:
                assert new.version == 2
        await asyncio.sleep(0.05)
        assert manager.status("m", 1) is None  # unloaded once the handle was released
        await manager.stop()

    asyncio.run(main())


def test_on_demand_loading_and_errors():
    async def main():
        from kerve.registry.names import VersionRef

        manager, _, _ = make_manager({"m": ModelInfo("m", [1, 2], {})})
        await manager.start()
        await settle(manager, "m", 2)  # newest is the default
        with pytest.raises(KerveError) as e:
            async with manager.acquire(VersionRef("m", 1)):
                pass
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        await settle(manager, "m", 1)
        async with manager.acquire(VersionRef("m", 1)) as served:
            assert served.version == 1
        with pytest.raises(NotFoundError):
            async with manager.acquire(VersionRef("m", 9)):
                pass
        await manager.stop()

    asyncio.run(main())


def test_memory_budget_unloads_least_recently_used_on_demand_versions():
    async def main():
        from kerve.registry.names import VersionRef

        sizes = {("m", v): 100 for v in (1, 2, 3, 4)}
        manager, _, _ = make_manager({"m": ModelInfo("m", [1, 2, 3, 4], {})}, sizes,
                                     memory_budget_bytes=300)
        await manager.start()
        await settle(manager, "m", 4)
        for version in (1, 2):
            with pytest.raises(KerveError):
                async with manager.acquire(VersionRef("m", version)):
                    pass
            await settle(manager, "m", version)
            await asyncio.sleep(0.01)
        with pytest.raises(KerveError):  # 4 (default) + 1 + 2 = 300: 3 needs room
            async with manager.acquire(VersionRef("m", 3)):
                pass
        await settle(manager, "m", 3)
        await asyncio.sleep(0.05)
        assert manager.status("m", 1) is None  # least recently used went
        assert manager.status("m", 2).state is State.READY
        assert manager.status("m", 4).state is State.READY  # the default stays
        await manager.stop()

    asyncio.run(main())


def test_a_loading_version_counts_its_size_from_the_start():
    """Room made for one version must count another that is still loading: its size is
    set before the load's first await, not after."""
    async def main():
        from kerve.registry.names import VersionRef

        sizes = {("m", v): 100 for v in (1, 2, 3)}
        manager, _, _ = make_manager({"m": ModelInfo("m", [1, 2, 3], {})}, sizes,
                                     memory_budget_bytes=1000)
        await manager.start()
        await settle(manager, "m", 3)
        with pytest.raises(KerveError):
            async with manager.acquire(VersionRef("m", 1)):
                pass
        # No await since the load started: it is LOADING and already counted.
        assert manager.status("m", 1).state is State.LOADING
        assert manager.status("m", 1).memory_bytes == 100
        await settle(manager, "m", 1)
        await manager.stop()

    asyncio.run(main())


def test_idle_on_demand_versions_unload():
    async def main():
        from kerve.registry.names import VersionRef

        manager, _, _ = make_manager({"m": ModelInfo("m", [1, 2], {})}, idle_unload_s=0.05)
        await manager.start()
        await settle(manager, "m", 2)
        with pytest.raises(KerveError):
            async with manager.acquire(VersionRef("m", 1)):
                pass
        await settle(manager, "m", 1)
        await asyncio.sleep(0.1)
        manager._unload_idle()
        await asyncio.sleep(0.02)
        assert manager.status("m", 1) is None and manager.status("m", 2).state is State.READY
        await manager.stop()

    asyncio.run(main())


def test_deleted_default_serves_until_its_successor_is_ready():
    """A rollout that moves the default and deletes the old version at once: default
    requests keep going to the old one until the new one is READY (never UNAVAILABLE)."""
    import threading

    async def main():
        from kerve.registry.names import VersionRef

        models = {"m": ModelInfo("m", [1, 2], {"production": 1})}
        registry = FakeRegistry(models, {})
        release = threading.Event()

        def load(info):
            if info.version == 2:
                release.wait(10)
            return FakeLoaded(info)

        manager = ModelManager(registry, load, lambda loaded: object(), poll_interval_s=3600,
                               idle_unload_s=3600)
        await manager.start()
        await settle(manager, "m", 1)
        models["m"] = ModelInfo("m", [2], {"production": 2})  # moved, and 1 deleted
        await manager.sync()
        async with manager.acquire(VersionRef("m")) as served:
            assert served.version == 1
        with pytest.raises(NotFoundError):  # by number, a deleted version is gone
            async with manager.acquire(VersionRef("m", 1)):
                pass
        release.set()
        await settle(manager, "m", 2)
        async with manager.acquire(VersionRef("m")) as served:
            assert served.version == 2
        await asyncio.sleep(0.05)
        assert manager.status("m", 1) is None
        await manager.stop()

    asyncio.run(main())


def test_a_load_past_the_budget_is_refused_with_the_figures():
    """Idle on-demand versions are unloaded first; where that cannot make room, nothing is
    unloaded and the load is refused (RESOURCE_EXHAUSTED, naming the figures), then tried
    again once room is made."""
    async def main():
        from kerve.registry.names import VersionRef

        sizes = {("m", 1): 100 << 20, ("m", 2): 100 << 20, ("m", 3): 150 << 20}
        manager, _, _ = make_manager({"m": ModelInfo("m", [1, 2, 3], {"production": 1})},
                                     sizes, memory_budget_bytes=300 << 20)
        await manager.start()
        await settle(manager, "m", 1)
        with pytest.raises(KerveError):
            async with manager.acquire(VersionRef("m", 2)):
                pass
        await settle(manager, "m", 2)
        async with manager.acquire(VersionRef("m", 2)):  # held: it cannot be unloaded
            with pytest.raises(KerveError) as refused:
                async with manager.acquire(VersionRef("m", 3)):
                    pass
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        message = refused.value.message
        assert "needs about 150.0 MiB" in message and "budget is 300.0 MiB" in message
        assert "200.0 MiB are held by 2" in message, message
        assert manager.status("m", 2).state is State.READY  # nothing unloaded for nothing
        # Released now: 2 is unloaded to make room, and 3 loads.
        with pytest.raises(KerveError) as loading:
            async with manager.acquire(VersionRef("m", 3)):
                pass
        assert loading.value.code == grpc.StatusCode.UNAVAILABLE
        assert (await settle(manager, "m", 3)).state is State.READY
        await asyncio.sleep(0.02)
        assert manager.status("m", 2) is None
        assert sum(s.memory_bytes for s in manager.memory()) == 250 << 20
        await manager.stop()

    asyncio.run(main())


def test_a_default_past_the_device_free_memory_is_failed():
    async def main():
        from kerve.registry.names import VersionRef

        free = {"bytes": 10 << 20}
        manager, _, loads = make_manager({"m": ModelInfo("m", [1], {})}, {("m", 1): 64 << 20},
                                         device_free_bytes=lambda: free["bytes"])
        await manager.start()
        served = manager.status("m", 1)
        assert served.state is State.FAILED and loads == []
        assert "the device has 10.0 MiB free" in served.reason
        with pytest.raises(KerveError) as refused:
            async with manager.acquire(VersionRef("m")):
                pass
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        free["bytes"] = 1 << 30  # memory freed elsewhere: the next sync loads it
        await manager.sync()
        assert (await settle(manager, "m", 1)).state is State.READY
        await manager.stop()

    asyncio.run(main())
