"""Case 8: a QAT model saves and loads in .keras, .h5 and SavedModel (with or without a scope) and keeps training."""

import numpy as np
import pytest
import user_models as um

import kcompress as kc

pytestmark = pytest.mark.slow  # trains a model per test or module fixture (seconds each)

keras = kc.keras


@pytest.fixture(scope="module")
def qat(mnist_small):
    model = um.magnitude_prune(um.depthwise_net(0), 0.7)  # BN, a Conv2D -> ReLU() layer, depthwise, separable
    qat = kc.quantization.quantize_aware(model, preserve_sparsity=True)
    kc.models.compile_classifier(qat, 1e-4)
    qat.fit(mnist_small.x_train[:256], mnist_small.y_train[:256], epochs=1, batch_size=64, verbose=0)
    return qat


@pytest.mark.parametrize("name", ["qat.keras", "qat.h5", "qat_savedmodel"])
def test_qat_model_round_trips_and_keeps_training(qat, mnist_small, tmp_path, name):
    path = tmp_path / name
    qat.save(path)
    loaded = keras.models.load_model(path)  # without a scope: the quantizers and configs are registered
    x = mnist_small.x_test[:64]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
    sparsity = kc.quantization.kernel_sparsity(loaded)
    assert sparsity == pytest.approx(kc.quantization.kernel_sparsity(qat)) and sparsity > 0.69
    if name.endswith(".keras"):  # and with kcompress's scope
        with kc.quantization.quantize_scope():
            scoped = keras.models.load_model(path)
        np.testing.assert_allclose(scoped.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
        assert kc.quantization.kernel_sparsity(scoped) == pytest.approx(sparsity)
    loaded.fit(mnist_small.x_train[:128], mnist_small.y_train[:128], epochs=1, batch_size=64, verbose=0)
    assert kc.quantization.kernel_sparsity(loaded) == pytest.approx(sparsity)  # zeros kept after reloading
    if name.endswith(".keras"):
        flat = kc.export.to_tflite(loaded, "int8", verbose=False)
        assert kc.export.describe(flat).inputs[0].dtype == np.int8
