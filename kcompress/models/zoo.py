"""Model zoo: the networks the published compression comparisons use.

Every builder returns a Functional tf_keras model whose last layer outputs
logits (no softmax), with weights that depend only on ``seed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from kcompress._keras import keras
from kcompress.validation import check_int

layers = keras.layers


class _Seeds:
    """Hands each layer its own seeded initializer so a build is reproducible."""

    def __init__(self, seed: int):
        self._counter = itertools.count(seed * 1009)

    def kernel(self, kind: str = "glorot_uniform"):
        cls = {"glorot_uniform": keras.initializers.GlorotUniform, "he_normal": keras.initializers.HeNormal}[kind]
        return cls(seed=next(self._counter))


def lenet5(input_shape, num_classes, seed=0):
    """LeNet-5: conv6-5x5 / pool / conv16-5x5 / pool / dense120 / dense84 / dense(num_classes).

    ReLU activations and max pooling (the variant that reaches ~99% on MNIST);
    61,706 parameters for 28x28x1 inputs and 10 classes.
    """
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=s.kernel(), name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", kernel_initializer=s.kernel(), name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", kernel_initializer=s.kernel(), name="fc1")(x)
    x = layers.Dense(84, activation="relu", kernel_initializer=s.kernel(), name="fc2")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def lenet300_100(input_shape, num_classes, seed=0):
    """LeNet-300-100: the fully connected net of the Deep Compression paper."""
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(300, activation="relu", kernel_initializer=s.kernel(), name="fc1")(x)
    x = layers.Dense(100, activation="relu", kernel_initializer=s.kernel(), name="fc2")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet300_100")


def lenet5_student(input_shape, num_classes, seed=0):
    """A LeNet-5-shaped student with about a fifth of its parameters (13,330 on MNIST).

    conv8-5x5 / pool / conv16-5x5 / pool / dense24 / dense(num_classes).
    """
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(8, 5, padding="same", activation="relu", kernel_initializer=s.kernel(), name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", kernel_initializer=s.kernel(), name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(24, activation="relu", kernel_initializer=s.kernel(), name="fc1")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5_student")


def tiny_cnn(input_shape, num_classes, seed=0):
    """A microcontroller-sized student: conv4 / pool / conv8 / pool / dense (2,922 params on MNIST)."""
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(4, 5, padding="same", activation="relu", kernel_initializer=s.kernel(), name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(8, 5, activation="relu", kernel_initializer=s.kernel(), name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def mlp_small(input_shape, num_classes, seed=0):
    """A small fully connected student: dense32 / dense(num_classes)."""
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(32, activation="relu", kernel_initializer=s.kernel(), name="fc1")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp_small")


def _conv_bn_relu(x, filters, s, name, strides=1, relu=True):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=s.kernel("he_normal"), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def vgg_small(input_shape, num_classes, seed=0):
    """A VGG-style net for 32x32 images: (conv-bn-relu x2, pool) x3 at 32/64/128 filters, dense."""
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for stage, filters in enumerate((32, 64, 128), start=1):
        x = _conv_bn_relu(x, filters, s, f"block{stage}a")
        x = _conv_bn_relu(x, filters, s, f"block{stage}b")
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", kernel_initializer=s.kernel(), name="fc1")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg_small")


def resnet20(input_shape, num_classes, seed=0):
    """ResNet-20 for 32x32 images (He et al. 2016): 3 stages x 3 basic blocks, 16/32/64 filters."""
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(inputs, 16, s, "stem")
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            name = f"stage{stage + 1}_block{block + 1}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = _conv_bn_relu(x, filters, s, f"{name}_a", strides=strides)
            y = _conv_bn_relu(y, filters, s, f"{name}_b", relu=False)
            if strides != 1 or x.shape[-1] != filters:
                x = layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                  kernel_initializer=s.kernel("he_normal"), name=f"{name}_proj")(x)
                x = layers.BatchNormalization(name=f"{name}_proj_bn")(x)
            x = layers.Add(name=f"{name}_add")([x, y])
            x = layers.ReLU(name=f"{name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def mlp_tiny(input_shape, num_classes, seed=0):
    """A distillation student: dense16 / dense(num_classes), 12,730 params on MNIST (1/5 of LeNet-5).

    A fully connected net has no convolutional prior and overfits its training set,
    the regime where a convolutional teacher's soft targets help most.
    """
    s = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(16, activation="relu", kernel_initializer=s.kernel(), name="fc1")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=s.kernel(), name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp_tiny")


MODELS: dict[str, Callable] = {
    "lenet5": lenet5,
    "lenet300_100": lenet300_100,
    "lenet5_student": lenet5_student,
    "tiny_cnn": tiny_cnn,
    "mlp_small": mlp_small,
    "vgg_small": vgg_small,
    "resnet20": resnet20,
    "mlp_tiny": mlp_tiny,
}


def get(name: str, input_shape=(28, 28, 1), num_classes: int = 10, seed: int = 0) -> keras.Model:
    """Builds a zoo model with logits output.

    Args:
        name: one of :data:`MODELS` (``lenet5``, ``lenet300_100``, ``lenet5_student``,
            ``tiny_cnn``, ``mlp_small``, ``vgg_small``, ``resnet20``).
        input_shape: ``(height, width, channels)`` of one image.
        num_classes: number of output logits, at least 2.
        seed: weights depend only on this.

    Returns:
        An uncompiled Functional ``tf_keras`` model.

    Raises:
        ValueError: unknown name, bad shape or class count, or an input too small
            for the architecture.

    Example:
        >>> model = get("lenet5", input_shape=(28, 28, 1), num_classes=10)
        >>> model.count_params()
        61706
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}.")
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = None
    if shape is None or len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}.")
    num_classes = check_int("num_classes", num_classes, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    try:
        return MODELS[name](shape, num_classes, seed=seed)
    except ValueError as err:
        raise ValueError(f"input_shape {shape} is not usable with model {name!r}: {err}") from err
