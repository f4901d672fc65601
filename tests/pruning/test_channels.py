import numpy as np
import pytest

import kcompress as kc

keras = kc.keras


def _zeroed_equivalent(model, ratio, names):
    """The original model with the dropped filters/units zeroed, for comparison."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name in names:
        layer = copy.get_layer(name)
        weights = layer.get_weights()
        scores = np.abs(weights[0].reshape(-1, weights[0].shape[-1])).sum(0)
        keep = np.argsort(-scores, kind="stable")[: max(1, round(len(scores) * (1 - ratio)))]
        drop = np.setdiff1d(np.arange(len(scores)), keep)
        weights[0][..., drop] = 0
        if len(weights) > 1:
            weights[1][drop] = 0
        layer.set_weights(weights)
    return copy


def test_lenet5_at_half_keeps_a_third_of_the_macs_and_the_same_function(trained_lenet, mnist_small):
    slim = kc.pruning.prune_channels(trained_lenet, 0.5)
    kernels = [tuple(layer.kernel.shape) for layer in slim.layers if hasattr(layer, "kernel")]
    assert kernels == [(5, 5, 1, 3), (5, 5, 3, 8), (200, 60), (60, 42), (42, 10)]
    macs = kc.evaluation.keras_macs(slim) / kc.evaluation.keras_macs(trained_lenet)
    assert macs <= 0.35
    assert slim.count_params() < 0.3 * trained_lenet.count_params()
    reference = _zeroed_equivalent(trained_lenet, 0.5, ["conv1", "conv2", "fc1", "fc2"])
    x = mnist_small.x_test[:100]
    np.testing.assert_allclose(slim.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-4)
    assert trained_lenet.get_layer("conv1").kernel.shape[-1] == 6  # input untouched


def test_batchnorm_and_l2_criterion_on_vgg_small():
    model = kc.models.get("vgg_small", (32, 32, 3), 10)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BatchNorm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.random(w.shape).astype("float32") + 0.5 for w in layer.get_weights()])
    slim = kc.pruning.prune_channels(model, 0.25, criterion="l2")
    assert slim.get_layer("block1a_bn").gamma.shape == (24,)
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    assert slim(x, training=False).shape == (4, 10)
    assert kc.evaluation.keras_macs(slim) < 0.65 * kc.evaluation.keras_macs(model)


@pytest.mark.slow  # ResNet-20: seconds to build, cut and run twice
def test_residual_inner_convs_alone_keep_the_function():
    model = kc.models.get("resnet20", (32, 32, 3), 10)
    names = [layer.name for layer in model.layers if layer.name.endswith("_a_conv")]
    slim = kc.pruning.prune_channels(model, {name: 0.5 for name in names})
    # The streams the blocks add into stay whole; the inner convs lose half their filters.
    assert slim.get_layer("stage1_block1_a_conv").filters == 8
    assert slim.get_layer("stage1_block1_b_conv").filters == 16
    assert slim.get_layer("stem_conv").filters == 16
    reference = _zeroed_equivalent(model, 0.5, names)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(slim(x, training=False), reference(x, training=False), atol=1e-4)


def test_sequential_model_and_fine_tuning(mnist_small):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dropout(0.1), keras.layers.Dense(10)])
    slim = kc.pruning.prune_channels(model, 0.75)
    assert isinstance(slim, keras.Sequential) and slim.layers[1].units == 16
    kc.models.compile_classifier(slim, 3e-3)
    history = slim.fit(mnist_small.x_train[:512], mnist_small.y_train[:512], epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


class TestBadInput:
    @pytest.mark.parametrize("ratio, error", [(0, ValueError), (1, ValueError), (1.5, ValueError), (-0.2, ValueError),
                                              ("half", TypeError)])
    def test_ratio(self, trained_lenet, ratio, error):
        with pytest.raises(error, match=r"ratio must be a finite number in \(0, 1\)"):
            kc.pruning.prune_channels(trained_lenet, ratio)

    def test_criterion(self, trained_lenet):
        with pytest.raises(ValueError, match=r"criterion must be one of \['l1', 'l2'\], got 'random'"):
            kc.pruning.prune_channels(trained_lenet, 0.5, criterion="random")

    def test_output_layer_cannot_be_cut(self, trained_lenet):
        with pytest.raises(ValueError, match="layer 'logits' cannot be channel-pruned: its channels reach the model output"):
            kc.pruning.prune_channels(trained_lenet, 0.5, layers=["logits"])

    def test_unknown_and_unsupported_layers(self, trained_lenet):
        with pytest.raises(ValueError, match="layers names 'conv9', which is not a layer of the model"):
            kc.pruning.prune_channels(trained_lenet, 0.5, layers=["conv9"])
        with pytest.raises(ValueError, match=r"layers names 'pool1', a MaxPooling2D; this takes Conv, SeparableConv, Conv2DTranspose and Dense layers \(whose "
                                                r"filters / units can be removed\) only \(here: \['conv1', 'conv2', 'fc1', 'fc2', 'logits'\]\)"):
            kc.pruning.prune_channels(trained_lenet, 0.5, layers=["pool1"])

    def test_wrapped_model(self, wrapped):
        with pytest.raises(ValueError, match=r"strip\(\) it before prune_channels"):
            kc.pruning.prune_channels(wrapped, 0.5)


def test_per_layer_ratios(trained_lenet):
    slim = kc.pruning.prune_channels(trained_lenet, {"fc1": 0.75, "conv2": 0.25})
    kernels = [tuple(layer.kernel.shape) for layer in slim.layers if hasattr(layer, "kernel")]
    assert kernels == [(5, 5, 1, 6), (5, 5, 6, 12), (300, 30), (30, 84), (84, 10)]
    with pytest.raises(ValueError, match=r"ratio\['fc1'\] must be a finite number in \(0, 1\), got 1.0"):
        kc.pruning.prune_channels(trained_lenet, {"fc1": 1.0})
    with pytest.raises(ValueError, match="not both"):
        kc.pruning.prune_channels(trained_lenet, {"fc1": 0.5}, layers=["fc2"])
