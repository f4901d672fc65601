"""Case 10: every micro bundle runs in the TFLite Micro interpreter (tflite-micro, from the test extra) and
matches LiteRT; the measured arena sits next to the estimate."""

import numpy as np
import pytest
import user_models as um

import kcompress as kc

pytestmark = pytest.mark.slow  # trains a model per test or module fixture (seconds each)


def _litert_raw(flat, x):
    """LiteRT's outputs in the output tensor's own dtype (int8 for an int8 model), row by row."""
    interp = kc.evaluation.make_interpreter(flat)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = inp["quantization"]
    q = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
    rows = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], q[i : i + 1])
        interp.invoke()
        rows.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


@pytest.fixture(scope="module")
def int8_models(trained_lenet, mnist_small):
    models = {"lenet5": trained_lenet}
    for name in ("sequential_cnn", "residual_net", "depthwise_net", "softmax_model"):
        # Eight steps, eagerly (no train function to trace): enough for decided int8 outputs to compare.
        models[name] = um.train(um.BUILDERS[name](0), mnist_small, epochs=1, n=512, eagerly=True)
    rep = mnist_small.representative(100)
    return {name: kc.export.to_tflite(m, "int8", representative_data=rep, verbose=False) for name, m in models.items()}


@pytest.mark.parametrize("name", ["lenet5", "sequential_cnn", "residual_net", "depthwise_net", "softmax_model"])
def test_bundle_runs_in_tflite_micro_like_litert(int8_models, mnist_small, tmp_path, name):
    flat = int8_models[name]
    bundle = kc.export.to_micro(flat, tmp_path / "model_data")
    # The measured arena, next to the estimate: the estimate is the safe size to start with.
    assert bundle.measured_arena_bytes == kc.export.measure_arena(flat)
    assert bundle.measured_arena_bytes <= bundle.arena_bytes <= 1.25 * bundle.measured_arena_bytes, (
        name, bundle.measured_arena_bytes, bundle.arena_bytes)
    x = mnist_small.x_test[:100]
    micro = kc.export.run_micro(flat, x, arena_size=bundle.arena_bytes)  # runs in the arena firmware would get
    litert = _litert_raw(flat, x)
    assert micro.dtype == litert.dtype == np.int8 and micro.shape == litert.shape == (100, 10)
    assert np.abs(micro.astype(int) - litert.astype(int)).max() <= 1, name
    assert np.mean(np.argmax(micro, -1) == np.argmax(litert, -1)) >= 0.99


def test_too_small_an_arena_is_a_clear_error(int8_models, mnist_small):
    flat = int8_models["lenet5"]
    with pytest.raises(ValueError, match=r"cannot run this flatbuffer with arena_size=2048.*measure_arena"):
        kc.export.run_micro(flat, mnist_small.x_test[:2], arena_size=2048)
    with pytest.raises(ValueError, match=r"arena_size must be an int >= 1024 or None, got 100"):
        kc.export.run_micro(flat, mnist_small.x_test[:2], arena_size=100)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 28, 28, 1\)"):
        kc.export.run_micro(flat, mnist_small.x_test[:2, :10])
