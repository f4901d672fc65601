import numpy as np
import pytest

import kcompress as kc

keras = kc.keras


def test_prune_never_mutates_the_model_passed_in(pruned80, trained_lenet, fresh_copy):
    before = fresh_copy().get_weights()  # the fixture model's weights, copied before this test
    for a, b in zip(before, trained_lenet.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert kc.pruning.sparsity(trained_lenet).prunable < 0.01


def test_constant_80_reaches_target_and_stays_accurate(pruned80, mnist_small, trained_lenet):
    pruned, stripped, history = pruned80
    report = kc.pruning.sparsity(stripped)
    assert report.prunable == pytest.approx(0.8, abs=0.01)
    assert all(layer.sparsity == pytest.approx(0.8, abs=0.01) for layer in report.layers)
    assert history.history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    assert [type(layer).__name__ for layer in stripped.layers] == [type(layer).__name__ for layer in trained_lenet.layers]
    acc = np.mean(stripped.predict(mnist_small.x_test, verbose=0).argmax(-1) == mnist_small.y_test)
    assert acc > 0.9


def test_strip_keeps_outputs_and_does_not_touch_the_pruned_model(pruned80, mnist_small):
    pruned, stripped, _ = pruned80
    x = mnist_small.x_test[:64]
    np.testing.assert_allclose(stripped(x, training=False), pruned(x, training=False), atol=1e-5)
    assert kc.pruning.is_pruned(pruned) and not kc.pruning.is_pruned(stripped)


def test_layer_selection_by_name_and_type(trained_lenet):
    by_name = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5), layers=["fc1", "conv2"])
    wrapped = sorted(layer.layer.name for layer in by_name.layers if isinstance(layer, kc.pruning.PruneLowMagnitude))
    assert wrapped == ["conv2", "fc1"]
    by_type = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5), layers=keras.layers.Dense)
    wrapped = sorted(layer.layer.name for layer in by_type.layers if isinstance(layer, kc.pruning.PruneLowMagnitude))
    assert wrapped == ["fc1", "fc2", "logits"]


@pytest.mark.slow
def test_sequential_and_nested_models(finetune, mnist_small):
    inner = keras.Sequential([keras.layers.Dense(32, activation="relu", name="inner_fc")], name="block")
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = inner(x)
    outer = keras.Model(inputs, keras.layers.Dense(10, name="out")(x))
    pruned = kc.pruning.prune(outer, kc.pruning.ConstantSparsity(0.6))
    finetune(pruned, mnist_small.take(train=640))
    report = kc.pruning.sparsity(kc.pruning.strip(pruned))
    assert {layer.layer for layer in report.layers} == {"inner_fc", "out"}
    assert report.prunable == pytest.approx(0.6, abs=0.01)
    seq = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    assert kc.pruning.is_pruned(kc.pruning.prune(seq, kc.pruning.ConstantSparsity(0.5)))


def test_training_without_the_callback_fails_loudly(finetune, trained_lenet, mnist_small):
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5))
    with pytest.raises(Exception, match="UpdatePruningStep"):
        finetune(pruned, mnist_small.take(train=128), callbacks=[])


@pytest.mark.parametrize("fmt", ["keras", "h5", pytest.param("savedmodel", marks=pytest.mark.slow)])
def test_pruned_and_stripped_models_reload_without_a_scope(pruned80, tmp_path, fmt, mnist_small):
    pruned, stripped, _ = pruned80
    x = mnist_small.x_test[:32]
    for name, model in (("pruned", pruned), ("stripped", stripped)):
        path = str(tmp_path / (f"{name}.{fmt}" if fmt != "savedmodel" else name))
        model.save(path, save_format="tf" if fmt == "savedmodel" else None)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-5)
        if name == "pruned":
            wrapper = next(layer for layer in loaded.layers if isinstance(layer, kc.pruning.PruneLowMagnitude))
            assert wrapper.pruning_schedule.get_config() == pruned.layers[1].pruning_schedule.get_config()


@pytest.mark.slow
def test_m_by_n_structure_and_its_config_survives_saving(finetune, trained_lenet, mnist_small, tmp_path):
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5), layers=["fc1", "fc2"], m_by_n=(2, 4))
    finetune(pruned, mnist_small.take(train=640))
    kernel = kc.pruning.strip(pruned).get_layer("fc1").kernel.numpy()  # (400, 120)
    per_group = (kernel.reshape(100, 4, 120) != 0).sum(axis=1)
    assert per_group.max() <= 2 and kc.pruning.sparsity(kc.pruning.strip(pruned)).as_dict()["sparsity/fc1"] == 0.5
    pruned.save(tmp_path / "mn.keras")
    loaded = keras.models.load_model(tmp_path / "mn.keras")
    wrapper = next(layer for layer in loaded.layers if getattr(layer, "sparsity_m_by_n", None))
    assert wrapper.sparsity_m_by_n == (2, 4)


@pytest.mark.slow
def test_block_sparsity(finetune, trained_lenet, mnist_small):
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.75), layers=["fc1"], block_size=(1, 4))
    finetune(pruned, mnist_small.take(train=640))
    kernel = kc.pruning.strip(pruned).get_layer("fc1").kernel.numpy()
    blocks = (kernel.reshape(400, 30, 4) != 0).sum(-1)
    assert set(np.unique(blocks)) <= {0, 4}
    assert (blocks == 0).mean() == pytest.approx(0.75, abs=0.01)


@pytest.mark.slow
def test_pruning_under_mirrored_strategy(trained_lenet, mnist_small, mirrored):
    strategy = mirrored
    with strategy.scope():
        pruned = kc.pruning.prune(trained_lenet, kc.pruning.PolynomialDecay(0.3, 0.7, begin_step=0, end_step=20))
        kc.models.compile_classifier(pruned, 1e-3)
    history = pruned.fit(mnist_small.x_train[:1600], mnist_small.y_train[:1600], epochs=2, batch_size=64,
                         callbacks=kc.pruning.callbacks(), verbose=0)
    assert history.history["sparsity"][-1] == pytest.approx(0.7, abs=0.01)
    assert kc.pruning.sparsity(kc.pruning.strip(pruned)).prunable == pytest.approx(0.7, abs=0.01)


class TestBadInput:
    def test_unknown_layer_name(self, trained_lenet):
        with pytest.raises(ValueError, match=r"layers names 'fc9', which is not a layer of the model; its layers are \["):
            kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5), layers=["fc9"])

    def test_unsupported_layer(self, trained_lenet):
        with pytest.raises(ValueError, match=r"layers names 'pool1', a MaxPooling2D; this takes prunable layers \(a custom layer can implement "
                                              r"tfmot.sparsity.keras.PrunableLayer\) only \(here: \['conv1', 'conv2', 'fc1'"):
            kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5), layers=["pool1"])

    def test_subclassed_model(self):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.fc = keras.layers.Dense(3)

            def call(self, x):
                return self.fc(x)

        with pytest.raises(ValueError, match="subclassed model .*Sequential and Functional"):
            kc.pruning.prune(Net(), kc.pruning.ConstantSparsity(0.5))

    def test_schedule_type(self, trained_lenet):
        with pytest.raises(TypeError, match="schedule must be a pruning schedule .* got float"):
            kc.pruning.prune(trained_lenet, 0.8)

    def test_already_pruned(self, wrapped):
        with pytest.raises(ValueError, match="already holds pruning wrappers"):
            kc.pruning.prune(wrapped, kc.pruning.ConstantSparsity(0.5))

    @pytest.mark.parametrize("kwargs, match", [
        (dict(block_size=(0, 4)), r"block_size must be two positive ints"),
        (dict(m_by_n=(4, 2)), r"m_by_n must be \(m, n\) with 0 < m < n"),
        (dict(m_by_n=(2, 4), block_size=(1, 4)), "cannot be combined"),
    ])
    def test_structure_arguments(self, trained_lenet, kwargs, match):
        with pytest.raises(ValueError, match=match):
            kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5), **kwargs)

    def test_export_of_a_wrapped_model_says_strip(self, wrapped):
        with pytest.raises(ValueError, match=r"call kcompress.pruning.strip\(model\) before export"):
            kc.export.to_tflite(wrapped)
