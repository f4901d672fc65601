"""Export and evaluation of users' own models: subclassed models, calibration data on the wrong scale."""

import warnings

import numpy as np
import pytest
import user_models as um

import kcompress as kc


@pytest.fixture(scope="module")
def fashion():
    return kc.data.load("fashion_mnist").take(train=2000, test=500)


@pytest.fixture(scope="module")
def trained(fashion):
    return {name: um.train(um.BUILDERS[name](0), fashion, epochs=1, batch_size=32)
            for name in ("sequential_cnn", "residual_net")}


@pytest.mark.slow
@pytest.mark.parametrize("name, evidence", [("sequential_cnn", "look like raw pixels"),
                                            ("residual_net", "first BatchNormalization")])
def test_calibration_on_raw_pixels_warns(trained, fashion, name, evidence):
    """Case 5: 0-255 calibration for a model trained on [0, 1] gave a near-chance int8 model silently."""
    model = trained[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = kc.export.to_tflite(model, "int8", representative_data=fashion.representative(100), verbose=False)
    with pytest.warns(UserWarning, match=rf"representative_data .*\[0, 255\].*{evidence}"):
        bad = kc.export.to_tflite(model, "int8", representative_data=np.round(fashion.representative(100) * 255),
                                  verbose=False)
    if name == "sequential_cnn":
        good_acc = kc.evaluation.evaluate(good, fashion, latency_runs=1)["accuracy"]
        bad_acc = kc.evaluation.evaluate(bad, fashion, latency_runs=1)["accuracy"]
        assert good_acc > 0.6 and bad_acc < good_acc - 0.2, (good_acc, bad_acc)


def test_model_with_its_own_rescaling_is_not_flagged(fashion):
    keras = kc.keras
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kc.export.to_tflite(model, "int8", representative_data=np.round(fashion.representative(20) * 255),
                            verbose=False)


@pytest.mark.slow
def test_subclassed_model_exports_and_evaluates(fashion):
    """Case 7: to_tflite / evaluate crashed with "object of type 'NoneType' has no len()"."""
    model = um.train(um.subclassed(0), fashion, epochs=1)
    flat = kc.export.to_tflite(model, "int8", representative_data=fashion.representative(50), verbose=False)
    info = kc.export.describe(flat)
    assert info.inputs[0].shape == (1, 28, 28, 1) and info.outputs[0].shape == (1, 10)
    keras_result = kc.evaluation.evaluate(model, fashion, latency_runs=2)
    flat_result = kc.evaluation.evaluate(flat, fashion, latency_runs=2)
    assert keras_result["accuracy"] > 0.6
    assert abs(flat_result["accuracy"] - keras_result["accuracy"]) < 0.02
    assert keras_result["macs"] == flat_result["macs"] == 26 * 26 * 8 * 9 + 13 * 13 * 8 * 10
    agree = kc.evaluation.agreement(model, kc.export.to_tflite(model, verbose=False), fashion)
    assert agree["top1_agreement"] == 1.0


def test_unbuilt_subclassed_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"has never been called, so its input shape is unknown"):
        kc.export.to_tflite(um.subclassed(0, build=False))
