import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import tf


@pytest.mark.slow
def test_fit_learns_real_mnist(mnist_small):
    kc.keras.utils.set_random_seed(1)
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn", seed=1), 3e-3)
    history = kc.models.fit(model, mnist_small, epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(mnist_small.x_test, mnist_small.y_test, verbose=0)[1] > 0.85


@pytest.mark.slow
def test_training_under_mirrored_strategy_with_two_cpus(mnist_small, mirrored):
    assert len(tf.config.list_logical_devices("CPU")) >= 2
    strategy = mirrored
    assert strategy.num_replicas_in_sync == 2
    kc.keras.utils.set_random_seed(2)
    with strategy.scope():
        model = kc.models.compile_classifier(kc.models.get("tiny_cnn", seed=2), 3e-3)
    history = kc.models.fit(model, mnist_small, epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(mnist_small.x_test, mnist_small.y_test, verbose=0)[1] > 0.8


def test_get_strategy():
    assert isinstance(kc.models.get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError, match=r"strategy must be one of \['default', 'mirrored', 'multiworker'\], got 'tpu'"):
        kc.models.get_strategy("tpu")


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs must be a positive int, got 0"),
    (dict(epochs=1, validation_split=1.0), r"validation_split must be in \[0, 1\), got 1.0"),
])
def test_fit_rejects_bad_arguments(mnist_small, kwargs, match):
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn"))
    with pytest.raises(ValueError, match=match):
        kc.models.fit(model, mnist_small, **kwargs)


def test_compile_rejects_bad_learning_rate():
    with pytest.raises(ValueError, match="learning_rate must be a positive number, got -0.1"):
        kc.models.compile_classifier(kc.models.get("tiny_cnn"), -0.1)
    with pytest.raises(TypeError, match="dataset must be a kcompress.data.Dataset"):
        kc.models.fit(kc.models.compile_classifier(kc.models.get("tiny_cnn")), np.zeros(3), epochs=1)


@pytest.mark.slow
def test_restore_best_keeps_the_best_validation_epoch(mnist_small):
    kc.keras.utils.set_random_seed(3)
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn", seed=3), 3e-3)
    best = kc.models.RestoreBest("val_accuracy")
    history = kc.models.fit(model, mnist_small, epochs=3, batch_size=64, verbose=0, callbacks=[best])
    val = history.history["val_accuracy"]
    assert best.best == max(val) and best.best_epoch == int(np.argmax(val))
    n_val = int(len(mnist_small.x_train) * 0.1)
    x_val, y_val = mnist_small.x_train[-n_val:], mnist_small.y_train[-n_val:]
    assert model.evaluate(x_val, y_val, verbose=0)[1] == pytest.approx(max(val), abs=1e-6)


def test_restore_best_needs_validation(mnist_small):
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn"))
    with pytest.raises(ValueError, match="restore_best=True needs validation_split > 0"):
        kc.models.fit(model, mnist_small, epochs=1, validation_split=0.0, restore_best=True)
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', got 'up'"):
        kc.models.RestoreBest(mode="up")
