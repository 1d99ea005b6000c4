"""The KServe 0.21 Python model server (kserve.ModelServer, bench/.venvs/kserve) with a
custom Keras model class. The model runs through a compiled tf.function with a free batch
dimension (as in kerve); KServe's Python server has no dynamic batcher of its own (batching
is a Kubernetes sidecar), so every request is one model call.

Run: python bench/servers/kserve_server.py --model /tmp/mlp.keras --name mlp \
        --grpc_port 8081 --http_port 8080
Note: kserve's gRPC server binds [::]:PORT (it has no address option); the bench sends
traffic to 127.0.0.1 only. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np


def main() -> None:
    import keras
    import tensorflow as tf
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server

    p = argparse.ArgumentParser(parents=[model_server.parser], conflict_handler="resolve")
    p.add_argument("--model", required=True)
    p.add_argument("--name", default="mlp")
    a, _ = p.parse_known_args()

    class KerasModel(Model):
        def __init__(self, name: str, path: str) -> None:
            super().__init__(name)
            self.path = path
            self.load()

        def load(self) -> bool:
            model = keras.saving.load_model(self.path, compile=False)
            spec = model.inputs[0]

            @tf.function(input_signature=[tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)],
                         reduce_retracing=True)
            def serve(x):
                return model(x, training=False)

            serve(np.zeros((1, *spec.shape[1:]), np.float32))
            self._serve = serve
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers=None, response_headers=None):
            x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
            y = self._serve(x).numpy()
            out = InferOutput(name="output_0", shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=True)
            return InferResponse(response_id=payload.id, model_name=self.name,
                                 infer_outputs=[out])

    logging.getLogger().setLevel(logging.WARNING)
    ModelServer(http_port=a.http_port, grpc_port=a.grpc_port, workers=1,
                enable_latency_logging=False).start([KerasModel(a.name, a.model)])


if __name__ == "__main__":
    main()
