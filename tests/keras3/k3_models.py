"""Keras 3 models the tests build: LeNet-5 (Sequential), a residual net, a nested net, a coverage net.

Imported by the tests of this folder (``from k3_models import ...``); fixtures live in conftest.py.
"""

from __future__ import annotations

import keras  # Keras 3, installed alongside TensorFlow
import numpy as np


def set_bn_statistics(model, seed=0):
    """Random gamma/beta/moving statistics, so BatchNormalization is not the identity."""
    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
            values = []
            for w in layer.weights:
                kind = w.path.rsplit("/", 1)[-1]
                if kind in ("beta", "moving_mean"):
                    values.append(rng.normal(0, 0.1, w.shape).astype("float32"))
                else:  # gamma, moving_variance: positive
                    values.append(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
            layer.set_weights(values)
    return model


def _leaves(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


def lenet5_k3(num_classes=10, seed=0):
    """The LeNet-5 of kcompress.models, as a Keras 3 Sequential model."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        keras.layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(16, 5, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2, name="pool2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(120, activation="relu", name="fc1"),
        keras.layers.Dense(84, activation="relu", name="fc2"),
        keras.layers.Dense(num_classes, name="logits"),
    ], name="lenet5_k3")


def residual_k3(seed=0):
    """Functional: Rescaling, Conv2D + BatchNorm, a DepthwiseConv2D residual Add, SeparableConv2D,
    GlobalAveragePooling2D, Dropout, Dense logits. Takes MNIST-shaped inputs in [0, 1]."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem",
                            kernel_regularizer=keras.regularizers.L2(1e-4))(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, name="stem_bn")(x)
    x = keras.layers.ReLU(max_value=6.0, name="stem_relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.BatchNormalization(name="dw_bn")(y)
    y = keras.layers.Activation("relu", name="dw_relu")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.25, name="dropout")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return set_bn_statistics(keras.Model(inputs, outputs, name="residual_k3"), seed)


def nested_k3(seed=0):
    """A Functional block called twice (shared weights), a Sequential head, Concatenate / Multiply,
    and two outputs: layer names must survive inside the sub-models."""
    keras.utils.set_random_seed(seed)
    block_in = keras.Input((14, 14, 4), name="block_in")
    b = keras.layers.Conv2D(4, 3, padding="same", name="block_conv")(block_in)
    b = keras.layers.BatchNormalization(name="block_bn")(b)
    block = keras.Model(block_in, keras.layers.ReLU(name="block_relu")(b), name="block")
    head = keras.Sequential([
        keras.Input((8,), name="head_in"),
        keras.layers.Dense(16, activation="gelu", name="head_fc"),
        keras.layers.Dense(10, name="head_logits"),
    ], name="head")

    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="stem")(inputs)
    a = block(x)
    b = block(a)  # the same block again: one set of weights, two calls
    x = keras.layers.Concatenate(name="concat")([a, b])
    gate = keras.layers.Conv2D(8, 1, activation="sigmoid", name="gate")(x)
    x = keras.layers.Multiply(name="gated")([x, gate])
    x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    logits = head(x)
    return set_bn_statistics(keras.Model(inputs, [logits, b], name="nested_k3"), seed)


def coverage_k3(seed=0):
    """Conv1D, Conv2DTranspose, UpSampling2D, LayerNormalization, Reshape, ZeroPadding2D,
    Subtract, Average, pooling and friends in one Functional model."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.ZeroPadding2D(((1, 2), (2, 1)), name="pad")(inputs)  # 31 x 31
    x = keras.layers.Cropping2D(((1, 2), (2, 1)), name="crop")(x)  # 28 x 28
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="swish", name="down")(x)  # 14
    x = keras.layers.AveragePooling2D(2, name="avgpool")(x)  # 7
    up = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(x)  # 14
    tr = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="deconv")(x)  # 14
    x = keras.layers.Subtract(name="sub")([up, tr])
    x = keras.layers.Average(name="avg")([x, up])
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Reshape((14, 56), name="rows")(x)
    x = keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="elu", name="conv1d")(x)
    x = keras.layers.MaxPooling1D(2, name="maxpool1d")(x)
    x = keras.layers.Permute((2, 1), name="permute")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.2, name="leaky")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap1d")(x)
    x = keras.layers.Dense(10, activation="tanh", name="fc")(x)
    outputs = keras.layers.Softmax(name="probs")(x)
    return set_bn_statistics(keras.Model(inputs, outputs, name="coverage_k3"), seed)


BUILDERS = {"lenet5": lenet5_k3, "residual": residual_k3, "nested": nested_k3, "coverage": coverage_k3}


def as_list(outputs):
    return [np.asarray(o) for o in outputs] if isinstance(outputs, (list, tuple)) else [np.asarray(outputs)]


def same_config(a, b, path="config") -> None:
    """Asserts two layer configs are equal, floats to float32 precision (tf_keras stores some as float32)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), (path, sorted(set(a) ^ set(b)))
        for k in a:
            same_config(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_config(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert np.isclose(a, b, rtol=1e-6, atol=0), (path, a, b)
    else:
        assert a == b, (path, a, b)


def max_abs_diff(a, b) -> float:
    a, b = as_list(a), as_list(b)
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
