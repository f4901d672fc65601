"""Sparsity-preserving QAT on users' own models: every pruned kernel keeps its zeros, whatever follows it."""

import warnings

import numpy as np
import pytest
import user_models as um

import kcompress as kc

pytestmark = pytest.mark.slow  # trains a model per test or module fixture (seconds each)


@pytest.fixture(scope="module")
def small(mnist_small):
    return mnist_small.take(train=256, test=100)  # zeros and sizes are asserted, not accuracy


def _pruned(name, ds, sparsity=0.7):
    """A user model pruned to ``sparsity`` with kcompress (a few steps: the mask is set at the first), stripped."""
    pruned = kc.pruning.prune(um.BUILDERS[name](0), kc.pruning.ConstantSparsity(sparsity, begin_step=0))
    kc.models.compile_classifier(pruned, 1e-3)
    pruned.fit(ds.x_train[:128], ds.y_train[:128], epochs=1, batch_size=64, verbose=0,
               callbacks=kc.pruning.callbacks())
    return kc.pruning.strip(pruned)


@pytest.fixture(scope="module")
def pruned_nets(small):
    # Untrained before pruning: the tests check which configs QAT picks and that the zero pattern
    # stays put, not accuracy. The sequential net is magnitude-pruned (its zeros need not come from kcompress).
    nets = {name: _pruned(name, small) for name in ("residual_net", "depthwise_net")}
    nets["sequential_cnn"] = um.magnitude_prune(um.sequential_cnn(0), 0.7)
    return nets


def _qat(model, ds, epochs=2, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "zeros not kept" warning for a fully quantized model
        qat = kc.quantization.quantize_aware(model, **kwargs)
    kc.models.compile_classifier(qat, 1e-4)
    qat.fit(ds.x_train, ds.y_train, epochs=epochs, batch_size=64, verbose=0)
    return qat


@pytest.mark.parametrize("name", ["residual_net", "depthwise_net"])
def test_flatbuffer_nonzeros_survive_two_epochs_of_qat(pruned_nets, small, name):
    """Acceptance: Conv2D -> BN -> ReLU, 1x1 convs, Conv2D -> ReLU() layer, depthwise and separable convs."""
    pruned = pruned_nets[name]
    before = kc.export.describe(kc.export.to_tflite(pruned, "int8", representative_data=small.representative(100),
                                                    verbose=False))
    qat = _qat(pruned, small, epochs=2, preserve_sparsity=True)
    after = kc.export.describe(kc.export.to_tflite(qat, "int8", verbose=False))
    assert after.params == before.params
    assert abs(after.nonzero_params - before.nonzero_params) <= 0.01 * before.nonzero_params, (
        name, before.nonzero_params, after.nonzero_params)
    assert 1 - after.nonzero_params / after.params > 0.55, (name, after.nonzero_params, after.params)


def test_conv_followed_by_a_relu_layer_keeps_its_zeros(pruned_nets, small):
    """TFMOT gives a Conv2D / Dense followed by a ReLU layer a NoOp config that left the kernel unmasked."""
    pruned = pruned_nets["sequential_cnn"]
    qat = _qat(pruned, small, epochs=1)  # preserve_sparsity=None: on, the kernels are 70% zeros
    configs = {layer.layer.name: type(layer.quantize_config).__name__ for layer in qat.layers
               if hasattr(layer, "quantize_config")}
    assert configs["conv1"] == configs["conv2"] == "SparsityPreservingConvQuantizeConfig"
    assert configs["fc1"] == configs["logits"] == "SparsityPreservingQuantizeConfig"
    for layer in ("conv1", "conv2", "fc1", "logits"):
        before = dict(kc.pruning.prunable_kernels(pruned))[layer]
        after = dict(kc.pruning.prunable_kernels(qat))[layer]
        np.testing.assert_array_equal(after == 0, before == 0)


def test_kernels_left_in_float_are_named_in_a_warning(pruned_nets):
    pruned = pruned_nets["sequential_cnn"]
    with pytest.warns(UserWarning, match=r"QAT will not keep the zeros of layer\(s\) 'conv1' \(Conv2D\)"):
        kc.quantization.quantize_aware(pruned, layers=["conv2", "fc1", "logits"], preserve_sparsity=True)


@pytest.mark.parametrize("name", ["residual_net", "depthwise_net"])
def test_sparsity_reports_of_a_qat_model(pruned_nets, name):
    pruned = pruned_nets[name]
    qat = kc.quantization.quantize_aware(pruned, preserve_sparsity=True)
    report, qat_report = kc.pruning.sparsity(pruned), kc.pruning.sparsity(qat)
    assert report.prunable == pytest.approx(0.7, abs=0.01)
    by_layer = {x.layer: x.sparsity for x in qat_report.layers}
    for layer in report.layers:  # (QAT splits a SeparableConv2D into a depthwise and a 1x1 conv under new names)
        if layer.layer in by_layer:
            assert by_layer[layer.layer] == pytest.approx(layer.sparsity, abs=1e-6), layer.layer
    assert qat_report.prunable > 0.6
    assert kc.quantization.kernel_sparsity(qat) == pytest.approx(kc.quantization.kernel_sparsity(pruned), abs=1e-6)
    assert kc.quantization.kernel_sparsity(qat) > 0.6
    # Quantizer ranges are not weights: the overall fraction is the pruned model's.
    assert kc.pruning.sparsity(qat).overall == pytest.approx(kc.pruning.sparsity(pruned).overall, abs=1e-6)


def test_every_kernel_pattern_gets_a_sparsity_preserving_config():
    """Conv2D / Dense / DepthwiseConv2D followed by BN -> ReLU, BN -> Activation, a ReLU layer, or nothing."""
    keras, layers = kc.keras, kc.keras.layers
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(4, 3, name="conv_bn_act")(inputs)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    x = layers.DepthwiseConv2D(3, name="dw_relu")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(4, 1, activation="relu", name="conv_fused")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(8, name="dense_bn_relu")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Dense(8, name="dense_relu")(x)
    x = layers.ReLU()(x)
    outputs = layers.Dense(3, name="logits")(x)
    model = um.magnitude_prune(keras.Model(inputs, outputs), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qat = kc.quantization.quantize_aware(model, preserve_sparsity=True)
    configs = {layer.layer.name: type(layer.quantize_config).__name__ for layer in qat.layers
               if hasattr(layer, "quantize_config")}
    for name in ("conv_bn_act", "dw_relu", "conv_fused"):
        assert configs[name] == "SparsityPreservingConvQuantizeConfig", (name, configs[name])
    for name in ("dense_bn_relu", "dense_relu", "logits"):
        assert configs[name] == "SparsityPreservingQuantizeConfig", (name, configs[name])
