"""Under MirroredStrategy on two logical CPUs the Distiller logs and learns what one device does."""

import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras, tf

pytestmark = pytest.mark.slow  # trains a model per test or module fixture (seconds each)


def _train(strategy, teacher_weights, ds, sample_weight, hinted=False):
    callbacks = []
    with strategy.scope():
        teacher = kc.models.get("lenet5", seed=0)
        teacher.set_weights(teacher_weights)
        if hinted:
            # A pruned copy of the teacher recovered with logits + its own fc2 features; the mask is
            # chosen once, at the first step, from the same weights on both strategies.
            copy = kc.models.get("lenet5", seed=0)
            copy.set_weights(teacher_weights)
            student = kc.pruning.prune(copy, kc.pruning.ConstantSparsity(0.8, begin_step=0, frequency=1000))
            d = kc.distillation.HintDistiller(student, teacher, student_layer="fc2", teacher_layer="fc2")
            d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.5, temperature=1.0, hint_weight=0.1)
            callbacks = kc.pruning.callbacks(per_layer=False)
        else:
            student = kc.models.get("tiny_cnn", seed=5)
            d = kc.distillation.Distiller(student=student, teacher=teacher)
            d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"], alpha=0.3, temperature=4.0)
    # 141 samples in batches of 64: the last batch (13) splits unevenly over two replicas.
    history = d.fit(ds.x_train[:141], ds.y_train[:141], sample_weight=sample_weight, batch_size=64, epochs=2,
                    shuffle=False, validation_data=(ds.x_test[:51], ds.y_test[:51]), verbose=0,
                    callbacks=callbacks).history
    evaluation = d.evaluate(ds.x_test[:51], ds.y_test[:51], batch_size=32, verbose=0, return_dict=True)
    return history, evaluation, student.get_weights()


@pytest.mark.parametrize("hinted", [False, True], ids=["logits", "pruned_copy_with_hint"])
def test_mirrored_strategy_matches_one_device(mnist_small, trained_lenet, mirrored, hinted):
    assert len(tf.config.list_logical_devices("CPU")) >= 2
    weights = np.random.default_rng(0).uniform(0.5, 2.0, 141).astype(np.float32)
    one, one_eval, one_w = _train(tf.distribute.OneDeviceStrategy("/cpu:0"), trained_lenet.get_weights(),
                                  mnist_small, weights, hinted)
    assert mirrored.num_replicas_in_sync == 2
    two, two_eval, two_w = _train(mirrored, trained_lenet.get_weights(), mnist_small, weights, hinted)
    expected = {"loss", "student_loss", "distillation_loss", "accuracy"}
    expected |= {"hint_loss", "sparsity", "sparsity_overall"} if hinted else set()
    expected |= {f"val_{k}" for k in expected if not k.startswith("sparsity")}
    assert set(one) == set(two) == expected
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=2e-4, err_msg=key)
    for key in one_eval:
        assert two_eval[key] == pytest.approx(one_eval[key], rel=2e-4), key
    for a, b in zip(one_w, two_w, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)
    if hinted:
        assert one["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
        assert one["hint_loss"][-1] < one["hint_loss"][0]
