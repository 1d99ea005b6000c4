"""A small custom Keras runtime for Seldon MLServer (runs in bench/.venvs/mlserver).

The model-settings.json of the bench points ``implementation`` at
``mlserver_runtime.KerasRuntime`` and ``parameters.uri`` at the .keras file. The model runs
through a compiled tf.function with a free batch dimension, as in kerve, so the comparison
is between servers, not between ways of calling Keras. MLServer's adaptive batching
(``max_batch_size``/``max_batch_time`` in model-settings.json) merges requests.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class KerasRuntime(MLModel):
    async def load(self) -> bool:
        import keras
        import tensorflow as tf

        model = keras.saving.load_model(self.settings.parameters.uri, compile=False)
        spec = model.inputs[0]
        sig = [tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)]

        @tf.function(input_signature=sig, reduce_retracing=True)
        def serve(x):
            return model(x, training=False)

        self._serve = serve
        self._serve(np.zeros((1, *spec.shape[1:]), np.float32))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self._serve(x).numpy()
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output("output_0", y)])
