"""Every public class in ``keras.layers``, each with small valid arguments, wired into a few
functional models (one output per layer, named after its class), plus the classes left out
and why. ``test_every_layer`` serves these models and checks each output through both
protocols; it also fails when Keras grows a public class this file does not list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# name -> (shape without batch, dtype)
INPUTS = {
    "vec": ((8,), "float32"),
    "seq": ((6, 4), "float32"),
    "img": ((8, 8, 3), "float32"),
    "vol": ((4, 4, 4, 2), "float32"),
    "vol_t": ((2, 3, 3, 3, 1), "float32"),
    "ids": ((5,), "int32"),
    "key": ((1,), "int64"),
    "text": ((), "string"),
    "audio": ((128,), "float32"),
}

EXCLUDED = {
    "Layer": "abstract base class: subclasses are custom layers, which travel as plugins",
    "Wrapper": "abstract base class of wrappers (Bidirectional, TimeDistributed, "
               "SpectralNormalization are served)",
    "FlaxLayer": "wraps a JAX/Flax module: runs only on the JAX backend",
    "JaxLayer": "wraps a JAX function: runs only on the JAX backend",
    "TorchModuleWrapper": "wraps a torch.nn.Module: runs only on the PyTorch backend",
    "TFSMLayer": "wraps a TensorFlow SavedModel directory on the uploader's disk: its "
                 "config is a local path, not a model the registry can store",
    "Equalization": "its symbolic call hands back its input tensor, so Keras cannot build it "
                    "into a functional model (\"part of a cycle\")",
    "MaxNumBoundingBoxes": "a data-pipeline layer over bounding-box dicts, not a tensor in a "
                           "functional model (its call needs the boxes' format)",
}
"""Public classes not served, with the reason (the README repeats them)."""

NOTES = {
    "InputLayer": "in every model",
    "Lambda": "with a plugin's registered function (a Lambda holding bytecode is refused "
              "unless the server runs with --allow-unsafe-lambda)",
    "GRUCell": "inside RNN", "LSTMCell": "inside RNN", "SimpleRNNCell": "inside RNN",
    "StackedRNNCells": "inside RNN",
}


@dataclass(frozen=True)
class Case:
    cls: str  # the keras.layers class this output serves
    group: str  # which model it is built into
    build: Callable  # (keras.layers, inputs dict) -> a tensor


def _cases() -> list[Case]:
    cases: list[Case] = []

    def case(cls: str, group: str):
        def register(build):
            cases.append(Case(cls, group, build))
            return build
        return register

    def simple(group: str, source: str, **layers):
        for cls, make in layers.items():
            cases.append(Case(cls, group, lambda L, x, make=make, source=source:
                              make(L)(x[source])))

    simple("core", "vec",
           Dense=lambda L: L.Dense(3),
           EinsumDense=lambda L: L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c"),
           Activation=lambda L: L.Activation("gelu"),
           Identity=lambda L: L.Identity(),
           ELU=lambda L: L.ELU(), LeakyReLU=lambda L: L.LeakyReLU(0.1),
           PReLU=lambda L: L.PReLU(), ReLU=lambda L: L.ReLU(max_value=0.5),
           Softmax=lambda L: L.Softmax(),
           ActivityRegularization=lambda L: L.ActivityRegularization(l1=0.01),
           Dropout=lambda L: L.Dropout(0.5), AlphaDropout=lambda L: L.AlphaDropout(0.5),
           GaussianDropout=lambda L: L.GaussianDropout(0.5),
           GaussianNoise=lambda L: L.GaussianNoise(0.5),
           BatchNormalization=lambda L: L.BatchNormalization(),
           LayerNormalization=lambda L: L.LayerNormalization(),
           UnitNormalization=lambda L: L.UnitNormalization(),
           RMSNormalization=lambda L: L.RMSNormalization(),
           SpectralNormalization=lambda L: L.SpectralNormalization(L.Dense(3)),
           Discretization=lambda L: L.Discretization(bin_boundaries=[0.3, 0.6]),
           Normalization=lambda L: L.Normalization(mean=0.5, variance=0.25),
           RepeatVector=lambda L: L.RepeatVector(2),
           Reshape=lambda L: L.Reshape((2, 4)))
    for cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        cases.append(Case(cls, "core", lambda L, x, cls=cls: getattr(L, cls)()(
            [x["vec"], L.Dense(8, name=f"{cls.lower()}_other")(x["vec"])])))

    @case("Dot", "core")
    def _dot(L, x):
        return L.Dot(axes=1)([x["vec"], x["vec"]])

    @case("Lambda", "core")
    def _lambda(L, x):
        import seedzoo_layers

        return L.Lambda(seedzoo_layers.antirectifier,
                        output_shape=seedzoo_layers.antirectifier_output_shape)(x["vec"])

    simple("sequence", "seq",
           Conv1D=lambda L: L.Conv1D(3, 2), Conv1DTranspose=lambda L: L.Conv1DTranspose(3, 2),
           DepthwiseConv1D=lambda L: L.DepthwiseConv1D(2),
           SeparableConv1D=lambda L: L.SeparableConv1D(3, 2),
           AveragePooling1D=lambda L: L.AveragePooling1D(2),
           MaxPooling1D=lambda L: L.MaxPooling1D(2),
           GlobalAveragePooling1D=lambda L: L.GlobalAveragePooling1D(),
           GlobalMaxPooling1D=lambda L: L.GlobalMaxPooling1D(),
           AdaptiveAveragePooling1D=lambda L: L.AdaptiveAveragePooling1D(3),
           AdaptiveMaxPooling1D=lambda L: L.AdaptiveMaxPooling1D(3),
           Cropping1D=lambda L: L.Cropping1D(1), UpSampling1D=lambda L: L.UpSampling1D(2),
           ZeroPadding1D=lambda L: L.ZeroPadding1D(1),
           SpatialDropout1D=lambda L: L.SpatialDropout1D(0.5),
           GroupNormalization=lambda L: L.GroupNormalization(groups=2),
           Flatten=lambda L: L.Flatten(), Permute=lambda L: L.Permute((2, 1)),
           Masking=lambda L: L.Masking(),
           TimeDistributed=lambda L: L.TimeDistributed(L.Dense(2)),
           LSTM=lambda L: L.LSTM(3), GRU=lambda L: L.GRU(3), SimpleRNN=lambda L: L.SimpleRNN(3),
           Bidirectional=lambda L: L.Bidirectional(L.LSTM(2, return_sequences=True)),
           RNN=lambda L: L.RNN(L.StackedRNNCells([L.SimpleRNNCell(2), L.LSTMCell(2),
                                                  L.GRUCell(2)])))
    for cls, kwargs in (("Attention", {}), ("AdditiveAttention", {})):
        cases.append(Case(cls, "sequence", lambda L, x, cls=cls, kwargs=kwargs:
                          getattr(L, cls)(**kwargs)([x["seq"], x["seq"]])))

    @case("MultiHeadAttention", "sequence")
    def _mha(L, x):
        return L.MultiHeadAttention(2, 4)(x["seq"], x["seq"])

    @case("GroupedQueryAttention", "sequence")
    def _gqa(L, x):  # public as GroupQueryAttention
        return L.GroupQueryAttention(head_dim=4, num_query_heads=2, num_key_value_heads=1)(
            x["seq"], x["seq"])

    simple("image", "img",
           Conv2D=lambda L: L.Conv2D(3, 3), Conv2DTranspose=lambda L: L.Conv2DTranspose(3, 3),
           DepthwiseConv2D=lambda L: L.DepthwiseConv2D(3),
           SeparableConv2D=lambda L: L.SeparableConv2D(3, 3),
           AveragePooling2D=lambda L: L.AveragePooling2D(2),
           MaxPooling2D=lambda L: L.MaxPooling2D(2),
           GlobalAveragePooling2D=lambda L: L.GlobalAveragePooling2D(),
           GlobalMaxPooling2D=lambda L: L.GlobalMaxPooling2D(),
           AdaptiveAveragePooling2D=lambda L: L.AdaptiveAveragePooling2D((2, 2)),
           AdaptiveMaxPooling2D=lambda L: L.AdaptiveMaxPooling2D((2, 2)),
           Cropping2D=lambda L: L.Cropping2D(1), UpSampling2D=lambda L: L.UpSampling2D(2),
           ZeroPadding2D=lambda L: L.ZeroPadding2D(1),
           SpatialDropout2D=lambda L: L.SpatialDropout2D(0.5),
           ConvLSTM1D=lambda L: L.ConvLSTM1D(2, 3),
           Rescaling=lambda L: L.Rescaling(1 / 255), Resizing=lambda L: L.Resizing(4, 4),
           CenterCrop=lambda L: L.CenterCrop(4, 4),
           Pipeline=lambda L: L.Pipeline([L.Rescaling(0.5), L.CenterCrop(6, 6)]),
           AutoContrast=lambda L: L.AutoContrast(value_range=(0, 255)),
           Solarization=lambda L: L.Solarization(addition_factor=0.1, value_range=(0, 255)),
           ContrastLimitedAdaptiveHistogramEqualization=lambda L:
               L.ContrastLimitedAdaptiveHistogramEqualization(value_range=(0, 255),
                                                             tile_grid_size=(2, 2)))
    simple("augment", "img",
           RandomFlip=lambda L: L.RandomFlip(), RandomRotation=lambda L: L.RandomRotation(0.1),
           RandomZoom=lambda L: L.RandomZoom(0.1),
           RandomTranslation=lambda L: L.RandomTranslation(0.1, 0.1),
           RandomCrop=lambda L: L.RandomCrop(4, 4),
           RandomContrast=lambda L: L.RandomContrast(0.2),
           RandomBrightness=lambda L: L.RandomBrightness(0.2),
           RandomHue=lambda L: L.RandomHue(0.2, value_range=(0, 255)),
           RandomSaturation=lambda L: L.RandomSaturation(0.2, value_range=(0, 255)),
           RandomColorDegeneration=lambda L: L.RandomColorDegeneration(0.2),
           RandomColorJitter=lambda L: L.RandomColorJitter(value_range=(0, 255),
                                                           brightness_factor=0.2),
           RandomSharpness=lambda L: L.RandomSharpness(0.2),
           # RandomShear(0.1)'s own config does not deserialize (y_factor [-0.0, 0.0]):
           RandomShear=lambda L: L.RandomShear(x_factor=(0.0, 0.1), y_factor=(0.0, 0.1)),
           RandomPerspective=lambda L: L.RandomPerspective(),
           RandomElasticTransform=lambda L: L.RandomElasticTransform(),
           RandomErasing=lambda L: L.RandomErasing(),
           RandomGaussianBlur=lambda L: L.RandomGaussianBlur(),
           RandomGrayscale=lambda L: L.RandomGrayscale(),
           RandomInvert=lambda L: L.RandomInvert(),
           RandomPosterization=lambda L: L.RandomPosterization(factor=4, value_range=(0, 255)),
           AugMix=lambda L: L.AugMix(value_range=(0, 255)), CutMix=lambda L: L.CutMix(),
           MixUp=lambda L: L.MixUp(), RandAugment=lambda L: L.RandAugment(value_range=(0, 255)))
    simple("volume", "vol",
           Conv3D=lambda L: L.Conv3D(2, 2), Conv3DTranspose=lambda L: L.Conv3DTranspose(2, 2),
           AveragePooling3D=lambda L: L.AveragePooling3D(2),
           MaxPooling3D=lambda L: L.MaxPooling3D(2),
           GlobalAveragePooling3D=lambda L: L.GlobalAveragePooling3D(),
           GlobalMaxPooling3D=lambda L: L.GlobalMaxPooling3D(),
           AdaptiveAveragePooling3D=lambda L: L.AdaptiveAveragePooling3D((2, 2, 2)),
           AdaptiveMaxPooling3D=lambda L: L.AdaptiveMaxPooling3D((2, 2, 2)),
           Cropping3D=lambda L: L.Cropping3D(1), UpSampling3D=lambda L: L.UpSampling3D(2),
           ZeroPadding3D=lambda L: L.ZeroPadding3D(1),
           SpatialDropout3D=lambda L: L.SpatialDropout3D(0.5),
           ConvLSTM2D=lambda L: L.ConvLSTM2D(2, 2))
    simple("volume", "vol_t", ConvLSTM3D=lambda L: L.ConvLSTM3D(2, 2))
    simple("lookup", "ids",
           Embedding=lambda L: L.Embedding(10, 3),
           ReversibleEmbedding=lambda L: L.ReversibleEmbedding(10, 3),
           CategoryEncoding=lambda L: L.CategoryEncoding(num_tokens=10, output_mode="count"),
           Hashing=lambda L: L.Hashing(num_bins=5),
           IntegerLookup=lambda L: L.IntegerLookup(vocabulary=[1, 2, 3]))
    simple("lookup", "text",
           StringLookup=lambda L: L.StringLookup(vocabulary=["a", "b c"]),
           TextVectorization=lambda L: L.TextVectorization(
               vocabulary=["a", "b", "c"], output_sequence_length=4))

    @case("HashedCrossing", "lookup")
    def _crossing(L, x):
        return L.HashedCrossing(num_bins=7)((x["key"], L.Hashing(num_bins=3)(x["key"])))

    simple("audio", "audio",
           MelSpectrogram=lambda L: L.MelSpectrogram(fft_length=32, sequence_stride=16,
                                                     num_mel_bins=8, sampling_rate=8000))

    @case("STFTSpectrogram", "audio")
    def _stft(L, x):
        # window=None: the default Hann window needs scipy, which kerve does not install
        return L.STFTSpectrogram(frame_length=32, frame_step=16, fft_length=32, window=None)(
            L.Reshape((128, 1))(x["audio"]))

    return cases


CASES = _cases()


def served_classes() -> set[str]:
    return {c.cls for c in CASES} | set(NOTES)


def public_classes() -> dict[str, str]:
    """Every public layer class, by its registered name -> one public name for it."""
    import inspect

    import keras

    found = {}
    for name in sorted(dir(keras.layers)):
        obj = getattr(keras.layers, name)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
            found.setdefault(obj.__name__, name)
    return found


def make_inputs(names, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        shape, dtype = INPUTS[name]
        full = (rows, *shape)
        if dtype == "string":
            words = np.array([b"a", b"b c", b"c a b", b"zz", b""], dtype=object)
            out[name] = words[rng.integers(0, len(words), full)]
        elif dtype.startswith("int"):
            out[name] = rng.integers(0, 10, full).astype(dtype)
        elif name == "img":
            out[name] = rng.uniform(0, 255, full).astype(dtype)
        else:
            out[name] = rng.uniform(-1, 1, full).astype(dtype)
    return out


def build_group(group: str):
    """One functional model with every case of ``group``: (model, [class per output])."""
    import keras

    L = keras.layers
    chosen = [c for c in CASES if c.group == group]
    needed: dict[str, object] = {}
    graph_inputs = {}

    class Lazy(dict):
        def __missing__(self, key):
            shape, dtype = INPUTS[key]
            graph_inputs[key] = keras.Input(shape, dtype=dtype, name=key)
            self[key] = graph_inputs[key]
            return self[key]

    x = Lazy(needed)
    outputs, classes = [], []
    for c in chosen:
        y = c.build(L, x)
        for i, t in enumerate(keras.tree.flatten(y)):
            name = c.cls if i == 0 else f"{c.cls}_{i}"
            outputs.append(L.Identity(name=f"out_{name}")(t))
            classes.append(c.cls)
    inputs = [graph_inputs[k] for k in INPUTS if k in graph_inputs]
    model = keras.Model(inputs, outputs, name=f"layers_{group}")
    return model, classes


GROUPS = sorted({c.group for c in CASES})
