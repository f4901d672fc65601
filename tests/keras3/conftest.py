"""Fixtures for the Keras 3 tests: real images and a trained Keras 3 LeNet-5.

Keras 3 models are trained here with ``keras.metrics.SparseCategoricalAccuracy()``
objects, never the string ``"accuracy"`` (see the README's Keras 3 section).
"""

from __future__ import annotations

import keras  # Keras 3, installed alongside TensorFlow
import pytest
from k3_models import lenet5_k3


@pytest.fixture(scope="session")
def images(mnist):
    """256 real MNIST test images."""
    return mnist.x_test[:256]


@pytest.fixture(scope="session")
def trained_lenet_k3(trained_lenet):
    """Keras 3 LeNet-5 holding the weights of ``trained_lenet`` (~96% accuracy), compiled by Keras 3. Do not mutate.

    The same layers as kcompress's LeNet-5, so the trained weights load as they are: no second
    training (it cost every run, the fast subset included, seconds for nothing the tests check).
    Keras 3's own fit is exercised by the tests that train Keras 3 models (test_keras_shim.py).
    """
    model = lenet5_k3()
    model.set_weights(trained_lenet.get_weights())
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    return model
