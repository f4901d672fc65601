import os

import numpy as np
import pytest

import kcompress as kc

WEIGHT_DTYPES = {
    "float32": {"float32"},
    "dynamic": {"int8", "float32"},
    "int8": {"int8", "int32"},
    "float16": {"float16"},
    "int16x8": {"int8", "int64"},
}
INPUT_DTYPES = {"float32": "float32", "dynamic": "float32", "int8": "int8", "float16": "float32", "int16x8": "float32"}


@pytest.fixture(scope="module")
def calibration(mnist_small):
    return mnist_small.representative(100)


@pytest.mark.parametrize("mode", kc.export.MODES)
def test_every_mode_converts_runs_and_agrees(mode, trained_lenet, mnist_small, calibration):
    flat = kc.export.to_tflite(trained_lenet, mode, representative_data=calibration, verbose=False)
    info = kc.export.describe(flat)
    assert set(info.weight_dtypes) == WEIGHT_DTYPES[mode]
    assert info.inputs[0].dtype.name == INPUT_DTYPES[mode] and info.inputs[0].shape == (1, 28, 28, 1)
    assert info.params == 61706
    agree = kc.evaluation.agreement(trained_lenet, flat, mnist_small, max_samples=500)
    assert agree["top1_agreement"] >= 0.98, agree
    assert abs(agree["tflite_accuracy"] - agree["keras_accuracy"]) <= 0.01


@pytest.mark.slow
def test_quantized_modes_are_smaller(trained_lenet, calibration):
    sizes = {m: len(kc.export.to_tflite(trained_lenet, m, representative_data=calibration, verbose=False))
             for m in ("float32", "float16", "int8")}
    assert sizes["int8"] <= 0.3 * sizes["float32"]
    assert sizes["float16"] <= 0.55 * sizes["float32"]


@pytest.mark.slow
def test_uint8_io_and_int16_io(trained_lenet, mnist_small, calibration):
    flat = kc.export.to_tflite(trained_lenet, "int8", representative_data=calibration, io_type="uint8", verbose=False)
    info = kc.export.describe(flat)
    assert info.inputs[0].dtype == np.uint8 and info.outputs[0].dtype == np.uint8
    assert kc.evaluation.agreement(trained_lenet, flat, mnist_small, max_samples=300)["top1_agreement"] >= 0.98
    flat16 = kc.export.to_tflite(trained_lenet, "int16x8", representative_data=calibration, io_type="int16", verbose=False)
    assert kc.export.describe(flat16).inputs[0].dtype == np.int16


@pytest.mark.slow
def test_representative_data_forms(trained_lenet, mnist_small):
    batches = [mnist_small.x_train[i : i + 25] for i in range(0, 100, 25)]
    pairs = mnist_small.train(batch_size=50).take(2)
    for data in (batches, lambda: iter(batches), pairs, mnist_small, list(mnist_small.x_train[:20])):
        flat = kc.export.to_tflite(trained_lenet, "int8", representative_data=data, verbose=False)
        assert kc.export.describe(flat).inputs[0].dtype == np.int8


@pytest.mark.slow  # two int8 conversions and a SavedModel (seconds)
def test_the_variable_holder_converts_as_the_keras_model_would(trained_lenet, calibration, tmp_path, monkeypatch):
    from kcompress._keras import tf
    from kcompress.export import tflite

    # The holder must save as a SavedModel itself: the converter falls back to another path silently.
    spec = tflite.input_signature(trained_lenet)
    concrete = tf.function(lambda x: trained_lenet(x, training=False)).get_concrete_function(spec)
    tf.saved_model.save(tflite._variable_holder(trained_lenet), str(tmp_path / "holder"), signatures=concrete)
    fast = kc.export.to_tflite(trained_lenet, "int8", representative_data=calibration, verbose=False)
    monkeypatch.setattr(tflite, "_variable_holder", lambda model: model)  # the converter given the Keras model
    keras_path = kc.export.to_tflite(trained_lenet, "int8", representative_data=calibration, verbose=False)
    assert fast == keras_path


@pytest.mark.slow  # two conversions; the fast subset converts sparse in test_micro.py
def test_sparse_encoding_shrinks_a_mostly_zero_model(fresh_copy):
    model = fresh_copy()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            k = layer.kernel.numpy()
            k[rng.random(k.shape) < 0.8] = 0.0
            layer.kernel.assign(k)
    dense = kc.export.to_tflite(model, "float32", verbose=False)
    sparse = kc.export.to_tflite(model, "float32", sparse=True, verbose=False)
    assert kc.export.describe(sparse).sparse_tensors >= 1
    assert len(sparse) < 0.7 * len(dense)
    x = np.random.default_rng(1).random((20, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(kc.evaluation.predict(sparse, x), kc.evaluation.predict(dense, x), atol=1e-4)


class TestBadInput:
    def test_unknown_mode(self, trained_lenet):
        with pytest.raises(ValueError, match=r"mode must be one of \['float32', 'dynamic', 'int8', 'float16', 'int16x8'\], got 'int4'"):
            kc.export.to_tflite(trained_lenet, "int4")

    @pytest.mark.parametrize("mode", ["int8", "int16x8"])
    def test_missing_calibration(self, trained_lenet, mode):
        with pytest.raises(ValueError, match=f"mode='{mode}' needs representative_data"):
            kc.export.to_tflite(trained_lenet, mode)

    def test_wrong_calibration_shape_fails_before_conversion(self, trained_lenet, monkeypatch):
        monkeypatch.setattr(kc.export.tflite.tf.lite.TFLiteConverter, "from_concrete_functions",
                            lambda *a, **k: pytest.fail("conversion started"))
        with pytest.raises(ValueError, match=r"item 0 has shape \(10, 32, 32, 3\); the model expects \(batch, 28, 28, 1\)"):
            kc.export.to_tflite(trained_lenet, "int8", representative_data=np.zeros((10, 32, 32, 3), np.float32))

    def test_wrong_calibration_dtype(self, trained_lenet):
        with pytest.raises(TypeError, match="item 0 has dtype uint8; calibration needs float images"):
            kc.export.to_tflite(trained_lenet, "int8", representative_data=np.zeros((10, 28, 28, 1), np.uint8))

    def test_empty_calibration(self, trained_lenet):
        with pytest.raises(ValueError, match="representative_data is empty"):
            kc.export.to_tflite(trained_lenet, "int8", representative_data=[])

    def test_bad_io_type(self, trained_lenet):
        with pytest.raises(ValueError, match=r"io_type for mode='float32' must be one of \['float32'\], got 'int8'"):
            kc.export.to_tflite(trained_lenet, "float32", io_type="int8")

    def test_not_a_model(self):
        with pytest.raises(TypeError, match="must be a tf_keras.Model"):
            kc.export.to_tflite("model.h5")


class TestSave:
    def test_writes_exact_bytes_atomically(self, trained_lenet, tmp_path):
        flat = kc.export.to_tflite(trained_lenet, verbose=False)
        path = kc.export.save(flat, tmp_path / "sub" / "m.tflite")
        assert open(path, "rb").read() == flat
        assert os.listdir(tmp_path / "sub") == ["m.tflite"]

    def test_failed_write_keeps_old_file_and_leaves_no_temp(self, trained_lenet, tmp_path, monkeypatch):
        flat = kc.export.to_tflite(trained_lenet, verbose=False)
        target = tmp_path / "m.tflite"
        target.write_bytes(b"old")

        def boom(src, dst):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", boom)
        with pytest.raises(OSError, match="disk full"):
            kc.export.save(flat, target)
        assert target.read_bytes() == b"old"
        assert os.listdir(tmp_path) == ["m.tflite"]

    def test_rejects_non_flatbuffer(self, tmp_path):
        with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
            kc.export.save(b"0123456789abcdef", tmp_path / "x.tflite")
        with pytest.raises(TypeError, match="must be the bytes of a .tflite flatbuffer, got str"):
            kc.export.save("model", tmp_path / "x.tflite")
