"""The composition root: builds every part of a kerve server from Settings and runs it.

``build_server`` reads as the list of its steps: storage and validation (the registry), the
serving side (manager, batchers, data plane), the gRPC server with its services, the ports.
The role decides which parts there are: a registry server loads no model (and imports no
TensorFlow), an inference server takes no writes and validates nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Coroutine

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from kerve.registry.blobs import BlobStore, open_blob_store
from kerve.registry.database import Database
from kerve.registry.plugins import Plugins, load_plugins, plugin_names
from kerve.registry.registry import Registry
from kerve.registry.validation_worker import ValidationWorker
from kerve.server.batching import Batcher
from kerve.server.data_plane import DataPlane
from kerve.server.device_memory import gpu_free_bytes
from kerve.server.interceptors import AccessInterceptor, ErrorInterceptor
from kerve.server.load_priority import lower_thread_priority
from kerve.server.loader import (
    LoadedModel,
    assign_staged,
    load_version,
    pick_device,
    stage_weights,
)
from kerve.server.manager import ModelManager, Served
from kerve.server.metrics import Metrics
from kerve.server.settings import Settings
from kerve.server.tokens import TokenTable

log = logging.getLogger("kerve")

OVERALL = ""  # grpc.health.v1's name for the server as a whole


@dataclass
class Server:
    """A running kerve server's parts, for the CLI and for tests that embed one."""

    settings: Settings
    grpc_server: grpc.aio.Server
    port: int
    metrics_port: int | None
    manager: ModelManager | None
    registry: Registry
    health: health_aio.HealthServicer
    services: list[str]
    """The full names of the gRPC services registered, health and reflection included."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    """What ``stop`` shuts down after the manager, in order."""
    tokens: TokenTable | None = None
    """The tokens in force (None: no tokens file); reloaded on SIGHUP and file changes."""

    async def set_health(self, status: int) -> None:
        for service in [OVERALL, *self.services]:
            await self.health.set(service, status)

    async def stop(self, grace: float = 10.0) -> None:
        """Drain: report NOT_SERVING, finish in-flight requests, then stop everything."""
        await self.set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc_server.stop(grace)
        if self.manager is not None:
            await self.manager.stop()
        for close in self.closers:
            close()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kerve")
    except PackageNotFoundError:
        return "0"


async def build_server(settings: Settings) -> Server:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"data dir {settings.data_dir} cannot be made: {exc.strerror or exc} "
                      "(--data-dir, KERVE_DATA_DIR)") from None
    names = plugin_names(settings.plugins)
    # Plugins import Keras: only where models are built in this process.
    plugins = (load_plugins(names) if settings.serves_models or settings.validate_in_process
               else Plugins(modules=names))
    metrics = Metrics()
    closers: list[Callable[[], None]] = []
    blobs = open_blob_store(settings.blobs_url(), cache_dir=settings.blob_cache_dir,
                            s3_endpoint=settings.s3_endpoint, s3_region=settings.s3_region)
    await asyncio.to_thread(blobs.check)
    registry = await asyncio.to_thread(_open_registry, settings, plugins, blobs, closers)
    if settings.model_dir:
        from kerve.server.model_dir import install_model_dir

        await install_model_dir(registry, settings.model_dir, settings.model_name)
        if registry.validation is not None:
            registry.validation.close()  # read-only from now on: no upload will come
    manager = data_plane = None
    if settings.serves_models:
        manager, data_plane = _build_serving(settings, plugins, blobs, registry, metrics,
                                             closers)
    tokens = _token_table(settings)
    server = _grpc_server(settings, tokens)
    health = health_aio.HealthServicer()
    services = _add_services(server, registry, data_plane, metrics, health)
    port = _bind(server, settings)
    metrics_port = _start_metrics(settings, metrics, closers)
    built = Server(settings, server, port, metrics_port, manager, registry, health, services,
                   closers, tokens)
    await built.set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    if manager is not None:
        await manager.start()
        _watch_other_replicas(registry, manager, closers)
    log.info("role %s, registry %s, blobs %s", settings.role,
             registry.database.engine.url.render_as_string(hide_password=True),
             settings.blobs_url())
    return built


def _open_registry(settings: Settings, plugins: Plugins, blobs: BlobStore,
                   closers: list) -> Registry:
    """The registry database, the blob store and, where writes are taken, the validation
    worker behind uploads (blocking: the database is checked and migrated here)."""
    database = Database(settings.database_url())
    closers.append(database.close)
    validation = None
    if settings.takes_writes:
        validation = ValidationWorker(plugins, allow_unsafe_lambda=settings.allow_unsafe_lambda,
                                      isolated=not settings.validate_in_process,
                                      timeout_s=settings.validation_timeout,
                                      memory_limit_bytes=settings.validation_memory_limit_bytes,
                                      limits=settings.upload_limits())
        # Started by the first upload, not here: about 600 MB that a server which is
        # never sent an upload (a KServe predictor, a replica behind a registry) never needs.
        closers.insert(0, validation.close)
    # An upload's bytes are written, hashed and stored by threads that yield the CPU to the
    # ones answering requests (bench/load_isolation.py), as the loading thread does.
    bulk = ThreadPoolExecutor(2, thread_name_prefix="kerve-upload",
                              initializer=lower_thread_priority)
    closers.append(partial(bulk.shutdown, wait=False, cancel_futures=True))
    registry = Registry(database, blobs, validation, settings.data_dir / "tmp",
                        max_upload_bytes=settings.max_upload_bytes,
                        limits=settings.upload_limits(),
                        serving_defaults=settings.serving_defaults(),
                        bulk_executor=bulk)
    if settings.takes_writes:  # a reader never deletes: the writers own the store
        registry.recover(settings.orphan_grace)
    return registry


def _watch_other_replicas(registry: Registry, manager: ModelManager, closers: list) -> None:
    """Changes made through other replicas: announced by the database where it can
    (PostgreSQL LISTEN/NOTIFY), else found by the manager's poll."""
    loop = asyncio.get_running_loop()
    stop = registry.database.watch(lambda name: loop.call_soon_threadsafe(manager.sync_soon))
    if stop is not None:
        closers.insert(0, stop)


def _build_serving(settings: Settings, plugins: Plugins, blobs: BlobStore, registry: Registry,
                   metrics: Metrics, closers: list) -> tuple[ModelManager, DataPlane]:
    """What loads versions and runs requests: the manager, a batcher per loaded version,
    and the data plane both inference protocols call."""
    import tensorflow as tf

    device = pick_device(settings.device)
    gpus = [f"GPU:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    if gpus:
        metrics.track_gpu_memory(gpus)
    predict_pool = ThreadPoolExecutor(max(2, settings.model_instances * 2),
                                      thread_name_prefix="kerve-predict")
    closers.insert(0, partial(predict_pool.shutdown, wait=False, cancel_futures=True))
    defaults = settings.serving_defaults()
    load = partial(load_version, blobs=blobs, plugins=plugins,
                   allow_unsafe_lambda=settings.allow_unsafe_lambda, device=device,
                   defaults=defaults)

    def on_loaded(served: Served) -> None:
        metrics.model_load_seconds.labels(served.name).observe(served.loaded.load_seconds)
        kind = "in_place" if served.loaded.in_place else "full"
        metrics.model_loads.labels(served.name, kind).inc()

    def make_batcher(loaded: LoadedModel) -> Batcher:
        return _batcher(settings, predict_pool, metrics, data_plane, loaded)

    manager = ModelManager(registry, load, make_batcher,
                           poll_interval_s=settings.poll_interval,
                           idle_unload_s=settings.idle_unload,
                           memory_budget_bytes=settings.memory_budget_bytes,
                           on_loaded=on_loaded,
                           stage=partial(stage_weights, blobs=blobs, defaults=defaults),
                           assign=assign_staged if settings.weight_swap_in_place else None,
                           device_free_bytes=(partial(gpu_free_bytes, device)
                                              if "GPU" in device.upper() else None))
    metrics.track_memory(manager.memory, settings.memory_budget_bytes)
    metrics.models_loaded.set_function(manager.loaded_count)
    data_plane = DataPlane(manager, metrics, defaults=defaults,
                           instances=settings.model_instances, device=device,
                           strict_readiness=settings.strict_readiness)
    return manager, data_plane


def _batcher(settings: Settings, pool: ThreadPoolExecutor, metrics: Metrics,
             data_plane: DataPlane, loaded: LoadedModel) -> Batcher:
    name, version, options = loaded.info.name, loaded.info.version, loaded.options
    batchable = loaded.signature.batchable

    def observe(rows: int, oldest_s: float, requests: int, queued_s: float) -> None:
        metrics.batch_size.labels(name).observe(rows)
        metrics.queue_duration.labels(name).observe(oldest_s)
        data_plane.note_queue(name, version, requests, queued_s)

    return Batcher(loaded.predict_fn, pool, batchable=batchable,
                   max_batch_size=options.max_batch_size,
                   timeout_s=options.batch_timeout_ms / 1000.0,
                   max_queue=settings.max_queue_size, instances=settings.model_instances,
                   pad_to=options.batch_sizes() if options.jit_compile and batchable else (),
                   observe=observe)


def _token_table(settings: Settings) -> TokenTable | None:
    if not settings.tokens_file:
        return None
    try:
        return TokenTable(settings.tokens_file)
    except Exception as exc:  # noqa: BLE001 - unreadable, not YAML, bad scopes: one line
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"tokens file {settings.tokens_file} cannot be used: {detail} "
                         "(--tokens, KERVE_TOKENS_FILE)") from None


def access_line(settings: Settings, tokens: TokenTable | None) -> str:
    """What the start-up line says about who may do what."""
    if settings.model_dir:
        return "access: single-model mode, read-only: no uploads, alias moves or deletions"
    if tokens is not None:
        return (f"access: {len(tokens)} token(s) from {settings.tokens_file} (reloaded on "
                "SIGHUP or when the file changes)")
    if settings.allow_open_writes:
        return ("access: OPEN, no tokens and --allow-open-writes: anyone who reaches this "
                "port can read, upload and delete")
    if not settings.loopback_only:
        return ("access: no tokens; reads open to every client, no writes, since this "
                "server listens beyond loopback (configure --tokens, or pass "
                "--allow-open-writes)")
    return ("access: no tokens; reads open to every client, writes only from this machine "
            "(configure --tokens, or pass --allow-open-writes)")


def _grpc_server(settings: Settings, tokens: TokenTable | None) -> grpc.aio.Server:
    interceptors: list[grpc.aio.ServerInterceptor] = [
        AccessInterceptor(
            tokens, allow_open_writes=settings.allow_open_writes,
            loopback_host=settings.loopback_only,
            read_only=(f"single-model mode (--model-dir) serves {settings.model_name!r} "
                       "read-only: change the model in its folder and restart"
                       if settings.model_dir else None)),
        ErrorInterceptor()]
    options = [("grpc.max_receive_message_length", settings.max_message_bytes),
               ("grpc.max_send_message_length", settings.max_message_bytes),
               ("grpc.so_reuseport", 0)]
    if settings.max_connection_age:
        # Clients are sent GOAWAY and reconnect, through the Service, to any replica; calls
        # in flight get the grace period to finish.
        options += [("grpc.max_connection_age_ms", int(settings.max_connection_age * 1000)),
                    ("grpc.max_connection_age_grace_ms", 30_000)]
    return grpc.aio.server(interceptors=interceptors, options=options)


def _add_services(server: grpc.aio.Server, registry: Registry, data_plane: DataPlane | None,
                  metrics: Metrics, health: health_aio.HealthServicer) -> list[str]:
    """Register every service the role has (the registry service always: an inference
    server lists and downloads, and refuses writes with a status that says where they go);
    returns their names, which reflection and health then list."""
    from kerve.protos.kerve.registry.v1 import registry_pb2_grpc
    from kerve.server.registry_servicer import RegistryServicer, StoredOnly

    services = GenericHandlersOnly(server)
    if data_plane is not None:
        from tensorflow_serving.apis import model_service_pb2_grpc as model_grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc as prediction_grpc

        from kerve.protos.inference import grpc_service_pb2_grpc
        from kerve.server.kserve_servicer import KServeServicer
        from kerve.server.tfserving_servicer import ModelServicer, PredictionServicer

        prediction_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(data_plane), services)
        model_grpc.add_ModelServiceServicer_to_server(ModelServicer(data_plane), services)
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            KServeServicer(data_plane, _version()), services)
    serving = data_plane if data_plane is not None else StoredOnly()
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry, metrics, serving), services)
    health_pb2_grpc.add_HealthServicer_to_server(health, services)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer([*services.names, reflection.SERVICE_NAME]), services)
    return list(services.names)


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    address = settings.bind_address(settings.port)
    try:
        if settings.tls_cert:
            port = server.add_secure_port(address, _tls_credentials(settings))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc says only "Failed to bind": in use, or not this host's
        port = 0
    if port == 0:
        raise OSError(f"gRPC port {address} cannot be bound: in use, or not an address of "
                      "this host (--port, --host)")
    return port


def _tls_credentials(settings: Settings) -> grpc.ServerCredentials:
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    client_ca = read(settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(read(settings.tls_key), read(settings.tls_cert))], root_certificates=client_ca,
        require_client_auth=client_ca is not None)


def _start_metrics(settings: Settings, metrics: Metrics, closers: list) -> int | None:
    if settings.metrics_port < 0:
        return None
    from prometheus_client import start_http_server

    try:
        httpd, thread = start_http_server(settings.metrics_port, addr=settings.host,
                                          registry=metrics.registry)
    except OSError as exc:
        raise OSError(f"metrics port {settings.bind_address(settings.metrics_port)} cannot be "
                      f"bound: {exc.strerror or exc} (--metrics-port; -1 turns it off)") from None

    def close() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    closers.insert(0, close)
    return httpd.server_port


async def _track_readiness(server: Server, strict: bool) -> None:
    """Health follows readiness (kerve.server.manager.ModelManager.ready): SERVING once
    every default has settled, and, with strict readiness, NOT_SERVING while a model's
    default FAILED with nothing answering in its place."""
    manager, serving = server.manager, None
    while True:
        ready = manager is None or manager.ready(strict)
        if ready != serving:
            await server.set_health(health_pb2.HealthCheckResponse.SERVING if ready
                                    else health_pb2.HealthCheckResponse.NOT_SERVING)
            if ready:
                log.info("kerve is serving on port %d", server.port)
            elif serving is not None or manager.ready(False):
                log.warning("not ready: no version answers %s (--no-strict-readiness serves "
                            "the others regardless)", ", ".join(manager.unserved_defaults()))
            serving = ready
        if manager is None:
            return
        await asyncio.sleep(0.25 if ready else 0.05)


async def _start_unless_stopped(settings: Settings, stop: asyncio.Event) -> Server | None:
    """build_server, abandoned if ``stop`` is set first: a pod stopped while it starts
    exits at once instead of waiting out its grace period."""
    building = asyncio.ensure_future(build_server(settings))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({building, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if building.done():
        return building.result()
    building.cancel()
    try:
        await building
    except BaseException:  # noqa: BLE001 - cancelled, or failed on its way out
        pass
    return None


def run_event_loop(main: Coroutine, event_loop: str = "auto") -> None:
    """Run the server's main coroutine to completion on the chosen loop implementation."""
    if event_loop not in ("auto", "uvloop", "asyncio"):
        main.close()
        raise ValueError(f"unknown event loop {event_loop!r}: auto, uvloop or asyncio")
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


class GenericHandlersOnly:
    """Stands in for the server when a generated ``add_*Servicer_to_server`` registers a
    service: its methods go in as generic handlers only, and the service's name is noted.

    Code generated by grpcio-tools 1.6x and later also pre-registers every method. grpc.aio
    then keeps one pending request per registered method and, for every call that arrives,
    waits on all of them with asyncio.wait: a cost per RPC that grows with the number of
    methods (kerve has 22). Under cProfile at concurrency 32 that wait took 88 us per call
    with registered methods and 19 us with generic handlers only, which share one pending
    request (throughput on the 2-core bench machine moved less than its noise).
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.names: list[str] = []

    def add_generic_rpc_handlers(self, handlers) -> None:
        for handler in handlers:
            name = handler.service_name() if hasattr(handler, "service_name") else None
            if name and name not in self.names:
                self.names.append(name)
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers) -> None:
        pass  # the same handlers came through add_generic_rpc_handlers


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then drain. A signal during start-up stops it there."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await _start_unless_stopped(settings, stop)
    if server is None:
        log.info("stopped during start-up")
        return
    log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
    print(f"kerve listening on {settings.bind_address(server.port)}"
          + (f", metrics on :{server.metrics_port}/metrics" if server.metrics_port else "")
          + f"; {access_line(settings, server.tokens)}", flush=True)
    if settings.port_file:
        tmp = f"{settings.port_file}.tmp"
        with open(tmp, "w") as f:
            json.dump({"port": server.port, "metrics_port": server.metrics_port}, f)
        os.replace(tmp, settings.port_file)
    if settings.demo:
        if not settings.takes_writes:
            log.warning("--demo is skipped on a server that takes no uploads (--role)")
        else:
            from kerve.server.demo import install_demo

            await install_demo(server.registry)
    ready = asyncio.get_running_loop().create_task(
        _track_readiness(server, settings.strict_readiness))
    watch = None
    if server.tokens is not None:
        tokens = server.tokens
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, tokens.reload))
        watch = loop.create_task(tokens.watch())
    await stop.wait()
    ready.cancel()
    if watch is not None:
        watch.cancel()
    log.info("draining (up to %.0f s for calls in flight)", settings.drain_seconds)
    started = time.monotonic()
    await server.stop(settings.drain_seconds)
    log.info("stopped: drained in %.1f s", time.monotonic() - started)
