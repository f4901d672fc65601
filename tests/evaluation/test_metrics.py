import numpy as np
import pytest

import kcompress as kc

# LeNet-5 on 28x28x1: conv1 28*28*6*(5*5*1) + conv2 10*10*16*(5*5*6) + 400*120 + 120*84 + 84*10
LENET5_MACS = 117_600 + 240_000 + 48_000 + 10_080 + 840


@pytest.fixture(scope="module")
def float_flat(trained_lenet):
    return kc.export.to_tflite(trained_lenet, verbose=False)


def test_keras_and_flatbuffer_share_keys_and_agree(trained_lenet, float_flat, mnist_small):
    rk = kc.evaluation.evaluate(trained_lenet, mnist_small, latency_runs=20)
    rt = kc.evaluation.evaluate(float_flat, mnist_small, latency_runs=20)
    assert set(rk) == set(rt) == set(kc.evaluation.KEYS)
    assert rk["format"] == "keras" and rt["format"] == "tflite"
    assert rk["num_samples"] == rt["num_samples"] == 1000
    assert rk["accuracy"] > 0.9 and abs(rk["accuracy"] - rt["accuracy"]) <= 0.002
    assert rk["params"] == rt["params"] == 61706
    assert rk["macs"] == rt["macs"] == LENET5_MACS
    assert rk["size_bytes"] == rt["size_bytes"] == len(float_flat)
    assert 0 < rt["gzip_bytes"] < rt["size_bytes"]
    assert rt["latency_ms"] > 0 and rt["throughput_sps"] > 0


def test_accuracy_is_the_fraction_of_correct_labels(float_flat, mnist_small):
    logits = kc.evaluation.predict(float_flat, mnist_small.x_test[:200])
    expected = float(np.mean(np.argmax(logits, -1) == mnist_small.y_test[:200]))
    assert kc.evaluation.evaluate(float_flat, mnist_small, max_samples=200, latency_runs=5)["accuracy"] == expected


def test_nonzero_params_count_zeroed_weights(fresh_copy, mnist_small):
    model = fresh_copy()
    fc1 = model.get_layer("fc1")
    k = fc1.kernel.numpy()
    k[:200] = 0.0  # 200 * 120 weights
    fc1.kernel.assign(k)
    before = kc.evaluation.keras_params(fresh_copy())[1]
    assert kc.evaluation.keras_params(model)[1] == before - 200 * 120 + int(np.count_nonzero(fresh_copy().get_layer("fc1").kernel.numpy()[:200] == 0))
    flat = kc.export.to_tflite(model, verbose=False)
    r = kc.evaluation.evaluate(flat, mnist_small, max_samples=50, latency_runs=5)
    assert r["nonzero_params"] == kc.evaluation.keras_params(model)[1]


def test_int8_flatbuffer_quantizes_inputs_itself(trained_lenet, mnist_small):
    flat = kc.export.to_tflite(trained_lenet, "int8", representative_data=mnist_small.representative(100), verbose=False)
    r = kc.evaluation.evaluate(flat, mnist_small, latency_runs=1)
    rk = kc.evaluation.evaluate(trained_lenet, mnist_small, latency_runs=1)
    assert abs(r["accuracy"] - rk["accuracy"]) <= 0.01
    assert r["size_bytes"] <= 0.3 * rk["size_bytes"]


def test_agreement_of_a_model_with_its_own_float_flatbuffer(trained_lenet, float_flat, mnist_small):
    a = kc.evaluation.agreement(trained_lenet, float_flat, mnist_small, max_samples=300)
    assert a["top1_agreement"] == 1.0 and a["max_logit_error"] < 1e-3
    assert a["keras_accuracy"] == a["tflite_accuracy"]


def test_keras_macs_of_lenet300_100():
    assert kc.evaluation.keras_macs(kc.models.get("lenet300_100")) == 784 * 300 + 300 * 100 + 100 * 10


def test_gzip_size():
    assert kc.evaluation.gzip_size(b"\x00" * 10_000) < 100
    rnd = np.random.default_rng(0).bytes(10_000)
    assert kc.evaluation.gzip_size(rnd) > 10_000


class TestBadInput:
    def test_dataset_type(self, float_flat):
        with pytest.raises(TypeError, match="dataset must be a kcompress.data.Dataset"):
            kc.evaluation.evaluate(float_flat, (np.zeros((1, 28, 28, 1)), np.zeros(1)))

    def test_not_a_flatbuffer(self, mnist_small):
        with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
            kc.evaluation.evaluate(b"definitely not a model", mnist_small)

    @pytest.mark.parametrize("kwargs, match", [
        (dict(max_samples=0), "max_samples must be an int >= 1 or None, got 0"),
        (dict(latency_runs=0), "latency_runs must be an int >= 1, got 0"),
        (dict(num_threads=0), "num_threads must be an int >= 1, got 0"),
        (dict(op_resolver="fast"), "op_resolver must be one of"),
    ])
    def test_bad_options(self, float_flat, mnist_small, kwargs, match):
        with pytest.raises(ValueError, match=match):
            kc.evaluation.evaluate(float_flat, mnist_small, **kwargs)

    def test_predict_shape_mismatch(self, float_flat):
        with pytest.raises(ValueError, match=r"x must have shape \(n, 28, 28, 1\), got \(3, 32, 32, 3\)"):
            kc.evaluation.predict(float_flat, np.zeros((3, 32, 32, 3), np.float32))
