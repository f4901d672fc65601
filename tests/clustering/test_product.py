import numpy as np
import pytest

import kcompress as kc
import kcompress.clustering as kcc
from kcompress.clustering.product import kmeans

keras = kc.keras


def test_kmeans_is_seeded_and_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [5, 5], [-5, 5]], float)
    points = np.concatenate([c + 0.1 * rng.normal(size=(50, 2)) for c in centers])
    c1, a1 = kmeans(points, 3, seed=1)
    c2, a2 = kmeans(points, 3, seed=1)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(a1, a2)
    found = sorted(map(tuple, np.round(c1).astype(int)))
    assert found == [(-5, 5), (0, 0), (5, 5)]
    assert kmeans(np.ones((10, 2)), 4)[0].shape == (1, 2)  # no more centroids than distinct points


def test_round_trip_is_exact_when_every_subvector_is_a_codeword():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(6, name="d")(inputs))
    rng = np.random.default_rng(0)
    words = rng.normal(size=(5, 4)).astype(np.float32)
    codes = np.array([[0, 1], [2, 3], [4, 0], [1, 2], [3, 4], [0, 0]])
    rows = words[codes].reshape(6, 8)  # (units, fan_in) built from the 5 code-words
    model.get_layer("d").kernel.assign(rows.T)
    pq = kcc.product_quantize(model, subvector=4, codebook_size=16)
    layer = pq.layers["d"]
    assert layer.codebook.shape == (5, 4) and layer.codes.shape == (6, 2) and layer.codes.dtype == np.uint8
    decoded = kcc.decode(pq)
    np.testing.assert_allclose(decoded.get_layer("d").kernel.numpy(), rows.T, atol=1e-6)
    np.testing.assert_array_equal(decoded.get_layer("d").bias.numpy(), model.get_layer("d").bias.numpy())
    s = pq.storage()
    assert (s.code_bytes, s.codebook_bytes, s.other_bytes) == (12, 5 * 4 * 4, 6 * 4)
    assert s.total_bytes == 12 + 80 + 24 and s.float32_bytes == 4 * (48 + 6)


@pytest.mark.slow
def test_padding_and_conv_layers(trained_lenet, mnist_small):
    pq = kcc.product_quantize(trained_lenet, subvector=7, codebook_size=256, layers=["conv2", "fc1"])
    conv = pq.layers["conv2"]  # fan-in 5*5*6 = 150 -> 22 sub-vectors of 7, 4 zeros of padding
    assert conv.pad == 4 and conv.codes.shape == (16, 22) and conv.kernel().shape == (5, 5, 6, 16)
    decoded = kcc.decode(pq)
    assert decoded is not trained_lenet
    err = np.abs(decoded.get_layer("fc1").kernel.numpy() - trained_lenet.get_layer("fc1").kernel.numpy()).mean()
    assert err < 0.5 * np.abs(trained_lenet.get_layer("fc1").kernel.numpy()).mean()
    base = kc.evaluation.evaluate(trained_lenet, mnist_small, latency_runs=1)["accuracy"]
    acc = kc.evaluation.evaluate(decoded, mnist_small, latency_runs=1)["accuracy"]
    assert acc > base - 0.03
    assert pq.storage().ratio > 3


def test_pruned_subvectors_decode_to_exact_zeros():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(32, name="d")(inputs))
    k = model.get_layer("d").kernel.numpy()
    k[:8] = 0  # the first half of every row: all-zero sub-vectors
    model.get_layer("d").kernel.assign(k)
    pq = kcc.product_quantize(model, subvector=4, codebook_size=8)
    assert np.all(pq.layers["d"].codebook[0] == 0)
    assert np.all(kcc.decode(pq).get_layer("d").kernel.numpy()[:8] == 0)


class TestBadInputs:
    def test_codebook_above_256(self, trained_lenet):
        with pytest.raises(ValueError, match=r"codebook_size must be \[2, 256\] \(codes are 8-bit\), got 257"):
            kcc.product_quantize(trained_lenet, codebook_size=257)

    def test_other_arguments(self, trained_lenet):
        with pytest.raises(ValueError, match="subvector must be >= 1"):
            kcc.product_quantize(trained_lenet, subvector=0)
        with pytest.raises(ValueError, match="subvector 200 is above layer 'conv1'"):
            kcc.product_quantize(trained_lenet, subvector=200)
        with pytest.raises(TypeError, match="codebook_size must be an int"):
            kcc.product_quantize(trained_lenet, codebook_size=16.0)
        with pytest.raises(ValueError, match="layers names 'pool1', a MaxPooling2D; this takes built Dense and Conv2D layers only"):
            kcc.product_quantize(trained_lenet, layers=["pool1"])
        with pytest.raises(TypeError, match="layers must hold layer names .* or layer classes, got 3"):
            kcc.product_quantize(trained_lenet, layers=[3])
        # The shared resolver: a layer class stands for every layer of that type.
        assert list(kcc.product_quantize(trained_lenet, codebook_size=4, iterations=2, layers=kc.keras.layers.Conv2D).layers) == ["conv1", "conv2"]
        with pytest.raises(TypeError, match="ProductQuantized"):
            kcc.decode(trained_lenet)
