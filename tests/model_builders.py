"""Small user-style models built the way users build them (not from the zoo), shared by tests."""

from __future__ import annotations

import numpy as np

import kcompress as kc

keras = kc.keras
L = keras.layers


def residual_net(input_shape=(28, 28, 1), num_classes=10, width=16, seed=0):
    """Conv → BN → ReLU stem, two residual blocks (one with a 1x1 projection), GAP, Dropout, Dense."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=init, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for i, (filters, stride) in enumerate([(width, 1), (2 * width, 2)]):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", kernel_initializer=init, name=f"b{i}_conv1")(x)
        y = L.BatchNormalization(name=f"b{i}_bn1")(y)
        y = L.ReLU(name=f"b{i}_relu1")(y)
        y = L.Conv2D(filters, 3, padding="same", kernel_initializer=init, name=f"b{i}_conv2")(y)
        y = L.BatchNormalization(name=f"b{i}_bn2")(y)
        if stride != 1 or filters != x.shape[-1]:
            x = L.Conv2D(filters, 1, strides=stride, kernel_initializer=init, name=f"b{i}_proj")(x)
        x = L.Add(name=f"b{i}_add")([x, y])
        x = L.ReLU(name=f"b{i}_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.1, name="drop")(x)
    outputs = L.Dense(num_classes, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, outputs, name="user_resnet")


def depthwise_net(input_shape=(28, 28, 1), num_classes=10, width=16, seed=0):
    """MobileNet-style: conv stem, DepthwiseConv2D + 1x1, SeparableConv2D, a Concatenate, GAP, Dense."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(width, 3, strides=2, padding="same", kernel_initializer=init, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", depthwise_initializer=init, name="dw1")(x)
    x = L.BatchNormalization(name="dw1_bn")(x)
    x = L.ReLU(6.0, name="dw1_relu")(x)
    x = L.Conv2D(2 * width, 1, kernel_initializer=init, name="pw1")(x)
    x = L.BatchNormalization(name="pw1_bn")(x)
    x = L.ReLU(6.0, name="pw1_relu")(x)
    a = L.SeparableConv2D(width, 3, padding="same", activation="relu", name="sep_a")(x)
    b = L.Conv2D(width, 1, activation="relu", kernel_initializer=init, name="branch_b")(x)
    x = L.Concatenate(name="concat")([a, b])
    x = L.SeparableConv2D(2 * width, 3, strides=2, padding="same", activation="relu", name="sep2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, outputs, name="user_mobilenet")


def randomize_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics, so cutting a channel in the wrong place shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.2, beta.shape).astype("float32"),
                               rng.normal(0, 0.2, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])
    return model
