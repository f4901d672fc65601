"""Every public entry point that takes a model accepts a Keras 3 model and returns tf_keras models.

Each test compares against the same call on ``from_keras3(model)``, or checks the
numbers the entry point promises, so a conversion that merely ran would not pass.
"""

from __future__ import annotations

import logging

import keras  # Keras 3
import numpy as np
import pytest
from k3_models import lenet5_k3, max_abs_diff, residual_k3

import kcompress as kc
from kcompress.keras3 import from_keras3


@pytest.fixture(scope="module")
def tiny(mnist_small):
    """512 training and 256 test images."""
    return mnist_small.take(train=512, test=256)


def _is_tf_keras(model):
    return isinstance(model, kc.keras.Model) and not isinstance(model, keras.Model)


def test_check_model_converts_and_logs_the_argument_name(caplog):
    from kcompress._keras import check_model

    # absl's logger: other tests may have lowered its verbosity.
    with caplog.at_level(logging.INFO, logger="absl"):
        out = check_model(lenet5_k3(), "teacher")
    assert _is_tf_keras(out)
    assert "teacher is a Keras 3 model ('lenet5_k3'); converted it to tf_keras" in caplog.text


@pytest.mark.slow
def test_prune_a_keras3_model_directly(trained_lenet_k3, tiny):
    pruned = kc.pruning.prune(trained_lenet_k3, kc.pruning.ConstantSparsity(0.8, begin_step=0))
    assert _is_tf_keras(pruned) and kc.pruning.is_pruned(pruned)
    assert [getattr(layer, "layer", layer).name for layer in pruned.layers] == \
        [layer.name for layer in trained_lenet_k3.layers]
    kc.models.compile_classifier(pruned, 1e-3)
    pruned.run_eagerly = True  # the schedule prunes at the first step: two steps, and no train function to trace
    pruned.fit(tiny.x_train[:128], tiny.y_train[:128], epochs=1, batch_size=64, verbose=0,
               callbacks=kc.pruning.callbacks())
    report = kc.pruning.sparsity(kc.pruning.strip(pruned))
    assert report.prunable == pytest.approx(0.8, abs=0.01)


def test_prune_with_layer_names_of_the_keras3_model(trained_lenet_k3):
    pruned = kc.pruning.prune(trained_lenet_k3, kc.pruning.ConstantSparsity(0.5, begin_step=0), layers=["fc1", "conv2"])
    wrapped = sorted(layer.layer.name for layer in pruned.layers if hasattr(layer, "pruning_vars"))
    assert wrapped == ["conv2", "fc1"]


def test_to_tflite_int8_of_a_keras3_model_directly(trained_lenet_k3, tiny):
    flat = kc.export.to_tflite(trained_lenet_k3, mode="int8", representative_data=tiny.representative(100))
    int8 = kc.evaluation.evaluate(flat, tiny, latency_runs=1)
    keras_acc = float(np.mean(np.argmax(trained_lenet_k3(tiny.x_test, training=False), -1) == tiny.y_test))
    assert keras_acc > 0.8
    assert abs(int8["accuracy"] - keras_acc) <= 0.02, (int8["accuracy"], keras_acc)
    assert int8["size_bytes"] < 0.4 * 4 * trained_lenet_k3.count_params()  # int8 weights, not float


def test_evaluate_and_keras_metrics_of_a_keras3_model(trained_lenet_k3, tiny):
    r = kc.evaluation.evaluate(trained_lenet_k3, tiny, latency_runs=1)
    keras_acc = float(np.mean(np.argmax(trained_lenet_k3(tiny.x_test, training=False), -1) == tiny.y_test))
    assert r["accuracy"] == pytest.approx(keras_acc, abs=1e-9)
    assert r["params"] == trained_lenet_k3.count_params() == 61706
    assert kc.evaluation.keras_macs(trained_lenet_k3) == kc.evaluation.keras_macs(from_keras3(trained_lenet_k3))
    assert kc.evaluation.keras_params(trained_lenet_k3)[0] == 61706


def test_agreement_of_a_keras3_model_with_its_flatbuffer(trained_lenet_k3, tiny):
    flat = kc.export.to_tflite(trained_lenet_k3)  # float32: agrees to rounding
    r = kc.evaluation.agreement(trained_lenet_k3, flat, tiny, max_samples=128)
    assert r["top1_agreement"] == 1.0
    assert r["max_logit_error"] < 1e-4


def test_robustness_of_a_keras3_model(trained_lenet_k3, tiny):
    got = kc.evaluation.robustness(trained_lenet_k3, tiny, noise=(0.2,), salt_pepper=(), max_samples=128)
    want = kc.evaluation.robustness(from_keras3(trained_lenet_k3), tiny, noise=(0.2,), salt_pepper=(), max_samples=128)
    assert got == want and 0.5 < got["robust_gauss_0.2"] <= 1.0


@pytest.mark.slow  # two QAT wraps of LeNet-5 (seconds)
def test_quantize_aware_of_a_keras3_model(trained_lenet_k3, tiny):
    qat = kc.quantization.quantize_aware(trained_lenet_k3)
    reference = kc.quantization.quantize_aware(from_keras3(trained_lenet_k3))
    assert _is_tf_keras(qat)
    assert [type(layer).__name__ for layer in qat.layers] == [type(layer).__name__ for layer in reference.layers]
    x = tiny.x_test[:64]
    assert max_abs_diff(qat(x, training=False), reference(x, training=False)) <= 1e-5
    assert kc.quantization.unsupported_layers(trained_lenet_k3) == []
    assert kc.quantization.kernel_sparsity(trained_lenet_k3) == 0.0


def test_prune_channels_of_a_keras3_model(trained_lenet_k3):
    slim = kc.pruning.prune_channels(trained_lenet_k3, ratio=0.5)
    assert _is_tf_keras(slim) and slim.get_layer("conv2").filters == 8


@pytest.mark.slow
def test_low_rank_of_a_keras3_model(trained_lenet_k3):
    result = kc.factorization.low_rank(trained_lenet_k3, rank=8, layers=["fc1"])
    reference = kc.factorization.low_rank(from_keras3(trained_lenet_k3), rank=8, layers=["fc1"])
    assert _is_tf_keras(result.model)
    assert result.model.count_params() == reference.model.count_params() < trained_lenet_k3.count_params()
    assert np.array_equal(result.model.get_weights()[0], reference.model.get_weights()[0])


def test_cluster_of_a_keras3_model(trained_lenet_k3):
    clustered = kc.clustering.cluster(trained_lenet_k3, clusters=8, layers=["fc1"])
    assert _is_tf_keras(clustered) and kc.clustering.is_clustered(clustered)
    plain = kc.clustering.strip(clustered)
    assert len(np.unique(plain.get_layer("fc1").kernel.numpy())) <= 8


def test_product_quantize_of_a_keras3_model(trained_lenet_k3):
    pq = kc.clustering.product_quantize(trained_lenet_k3, subvector=4, codebook_size=16, layers=["fc1"])
    decoded = kc.clustering.decode(pq)
    assert _is_tf_keras(decoded)
    kernel = decoded.get_layer("fc1").kernel.numpy()
    assert len(np.unique(kernel.T.reshape(-1, 4), axis=0)) <= 16  # every fan-in 4-vector is one of 16 codewords
    reference = kc.clustering.decode(kc.clustering.product_quantize(from_keras3(trained_lenet_k3), subvector=4,
                                                                    codebook_size=16, layers=["fc1"]))
    assert np.array_equal(kernel, reference.get_layer("fc1").kernel.numpy())


@pytest.mark.slow
def test_distiller_takes_keras3_student_and_teacher(trained_lenet_k3, tiny):
    student = lenet5_k3(seed=1)
    d = kc.distillation.Distiller(student=student, teacher=trained_lenet_k3)
    assert _is_tf_keras(d.student) and _is_tf_keras(d.teacher)
    x = tiny.x_test[:64]
    before = student(x, training=False)  # the Keras 3 student: the Distiller trains a tf_keras copy
    assert max_abs_diff(d.student(x, training=False), before) <= 1e-5
    d.compile("adam", alpha=0.5, temperature=2)
    d.fit(tiny.x_train[:128], tiny.y_train[:128], epochs=1, batch_size=64, verbose=0)
    # the teacher is frozen, the student moved
    assert max_abs_diff(d.teacher(x, training=False), trained_lenet_k3(x, training=False)) <= 1e-5
    assert max_abs_diff(d.student(x, training=False), before) > 1e-3


@pytest.mark.slow
def test_hint_distiller_finds_keras3_layer_names(trained_lenet_k3, tiny):
    d = kc.distillation.HintDistiller(lenet5_k3(seed=2), trained_lenet_k3, student_layer="fc2", teacher_layer="fc2")
    d.compile("adam", alpha=0.5, temperature=2, hint_weight=0.1)
    logs = d.fit(tiny.x_train[:128], tiny.y_train[:128], epochs=1, batch_size=64, verbose=0).history
    assert logs["hint_loss"][0] > 0 and np.isfinite(logs["loss"][0])


@pytest.mark.slow
def test_pipeline_run_with_keras3_model_and_teacher(trained_lenet_k3, tiny):
    from kcompress.pipeline import Distill, Evaluate, Export, Pipeline, Prune

    result = Pipeline([Prune(0.5, epochs=1, batch_size=128, finetune=Distill(temperature=2, alpha=0.5)), Export("int8"),
                       Evaluate(latency_runs=1)], name="k3").run(tiny, model=lenet5_k3(seed=3),
                                                                  teacher=trained_lenet_k3, verbose=0)
    assert _is_tf_keras(result.model)
    assert kc.pruning.sparsity(result.model).prunable == pytest.approx(0.5, abs=0.01)
    assert {r["flatbuffer"] for r in result.records} >= {"int8"}


def test_compile_classifier_returns_a_compiled_tf_keras_copy(tiny):
    k3 = residual_k3()
    tk = kc.models.compile_classifier(k3, 1e-3)
    assert _is_tf_keras(tk) and tk.optimizer is not None
    tk.run_eagerly = True  # one step: whether the copy trains, without tracing a train function (seconds)
    history = kc.models.fit(tk, tiny, epochs=1, batch_size=64, validation_split=0.0, verbose=0, max_train=64)
    assert np.isfinite(history.history["loss"][0])


def test_fit_refuses_a_keras3_model_with_the_fix(tiny):
    with pytest.raises(TypeError, match=r"model is a Keras 3 model.*fit\(\) changes the model.*compile_classifier"):
        kc.models.fit(lenet5_k3(), tiny, epochs=1)


def test_strip_and_sparsity_of_a_keras3_model():
    with pytest.raises(ValueError, match="holds no clustering wrappers"):
        kc.clustering.strip(lenet5_k3())
    assert kc.pruning.sparsity(lenet5_k3()).prunable == 0.0
    assert not kc.pruning.is_pruned(lenet5_k3())


def test_entropy_coded_size_and_sensitivity_of_a_keras3_model(trained_lenet_k3, tiny):
    reference = kc.clustering.entropy_coded_size(from_keras3(trained_lenet_k3))
    assert kc.clustering.entropy_coded_size(trained_lenet_k3).total_bytes == reference.total_bytes
    report = kc.pruning.sensitivity(trained_lenet_k3, tiny, ratios=(0.5,), layers=["fc1"], max_samples=50)
    assert [r["group"] for r in report.rows] == ["fc1"]
