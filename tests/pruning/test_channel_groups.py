"""Channel groups: residual streams, depthwise/separable convs and concatenations are cut consistently."""

import numpy as np
import pytest
from model_builders import depthwise_net, randomize_batchnorm, residual_net

import kcompress as kc
from kcompress.pruning.channels import _Graph, _kind

keras = kc.keras
L = keras.layers


def _masked_original(model, slim):
    """The original model with every input channel the slim model dropped zeroed at its consumers."""
    graph = _Graph(model)
    # Recover which channels each producer kept by matching the slim model's filters to the original's.
    keep = {}
    for name, gid in graph.own.items():
        orig, cut = model.get_layer(name), slim.get_layer(name)
        width, new = orig.output_shape[-1], cut.output_shape[-1]
        if new == width:
            continue
        if orig.use_bias:
            bias_o, bias_c = orig.bias.numpy(), cut.bias.numpy()
            kept = np.array([int(np.argmin(np.abs(bias_o - b))) for b in bias_c])
        else:
            k_o = orig.get_weights()[1 if isinstance(orig, L.SeparableConv2D) else 0]
            k_c = cut.get_weights()[1 if isinstance(cut, L.SeparableConv2D) else 0]
            norms_o = np.abs(k_o.reshape(-1, width)).sum(0)
            norms_c = np.abs(k_c.reshape(-1, new)).sum(0)
            kept = np.array([int(np.argmin(np.abs(norms_o - n))) for n in norms_c])
        root = graph.find(gid)
        if root in keep:
            np.testing.assert_array_equal(keep[root], kept)  # one group, one set of channels
        keep[root] = kept
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for layer in masked.layers:
        inp = graph.inputs.get(layer.name)
        if inp is None or _kind(layer) not in ("producer", "separable"):
            continue
        kept = graph.kept(inp, keep)
        weights = layer.get_weights()
        n_in = weights[0].shape[0] if weights[0].ndim == 2 else weights[0].shape[-2]
        drop = np.setdiff1d(np.arange(n_in), kept)
        if weights[0].ndim == 2:
            weights[0][drop] = 0
        else:
            weights[0][..., drop, :] = 0
        layer.set_weights(weights)
    return masked


def _bias_everywhere(model, seed=1):
    """Distinct non-zero biases, so the kept channels can be read off the pruned model's biases."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "use_bias", False) and hasattr(layer, "bias"):
            b = layer.bias.numpy()
            layer.bias.assign(rng.uniform(0.1, 1.0, b.shape).astype("float32") * rng.choice([-1, 1], b.shape))
    return model


class TestGroups:
    def test_residual_stream_is_one_group(self):
        groups = {g.name: g for g in kc.pruning.channel_groups(residual_net())}
        stream = groups["stem"]
        assert set(stream.producers) == {"stem", "b0_conv2"} and stream.prunable
        assert {"stem_bn", "b0_add", "b0_out"} <= set(stream.members)
        assert set(groups["b0_conv1"].producers) == {"b0_conv1"}
        assert set(groups["b1_conv2"].producers) == {"b1_conv2", "b1_proj"}
        assert not groups["logits"].prunable and "model output" in groups["logits"].reason

    def test_depthwise_follows_its_input_and_concat_keeps_both_groups(self):
        groups = {g.name: g for g in kc.pruning.channel_groups(depthwise_net())}
        assert "dw1" in groups["stem"].members and groups["stem"].prunable
        assert groups["sep_a"].prunable and groups["branch_b"].prunable
        assert "concat" in groups["sep_a"].members

    def test_unfollowable_layers_freeze_the_group(self):
        inputs = keras.Input((8, 8, 3))
        x = L.Conv2D(8, 3, name="c1")(inputs)
        x = L.LayerNormalization(name="ln")(x)
        x = L.Conv2D(8, 3, name="c2")(x)
        x = L.Reshape((-1,), name="reshape")(x)
        outputs = L.Dense(4, name="out")(x)
        groups = {g.name: g for g in kc.pruning.channel_groups(keras.Model(inputs, outputs))}
        assert not groups["c1"].prunable and "LayerNormalization 'ln'" in groups["c1"].reason
        assert not groups["c2"].prunable and "Reshape 'reshape'" in groups["c2"].reason
        with pytest.raises(ValueError, match="layer 'c1' cannot be channel-pruned: it flows into LayerNormalization"):
            kc.pruning.prune_channels(keras.Model(inputs, outputs), 0.5, layers=["c1"])


# Each net at one ratio (the ratio changes only how many channels a group keeps, not the code path).
@pytest.mark.slow
@pytest.mark.parametrize("build, ratio", [(residual_net, 0.5), (depthwise_net, 0.25)], ids=["residual", "depthwise"])
def test_pruned_net_computes_the_original_with_channels_zeroed(build, ratio):
    model = _bias_everywhere(randomize_batchnorm(build()))
    slim = kc.pruning.prune_channels(model, ratio)
    assert slim.count_params() < (1 - ratio * 0.8) * model.count_params()
    macs = kc.evaluation.keras_macs(slim) / kc.evaluation.keras_macs(model)
    assert macs < 1 - ratio * 0.8
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    masked = _masked_original(model, slim)
    np.testing.assert_allclose(slim(x, training=False), masked(x, training=False), atol=1e-4, rtol=1e-4)
    # The slim model runs as an int8 flatbuffer too.
    flat = kc.export.to_tflite(slim, "int8", representative_data=x, verbose=False)
    assert kc.evaluation.litert.predict(flat, x[:2]).shape == (2, 10)


def test_explicit_channel_counts_and_bad_counts():
    model = residual_net()
    slim = kc.pruning.prune_channels(model, channels={"b0_conv2": 5, "b1_conv1": 7})
    assert slim.get_layer("stem").filters == 5 and slim.get_layer("b0_conv2").filters == 5
    assert slim.get_layer("b1_conv1").filters == 7 and slim.get_layer("b1_conv2").filters == 32
    with pytest.raises(ValueError, match=r"channels\['stem'\] must be an int in \[1, 16\], got 17"):
        kc.pruning.prune_channels(model, channels={"stem": 17})
    with pytest.raises(ValueError, match="belong to one channel group"):
        kc.pruning.prune_channels(model, channels={"stem": 4, "b0_conv2": 4})
    with pytest.raises(ValueError, match="exactly one of ratio"):
        kc.pruning.prune_channels(model)
    with pytest.raises(TypeError, match="channels must be a non-empty dict"):
        kc.pruning.prune_channels(model, channels=[("stem", 4)])


def test_flatten_dropout_dense_is_cut():
    inputs = keras.Input((10, 10, 1))
    x = L.Conv2D(8, 3, activation="relu", name="c")(inputs)
    x = L.Flatten(name="f")(x)
    x = L.Dropout(0.2, name="d")(x)
    outputs = L.Dense(3, name="out")(x)
    model = _bias_everywhere(keras.Model(inputs, outputs))
    slim = kc.pruning.prune_channels(model, 0.5)
    assert slim.get_layer("out").kernel.shape == (8 * 8 * 4, 3)
    x = np.random.default_rng(0).random((4, 10, 10, 1), dtype=np.float32)
    np.testing.assert_allclose(slim(x), _masked_original(model, slim)(x), atol=1e-5)
