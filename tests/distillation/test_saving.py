import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras


def _compiled(teacher):
    kc.keras.utils.set_random_seed(0)
    d = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=0), teacher=teacher, name="kd")
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"], alpha=0.25, temperature=6.0)
    return d


@pytest.fixture(scope="module")
def distiller(mnist_small, trained_lenet):
    """Trained for 8 steps; shared by the tests of this file, which save and load it but never train it."""
    teacher = kc.keras.models.clone_model(trained_lenet)
    teacher.set_weights(trained_lenet.get_weights())
    d = _compiled(teacher)
    d.fit(mnist_small.x_train[:512], mnist_small.y_train[:512], epochs=1, batch_size=64, verbose=0)
    return d


@pytest.mark.slow
def test_save_writes_the_whole_distiller_and_student_save_the_student(distiller, mnist_small, tmp_path):
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    assert isinstance(loaded, kc.distillation.Distiller) and (loaded.alpha, loaded.temperature) == (0.25, 6.0)
    distiller.student.save(tmp_path / "student.keras")
    student = keras.models.load_model(tmp_path / "student.keras")
    assert student.name == "tiny_cnn" and student.count_params() == 2922
    x = mnist_small.x_test[:16]
    np.testing.assert_allclose(student.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"a Distiller saves as .keras or a SavedModel folder"):
        distiller.save(tmp_path / "d.h5")


@pytest.mark.slow
def test_model_checkpoint_resumes_a_distillation(mnist_small, fresh_copy, tmp_path):
    """Case 8: Distiller.save wrote only the student, so ModelCheckpoint checkpointed only the student."""
    d = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=0), teacher=fresh_copy())
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"], alpha=0.3, temperature=2.0)
    x, y = mnist_small.x_train[:256], mnist_small.y_train[:256]
    path = str(tmp_path / "ckpt.keras")
    d.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(path)])
    resumed = keras.models.load_model(path)
    assert isinstance(resumed, kc.distillation.Distiller) and (resumed.alpha, resumed.temperature) == (0.3, 2.0)
    assert resumed.optimizer.iterations.numpy() == 4
    for a, b in zip(d.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    resumed.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert resumed.optimizer.iterations.numpy() == 8


@pytest.mark.slow
def test_savedmodel_before_the_first_predict_and_training_after_loading(mnist_small, fresh_copy, tmp_path):
    d = kc.distillation.Distiller(student=kc.models.get("tiny_cnn", seed=0), teacher=fresh_copy())
    d.compile(metrics=["accuracy"], alpha=0.4, temperature=5.0)
    d.save(tmp_path / "fresh_sm")  # failed: "input shape is not available"
    x, y = mnist_small.x_train[:128], mnist_small.y_train[:128]
    d.fit(x, y, epochs=1, batch_size=64, verbose=0)
    d.save(tmp_path / "trained_sm")
    loaded = keras.models.load_model(tmp_path / "trained_sm")
    assert isinstance(loaded, kc.distillation.Distiller) and (loaded.alpha, loaded.temperature) == (0.4, 5.0)
    np.testing.assert_allclose(loaded.predict(x[:16], verbose=0), d.predict(x[:16], verbose=0), atol=1e-6)
    history = loaded.fit(x, y, epochs=1, batch_size=64, verbose=0)  # failed: "No loss found"
    assert np.isfinite(history.history["distillation_loss"][0])


@pytest.mark.slow
def test_whole_distiller_round_trips_through_save_model(distiller, mnist_small, tmp_path):
    path = tmp_path / "distiller.keras"
    keras.models.save_model(distiller, path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, kc.distillation.Distiller) and loaded.name == "kd"
    assert (loaded.alpha, loaded.temperature) == (0.25, 6.0)
    assert [w.name for w in loaded.trainable_weights] == [w.name for w in loaded.student.trainable_weights]
    for a, b in zip(distiller.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x, y = mnist_small.x_test[:128], mnist_small.y_test[:128]
    before = distiller.evaluate(x, y, verbose=0, return_dict=True)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert after == pytest.approx(before, rel=1e-6)
    # Training resumes with the restored optimizer state.
    assert loaded.optimizer.iterations.numpy() == distiller.optimizer.iterations.numpy() == 8
    loaded.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert loaded.optimizer.iterations.numpy() == 10


def test_get_config_from_config_round_trip(fresh_copy):
    distiller = _compiled(fresh_copy())  # compiled, not trained: the configs are what is compared
    config = distiller.get_config()
    assert set(config) == {"name", "student", "teacher", "alpha", "temperature"}
    clone = kc.distillation.Distiller.from_config(config)
    assert clone.get_config() == config
    assert clone.student.count_params() == distiller.student.count_params()
    assert keras.utils.get_registered_name(kc.distillation.Distiller) == "kcompress>Distiller"
    compile_config = distiller.get_compile_config()
    assert compile_config["alpha"] == 0.25 and compile_config["temperature"] == 6.0
    clone.compile_from_config(compile_config)
    assert (clone.alpha, clone.temperature) == (0.25, 6.0)
    assert isinstance(clone.optimizer, keras.optimizers.Adam)
    assert clone.optimizer.learning_rate.numpy() == pytest.approx(2e-3)


@pytest.mark.slow
def test_pruned_student_distiller_saves_and_loads(mnist_small, fresh_copy, tmp_path):
    student = kc.pruning.prune(kc.models.get("tiny_cnn"), kc.pruning.ConstantSparsity(0.5, begin_step=0))
    d = kc.distillation.Distiller(student=student, teacher=fresh_copy())
    d.compile(alpha=0.5, temperature=2.0)
    d.fit(mnist_small.x_train[:64], mnist_small.y_train[:64], epochs=1, batch_size=64, verbose=0,
          callbacks=kc.pruning.callbacks())
    keras.models.save_model(d, tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    assert kc.pruning.is_pruned(loaded.student)
    x = mnist_small.x_test[:16]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), d.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
