import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import tf


@pytest.mark.slow
def test_fit_learns_real_mnist_and_restore_best_keeps_the_best_validation_epoch(mnist_small):
    # One training for both checks (each trained its own tiny_cnn).
    kc.keras.utils.set_random_seed(1)
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn", seed=1), 3e-3)
    best = kc.models.RestoreBest("val_accuracy")
    history = kc.models.fit(model, mnist_small, epochs=2, batch_size=64, verbose=0, callbacks=[best])
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(mnist_small.x_test, mnist_small.y_test, verbose=0)[1] > 0.85
    val = history.history["val_accuracy"]
    assert best.best == max(val) and best.best_epoch == int(np.argmax(val))
    n_val = int(len(mnist_small.x_train) * 0.1)
    x_val, y_val = mnist_small.x_train[-n_val:], mnist_small.y_train[-n_val:]
    assert model.evaluate(x_val, y_val, verbose=0)[1] == pytest.approx(max(val), abs=1e-6)


@pytest.mark.slow
def test_training_under_mirrored_strategy_with_two_cpus(mnist_small, mirrored):
    assert len(tf.config.list_logical_devices("CPU")) >= 2
    strategy = mirrored
    assert strategy.num_replicas_in_sync == 2
    kc.keras.utils.set_random_seed(2)
    with strategy.scope():
        model = kc.models.compile_classifier(kc.models.get("tiny_cnn", seed=2), 3e-3)
    # 1,280 images (18 steps an epoch): a step costs a replica per logical CPU; learning shows anyway.
    history = kc.models.fit(model, mnist_small, epochs=2, batch_size=64, verbose=0, max_train=1280)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(mnist_small.x_test[:500], mnist_small.y_test[:500], verbose=0)[1] > 0.6


def test_get_strategy():
    assert isinstance(kc.models.get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError, match=r"strategy must be one of \['default', 'mirrored', 'multiworker'\], got 'tpu'"):
        kc.models.get_strategy("tpu")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs must be an int >= 1, got 0"),
    (dict(epochs="3"), TypeError, "epochs must be an int >= 1, got '3'"),
    (dict(epochs=1, validation_split=1.0), ValueError, r"validation_split must be a finite number in \[0, 1\), got 1.0"),
    (dict(epochs=1, restore_best=1), TypeError, "restore_best must be True or False, got 1"),
])
def test_fit_rejects_bad_arguments(mnist_small, kwargs, error, match):
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn"))
    with pytest.raises(error, match=match):
        kc.models.fit(model, mnist_small, **kwargs)


def test_compile_rejects_bad_learning_rate():
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0, got -0.1"):
        kc.models.compile_classifier(kc.models.get("tiny_cnn"), -0.1)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0, got nan"):
        kc.models.compile_classifier(kc.models.get("tiny_cnn"), float("nan"))
    with pytest.raises(TypeError, match="learning_rate must be a finite number > 0, got '0.1'"):
        kc.models.compile_classifier(kc.models.get("tiny_cnn"), "0.1")
    with pytest.raises(TypeError, match="dataset must be a kcompress.data.Dataset"):
        kc.models.fit(kc.models.compile_classifier(kc.models.get("tiny_cnn")), np.zeros(3), epochs=1)


def test_restore_best_needs_validation(mnist_small):
    model = kc.models.compile_classifier(kc.models.get("tiny_cnn"))
    with pytest.raises(ValueError, match="restore_best=True needs validation_split > 0"):
        kc.models.fit(model, mnist_small, epochs=1, validation_split=0.0, restore_best=True)
    with pytest.raises(ValueError, match="mode must be one of 'max', 'min', got 'up'"):
        kc.models.RestoreBest(mode="up")


def test_restore_best_is_early_stopping_that_restores_the_first_best_epoch():
    # RestoreBest is Keras's EarlyStopping(restore_best_weights=True) that never stops: after the
    # last epoch it restores the best epoch's weights, the first of tied epochs, as before.
    model = kc.keras.Sequential([kc.keras.Input((1,)), kc.keras.layers.Dense(1)])
    best = kc.models.RestoreBest("val_accuracy")
    assert isinstance(best, kc.keras.callbacks.EarlyStopping) and best.restore_best_weights
    best.set_model(model)
    best.on_train_begin()
    for epoch, acc in enumerate([0.5, 0.7, 0.7, 0.6, 0.4, 0.3, 0.2]):
        model.set_weights([np.full((1, 1), float(epoch)), np.zeros(1)])
        best.on_epoch_end(epoch, {"val_accuracy": acc})
        assert not model.stop_training
    best.on_train_end()
    assert (best.best, best.best_epoch) == (0.7, 1) and model.get_weights()[0][0, 0] == 1.0
    with pytest.raises(ValueError, match="RestoreBest monitors 'val_accuracy' but the epoch logs hold"):
        best.on_epoch_end(0, {"accuracy": 0.5})
