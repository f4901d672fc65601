"""Every supported layer class and activation converts both ways with equal outputs."""

from __future__ import annotations

import keras  # Keras 3
import pytest
from k3_models import max_abs_diff, same_config, set_bn_statistics

import kcompress as kc
from kcompress.keras3 import SUPPORTED_ACTIVATIONS, SUPPORTED_LAYERS, from_keras3, to_keras3

L = keras.layers

# class name -> (input shape, layer factory); merge layers get two inputs (see _model).
_CASES = {
    "Conv1D": ((12, 3), lambda: L.Conv1D(4, 3, strides=2, padding="same", activation="relu")),
    "Conv2D": ((9, 9, 3), lambda: L.Conv2D(4, (3, 2), dilation_rate=2, groups=1, use_bias=False)),
    "Conv1DTranspose": ((6, 3), lambda: L.Conv1DTranspose(4, 3, strides=2, padding="same")),
    "Conv2DTranspose": ((5, 5, 3), lambda: L.Conv2DTranspose(4, 3, strides=2, output_padding=1)),
    "DepthwiseConv2D": ((8, 8, 3), lambda: L.DepthwiseConv2D(3, depth_multiplier=2, strides=2)),
    "SeparableConv2D": ((8, 8, 3), lambda: L.SeparableConv2D(5, 3, depth_multiplier=2, activation="relu6")),
    "Dense": ((6,), lambda: L.Dense(5, activation="selu", kernel_regularizer=keras.regularizers.L1L2(1e-3, 1e-4))),
    "BatchNormalization": ((4, 4, 3), lambda: L.BatchNormalization(momentum=0.8, epsilon=1e-2, center=False)),
    "LayerNormalization": ((4, 6), lambda: L.LayerNormalization(epsilon=1e-4)),
    "Activation": ((6,), lambda: L.Activation("softplus")),
    "ReLU": ((6,), lambda: L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2)),
    "LeakyReLU": ((6,), lambda: L.LeakyReLU(negative_slope=0.05)),
    "Softmax": ((3, 6), lambda: L.Softmax(axis=1)),
    "MaxPooling1D": ((10, 3), lambda: L.MaxPooling1D(3, strides=2, padding="same")),
    "MaxPooling2D": ((9, 9, 3), lambda: L.MaxPooling2D(3, strides=2)),
    "AveragePooling1D": ((10, 3), lambda: L.AveragePooling1D(2)),
    "AveragePooling2D": ((9, 9, 3), lambda: L.AveragePooling2D(2, padding="same")),
    "GlobalMaxPooling1D": ((10, 3), lambda: L.GlobalMaxPooling1D()),
    "GlobalMaxPooling2D": ((6, 6, 3), lambda: L.GlobalMaxPooling2D(keepdims=True)),
    "GlobalAveragePooling1D": ((10, 3), lambda: L.GlobalAveragePooling1D(keepdims=True)),
    "GlobalAveragePooling2D": ((6, 6, 3), lambda: L.GlobalAveragePooling2D()),
    "Flatten": ((3, 4, 2), lambda: L.Flatten()),
    "Reshape": ((3, 4, 2), lambda: L.Reshape((6, -1))),
    "Permute": ((3, 4, 2), lambda: L.Permute((3, 1, 2))),
    "Dropout": ((6,), lambda: L.Dropout(0.5, seed=3)),
    "ZeroPadding1D": ((5, 3), lambda: L.ZeroPadding1D((1, 2))),
    "ZeroPadding2D": ((5, 5, 3), lambda: L.ZeroPadding2D(((0, 1), (2, 3)))),
    "Cropping1D": ((7, 3), lambda: L.Cropping1D((1, 2))),
    "Cropping2D": ((7, 7, 3), lambda: L.Cropping2D(((1, 0), (2, 1)))),
    "UpSampling1D": ((5, 3), lambda: L.UpSampling1D(3)),
    "UpSampling2D": ((5, 5, 3), lambda: L.UpSampling2D((2, 3), interpolation="bilinear")),
    "Rescaling": ((6,), lambda: L.Rescaling(0.5, offset=-0.25)),
    "Add": ((6,), lambda: L.Add()),
    "Subtract": ((6,), lambda: L.Subtract()),
    "Multiply": ((6,), lambda: L.Multiply()),
    "Average": ((6,), lambda: L.Average()),
    "Maximum": ((6,), lambda: L.Maximum()),
    "Minimum": ((6,), lambda: L.Minimum()),
    "Concatenate": ((6,), lambda: L.Concatenate(axis=-1)),
}
_MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}


def _model(class_name):
    shape, make = _CASES[class_name]
    keras.utils.set_random_seed(0)
    layer = make()
    a = keras.Input(shape, name="a")
    if class_name in _MERGE:
        b = keras.Input(shape, name="b")
        model = keras.Model([a, b], layer([a, L.Dense(shape[-1], name="mix")(b)]), name=class_name.lower())
    else:
        model = keras.Model(a, layer(a), name=class_name.lower())
    return set_bn_statistics(model), layer.name


def _inputs(model, rng):
    return [rng.normal(size=(32, *t.shape[1:])).astype("float32") for t in model.inputs]


def _out(model, x):
    """The model called on ``x`` in inference mode: eager, no predict() function to trace (these
    models are a layer or two; predict()'s tracing was most of each test's time)."""
    return model(x, training=False)


def test_every_supported_layer_has_a_case():
    assert set(_CASES) == set(SUPPORTED_LAYERS) - {"InputLayer"}


@pytest.mark.parametrize("class_name", sorted(_CASES))
def test_layer_converts_both_ways_with_equal_outputs(class_name, rng):
    k3, name = _model(class_name)
    x = _inputs(k3, rng)
    tk = from_keras3(k3)
    layer = tk.get_layer(name)
    assert type(layer) is getattr(kc.keras.layers, class_name)
    expected = _out(k3, x)
    assert max_abs_diff(expected, _out(tk, x)) <= 1e-5
    back = to_keras3(tk)
    assert type(back.get_layer(name)) is getattr(keras.layers, class_name)
    assert max_abs_diff(expected, _out(back, x)) <= 1e-6
    # the settings, not only the outputs: the same config once translated back (tf_keras
    # resolves a normalization axis -1 to the last axis' number, the same axis for these inputs)
    skip = {"dtype"} | ({"axis"} if "Normalization" in class_name else set())
    same_config({k: v for k, v in back.get_layer(name).get_config().items() if k not in skip},
                {k: v for k, v in k3.get_layer(name).get_config().items() if k not in skip})


@pytest.mark.parametrize("activation", SUPPORTED_ACTIVATIONS)
def test_activation_names_compute_the_same(activation, rng):
    k3 = keras.Sequential([keras.Input((3, 8)), L.Dense(8, activation=activation, name="fc")])
    x = rng.normal(0, 3, size=(64, 3, 8)).astype("float32")
    tk = from_keras3(k3)
    expected = _out(k3, x)
    assert max_abs_diff(expected, _out(tk, x)) <= 1e-5
    assert max_abs_diff(expected, _out(to_keras3(tk), x)) <= 1e-6


def test_leaky_relu_slope_is_renamed_both_ways():
    k3 = keras.Sequential([keras.Input((4,)), L.LeakyReLU(negative_slope=0.07, name="leaky")])
    tk = from_keras3(k3)
    assert tk.get_layer("leaky").alpha == pytest.approx(0.07)
    assert to_keras3(tk).get_layer("leaky").negative_slope == pytest.approx(0.07)


def test_a_value_tf_keras_refuses_is_reported_for_the_layer(monkeypatch):
    """No setting found yet that Keras 3 takes and tf_keras refuses; a refusing tf_keras ReLU stands in."""

    def refuse(cls, config):
        raise ValueError(f"threshold={config['threshold']} is not allowed")

    monkeypatch.setattr(kc.keras.layers.ReLU, "from_config", classmethod(refuse))
    k3 = keras.Sequential([keras.Input((4,)), L.ReLU(threshold=0.5, name="thr")])
    with pytest.raises(ValueError, match=r"'thr'.*tf_keras refuses its config: threshold=0.5 is not allowed"):
        from_keras3(k3)


def test_batchnorm_synchronized_and_mixed_precision_policy():
    k3 = keras.Sequential([keras.Input((4,)), L.BatchNormalization(synchronized=True, name="bn"),
                           L.Dense(2, dtype="mixed_float16", name="fc")])
    tk = from_keras3(k3)
    assert tk.get_layer("bn").synchronized is True
    assert tk.get_layer("fc").dtype_policy.name == "mixed_float16"
    assert to_keras3(tk).get_layer("fc").dtype_policy.name == "mixed_float16"


def test_non_trainable_layers_and_models_stay_frozen():
    k3 = keras.Sequential([keras.Input((4,)), L.Dense(3, name="frozen"), L.Dense(2, name="free")])
    k3.get_layer("frozen").trainable = False
    tk = from_keras3(k3)
    assert tk.get_layer("frozen").trainable is False and tk.get_layer("free").trainable is True
    assert len(tk.trainable_weights) == 2 and len(tk.non_trainable_weights) == 2
    k3.trainable = False
    assert from_keras3(k3).trainable is False


def test_integer_inputs_keep_their_dtype(rng):
    k3 = keras.Sequential([keras.Input((6,), dtype="uint8", name="pixels"), L.Rescaling(1 / 255.0), L.Dense(2)])
    tk = from_keras3(k3)
    assert tk.inputs[0].dtype.name == "uint8"
    x = rng.integers(0, 256, size=(16, 6)).astype("uint8")
    assert max_abs_diff(_out(k3, x), _out(tk, x)) <= 1e-5
