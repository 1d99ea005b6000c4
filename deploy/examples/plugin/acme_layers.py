"""An example kerve plugin: importing it registers one custom layer with Keras.

kerve imports the modules named by the ``kerve.plugins`` entry points (see pyproject.toml
beside this file), by ``KERVE_PLUGINS=acme_layers`` or by ``kerve serve --plugin
acme_layers``. A model using the layer serializes it as ``acme>ScaledDense``, which the
server then allows for uploads and loads.
"""

import keras


@keras.saving.register_keras_serializable(package="acme")
class ScaledDense(keras.layers.Dense):
    """A Dense layer whose output is multiplied by a constant ``scale``."""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return super().call(inputs) * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
