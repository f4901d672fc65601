import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import kcompress as kc
import kcompress.clustering as kcc

keras = kc.keras


def _pruned(model, fraction=0.8):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if getattr(layer, "kernel", None) is not None:
            k = layer.kernel.numpy()
            k[np.abs(k) < np.quantile(np.abs(k), fraction)] = 0
            layer.kernel.assign(k)
    return copy


@pytest.mark.slow
def test_cluster_fine_tune_strip(trained_lenet, mnist_small):
    before = [w.copy() for w in trained_lenet.get_weights()]
    clustered = kcc.cluster(trained_lenet, clusters={"fc1": 8, "conv2": 16})
    assert kcc.is_clustered(clustered) and not kcc.is_clustered(trained_lenet)
    kc.models.compile_classifier(clustered, 1e-4)
    kc.models.fit(clustered, mnist_small, epochs=1, batch_size=128, validation_split=0.0, verbose=0, max_train=1024)
    shared = kcc.strip(clustered)
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_lenet.get_weights(), strict=True))
    assert not kcc.is_clustered(shared) and kcc.is_clustered(clustered)
    assert len(np.unique(shared.get_layer("fc1").kernel.numpy())) <= 8
    assert len(np.unique(shared.get_layer("conv2").kernel.numpy())) <= 16
    assert len(np.unique(shared.get_layer("fc2").kernel.numpy())) > 1000
    assert not any(a is b for a in shared.layers for b in clustered.layers)
    acc = kc.evaluation.evaluate(shared, mnist_small, latency_runs=1)["accuracy"]
    assert acc > 0.9
    assert kcc.entropy_coded_size(shared).by_layer()["fc1"]["ratio"] > 8  # ~3-bit values


@pytest.mark.slow
def test_sparsity_is_preserved_for_pruned_models(trained_lenet, mnist_small):
    pruned = _pruned(trained_lenet)
    zeros = pruned.get_layer("fc1").kernel.numpy() == 0
    clustered = kcc.cluster(pruned, clusters=8)  # preserve_sparsity=None -> True (80% zeros)
    kc.models.compile_classifier(clustered, 1e-4)
    clustered.run_eagerly = True  # four steps: no train function to trace (the test above trains in graph mode)
    kc.models.fit(clustered, mnist_small, epochs=1, batch_size=128, validation_split=0.0, verbose=0, max_train=512)
    shared = kcc.strip(clustered)
    kernel = shared.get_layer("fc1").kernel.numpy()
    np.testing.assert_array_equal(kernel == 0, zeros)
    assert len(np.unique(kernel)) <= 9  # 8 shared values and zero


def test_save_load_clustered_model(trained_lenet, tmp_path):
    clustered = kcc.cluster(trained_lenet, clusters=8, layers=["fc2"])
    path = str(tmp_path / "c.keras")
    clustered.save(path)
    with tfmot.clustering.keras.cluster_scope():
        loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), clustered(x), atol=1e-5)
    np.testing.assert_allclose(kcc.strip(loaded)(x), kcc.strip(clustered)(x), atol=1e-5)


@pytest.mark.slow
def test_mirrored_strategy(trained_lenet, mnist_small, mirrored):
    with mirrored.scope():
        clustered = kcc.cluster(_pruned(trained_lenet), clusters=8, layers=["fc1", "fc2"])
        kc.models.compile_classifier(clustered, 1e-4)
    history = kc.models.fit(clustered, mnist_small.take(train=512, test=100), epochs=1, batch_size=128,
                            validation_split=0.0, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    shared = kcc.strip(clustered)
    assert len(np.unique(shared.get_layer("fc1").kernel.numpy())) <= 9


class TestBadInputs:
    def test_clusters(self, trained_lenet):
        with pytest.raises(ValueError, match=r"clusters must be in \[2, 256\].*got 300"):
            kcc.cluster(trained_lenet, clusters=300)
        with pytest.raises(ValueError, match=r"clusters\['fc1'\] must be in"):
            kcc.cluster(trained_lenet, clusters={"fc1": 1})
        with pytest.raises(TypeError, match="clusters must be an int"):
            kcc.cluster(trained_lenet, clusters=8.0)

    def test_layers_and_options(self, trained_lenet):
        with pytest.raises(ValueError, match="'nope', which is not a layer"):
            kcc.cluster(trained_lenet, layers=["nope"])
        with pytest.raises(ValueError, match="layers names 'pool1', a MaxPooling2D; this takes layers TFMOT can cluster only"):
            kcc.cluster(trained_lenet, layers=["pool1"])
        with pytest.raises(ValueError, match="init must be one of"):
            kcc.cluster(trained_lenet, init="best")
        with pytest.raises(TypeError, match="preserve_sparsity"):
            kcc.cluster(trained_lenet, preserve_sparsity="yes")
        with pytest.raises(ValueError, match="holds no clustering wrappers"):
            kcc.strip(trained_lenet)
        by_class = kcc.cluster(trained_lenet, clusters=4, layers=kc.keras.layers.Conv2D)  # the shared resolver
        assert sorted(layer.layer.name for layer in by_class.layers if isinstance(layer, keras.layers.Wrapper)) == ["conv1", "conv2"]
        clustered = kcc.cluster(trained_lenet, clusters=4, layers=["fc2"])
        with pytest.raises(ValueError, match="already holds clustering wrappers"):
            kcc.cluster(clustered)
