import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras, tf


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


TEACHER = np.array([[4.0, 1.0, -2.0], [0.5, 0.2, 3.0]], np.float32)
STUDENT = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], np.float32)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_loss_is_t_squared_times_kl(temperature):
    p, q = _softmax(TEACHER / temperature), _softmax(STUDENT / temperature)
    expected = temperature**2 * np.sum(p * np.log(p / q), axis=-1)
    got = kc.distillation.soft_target_loss(TEACHER, STUDENT, temperature).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Same as Keras's KLDivergence on the softened distributions (which clips at 1e-7).
    kld = keras.losses.KLDivergence(reduction="none")(p, q).numpy()
    np.testing.assert_allclose(got, temperature**2 * kld, rtol=1e-4)


def test_soft_target_loss_is_zero_for_equal_logits_and_exact_where_probabilities_underflow():
    np.testing.assert_allclose(kc.distillation.soft_target_loss(TEACHER, TEACHER, 3.0).numpy(), 0.0, atol=1e-6)
    peaked = np.array([[200.0, 0.0]], np.float32)  # softmax(peaked)[1] underflows to exactly 0 in float32
    got = kc.distillation.soft_target_loss([[0.0, 0.0]], peaked, 1.0).numpy()
    np.testing.assert_allclose(got, [100.0 - np.log(2.0)], rtol=1e-5)  # 0.5 * (log 0.5 - 0) + 0.5 * (log 0.5 + 200)


def test_soft_target_loss_gradient_scale_is_t_times_probability_gap():
    s = tf.constant(STUDENT)
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = tf.reduce_sum(kc.distillation.soft_target_loss(TEACHER, s, 4.0))
    expected = 4.0 * (_softmax(STUDENT / 4.0) - _softmax(TEACHER / 4.0))
    np.testing.assert_allclose(tape.gradient(loss, s).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_hint_loss_is_per_example_mean_squared_error():
    t = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    s = np.zeros_like(t)
    np.testing.assert_allclose(kc.distillation.hint_loss(t, s).numpy(), [3.5, 31.5])


@pytest.mark.parametrize("temperature, error", [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                                (float("inf"), ValueError), (True, TypeError), ("3", TypeError)])
def test_soft_target_loss_rejects_bad_temperature(temperature, error):
    with pytest.raises(error, match=r"temperature must be a finite number > 0, got"):
        kc.distillation.soft_target_loss(TEACHER, STUDENT, temperature)
