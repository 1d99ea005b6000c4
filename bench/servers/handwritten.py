"""Two hand-written KServe v2 gRPC servers (ModelInfer only), the baselines of the bench.

--mode naive: what a user writes first: a grpc.aio handler that calls ``model.predict`` once
    per request, inside the handler.
--mode bare:  grpc.aio + the model's compiled tf.function (input signature with a free batch
    dimension, what kerve's loader builds), called inline in the handler: no batching, no
    queue, no thread hop. The latency floor of a Python gRPC server at concurrency 1.
--mode echo:  the same handler answering zeros of the output's shape without running any
    model, on uvloop: the most requests a Python (grpc.aio) server answers on this machine,
    the ceiling every Python server's line sits under.
--mode echo-sync: the echo handler on gRPC's synchronous server (a thread pool of 8), the
    other Python gRPC server there is: whether leaving asyncio would raise that ceiling.

Besides ModelInfer each answers ModelMetadata and Triton's ModelConfig (free batch dimension,
max_batch_size 128, no batcher), so that perf_analyzer drives them like kerve and Triton;
perf_analyzer calls those two once at start, never per request.

Run: python -m bench.servers.handwritten --mode bare --model /tmp/mlp.keras --name mlp \
        --port-file /tmp/p.json   (binds 127.0.0.1 only; stops on SIGTERM/SIGINT)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import numpy as np


def write_port_file(path: str | None, port: int) -> None:
    if path:
        Path(path + ".tmp").write_text(json.dumps({"port": port, "pid": os.getpid()}))
        os.replace(path + ".tmp", path)


async def serve(args) -> None:
    import grpc
    import keras
    from tritonclient.grpc import model_config_pb2 as mc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    from bench import models

    model = keras.saving.load_model(args.model, compile=False)
    out_name = model.outputs[0].name if hasattr(model.outputs[0], "name") else "output_0"
    if args.mode == "bare":
        predict = models.compiled_predict(model)
    elif args.mode in ("echo", "echo-sync"):
        canned = {}

        def predict(x):  # no model: answers zeros of the output's shape
            key = x.shape[0]
            if key not in canned:
                canned[key] = np.zeros((key, *model.outputs[0].shape[1:]), np.float32)
            return canned[key]
    else:
        def predict(x):
            return model.predict(x, verbose=0)
    shape = tuple(model.inputs[0].shape[1:])
    out_shape = tuple(model.outputs[0].shape[1:])
    predict(np.zeros((1, *shape), np.float32))  # warm up (traces the tf.function)

    class NotFound(Exception):
        pass

    # The answers, shared by the asyncio and the synchronous server.
    def model_metadata(request):
        if request.name != args.name:
            raise NotFound(f"no model {request.name}")
        resp = pb.ModelMetadataResponse(name=args.name, versions=["1"], platform="keras")
        resp.inputs.add(name=args.input_name, datatype="FP32", shape=[-1, *shape])
        resp.outputs.add(name=out_name, datatype="FP32", shape=[-1, *out_shape])
        return resp

    def model_config(request):
        if request.name != args.name:
            raise NotFound(f"no model {request.name}")
        config = mc.ModelConfig(name=args.name, platform="keras", max_batch_size=128)
        config.input.add(name=args.input_name, data_type=mc.TYPE_FP32, dims=list(shape))
        config.output.add(name=out_name, data_type=mc.TYPE_FP32, dims=list(out_shape))
        return pb.ModelConfigResponse(config=config)

    def model_infer(request):
        if request.model_name != args.name:
            raise NotFound(f"no model {request.model_name}")
        t = request.inputs[0]
        x = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(list(t.shape))
        y = np.asarray(predict(x), dtype=np.float32)
        resp = pb.ModelInferResponse(model_name=args.name, model_version="1", id=request.id)
        resp.outputs.add(name=out_name, datatype="FP32", shape=list(y.shape))
        resp.raw_output_contents.append(y.tobytes())
        return resp

    answers = {
        "ServerLive": lambda request: pb.ServerLiveResponse(live=True),
        "ServerReady": lambda request: pb.ServerReadyResponse(ready=True),
        "ModelReady": lambda request: pb.ModelReadyResponse(ready=request.name == args.name),
        "ServerMetadata": lambda request: pb.ServerMetadataResponse(
            name="handwritten", version="0", extensions=["model_configuration"]),
        "ModelMetadata": model_metadata,
        "ModelConfig": model_config,
        "ModelInfer": model_infer,
    }
    options = [("grpc.max_receive_message_length", 256 << 20),
               ("grpc.max_send_message_length", 256 << 20), ("grpc.so_reuseport", 0)]

    if args.mode == "echo-sync":
        class SyncServicer(pb_grpc.GRPCInferenceServiceServicer):
            pass

        def sync_method(answer):
            def method(self, request, context):
                try:
                    return answer(request)
                except NotFound as exc:
                    context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            return method

        for rpc, answer in answers.items():
            setattr(SyncServicer, rpc, sync_method(answer))
        server = grpc.server(futures.ThreadPoolExecutor(8), options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(SyncServicer(), server)
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
        server.start()
        write_port_file(args.port_file, port)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.stop(1).wait()
        return

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        pass

    def aio_method(answer):
        async def method(self, request, context):
            try:
                return answer(request)
            except NotFound as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return method

    for rpc, answer in answers.items():
        setattr(Servicer, rpc, aio_method(answer))

    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    write_port_file(args.port_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["naive", "bare", "echo", "echo-sync"], required=True)
    p.add_argument("--model", required=True, help=".keras file")
    p.add_argument("--name", default="mlp", help="model name served")
    p.add_argument("--input-name", default="x", help="input name in ModelMetadata/Config")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    args = p.parse_args()
    if args.mode == "echo":
        import uvloop  # the ceiling: the fastest loop there is for grpc.aio

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
