"""from_keras3 / to_keras3: equal outputs, kept names and weights, .keras files, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import keras  # Keras 3
import numpy as np
import pytest
from k3_models import BUILDERS, lenet5_k3, max_abs_diff, nested_k3, residual_k3

import kcompress as kc
from kcompress.keras3 import from_keras3, to_keras3


def _leaf_names(model, lib):
    out = []
    for layer in model.layers:
        out.append(layer.name)
        if isinstance(layer, lib.Model):
            out.extend(_leaf_names(layer, lib))
    return out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_from_keras3_matches_to_1e5_and_to_keras3_round_trips_to_1e6_on_256_inputs(name, images):
    # Called in inference mode, not predict(): a predict function traced per model was most of the
    # time (graph-mode predict of converted models: the slow test below, and every entry point test).
    k3 = BUILDERS[name]()
    expected = k3(images, training=False)
    tk = from_keras3(k3)
    assert isinstance(tk, kc.keras.Model)
    diff = max_abs_diff(expected, tk(images, training=False))
    assert diff <= 1e-5, diff
    back = to_keras3(tk)
    assert isinstance(back, keras.Model) and not isinstance(back, kc.keras.Model)
    diff = max_abs_diff(expected, back(images, training=False))
    assert diff <= 1e-6, diff
    assert type(back) is type(k3)  # Sequential stays Sequential, Functional stays Functional
    assert [w.shape for w in back.weights] == [w.shape for w in k3.weights]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_names_structure_and_weights_are_kept(name):
    k3 = BUILDERS[name]()
    tk = from_keras3(k3)
    assert tk.name == k3.name
    assert _leaf_names(tk, kc.keras) == _leaf_names(k3, keras)
    assert isinstance(tk, kc.keras.Sequential) == isinstance(k3, keras.Sequential)
    k3_weights, tk_weights = k3.get_weights(), tk.get_weights()
    assert len(k3_weights) == len(tk_weights) > 0
    assert all(np.array_equal(a, b) for a, b in zip(k3_weights, tk_weights, strict=True))


def test_nested_sub_models_stay_nested_and_share_weights(images):
    k3 = nested_k3()
    tk = from_keras3(k3)
    block, head = tk.get_layer("block"), tk.get_layer("head")
    assert isinstance(block, kc.keras.Model) and isinstance(head, kc.keras.Sequential)
    assert [layer.name for layer in block.layers] == ["block_in", "block_conv", "block_bn", "block_relu"]
    # one block, called twice: 2 conv weights + 4 BN weights, not twice as many
    assert len(block.weights) == 6
    assert len(tk.outputs) == 2
    # the hint / layers= lookups kcompress does by name find the nested layers
    assert kc.pruning.prune(tk, kc.pruning.ConstantSparsity(0.5, begin_step=0), layers=["block_conv", "head_fc"])


def test_layer_settings_survive_the_conversion():
    tk = from_keras3(residual_k3())
    stem, bn, relu = tk.get_layer("stem"), tk.get_layer("stem_bn"), tk.get_layer("stem_relu")
    assert stem.strides == (2, 2) and stem.use_bias is False and stem.padding == "same"
    assert float(stem.kernel_regularizer.l2) == pytest.approx(1e-4)
    assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-3)
    assert float(relu.max_value) == 6.0
    assert tk.get_layer("dropout").rate == pytest.approx(0.25)
    rescale = tk.get_layer("rescale")
    assert (float(rescale.scale), float(rescale.offset)) == (2.0, -1.0)
    back = to_keras3(tk)
    assert float(back.get_layer("stem").kernel_regularizer.l2) == pytest.approx(1e-4)
    assert back.get_layer("stem_bn").momentum == pytest.approx(0.9)


def test_training_flag_of_dropout_and_batchnorm_behaves_like_keras3(images):
    """In training mode BN uses batch statistics and Dropout drops: same as Keras 3 (dropout off here)."""
    k3 = residual_k3()
    k3.get_layer("dropout").rate = 0.0
    tk = from_keras3(k3)
    diff = float(np.max(np.abs(np.asarray(k3(images[:64], training=True)) - tk(images[:64], training=True).numpy())))
    assert diff <= 1e-4, diff


def test_keras3_model_loaded_from_a_keras_file_converts_the_same(tmp_path, images):
    k3 = residual_k3()
    path = tmp_path / "residual.keras"
    k3.save(path)
    loaded = keras.saving.load_model(path)
    tk = from_keras3(loaded)
    assert max_abs_diff(k3(images, training=False), tk(images, training=False)) <= 1e-5
    pruned = kc.pruning.prune(loaded, kc.pruning.ConstantSparsity(0.5, begin_step=0))
    assert kc.pruning.is_pruned(pruned)


# One fresh interpreter checks two things (each interpreter costs seconds of imports): plain Keras 3
# loads the .keras file without kcompress, and kcompress imported after TensorFlow and Keras 3 (and
# without TF_USE_LEGACY_KERAS set) still builds tf_keras models (the shim's import-order promise).
_RELOAD = """
import json, sys
import tensorflow
import keras, numpy as np
assert "kcompress" not in sys.modules and "tf_keras" not in sys.modules
m = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))
k = m.get_layer("fc1").kernel.numpy()
info = {"class": type(m).__name__, "zeros": float(np.mean(k == 0)), "tf_keras": "tf_keras" in sys.modules}
import kcompress as kc, tf_keras
tk = kc.models.get("lenet5")
info["then_kcompress"] = [isinstance(tk, tf_keras.Model), type(tk).__module__,
                          kc.keras is tf_keras or kc.keras.__name__.startswith("tf_keras")]
print(json.dumps(info))
"""


@pytest.mark.slow
def test_pruned_stripped_model_goes_back_to_keras3_and_reloads_without_kcompress(mnist_small, images, tmp_path):
    pruned = kc.pruning.prune(lenet5_k3(), kc.pruning.ConstantSparsity(0.75, begin_step=0))
    kc.models.compile_classifier(pruned, 1e-3)
    pruned.run_eagerly = True  # the schedule prunes at the first step: two steps, and no train function to trace
    pruned.fit(mnist_small.x_train[:128], mnist_small.y_train[:128], epochs=1, batch_size=64, verbose=0,
               callbacks=kc.pruning.callbacks())
    stripped = kc.pruning.strip(pruned)
    back = to_keras3(stripped)
    assert max_abs_diff(stripped.predict(images, verbose=0), back.predict(images, verbose=0)) <= 1e-6
    path, x_path, y_path = tmp_path / "pruned.keras", tmp_path / "x.npy", tmp_path / "y.npy"
    back.save(path)
    np.save(x_path, images)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", _RELOAD, str(path), str(x_path), str(y_path)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["class"] == "Sequential" and not info["tf_keras"]
    assert info["zeros"] == pytest.approx(0.75, abs=0.01)  # the zeros came along
    assert float(np.max(np.abs(np.load(y_path) - stripped.predict(images, verbose=0)))) <= 1e-6
    is_tf_keras, module, shim = info["then_kcompress"]
    assert is_tf_keras and module.startswith("tf_keras") and shim, info["then_kcompress"]


def test_to_keras3_result_reloads_in_process_with_equal_outputs(tmp_path, images):
    tk = from_keras3(nested_k3())
    back = to_keras3(tk)
    back.save(tmp_path / "nested.keras")
    again = keras.saving.load_model(tmp_path / "nested.keras")
    assert max_abs_diff(tk(images, training=False), again(images, training=False)) <= 1e-6


def test_to_keras3_of_a_kcompress_zoo_model(images):
    tk = kc.models.get("lenet5", (28, 28, 1), 10)
    back = to_keras3(tk)
    assert max_abs_diff(tk(images, training=False), back(images, training=False)) <= 1e-6
    assert [layer.name for layer in back.layers] == [layer.name for layer in tk.layers]


# ---------------------------------------------------------------------------------------- errors


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="my_subclassed")
        self.fc = keras.layers.Dense(10)

    def call(self, x):
        return self.fc(keras.ops.reshape(x, (-1, 784)))


def test_subclassed_keras3_model_gets_a_clear_error():
    model = _Subclassed()
    model(np.zeros((1, 28, 28, 1), "float32"))
    with pytest.raises(ValueError, match="subclassed Keras 3 model") as err:
        from_keras3(model)
    assert "my_subclassed" in str(err.value) and "_Subclassed" in str(err.value)
    assert "keras.Sequential" in str(err.value) and "keras.Model(inputs, outputs)" in str(err.value)
    with pytest.raises(ValueError, match="model is a Keras 3 model that kcompress cannot convert.*subclassed"):
        kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=0))


def test_unsupported_keras3_layer_is_named_with_the_supported_list():
    inputs = keras.Input((10,), name="tokens", dtype="int32")
    x = keras.layers.Embedding(100, 8, name="embed")(inputs)
    x = keras.layers.LSTM(4, name="rnn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError) as err:
        from_keras3(model)
    msg = str(err.value)
    assert "'embed'" in msg and "keras.src.layers.core.embedding.Embedding" in msg
    assert "Supported layers: InputLayer, Conv1D, Conv2D" in msg and "DepthwiseConv2D" in msg
    with pytest.raises(ValueError, match="to_tflite|model_or_flatbuffer|model is a Keras 3 model.*'embed'"):
        kc.export.to_tflite(model)


def test_activation_without_an_identical_counterpart_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="hard_sigmoid", name="hs")])
    with pytest.raises(ValueError, match=r"'hs'.*activation 'hard_sigmoid' has no identical counterpart.*relu6"):
        from_keras3(model)


def test_keras3_ops_in_the_graph_are_refused():
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(3, name="fc")(keras.ops.square(inputs))
    with pytest.raises(ValueError, match="is an operation, not a layer"):
        from_keras3(keras.Model(inputs, outputs))


def test_quantized_and_lora_keras3_layers_are_refused():
    quantized = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="q")])
    quantized.quantize("int8")
    with pytest.raises(ValueError, match=r"'q'.*quantized by Keras 3 \(mode 'int8'\).*quantize_aware"):
        from_keras3(quantized)
    lora = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="lora")])
    lora.get_layer("lora").enable_lora(2)
    with pytest.raises(ValueError, match=r"'lora'.*lora_rank=2"):
        from_keras3(lora)


def test_unbuilt_keras3_sequential_is_refused():
    with pytest.raises(ValueError, match="not built.*Input"):
        from_keras3(keras.Sequential([keras.layers.Dense(3)], name="unbuilt"))


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="already a tf_keras model"):
        from_keras3(kc.models.get("tiny_cnn"))
    with pytest.raises(TypeError, match="must be a Keras 3 keras.Model.*numpy.ndarray"):
        from_keras3(np.zeros(3))
    with pytest.raises(TypeError, match="must be a tf_keras.Model.*It already is a Keras 3 model"):
        to_keras3(lenet5_k3())


def test_to_keras3_asks_to_strip_pruning_wrappers_first():
    pruned = kc.pruning.prune(kc.models.get("lenet5"), kc.pruning.ConstantSparsity(0.5, begin_step=0))
    with pytest.raises(ValueError, match=r"PruneLowMagnitude.*strip it first: to_keras3\(kcompress.pruning.strip"):
        to_keras3(pruned)


def test_to_keras3_refuses_a_qat_model_with_the_way_out():
    qat = kc.quantization.quantize_aware(kc.models.get("mlp_tiny"))  # the smallest zoo model: QAT wraps it fast
    with pytest.raises(ValueError, match=r"training wrapper Quantize.*strip it first.*QAT.*to_tflite"):
        to_keras3(qat)
