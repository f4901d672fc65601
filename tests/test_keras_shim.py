import os

import keras as keras3  # Keras 3, installed alongside TensorFlow
import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import check_model, is_keras3_model


def _keras3_model():
    return keras3.Sequential([keras3.Input((28, 28, 1)), keras3.layers.Flatten(), keras3.layers.Dense(10)])


def test_legacy_keras_flag_is_set():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert kc.keras.__version__.startswith("2.")


def test_the_shims_tensorflow_and_keras_are_public():
    import tensorflow
    import tf_keras

    assert kc.tf is tensorflow and kc.keras is tf_keras
    assert {"tf", "keras"} <= set(kc.__all__)


def test_public_names_leak_no_internals_and_experiments_use_the_public_shim():
    import pathlib
    import re

    packages = [getattr(kc, name) for name in kc.__all__
                if getattr(getattr(kc, name), "__name__", "").startswith("kcompress.")]
    assert len(packages) >= 12
    for module in packages:
        name = module.__name__
        for public in module.__all__:
            assert not public.startswith("_") and not re.search(r"kmeans|huffman|SparsityPreserving", public), (
                f"{name}.__all__ exports the internal {public!r}")
            assert hasattr(module, public), f"{name}.__all__ names {public!r}, which it lacks"
    root = pathlib.Path(__file__).resolve().parents[1]
    for path in [*root.glob("experiments/*.py"), *root.glob("notebooks/*.ipynb")]:
        assert not re.search(r"kcompress\._keras|from kcompress import _keras", path.read_text()), (
            f"{path.name} imports kcompress._keras; use kc.tf / kc.keras")


# TensorFlow imported before kcompress (TF_USE_LEGACY_KERAS unset) still gives tf_keras models: checked in
# the fresh interpreter of tests/keras3/test_convert.py::test_pruned_stripped_model_goes_back_to_keras3_and_
# reloads_without_kcompress, which imports TensorFlow and Keras 3 first (one interpreter's imports, not two).


def test_keras3_model_is_detected():
    assert is_keras3_model(_keras3_model())
    assert not is_keras3_model(kc.models.get("tiny_cnn"))


@pytest.mark.parametrize(
    "call",
    [
        lambda m, ds: len(kc.export.to_tflite(m)) > 0,
        lambda m, ds: kc.evaluation.evaluate(m, ds, latency_runs=1)["params"],
        lambda m, ds: kc.evaluation.keras_macs(m),
        lambda m, ds: kc.models.compile_classifier(m).count_params(),
    ],
    ids=["to_tflite", "evaluate", "keras_macs", "compile_classifier"],
)
def test_keras3_model_is_converted_not_refused(call, mnist_small):
    """Entry points used to refuse Keras 3 models; now they convert them (tests/keras3 covers each one)."""
    k3 = _keras3_model()
    assert call(k3, mnist_small) == call(kc.keras3.from_keras3(k3), mnist_small)


def test_check_model_returns_tf_keras_models_unchanged_and_converts_keras3():
    tk = kc.models.get("tiny_cnn")
    assert check_model(tk) is tk
    converted = check_model(_keras3_model(), "student")
    assert isinstance(converted, kc.keras.Model) and not is_keras3_model(converted)


def test_non_model_raises_type_error():
    with pytest.raises(TypeError, match="must be a tf_keras.Model, got numpy.ndarray.*Keras 3 keras.Model"):
        check_model(np.zeros(3))
    with pytest.raises(TypeError, match=r"got keras.*Dense \(a Keras 3 layer, not a model\)"):
        check_model(keras3.layers.Dense(3))


def test_keras3_fit_with_the_accuracy_string_works_next_to_kcompress(mnist_small):
    """Issue 13's note: Keras 3 fit(metrics=["accuracy"]) was reported to fail with "dtype='string' is
    not a valid dtype for Keras type promotion". With keras 3.15 / TensorFlow 2.21 it works, here
    with TF_USE_LEGACY_KERAS=1 set and tf_keras loaded; the other tests use metric objects anyway."""
    model = keras3.Sequential([keras3.Input((28, 28, 1)), keras3.layers.Flatten(), keras3.layers.Dense(10)])
    model.compile("adam", keras3.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(mnist_small.x_train[:512], mnist_small.y_train[:512], epochs=1, batch_size=128, verbose=0)
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert 0.0 < history.history["accuracy"][0] <= 1.0


def test_shared_model_helpers_copy_and_walk_nested_models():
    from kcompress._keras import all_layers, copy_model, leaf_layers

    keras = kc.keras
    block = keras.Sequential([keras.layers.Dense(4, name="inner")], name="block")
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(block(inputs)))
    assert [layer.name for layer in all_layers(model)] == ["x", "block", "inner", "out"]
    assert [layer.name for layer in leaf_layers(model)] == ["x", "inner", "out"]
    copy = copy_model(model)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(copy(x), model(x))
    copy.get_layer("out").kernel.assign(np.zeros((4, 2), np.float32))  # independent weights
    assert np.any(model.get_layer("out").kernel.numpy() != 0)


def test_save_model_atomic_keeps_the_old_file_when_saving_fails(tmp_path):
    from kcompress._files import save_model_atomic

    model = kc.models.get("mlp_tiny")
    path = tmp_path / "deep" / "m.keras"
    assert save_model_atomic(model, path) == str(path)
    before = path.read_bytes()

    class Broken(kc.keras.Model):
        def save(self, *a, **k):
            with open(a[0], "wb") as f:
                f.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model_atomic(Broken(), path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["m.keras"]
