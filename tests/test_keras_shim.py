import os
import subprocess
import sys

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


def test_tf_imported_first_still_gives_tf_keras_models():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = (
        "import tensorflow as tf\n"
        "import kcompress as kc, tf_keras\n"
        "m = kc.models.get('lenet5')\n"
        "assert isinstance(m, tf_keras.Model), type(m)\n"
        "assert kc.keras is tf_keras or kc.keras.__name__.startswith('tf_keras')\n"
        "print('OK', type(m).__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK tf_keras" in out.stdout


def test_keras3_model_is_detected():
    assert is_keras3_model(_keras3_model())
    assert not is_keras3_model(kc.models.get("tiny_cnn"))


@pytest.mark.parametrize(
    "call",
    [
        lambda m, ds: kc.export.to_tflite(m),
        lambda m, ds: kc.evaluation.evaluate(m, ds),
        lambda m, ds: kc.evaluation.keras_macs(m),
        lambda m, ds: kc.models.compile_classifier(m),
    ],
    ids=["to_tflite", "evaluate", "keras_macs", "compile_classifier"],
)
def test_keras3_model_raises_clear_type_error(call, mnist_small):
    with pytest.raises(TypeError, match=r"Keras 3 model.*tf_keras"):
        call(_keras3_model(), mnist_small)


def test_non_model_raises_type_error():
    with pytest.raises(TypeError, match="must be a tf_keras.Model, got numpy.ndarray"):
        check_model(np.zeros(3))
