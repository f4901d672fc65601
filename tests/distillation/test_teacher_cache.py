"""The Distiller computes a frozen teacher's logits once for in-memory arrays: same training, less work."""

import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras
from kcompress.distillation import distiller as distiller_module


@pytest.fixture()
def data(mnist_small):
    return mnist_small.x_train[:600], mnist_small.y_train[:600]


def _fit(teacher, x, y, cache, **fit_kwargs):
    keras.utils.set_random_seed(3)
    student = kc.models.get("tiny_cnn", seed=5)
    d = kc.distillation.Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"], alpha=0.3, temperature=4.0)
    history = d.fit(x, y, batch_size=64, epochs=2, verbose=0, cache_teacher=cache, **fit_kwargs).history
    return d, history, student.get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("split", ["validation_split", "validation_data"])
def test_cached_logits_train_exactly_like_the_teacher_per_batch(data, split):
    x, y = data
    teacher = kc.models.get("lenet5", seed=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(x)).astype(np.float32)
    kwargs = {"validation_split": 0.2} if split == "validation_split" else {"validation_data": (x[:100], y[:100])}
    _, per_batch, w_per_batch = _fit(teacher, x, y, False, sample_weight=weights, **kwargs)
    d, cached, w_cached = _fit(teacher, x, y, True, sample_weight=weights, **kwargs)
    assert set(cached) == set(per_batch) and "val_distillation_loss" in cached
    for key in per_batch:
        np.testing.assert_allclose(cached[key], per_batch[key], rtol=1e-5, err_msg=key)
    for a, b in zip(w_per_batch, w_cached, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # After fit the distiller evaluates (and trains on tf.data) with the teacher run per batch again.
    result = d.evaluate(x[:100], y[:100], verbose=0, return_dict=True)
    assert result["distillation_loss"] == pytest.approx(cached["val_distillation_loss"][-1], rel=1e-4) \
        if split == "validation_data" else np.isfinite(result["distillation_loss"])


def test_logits_are_the_teachers_and_are_reused_until_its_weights_change(data):
    x, _ = data
    teacher = kc.models.get("lenet5", seed=0)
    d = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=5), teacher=teacher)
    logits = d.teacher_logits(x, batch_size=256)
    assert logits.shape == (len(x), 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # Another distiller on a view of the same array, same teacher weights: the kept logits.
    other = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=6), teacher=teacher)
    assert other.teacher_logits(x[:]) is logits
    # A different slice or a changed teacher: computed anew.
    assert other.teacher_logits(x[:300]) is not logits
    teacher.layers[-1].set_weights([w * 2 for w in teacher.layers[-1].get_weights()])
    changed = d.teacher_logits(x)
    assert changed is not logits
    np.testing.assert_allclose(changed, teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert len(distiller_module._LOGITS_CACHE) <= distiller_module._CACHE_ENTRIES


def test_a_hint_distiller_keeps_running_the_teacher(data):
    x, y = data
    teacher = kc.models.get("lenet5", seed=0)
    student = kc.models.get("lenet5", seed=1)
    hinted = kc.distillation.HintDistiller(student, teacher, student_layer="fc2", teacher_layer="fc2")
    plain = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=5), teacher=teacher)
    assert plain._logits_are_all_it_needs() and not hinted._logits_are_all_it_needs()
    hinted.compile(keras.optimizers.Adam(1e-3), alpha=0.5, temperature=2.0, hint_weight=0.1)
    history = hinted.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0).history
    assert np.isfinite(history["hint_loss"][-1])


def test_bad_cache_teacher(data):
    x, y = data
    d = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=5), teacher=kc.models.get("lenet5", seed=0))
    d.compile("adam")
    with pytest.raises(TypeError, match="cache_teacher"):
        d.fit(x, y, epochs=1, verbose=0, cache_teacher="yes")
    with pytest.raises(TypeError, match="x must be a NumPy array"):
        d.teacher_logits([1, 2, 3])
    with pytest.raises(ValueError, match="batch_size"):
        d.teacher_logits(x, batch_size=0)
