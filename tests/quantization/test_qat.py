import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import kcompress as kc
from kcompress.quantization import qat as qat_module

keras = kc.keras


def magnitude_prune(model, sparsity=0.8):
    """A stand-in for a stripped pruned model: the smallest kernel weights of each layer set to zero."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            k = layer.kernel.numpy()
            k[np.abs(k) < np.quantile(np.abs(k), sparsity)] = 0.0
            layer.kernel.assign(k)
    return model


def fine_tune(model, ds, epochs=1, lr=1e-4, n=4000):
    kc.models.compile_classifier(model, lr)
    model.fit(ds.x_train[:n], ds.y_train[:n], epochs=epochs, batch_size=64, verbose=0)
    return model


def weight_zero_fraction(flat):
    info = kc.export.describe(flat)
    return 1 - info.nonzero_params / info.params


@keras.utils.register_keras_serializable(package="kcompress_tests")
class Scale(keras.layers.Layer):
    """A custom layer TFMOT has no QuantizeConfig for."""

    def __init__(self, init=0.5, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.s = self.add_weight("s", shape=(), initializer=keras.initializers.Constant(self.init))

    def call(self, x):
        return x * self.s

    def get_config(self):
        return {**super().get_config(), "init": self.init}


def small_net(middle):
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(4, 5, activation="relu", name="conv")(inputs)
    x = middle(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.slow
class TestQAT:
    @pytest.fixture(scope="class")
    def qat(self, trained_lenet, mnist_small):
        model = kc.keras.models.clone_model(trained_lenet)
        model.set_weights(trained_lenet.get_weights())
        return fine_tune(kc.quantization.quantize_aware(model), mnist_small, n=512)

    def test_int8_flatbuffer_needs_no_calibration_and_matches_keras(self, qat, mnist_small):
        flat = kc.export.to_tflite(qat, "int8", verbose=False)
        info = kc.export.describe(flat)
        assert info.inputs[0].dtype == np.int8 and info.outputs[0].dtype == np.int8
        assert set(info.weight_dtypes) == {"int8", "int32"} and info.params == 61706
        agree = kc.evaluation.agreement(qat, flat, mnist_small)
        assert agree["top1_agreement"] >= 0.995, agree
        assert agree["tflite_accuracy"] >= 0.94, agree

    def test_keeps_the_original_weights_and_model(self, trained_lenet, fresh_copy):
        model = fresh_copy()
        before = [w.copy() for w in model.get_weights()]
        qat = kc.quantization.quantize_aware(model)
        kernel = next(w for w in qat.get_layer("quant_conv1").weights if w.name.endswith("kernel:0"))
        np.testing.assert_array_equal(kernel.numpy(), before[0])
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
        assert [type(layer).__name__ for layer in model.layers][1] == "Conv2D"

    def test_chosen_layers_only(self, fresh_copy):
        qat = kc.quantization.quantize_aware(fresh_copy(), layers=["fc1", "fc2", "logits"])
        kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
        assert kinds["conv1"] == "Conv2D" and kinds["conv2"] == "Conv2D"
        assert kinds["quant_fc1"] == kinds["quant_logits"] == "QuantizeWrapperV2"

    def test_uint8_io(self, qat, mnist_small):
        flat = kc.export.to_tflite(qat, "int8", io_type="uint8", verbose=False)
        assert kc.export.describe(flat).inputs[0].dtype == np.uint8
        assert kc.evaluation.agreement(qat, flat, mnist_small, max_samples=300)["top1_agreement"] >= 0.99

    def test_saves_and_loads_as_h5(self, qat, tmp_path, mnist_small):
        qat.save(tmp_path / "qat.h5")
        with kc.quantization.quantize_scope():
            loaded = keras.models.load_model(tmp_path / "qat.h5")
        x = mnist_small.x_test[:32]
        np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)


class TestPreserveSparsity:
    @pytest.fixture(scope="class")
    def pruned(self, trained_lenet):
        model = kc.keras.models.clone_model(trained_lenet)
        model.set_weights(trained_lenet.get_weights())
        return magnitude_prune(model)

    def test_sparsity_measured_on_kernels(self, pruned, trained_lenet):
        assert kc.quantization.kernel_sparsity(pruned) == pytest.approx(0.8, abs=1e-3)
        assert kc.quantization.kernel_sparsity(trained_lenet) < 0.01

    @pytest.mark.slow
    def test_zeros_survive_qat_saving_loading_and_more_training(self, pruned, mnist_small, tmp_path):
        qat = fine_tune(kc.quantization.quantize_aware(pruned), mnist_small, lr=1e-3, n=2048)  # auto: mostly zeros
        assert isinstance(qat.get_layer("quant_fc1").quantize_config, qat_module.SparsityPreservingQuantizeConfig), (
            kc.quantization.kernel_sparsity(pruned), [(type(x).__name__, x.trainable, len(x.trainable_weights)) for x in pruned.layers],
            [(type(x).__name__, type(getattr(x, "quantize_config", None)).__name__) for x in qat.layers])
        dense = kc.export.to_tflite(qat, "int8", verbose=False)
        sparse = kc.export.to_tflite(qat, "int8", sparse=True, verbose=False)
        info = kc.export.describe(dense)
        kernel_params = info.params - 236  # biases of the five layers
        assert (info.params - info.nonzero_params) / kernel_params >= 0.79
        assert kc.export.describe(sparse).nonzero_params == info.nonzero_params
        assert len(sparse) < 0.75 * len(dense)
        agree = kc.evaluation.agreement(qat, dense, mnist_small, max_samples=500)
        assert agree["top1_agreement"] >= 0.99 and agree["tflite_accuracy"] >= 0.9, agree
        # Saved and loaded, the configs and zeros are kept, and more training keeps the zeros too.
        qat.save(tmp_path / "pqat.h5")
        with kc.quantization.quantize_scope():
            loaded = keras.models.load_model(tmp_path / "pqat.h5")
        assert isinstance(loaded.get_layer("quant_conv1").quantize_config, qat_module.SparsityPreservingConvQuantizeConfig)
        x = mnist_small.x_test[:16]
        np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
        fine_tune(loaded, mnist_small, lr=1e-3, n=256)
        assert weight_zero_fraction(kc.export.to_tflite(loaded, "int8", verbose=False)) >= 0.79

    @pytest.mark.slow
    def test_plain_qat_lets_zeros_grow_back(self, pruned, mnist_small):
        qat = fine_tune(kc.quantization.quantize_aware(pruned, preserve_sparsity=False), mnist_small, lr=1e-3, n=512)
        flat = kc.export.to_tflite(qat, "int8", verbose=False)
        assert weight_zero_fraction(flat) < 0.6, weight_zero_fraction(flat)

    @pytest.mark.parametrize("zeros, preserved", [(0.05, False), (0.3, True)])
    def test_one_pruned_rule_for_qat_and_clustering(self, fresh_copy, zeros, preserved):
        # kcompress.pruning.PRUNED_FRACTION (10% of the kernels exactly zero) decides for both.
        model = fresh_copy()
        for layer in model.layers:
            if getattr(layer, "kernel", None) is not None:
                k = layer.kernel.numpy()
                k[np.abs(k) <= np.quantile(np.abs(k), zeros)] = 0.0
                layer.kernel.assign(k)
        assert (kc.quantization.kernel_sparsity(model) >= kc.pruning.PRUNED_FRACTION) == preserved
        config = kc.quantization.quantize_aware(model).get_layer("quant_fc1").quantize_config
        assert isinstance(config.weight_quantizer, qat_module.SparsityPreservingWeightsQuantizer) == preserved
        clustered = kc.clustering.cluster(model, clusters=8, layers=["fc1"])
        assert clustered.get_layer("cluster_fc1").preserve_sparsity == preserved

    def test_dense_model_gets_plain_qat_by_default(self, fresh_copy):
        qat = kc.quantization.quantize_aware(fresh_copy())
        config = qat.get_layer("quant_fc1").quantize_config
        assert not isinstance(config.weight_quantizer, qat_module.SparsityPreservingWeightsQuantizer)

    @pytest.mark.parametrize("cls", [qat_module.SparsityPreservingQuantizeConfig,
                                     qat_module.SparsityPreservingConvQuantizeConfig])
    def test_config_round_trips(self, cls):
        config = cls(["kernel"], ["activation"], False)
        restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(config))
        assert type(restored) is cls and restored.get_config() == config.get_config()
        assert type(restored.weight_quantizer) is type(config.weight_quantizer)

    @pytest.mark.parametrize("cls", [qat_module.SparsityPreservingWeightsQuantizer,
                                     qat_module.SparsityPreservingConvWeightsQuantizer])
    def test_quantizer_round_trips_and_checks_its_config(self, cls):
        quantizer = cls()
        config = quantizer.get_config()
        assert cls.from_config(config).get_config() == config
        with pytest.raises(ValueError, match="is fixed at num_bits=8, got 4"):
            cls.from_config({**config, "num_bits": 4})

    def test_pruning_wrappers_must_be_stripped(self, pruned):
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(pruned)
        with pytest.raises(ValueError, match=r"still holds pruning wrappers; call kcompress.pruning.strip\(model\)"):
            kc.quantization.quantize_aware(wrapped)


class TestUnsupportedLayers:
    @pytest.mark.parametrize("middle, kind", [
        (lambda: Scale(name="scale"), "Scale"),
        (lambda: keras.layers.LayerNormalization(name="scale"), "LayerNormalization"),
    ])
    def test_error_names_the_layer_and_the_way_out(self, middle, kind):
        model = small_net(middle())
        with pytest.raises(ValueError, match=(
                rf"QAT cannot quantize layer\(s\) 'scale' \({kind}\) of model .*"
                r"quantize_aware\(model, layers=\['conv', 'flatten', 'logits'\]\)")):
            kc.quantization.quantize_aware(model)
        assert kc.quantization.unsupported_layers(model) == ["scale"]

    def test_every_unsupported_layer_is_named_at_once(self):
        inputs = keras.Input((8,))
        x = Scale(name="s1")(inputs)
        x = keras.layers.Dense(8, name="d")(x)
        x = keras.layers.LayerNormalization(name="ln")(x)
        model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
        assert kc.quantization.unsupported_layers(model) == ["s1", "ln"]
        with pytest.raises(ValueError, match=r"'s1' \(Scale\), 'ln' \(LayerNormalization\).*layers=\['d', 'out'\]"):
            kc.quantization.quantize_aware(model)

    def test_leaving_them_in_float_converts_and_runs(self, mnist_small):
        model = small_net(Scale(name="scale"))
        qat = kc.quantization.quantize_aware(model, layers=["conv", "flatten", "logits"])
        assert isinstance(qat.get_layer("scale"), Scale)
        flat = kc.export.to_tflite(qat, "int8", representative_data=mnist_small.representative(50), verbose=False)
        out = kc.evaluation.predict(flat, mnist_small.x_test[:20])
        np.testing.assert_allclose(out, qat.predict(mnist_small.x_test[:20], verbose=0), atol=0.05)

    def test_prune_preserving_scheme_supports_fewer_layers(self):
        model = small_net(keras.layers.Conv2DTranspose(4, 3, name="up"))
        assert kc.quantization.unsupported_layers(model) == []
        assert kc.quantization.unsupported_layers(model, preserve_sparsity=True) == ["up"]
        with pytest.raises(ValueError, match="preserve_sparsity=False supports more"):
            kc.quantization.quantize_aware(model, preserve_sparsity=True)

    def test_custom_layer_config_round_trips(self):
        layer = Scale(init=0.25, name="s")
        assert Scale.from_config(layer.get_config()).get_config() == layer.get_config()


class TestBadArguments:
    def test_unknown_layer_name(self, fresh_copy):
        with pytest.raises(ValueError, match=r"layers names 'fc9', which is not a layer of the model; its layers are \['conv1'"):
            kc.quantization.quantize_aware(fresh_copy(), layers=["fc9"])
        other = fresh_copy()
        with pytest.raises(ValueError, match=r"layers holds the layer 'fc1', which is not a layer of model 'lenet5' \(another"):
            kc.quantization.quantize_aware(fresh_copy(), layers=[other.get_layer("fc1")])

    def test_layers_resolve_as_in_every_technique(self, fresh_copy):
        # One name, a list of names, the model's own layer objects and a class: the shared resolver.
        def wrapped(qat):
            return sorted(layer.layer.name for layer in qat.layers if isinstance(layer, keras.layers.Wrapper))

        model = fresh_copy()
        one = wrapped(kc.quantization.quantize_aware(model, layers="fc1"))  # TFMOT also wraps the Flatten feeding it
        assert "fc1" in one and not {"conv1", "conv2", "fc2"} & set(one)
        assert one == wrapped(kc.quantization.quantize_aware(model, layers=[model.get_layer("fc1")]))
        convs = wrapped(kc.quantization.quantize_aware(model, layers=keras.layers.Conv2D))
        assert {"conv1", "conv2"} <= set(convs) and not {"fc1", "fc2", "logits"} & set(convs)
        with pytest.raises(TypeError, match=r"layers must hold layer names \(str\), the model's layers or layer classes, got 3"):
            kc.quantization.quantize_aware(model, layers=3)

    def test_empty_layers(self, fresh_copy):
        with pytest.raises(ValueError, match="layers must name at least one layer"):
            kc.quantization.quantize_aware(fresh_copy(), layers=[])

    def test_preserve_sparsity_type(self, fresh_copy):
        with pytest.raises(TypeError, match="preserve_sparsity must be None, True or False, got 'yes'"):
            kc.quantization.quantize_aware(fresh_copy(), preserve_sparsity="yes")

    def test_subclassed_model(self):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.d = keras.layers.Dense(2)

            def call(self, x):
                return self.d(x)

        net = Net()
        net(np.zeros((1, 3), np.float32))
        with pytest.raises(ValueError, match="model must be a Functional or Sequential model; Net is subclassed"):
            kc.quantization.quantize_aware(net)

    def test_already_quantized(self, fresh_copy):
        qat = kc.quantization.quantize_aware(fresh_copy())
        with pytest.raises(ValueError, match="is already quantization-aware"):
            kc.quantization.quantize_aware(qat)

    def test_not_a_model(self):
        with pytest.raises(TypeError, match="must be a tf_keras.Model"):
            kc.quantization.quantize_aware("lenet5.h5")


@pytest.mark.slow
def test_qat_trains_under_mirrored_strategy(trained_lenet, mnist_small, mirrored):
    # The session's strategy reduces gradients through one device, not with collective ops: collective
    # instance keys are handed out per strategy, so collectives of different strategies in one test
    # process can meet (and one aborted collective poisons every later one in the process).
    strategy = mirrored
    with strategy.scope():
        model = kc.keras.models.clone_model(trained_lenet)
        model.set_weights(trained_lenet.get_weights())
        qat = kc.quantization.quantize_aware(model)
        kc.models.compile_classifier(qat, 1e-4)
    history = qat.fit(mnist_small.x_train[:1024], mnist_small.y_train[:1024], epochs=1, batch_size=128, verbose=0)
    assert strategy.num_replicas_in_sync == 2
    assert history.history["accuracy"][0] > 0.9
    flat = kc.export.to_tflite(qat, "int8", verbose=False)
    assert kc.evaluation.agreement(qat, flat, mnist_small, max_samples=300)["top1_agreement"] >= 0.99
