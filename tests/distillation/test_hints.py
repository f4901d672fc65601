import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras


@pytest.mark.slow
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


def test_identical_copy_has_zero_hint_and_soft_losses(mnist_small, fresh_copy):
    # Equal shapes: no regressor, the student's own features are compared with the teacher's.
    d = kc.distillation.HintDistiller(fresh_copy(), fresh_copy(), student_layer="fc2", teacher_layer="fc2")
    assert d.regressor is None and d.trainable_weights == d.student.trainable_weights
    d.compile(alpha=0.5, temperature=1.0, hint_weight=0.1)
    logs = d.evaluate(mnist_small.x_test[:128], mnist_small.y_test[:128], verbose=0, return_dict=True)
    assert logs["hint_loss"] == pytest.approx(0.0, abs=1e-9)
    assert logs["distillation_loss"] == pytest.approx(0.0, abs=1e-6)
    assert logs["loss"] == pytest.approx(0.5 * logs["student_loss"], rel=1e-5)


@pytest.mark.slow
def test_pruned_copy_recovers_with_identity_hints_in_one_fit(mnist_small, fresh_copy):
    teacher = fresh_copy()
    kc.keras.utils.set_random_seed(0)
    pruned = kc.pruning.prune(fresh_copy(), kc.pruning.ConstantSparsity(0.8))
    # "fc2" names the layer inside the pruning wrapper.
    d = kc.distillation.HintDistiller(pruned, teacher, student_layer="fc2", teacher_layer="fc2")
    assert d.regressor is None
    d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.5, temperature=1.0, hint_weight=0.1)
    x, y = mnist_small.x_train[:2000], mnist_small.y_train[:2000]
    history = d.fit(x, y, epochs=3, batch_size=64, verbose=0, validation_split=0.1,
                    callbacks=kc.pruning.callbacks(per_layer=False)).history
    assert history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    # Pruning 80% at the first step moved fc2 away from the teacher's; training brings it back.
    assert history["val_hint_loss"][-1] < 0.7 * history["val_hint_loss"][0]
    small = kc.pruning.strip(pruned)
    accuracy = np.mean(np.argmax(small.predict(mnist_small.x_test, verbose=0), -1) == mnist_small.y_test)
    assert accuracy > 0.9
    for a, b in zip(teacher.get_weights(), fresh_copy().get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_regressor_argument():
    student, teacher = kc.models.get("lenet5"), kc.models.get("lenet5", seed=1)
    learned = kc.distillation.HintDistiller(student, teacher, "fc2", "fc2", regressor="learned")
    assert isinstance(learned.regressor, keras.layers.Dense) and learned.regressor.kernel.shape == (84, 84)
    config = learned.get_config()
    assert config["regressor"] == "learned"
    assert kc.distillation.HintDistiller.from_config(config).regressor is not None
    with pytest.raises(ValueError, match=r"regressor='identity' needs equal feature shapes, got student_layer 'fc1'"):
        kc.distillation.HintDistiller(student, teacher, "fc1", "fc2", regressor="identity")
    with pytest.raises(ValueError, match=r"regressor must be one of \['auto', 'learned', 'identity'\], got 'none'"):
        kc.distillation.HintDistiller(student, teacher, "fc2", "fc2", regressor="none")
