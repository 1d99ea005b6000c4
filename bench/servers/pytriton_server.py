"""NVIDIA Triton (tritonserver through nvidia-pytriton, bench/.venvs/pytriton) serving a
Keras model: Triton's gRPC front end and dynamic batcher, the Python backend handing the
batches to this process, which runs the model's compiled tf.function (as kerve does).

Run: python bench/servers/pytriton_server.py --model /tmp/mlp.keras --name mlp \
        --input-name x --grpc-port 8001 --http-port 8000 --metrics-port 8002
Binds 127.0.0.1 only; stops on SIGTERM/SIGINT.

PyTriton keeps its default restrictions (model-repository, statistics, shared-memory, trace,
logging need an access token); --access-token fixes the token, so that perf_analyzer, which
reads ModelStatistics after every window, can send it as the gRPC header
``triton-grpc-protocol-triton-access-token``.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--name", default="mlp")
    p.add_argument("--input-name", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch-size", type=int, default=128)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--access-token", default=None,
                   help="the token of PyTriton's restricted endpoints (default: random)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import keras
    import tensorflow as tf
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    model = keras.saving.load_model(a.model, compile=False)
    spec = model.inputs[0]
    feat = tuple(int(d) for d in spec.shape[1:])
    out_feat = tuple(int(d) for d in model.outputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec([None, *feat], tf.float32)],
                 reduce_retracing=True)
    def serve(x):
        return model(x, training=False)

    serve(np.zeros((1, *feat), np.float32))

    @batch
    def infer(**inputs):
        x = inputs[a.input_name]
        return {"output_0": serve(x).numpy()}

    config = TritonConfig(grpc_address="127.0.0.1", grpc_port=a.grpc_port,
                          http_address="127.0.0.1", http_port=a.http_port,
                          metrics_address="127.0.0.1", metrics_port=a.metrics_port,
                          allow_gpu_metrics=False)
    security = TritonSecurityConfig(access_token=a.access_token)  # default endpoints
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=a.name,
            infer_func=[infer] * max(1, a.instances),
            inputs=[Tensor(name=a.input_name, dtype=np.float32, shape=feat)],
            outputs=[Tensor(name="output_0", dtype=np.float32, shape=out_feat)],
            config=ModelConfig(max_batch_size=a.max_batch_size, batcher=DynamicBatcher(
                max_queue_delay_microseconds=a.queue_delay_us)),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
