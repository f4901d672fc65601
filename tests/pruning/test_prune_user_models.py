"""Pruning users' own models: depthwise and separable kernels are pruned; every "cannot prune" error names the layer."""

import numpy as np
import pytest
import user_models as um

import kcompress as kc

keras = kc.keras


@pytest.fixture(scope="module")
def pruned_depthwise(mnist_small):
    model = um.depthwise_net(0)
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.6, begin_step=0))
    kc.models.compile_classifier(pruned, 1e-3)
    pruned.run_eagerly = True  # the schedule prunes at the first step: two steps, and no train function to trace
    pruned.fit(mnist_small.x_train[:128], mnist_small.y_train[:128], epochs=1, batch_size=64, verbose=0,
               callbacks=kc.pruning.callbacks())
    return pruned


@pytest.mark.slow  # the fixture trains (seconds of tracing), so the fast subset leaves it out
def test_depthwise_and_separable_kernels_are_pruned(pruned_depthwise):
    wrapped = {layer.layer.name for layer in pruned_depthwise.layers if isinstance(layer, kc.pruning.PruneLowMagnitude)}
    assert wrapped == {"stem_conv", "dw1", "pw1", "sep2", "logits"}
    stripped = kc.pruning.strip(pruned_depthwise)
    report = kc.pruning.sparsity(stripped).as_dict()
    for name in ("dw1", "sep2"):
        assert report[f"sparsity/{name}"] == pytest.approx(0.6, abs=0.02), (name, report)
    sep = stripped.get_layer("sep2")
    for kernel in (stripped.get_layer("dw1").depthwise_kernel, sep.pointwise_kernel):
        values = kernel.numpy()
        assert 1 - np.count_nonzero(values) / values.size == pytest.approx(0.6, abs=0.03)
    assert np.count_nonzero(sep.depthwise_kernel.numpy()) == sep.depthwise_kernel.shape.num_elements()  # said in a log


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pruned.keras", "pruned.h5", "pruned_savedmodel"])
def test_pruned_depthwise_model_reloads_and_keeps_pruning(pruned_depthwise, mnist_small, tmp_path, name):
    path = tmp_path / name
    pruned_depthwise.save(path)
    loaded = keras.models.load_model(path)
    masks = [w for w in loaded.get_layer("prune_low_magnitude_dw1").weights if "mask" in w.name]
    assert len(masks) == 1
    x = mnist_small.x_test[:8]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned_depthwise.predict(x, verbose=0), atol=1e-5)


def test_block_size_names_the_layers_it_cannot_prune():
    model = um.sequential_cnn(0)
    with pytest.raises(ValueError, match=r"block_size=\(1, 4\).*'conv1' \(Conv2D, 4-D kernel\).*layers=\['fc1', 'logits'\]"):
        kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), block_size=(1, 4))
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), block_size=(1, 4), layers=["fc1", "logits"])
    assert {layer.layer.name for layer in pruned.layers if isinstance(layer, kc.pruning.PruneLowMagnitude)} == {
        "fc1", "logits"}


def test_wrapper_build_errors_name_the_layer():
    layer = keras.layers.Conv2D(4, 3, name="my_conv")
    wrapper = kc.pruning.PruneLowMagnitude(layer, pruning_schedule=kc.pruning.ConstantSparsity(0.5), block_size=(2, 2))
    with pytest.raises(ValueError, match=r"cannot prune layer 'my_conv' \(Conv2D\): Block Sparsity"):
        wrapper.build((None, 8, 8, 1))
