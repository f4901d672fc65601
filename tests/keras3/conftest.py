"""Fixtures for the Keras 3 tests: real images and a briefly trained Keras 3 LeNet-5.

Keras 3 models are trained here with ``keras.metrics.SparseCategoricalAccuracy()``
objects, never the string ``"accuracy"`` (see the README's Keras 3 section).
"""

from __future__ import annotations

import keras  # Keras 3, installed alongside TensorFlow
import pytest
from k3_models import lenet5_k3
from trained_once import trained_once_per_run


@pytest.fixture(scope="session")
def images(mnist):
    """256 real MNIST test images."""
    return mnist.x_test[:256]


@pytest.fixture(scope="session")
def trained_lenet_k3(mnist_small, tmp_path_factory):
    """Keras 3 LeNet-5 trained by Keras 3 for one epoch on 4,000 MNIST images (~90% accuracy). Do not mutate.

    Trained once per run and shared by the xdist workers, as ``trained_lenet`` is.
    """

    def build():
        model = lenet5_k3()
        model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy()])
        return model

    def train(model):
        model.fit(mnist_small.x_train, mnist_small.y_train, epochs=1, batch_size=64, verbose=0)

    return trained_once_per_run(tmp_path_factory, "trained_lenet_k3", build, train)
