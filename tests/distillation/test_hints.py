import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras


def test_hint_distiller_learns_the_teacher_features(mnist_small, fresh_copy, tmp_path):
    teacher = fresh_copy()
    kc.keras.utils.set_random_seed(0)
    student = kc.models.get("tiny_cnn", seed=0)
    d = kc.distillation.HintDistiller(student, teacher, student_layer="conv2", teacher_layer="conv2")
    # conv2 maps are 10x10x8 (student) and 10x10x16 (teacher): a 1x1 conv regressor, not part of the student.
    assert isinstance(d.regressor, keras.layers.Conv2D) and d.regressor.kernel.shape == (1, 1, 8, 16)
    assert d.layers == [student]
    d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"], alpha=0.1, temperature=4.0, hint_weight=0.5)
    history = d.fit(mnist_small.x_train[:2000], mnist_small.y_train[:2000], epochs=2, batch_size=64, verbose=0,
                    validation_split=0.1).history
    # Without the hint term (same seed) the student's features end farther from the teacher's.
    kc.keras.utils.set_random_seed(0)
    unhinted = kc.distillation.HintDistiller(kc.models.get("tiny_cnn", seed=0), fresh_copy(), student_layer="conv2",
                                             teacher_layer="conv2")
    unhinted.compile(keras.optimizers.Adam(3e-3), alpha=0.1, temperature=4.0, hint_weight=0.0)
    control = unhinted.fit(mnist_small.x_train[:2000], mnist_small.y_train[:2000], epochs=2, batch_size=64,
                           verbose=0, validation_split=0.1).history
    assert history["val_hint_loss"][-1] < 0.5 * control["val_hint_loss"][-1]
    total = 0.1 * np.array(history["val_student_loss"]) + 0.9 * np.array(history["val_distillation_loss"]) \
        + 0.5 * np.array(history["val_hint_loss"])
    np.testing.assert_allclose(history["val_loss"], total, rtol=1e-5)
    accuracy = np.mean(np.argmax(d.predict(mnist_small.x_test, verbose=0), -1) == mnist_small.y_test)
    assert accuracy > 0.8 and student.count_params() == 2922
    # The regressor trains too; the teacher does not.
    for a, b in zip(teacher.get_weights(), fresh_copy().get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    keras.models.save_model(d, tmp_path / "hint.keras")
    loaded = keras.models.load_model(tmp_path / "hint.keras")
    assert isinstance(loaded, kc.distillation.HintDistiller) and loaded.hint_weight == 0.5
    np.testing.assert_array_equal(loaded.regressor.get_weights()[0], d.regressor.get_weights()[0])
    x, y = mnist_small.x_test[:64], mnist_small.y_test[:64]
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        d.evaluate(x, y, verbose=0, return_dict=True), rel=1e-5)


def test_hint_distiller_config_round_trip_and_dense_hints():
    d = kc.distillation.HintDistiller(kc.models.get("mlp_small"), kc.models.get("lenet5"),
                                      student_layer="fc1", teacher_layer="fc2")
    assert isinstance(d.regressor, keras.layers.Dense) and d.regressor.kernel.shape == (32, 84)
    config = d.get_config()
    assert (config["student_layer"], config["teacher_layer"]) == ("fc1", "fc2")
    assert kc.distillation.HintDistiller.from_config(config).get_config() == config


def test_hint_distiller_rejects_bad_layers():
    student, teacher = kc.models.get("tiny_cnn"), kc.models.get("lenet5")
    with pytest.raises(ValueError, match=r"student_layer must name a layer of student 'tiny_cnn' .* got 'conv9'"):
        kc.distillation.HintDistiller(student, teacher, student_layer="conv9", teacher_layer="conv2")
    with pytest.raises(ValueError, match=r"a hint needs \(batch, units\) for both or \(batch, h, w, c\) maps"):
        kc.distillation.HintDistiller(student, teacher, student_layer="conv2", teacher_layer="fc1")
    with pytest.raises(ValueError, match=r"outputs \(None, 28, 28, 4\) and teacher_layer 'conv2' outputs"):
        kc.distillation.HintDistiller(student, teacher, student_layer="conv1", teacher_layer="conv2")
    with pytest.raises(TypeError, match="teacher_layer must be a layer name"):
        kc.distillation.HintDistiller(student, teacher, student_layer="conv2", teacher_layer=3)
    d = kc.distillation.HintDistiller(student, teacher, student_layer="conv2", teacher_layer="conv2")
    with pytest.raises(ValueError, match="hint_weight must be a finite number >= 0, got -1"):
        d.compile(hint_weight=-1)
