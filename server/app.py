"""The composition root: builds every part of a kerve server from Settings and runs it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Coroutine

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from kerve.registry.blobs import open_blob_store
from kerve.registry.catalogue import Registry
from kerve.registry.metadata import MetadataStore
from kerve.registry.plugins import Plugins, load_plugins, plugin_names
from kerve.registry.serving_options import ServingOptions
from kerve.registry.validator import Validator
from kerve.server.batching import Batcher
from kerve.server.core import InferenceCore
from kerve.server.interceptors import ErrorInterceptor, TokenInterceptor, load_tokens
from kerve.server.loader import LoadedModel, load_version, pick_device
from kerve.server.manager import ModelManager, Served
from kerve.server.metrics import Metrics
from kerve.server.settings import Settings

log = logging.getLogger("kerve")

HEALTH_SERVICES = ("", "kerve", "inference.GRPCInferenceService",
                   "tensorflow.serving.PredictionService")


@dataclass
class Server:
    """A running kerve server's parts, for the CLI and for tests that embed one."""

    settings: Settings
    grpc_server: grpc.aio.Server
    port: int
    metrics_port: int | None
    manager: ModelManager
    registry: Registry
    health: health_aio.HealthServicer
    validator: Validator
    metadata: MetadataStore

    async def stop(self, grace: float = 10.0) -> None:
        """Drain: report NOT_SERVING, finish in-flight requests, then stop."""
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc_server.stop(grace)
        await self.manager.stop()
        self.validator.close()
        self.metadata.close()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kerve")
    except PackageNotFoundError:
        return "0"


async def build_server(settings: Settings) -> Server:
    import tensorflow as tf
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from kerve.protos.inference import grpc_service_pb2, grpc_service_pb2_grpc
    from kerve.protos.kerve.registry.v1 import registry_pb2, registry_pb2_grpc
    from kerve.server.kserve_servicer import KServeServicer
    from kerve.server.registry_servicer import RegistryServicer
    from kerve.server.tfserving_servicer import (build_model_servicer,
                                                 build_prediction_servicer)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    plugins: Plugins = load_plugins(plugin_names(settings.plugins))
    metrics = Metrics()
    device = pick_device(settings.device)
    gpus = [f"GPU:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    if gpus:
        metrics.track_gpu_memory(gpus)

    metadata = MetadataStore(settings.database_url())
    blobs = open_blob_store(settings.blobs_url())
    validator = Validator(plugins, allow_unsafe_lambda=settings.allow_unsafe_lambda,
                          isolated=settings.validation_isolated,
                          timeout_s=settings.validation_timeout_s,
                          memory_limit_bytes=settings.validation_memory_limit_bytes)
    validator.start()
    registry = Registry(metadata, blobs, validator, settings.data_dir / "tmp",
                        max_upload_bytes=settings.max_upload_bytes)

    predict_pool = ThreadPoolExecutor(max(2, settings.model_instances * 2),
                                      thread_name_prefix="kerve-predict")

    def make_runner(loaded: LoadedModel) -> Batcher:
        name = loaded.info.name

        def observe(rows: int, queued_s: float) -> None:
            metrics.batch_size.labels(name).observe(rows)
            metrics.queue_duration.labels(name).observe(queued_s)

        options = loaded.options
        return Batcher(loaded.predict_fn, predict_pool, batchable=loaded.batchable,
                       max_batch_size=options.max_batch_size,
                       timeout_s=options.batch_timeout_ms / 1000.0,
                       max_queue=settings.max_queue_size, instances=settings.model_instances,
                       pad_to=options.batch_sizes() if options.jit_compile and loaded.batchable
                       else (),
                       observe=observe)

    def on_loaded(served: Served) -> None:
        metrics.model_load_seconds.labels(served.name).observe(served.loaded.load_seconds)

    defaults = ServingOptions(max_batch_size=settings.max_batch_size,
                              batch_timeout_ms=settings.batch_timeout_ms,
                              jit_compile=settings.jit_compile)
    load = partial(load_version, blobs=blobs, plugins=plugins,
                   allow_unsafe_lambda=settings.allow_unsafe_lambda, device=device,
                   defaults=defaults)
    manager = ModelManager(registry, load, make_runner, poll_interval_s=settings.poll_interval_s,
                           idle_unload_s=settings.idle_unload_s,
                           memory_budget_bytes=settings.memory_budget_bytes, on_loaded=on_loaded)
    metrics.models_loaded.set_function(manager.loaded_count)
    core = InferenceCore(manager, metrics)

    interceptors = [ErrorInterceptor()]
    if settings.tokens_file:
        interceptors.insert(0, TokenInterceptor(load_tokens(settings.tokens_file)))
    else:
        log.warning("no tokens file: the server is open to every client (see --tokens)")
    options = [("grpc.max_receive_message_length", settings.max_message_bytes),
               ("grpc.max_send_message_length", settings.max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(interceptors=interceptors, options=options)
    services = GenericHandlersOnly(server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        build_prediction_servicer(core), services)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(build_model_servicer(core),
                                                             services)
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeServicer(core, _version()), services)
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry, manager, metrics), services)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, services)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer([
            registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
            grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
            "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME]), services)
    for service in HEALTH_SERVICES:
        await health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    port = server.add_insecure_port(f"{settings.host}:{settings.port}") \
        if not settings.tls_cert else _add_tls_port(server, settings)
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    metrics_port = None
    if settings.metrics_port >= 0:
        from prometheus_client import start_http_server

        httpd, _ = start_http_server(settings.metrics_port, addr=settings.host,
                                     registry=metrics.registry)
        metrics_port = httpd.server_port
    await server.start()
    await manager.start()
    return Server(settings, server, port, metrics_port, manager, registry, health, validator,
                  metadata)


def _add_tls_port(server: grpc.aio.Server, settings: Settings) -> int:
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    client_ca = read(settings.tls_client_ca) if settings.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(read(settings.tls_key), read(settings.tls_cert))], root_certificates=client_ca,
        require_client_auth=client_ca is not None)
    return server.add_secure_port(f"{settings.host}:{settings.port}", credentials)


async def _mark_serving_when_ready(server: Server) -> None:
    while not server.manager.ready():
        await asyncio.sleep(0.05)
    for service in HEALTH_SERVICES:
        await server.health.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("kerve is serving on port %d", server.port)


def _upload_demo(port: int) -> None:
    """Build a small MLP and upload it as 'demo' through the server's own gRPC port."""
    import keras
    import numpy as np

    from kerve.clients.client import Client

    with Client(f"127.0.0.1:{port}") as client:
        if any(m["name"] == "demo" for m in client.list_models()):
            return
        inputs = keras.Input((4,), name="features")
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(hidden)
        model = keras.Model(inputs, outputs, name="demo")
        model(np.zeros((1, 4), "float32"))
        version = client.upload("demo", model=model, aliases=["production"],
                                description="kerve demo: 4 features -> 3 class probabilities")
        log.info("uploaded demo model, version %d", version["version"])


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
    service: its methods go in as generic handlers only.

    Code generated by grpcio-tools 1.6x and later also pre-registers every method. grpc.aio
    then keeps one pending request per registered method and, for every call that arrives,
    waits on all of them with asyncio.wait: a cost per RPC that grows with the number of
    methods (kerve has 22). Under cProfile at concurrency 32 that wait took 88 us per call
    with registered methods and 19 us with generic handlers only, which share one pending
    request (throughput on the 2-core bench machine moved less than its noise).
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers) -> None:
        pass  # the same handlers came through add_generic_rpc_handlers


async def serve(settings: Settings, demo: bool = False) -> None:
    """Run until SIGINT/SIGTERM, then drain."""
    server = await build_server(settings)
    log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
    print(f"kerve listening on {settings.host}:{server.port}"
          + (f", metrics on :{server.metrics_port}/metrics" if server.metrics_port else ""),
          flush=True)
    if settings.port_file:
        tmp = f"{settings.port_file}.tmp"
        with open(tmp, "w") as f:
            json.dump({"port": server.port, "metrics_port": server.metrics_port}, f)
        os.replace(tmp, settings.port_file)
    if demo:
        if settings.tokens_file or settings.tls_cert:
            log.warning("--demo is skipped on a server with tokens or TLS")
        else:
            await asyncio.to_thread(_upload_demo, server.port)
    ready = asyncio.get_running_loop().create_task(_mark_serving_when_ready(server))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    ready.cancel()
    log.info("draining")
    await server.stop()
