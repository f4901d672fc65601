"""Slim flatbuffers: fewer bytes, the same outputs; per-tensor scales."""

import numpy as np
import pytest

import kcompress as kc

pytestmark = pytest.mark.slow  # trains a model per test or module fixture (seconds each)


@pytest.fixture(scope="module")
def student(mnist_small):
    kc.keras.utils.set_random_seed(0)
    model = kc.models.get("lenet5_student", mnist_small.input_shape, mnist_small.num_classes)
    kc.models.compile_classifier(model, 3e-3)
    kc.models.fit(model, mnist_small, epochs=1, batch_size=128, validation_split=0.0, verbose=0)
    return model


def test_slim_is_smaller_and_computes_the_same(student, mnist_small):
    rep = mnist_small.representative(100)
    full = kc.export.to_tflite(student, "int8", representative_data=rep, verbose=False)
    small = kc.export.slim(full)
    assert len(small) <= len(full) - 1000  # names and metadata of a 13k-parameter net
    assert small == kc.export.to_tflite(student, "int8", representative_data=rep, verbose=False, slim=True)
    x = mnist_small.x_test[:300]
    np.testing.assert_array_equal(kc.evaluation.litert.predict(full, x), kc.evaluation.litert.predict(small, x))
    info_full, info_small = kc.export.describe(full), kc.export.describe(small)
    assert info_small.params == info_full.params and info_small.ops == info_full.ops
    # float32 models too
    f32 = kc.export.to_tflite(student, "float32")
    np.testing.assert_array_equal(kc.evaluation.litert.predict(f32, x), kc.evaluation.litert.predict(kc.export.slim(f32), x))


def test_per_tensor_scales_save_bytes_and_keep_the_model_usable(student, mnist_small):
    rep = mnist_small.representative(100)
    per_channel = kc.export.to_tflite(student, "int8", representative_data=rep, verbose=False, slim=True)
    per_tensor = kc.export.to_tflite(student, "int8", representative_data=rep, verbose=False, slim=True,
                                     per_channel=False)
    # conv1 (8) + conv2 (16) filters: a float32 scale and an int64 zero point each for kernel and bias
    assert len(per_channel) - len(per_tensor) >= 12 * (8 + 16)
    a = kc.evaluation.evaluate(per_channel, mnist_small, latency_runs=1)["accuracy"]
    b = kc.evaluation.evaluate(per_tensor, mnist_small, latency_runs=1)["accuracy"]
    assert abs(a - b) < 0.03


@pytest.mark.parametrize("bad, error", [("model.tflite", TypeError), (b"12345678garbage", ValueError)])
def test_slim_bad_input(bad, error):
    with pytest.raises(error, match="flatbuffer"):
        kc.export.slim(bad)


def test_to_tflite_flags_are_bools(student):
    with pytest.raises(TypeError, match="per_channel must be True or False, got 'no'"):
        kc.export.to_tflite(student, per_channel="no")
    with pytest.raises(TypeError, match="slim must be True or False, got 1"):
        kc.export.to_tflite(student, slim=1)
