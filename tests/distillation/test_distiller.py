import logging

import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras, tf

Distiller = kc.distillation.Distiller

# Fixed logits: with one-hot inputs e_i, a bias-free Dense(3) outputs row i of its kernel.
TEACHER_LOGITS = np.array([[4.0, 1.0, -2.0], [0.5, 0.2, 3.0], [-1.0, 2.0, 0.0]], np.float32)
STUDENT_LOGITS = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.3, -0.4, 1.5]], np.float32)
X = np.eye(3, dtype=np.float32)
Y = np.array([0, 2, 1])
W = np.array([1.0, 0.5, 2.0], np.float32)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _linear(kernel, name, activation=None):
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(3, use_bias=False, activation=activation, name="logits")(inputs)
    model = keras.Model(inputs, outputs, name=name)
    model.layers[-1].set_weights([kernel])
    return model


def _hand_losses(alpha, temperature, weights):
    p_s = _softmax(STUDENT_LOGITS)
    ce = -np.log(p_s[np.arange(3), Y])
    q_s, q_t = _softmax(STUDENT_LOGITS / temperature), _softmax(TEACHER_LOGITS / temperature)
    kl = np.sum(q_t * np.log(q_t / q_s), axis=-1)
    student = np.sum(weights * ce) / 3  # Keras SUM_OVER_BATCH_SIZE: weighted sum / batch size
    distill = np.sum(weights * temperature**2 * kl) / 3
    grad = (weights[:, None] / 3) * (alpha * (p_s - np.eye(3)[Y]) + (1 - alpha) * temperature * (q_s - q_t))
    return {"student_loss": student, "distillation_loss": distill,
            "loss": alpha * student + (1 - alpha) * distill}, grad


@pytest.mark.parametrize("alpha, temperature, weighted", [(0.1, 4.0, True), (0.5, 1.0, False), (0.0, 10.0, True)])
def test_losses_and_gradient_match_hand_computation(alpha, temperature, weighted):
    teacher, student = _linear(TEACHER_LOGITS, "teacher"), _linear(STUDENT_LOGITS, "student")
    d = Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.SGD(1.0), alpha=alpha, temperature=temperature)
    weights = W if weighted else np.ones(3, np.float32)
    expected, grad = _hand_losses(alpha, temperature, weights)
    got = d.evaluate(X, Y, sample_weight=W if weighted else None, batch_size=3, verbose=0, return_dict=True)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    # One SGD step of size 1 moves the student's kernel by minus the hand gradient (T^2 included);
    # the teacher does not move.
    d.fit(X, Y, sample_weight=W if weighted else None, batch_size=3, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(student.get_weights()[0], STUDENT_LOGITS - grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(teacher.get_weights()[0], TEACHER_LOGITS)


def test_custom_loss_functions_are_used_per_example():
    teacher, student = _linear(TEACHER_LOGITS, "teacher"), _linear(STUDENT_LOGITS, "student")
    d = Distiller(student=student, teacher=teacher)
    d.compile("sgd", alpha=0.3, temperature=2.0,
              student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              distillation_loss_fn=keras.losses.KLDivergence())
    expected, _ = _hand_losses(0.3, 2.0, W)
    got = d.evaluate(X, Y, sample_weight=W, batch_size=3, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    d.compile("sgd", student_loss_fn=lambda y, s: tf.reduce_mean(s))
    with pytest.raises(ValueError, match="student_loss_fn must return one loss per example"):
        d.evaluate(X, Y, verbose=0)


def test_teacher_with_softmax_output_gives_the_same_losses_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        d = Distiller(student=_linear(STUDENT_LOGITS, "student"),
                      teacher=_linear(TEACHER_LOGITS, "teacher", activation="softmax"))
    assert "ends with a softmax; its log-probabilities are used as logits" in caplog.text
    d.compile(alpha=0.1, temperature=4.0)
    expected, _ = _hand_losses(0.1, 4.0, np.ones(3, np.float32))
    got = d.evaluate(X, Y, batch_size=3, verbose=0, return_dict=True)
    assert got["distillation_loss"] == pytest.approx(expected["distillation_loss"], rel=1e-5)


def test_epoch_logs_average_every_batch_not_the_last_one():
    kc.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(301, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 301)
    d = Distiller(student=_linear(STUDENT_LOGITS, "student"), teacher=_linear(TEACHER_LOGITS, "teacher"))
    d.compile(keras.optimizers.SGD(0.0), metrics=["accuracy"], alpha=0.2, temperature=3.0)
    history = d.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    whole = d.evaluate(x, y, batch_size=301, verbose=0, return_dict=True)  # one batch: the true mean
    last = d.evaluate(x[288:], y[288:], batch_size=13, verbose=0, return_dict=True)
    for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert history[key] == pytest.approx([whole[key]] * 2, rel=1e-5), key
    assert abs(last["loss"] - whole["loss"]) > 1e-3  # so the check above can tell them apart
    assert [m.name for m in d.metrics][:3] == ["loss", "student_loss", "distillation_loss"]


@pytest.mark.slow
def test_distills_real_mnist_teacher_frozen_and_logs_consistent(mnist_small, fresh_copy):
    teacher = fresh_copy()
    before = [w.copy() for w in teacher.get_weights()]
    kc.keras.utils.set_random_seed(0)
    student = kc.models.get("tiny_cnn", seed=0)
    d = Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"], alpha=0.1, temperature=4.0)
    history = kc.models.fit(d, mnist_small, epochs=2, batch_size=64, verbose=0, restore_best=True).history
    # Frozen inside the distiller, untouched outside: a copy of the teacher still trains.
    assert teacher.trainable and [w.name for w in d.trainable_weights] == [w.name for w in student.trainable_weights]
    assert {id(w) for w in teacher.weights} <= {id(w) for w in d.non_trainable_weights}
    assert all(layer.trainable for layer in kc.keras.models.clone_model(teacher).layers)
    for b, a in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for prefix in ("", "val_"):
        total = np.array(history[prefix + "loss"])
        parts = 0.1 * np.array(history[prefix + "student_loss"]) + 0.9 * np.array(history[prefix + "distillation_loss"])
        np.testing.assert_allclose(total, parts, rtol=1e-5)
    assert history["loss"][-1] < history["loss"][0]
    accuracy = np.mean(np.argmax(d.predict(mnist_small.x_test, verbose=0), -1) == mnist_small.y_test)
    assert accuracy > 0.85
    np.testing.assert_allclose(d.predict(mnist_small.x_test[:8], verbose=0),
                               student.predict(mnist_small.x_test[:8], verbose=0), rtol=1e-6)
    result = d.evaluate(mnist_small.x_test, mnist_small.y_test, verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_teacher_runs_in_inference_mode():
    # Dropout and BatchNorm behave differently in training: a teacher called with
    # training=True would give noisy targets and move its BatchNorm statistics.
    inputs = keras.Input((3,))
    h = keras.layers.BatchNormalization(name="bn")(inputs)
    h = keras.layers.Dropout(0.9, name="drop")(h)
    teacher = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h), name="teacher")
    before = [w.copy() for w in teacher.get_weights()]
    d = Distiller(student=_linear(STUDENT_LOGITS, "student"), teacher=teacher)
    d.compile("adam", alpha=0.0, temperature=2.0)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 3)).astype(np.float32)
    d.fit(x, np.zeros(64, int), batch_size=16, epochs=2, verbose=0)
    for b, a in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    expected = kc.distillation.soft_target_loss(teacher(x, training=False), d.student(x), 2.0).numpy().mean()
    assert d.evaluate(x, np.zeros(64, int), batch_size=64, verbose=0, return_dict=True)["distillation_loss"] == \
        pytest.approx(expected, rel=1e-5)


def _small_pair(seed=0):
    return kc.models.get("tiny_cnn", seed=seed), kc.models.get("mlp_small", seed=seed + 1)


class TestBadInput:
    @pytest.mark.parametrize("temperature, error", [(0, ValueError), (-2.0, ValueError), (float("nan"), ValueError),
                                                    ("6", TypeError)])
    def test_temperature(self, temperature, error):
        d = Distiller(*_small_pair())
        with pytest.raises(error, match=f"temperature must be a finite number > 0, got {temperature!r}"):
            d.compile(temperature=temperature)

    def test_none_keeps_alpha_and_temperature(self):
        d = Distiller(*_small_pair())
        d.compile(alpha=0.4, temperature=5.0)
        d.compile()  # what a SavedModel does when it restores compile()
        assert (d.alpha, d.temperature) == (0.4, 5.0)

    @pytest.mark.parametrize("alpha, error", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                              (True, TypeError), ("0.5", TypeError)])
    def test_alpha(self, alpha, error):
        d = Distiller(*_small_pair())
        with pytest.raises(error, match=r"alpha must be a finite number in \[0, 1\]"):
            d.compile(alpha=alpha)

    def test_output_shapes_differ(self):
        with pytest.raises(ValueError, match=r"same shape of logits, got teacher output shape \(None, 5\) "
                                             r"and student output shape \(None, 10\)"):
            Distiller(student=kc.models.get("tiny_cnn"), teacher=kc.models.get("mlp_small", num_classes=5))

    def test_input_shapes_differ(self):
        with pytest.raises(ValueError, match="must take the same inputs"):
            Distiller(student=kc.models.get("tiny_cnn"), teacher=kc.models.get("mlp_small", input_shape=(32, 32, 3)))

    def test_student_with_softmax(self):
        student = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(10, activation="softmax")])
        with pytest.raises(ValueError, match="ends with a softmax, but distillation needs logits"):
            Distiller(student=student, teacher=kc.models.get("tiny_cnn"))
        student = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10),
                                    keras.layers.Softmax()])
        with pytest.raises(ValueError, match="ends with a softmax"):
            Distiller(student=student, teacher=kc.models.get("tiny_cnn"))

    def test_models(self):
        model = kc.models.get("tiny_cnn")
        with pytest.raises(ValueError, match="student and teacher must be different models"):
            Distiller(student=model, teacher=model)
        with pytest.raises(TypeError, match="teacher must be a tf_keras.Model, got builtins.str"):
            Distiller(student=model, teacher="lenet5")

    def test_loss_arguments(self):
        d = Distiller(*_small_pair())
        with pytest.raises(ValueError, match="Distiller computes its own loss"):
            d.compile(loss="mse")
        with pytest.raises(TypeError, match="distillation_loss_fn must be None, a keras.losses.Loss"):
            d.compile(distillation_loss_fn=3)

    def test_labels_required(self):
        d = Distiller(*_small_pair())
        d.compile()
        with pytest.raises(ValueError, match="Distiller needs labels"):
            d.fit(np.zeros((4, 28, 28, 1), np.float32), epochs=1, verbose=0)

    def test_smaller_teacher_warns(self, caplog):
        with caplog.at_level(logging.WARNING):
            Distiller(student=kc.models.get("lenet5"), teacher=kc.models.get("tiny_cnn"))
        assert "teacher and student may be swapped" in caplog.text
