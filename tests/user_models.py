"""Small models written the way users write their own, shared by tests (28x28x1 inputs, 10 classes).

Each builder takes a ``seed`` and returns an untrained tf_keras model. They cover what kcompress's
zoo does not: separate activation layers, Conv2D -> BatchNorm -> ReLU with 1x1 convs and residual
adds, depthwise and separable convolutions, a softmax output, Dropout + global pooling, and a
subclassed model.
"""

from __future__ import annotations

import numpy as np

import kcompress as kc

keras = kc.keras
layers = keras.layers


def sequential_cnn(seed=0):
    """Sequential CNN with separate ReLU layers (Conv2D -> ReLU()), pooling, dropout and a Dense head."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, name="conv1"), layers.ReLU(name="relu1"), layers.MaxPooling2D(name="pool1"),
        layers.Conv2D(16, 3, name="conv2"), layers.ReLU(name="relu2"), layers.MaxPooling2D(name="pool2"),
        layers.Flatten(name="flatten"), layers.Dropout(0.2, name="drop"),
        layers.Dense(32, name="fc1"), layers.ReLU(name="relu3"),
        layers.Dense(10, name="logits"),
    ], name="sequential_cnn")


def _conv_bn_relu(x, filters, kernel, name, strides=1, relu=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def residual_net(seed=0):
    """Residual net: Conv2D -> BatchNorm -> ReLU blocks, 1x1 convs (one followed by a ReLU layer), Add, pooling."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = _conv_bn_relu(inputs, 8, 3, "stem", strides=2)                      # 14x14x8
    y = _conv_bn_relu(x, 16, 3, "b1a", strides=2)                           # 7x7x16
    y = _conv_bn_relu(y, 16, 3, "b1b", relu=False)
    shortcut = _conv_bn_relu(x, 16, 1, "b1proj", strides=2, relu=False)     # 1x1 conv
    x = layers.ReLU(name="b1_out")(layers.Add(name="b1_add")([shortcut, y]))
    y = layers.ReLU(name="b2a_relu")(layers.Conv2D(16, 1, name="b2a_conv")(x))    # 1x1 conv -> ReLU()
    y = _conv_bn_relu(y, 16, 3, "b2b", relu=False)
    x = layers.ReLU(name="b2_out")(layers.Add(name="b2_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.1, name="drop")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="residual_net")


def depthwise_net(seed=0):
    """MobileNet-style: a stem conv, DepthwiseConv2D -> BN -> ReLU6, 1x1 convs, a SeparableConv2D."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = _conv_bn_relu(inputs, 16, 3, "stem", strides=2)                     # 14x14x16
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw1")(x)
    x = layers.BatchNormalization(name="dw1_bn")(x)
    x = layers.ReLU(6.0, name="dw1_relu")(x)
    x = layers.Conv2D(32, 1, name="pw1")(x)                                 # Conv2D -> separate ReLU
    x = layers.ReLU(name="pw1_relu")(x)
    x = layers.SeparableConv2D(32, 3, strides=2, padding="same", name="sep2")(x)   # 7x7x32
    x = layers.ReLU(name="sep2_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="depthwise_net")


def softmax_model(seed=0):
    """A Sequential CNN whose last layer outputs probabilities (Dense(activation='softmax'))."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, activation="relu", name="conv1"), layers.MaxPooling2D(name="pool1"),
        layers.Flatten(name="flatten"), layers.Dense(10, activation="softmax", name="probs"),
    ], name="softmax_model")


class SubclassedNet(keras.Model):
    """A subclassed model (no get_config): conv, pooling, dropout, dense."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(8, 3, activation="relu")
        self.pool = layers.MaxPooling2D()
        self.flatten = layers.Flatten()
        self.drop = layers.Dropout(0.2)
        self.dense = layers.Dense(10)

    def call(self, x, training=False):
        return self.dense(self.drop(self.flatten(self.pool(self.conv(x))), training=training))


def subclassed(seed=0, build=True):
    """A :class:`SubclassedNet`, called once on a zero batch when ``build``."""
    keras.utils.set_random_seed(seed)
    model = SubclassedNet(name="subclassed")
    if build:
        model(np.zeros((1, 28, 28, 1), np.float32))
    return model


BUILDERS = {
    "sequential_cnn": sequential_cnn,
    "residual_net": residual_net,
    "depthwise_net": depthwise_net,
    "softmax_model": softmax_model,
}


def train(model, ds, epochs=1, n=2000, lr=2e-3, batch_size=64, eagerly=False):
    """Compiles (logits or probabilities, whichever the model outputs) and fits on ``n`` images.

    ``eagerly=True`` runs the steps eagerly: for a handful of steps that beats tracing the train
    function (seconds); for dozens it does not.
    """
    probs = model.layers[-1].get_config().get("activation") == "softmax"
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=not probs), metrics=["accuracy"],
                  run_eagerly=eagerly)
    model.fit(ds.x_train[:n], ds.y_train[:n], epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def magnitude_prune(model, sparsity=0.7):
    """Zeros the smallest ``sparsity`` fraction of every conv / dense kernel (a stand-in for a stripped pruned model)."""
    for layer in model.layers:
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            w = getattr(layer, attr, None)
            if w is not None:
                k = w.numpy()
                k[np.abs(k) < np.quantile(np.abs(k), sparsity)] = 0.0
                w.assign(k)
    return model
