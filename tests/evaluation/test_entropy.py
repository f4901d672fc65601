import math

import numpy as np
import pytest

import kcompress as kc
import kcompress.evaluation as kcc
from kcompress.evaluation.entropy import huffman_bits, huffman_code_lengths

keras = kc.keras


def _tiny(values):
    """A one-tensor model: Dense(1, no bias) whose kernel holds ``values``."""
    model = keras.Sequential([keras.Input((len(values),)), keras.layers.Dense(1, use_bias=False, name="d")])
    model.get_layer("d").set_weights([np.asarray(values, np.float32).reshape(-1, 1)])
    return model


def test_huffman_code_lengths_by_hand():
    # a:5 b:2 c:1 d:1 -> merge c+d (2), then b+cd (4), then a+bcd: a=1, b=2, c=d=3 bits.
    assert huffman_code_lengths({"a": 5, "b": 2, "c": 1, "d": 1}) == {"a": 1, "b": 2, "c": 3, "d": 3}
    assert huffman_code_lengths({"x": 7}) == {"x": 1}
    assert huffman_bits([3, 3, 3, 3, 3, 1, 1, 2, 4]) == (5 * 1 + 2 * 2 + 3 + 3, 4)


class TestHandComputed:
    # 12 weights, 3 nonzero: 0.5 at position 2, -1 at 10, 0.5 at 11.
    values = [0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0, -1, 0.5]

    def test_dense_encoding(self):
        r = kcc.entropy_coded_size(_tiny(self.values), encoding="dense")
        t = r.tensors[0]
        # Symbols 0 x9, 0.5 x2, -1 x1 -> Huffman 1, 2, 2 bits: 9 + 4 + 2 = 15 bits -> 2 bytes.
        assert (t.encoding, t.values, t.value_bits, t.index_bits) == ("dense", 3, 15, 0)
        # Codebook: 3 float32 values (12 B) + Huffman table 3 x 5 bits (2 B) + 1 B header.
        assert t.codebook_bytes == 12 + 2 + 1
        assert t.total_bytes == 2 + 15 and r.total_bytes == 17 and r.float32_bytes == 48
        assert r.ratio == pytest.approx(48 / 17) and r.lossless

    def test_sparse_encoding_with_filler(self):
        t = kcc.entropy_coded_size(_tiny(self.values), encoding="sparse", index_bits=2).tensors[0]
        # 2-bit gaps cover 1..4 positions. Gaps 3, 8, 1: the 8 needs one filler zero (4 + 4).
        # Entries (gap symbol, value): (2, 0.5) (3, 0) (3, -1) (0, 0.5).
        assert t.fillers == 1 and t.index_width == 2
        # Values 0.5 x2, 0 x1, -1 x1 -> 1, 2, 2 bits = 6 bits; gaps 3 x2, 2 x1, 0 x1 -> 1, 2, 2 = 6 bits.
        assert (t.value_bits, t.index_bits) == (6, 6)
        # Codebook: the value table holds the 3 distinct values of the tensor (12 B); Huffman tables
        # for 3 value symbols and 4 gap symbols: 7 x 5 bits -> 5 B; header 1 B.
        assert t.codebook_bytes == 12 + 5 + 1 and t.total_bytes == 2 + 18

    def test_cheapest_encoding_is_chosen(self):
        t = kcc.entropy_coded_size(_tiny(self.values)).tensors[0]
        assert t.total_bytes == min(17, 20, 1 + 48) and t.encoding == "dense"
        raw = kcc.entropy_coded_size(_tiny([0.1, 0.2, 0.3])).tensors[0]
        assert raw.encoding == "raw" and raw.total_bytes == 12 + 1


def test_many_distinct_values_are_rounded_to_levels():
    values = np.linspace(-1, 1, 1000).astype(np.float32)
    model = _tiny(values)
    r = kcc.entropy_coded_size(model, levels=16)
    assert not r.lossless and r.tensors[0].values == 16
    q = kcc.quantize_levels(model, levels=16)
    kernel = q.get_layer("d").kernel.numpy()
    assert len(np.unique(kernel)) == 16 and np.abs(kernel.ravel() - values).max() <= (2 / 15) / 2 + 1e-6
    np.testing.assert_array_equal(model.get_layer("d").kernel.numpy().ravel(), values)  # input unchanged


def test_pruned_and_clustered_lenet_compresses(trained_lenet):
    r0 = kcc.entropy_coded_size(trained_lenet)
    assert r0.float32_bytes == 4 * 61706 and 3.5 < r0.ratio < 4.5  # ~8 bits per weight
    pruned = keras.models.clone_model(trained_lenet)
    pruned.set_weights(trained_lenet.get_weights())
    # Magnitude-prune 90% of every kernel by hand.
    for layer in pruned.layers:
        if getattr(layer, "kernel", None) is not None:
            k = layer.kernel.numpy()
            k[np.abs(k) < np.quantile(np.abs(k), 0.9)] = 0
            layer.kernel.assign(k)
    r1 = kcc.entropy_coded_size(pruned)
    fc1 = next(t for t in r1.tensors if t.layer == "fc1" and "kernel" in t.weight)
    assert fc1.encoding == "sparse" and fc1.nonzero == pytest.approx(4800, abs=5)
    assert r1.by_layer()["fc1"]["total_bytes"] == sum(t.total_bytes for t in r1.tensors if t.layer == "fc1")
    assert r1.ratio > 15
    bias = next(t for t in r1.tensors if t.layer == "fc1" and "bias" in t.weight)
    assert bias.encoding == "raw" and bias.lossless


class TestBadInputs:
    def test_arguments(self, trained_lenet):
        with pytest.raises(ValueError, match="levels must be an int in"):
            kcc.entropy_coded_size(trained_lenet, levels=1)
        with pytest.raises(ValueError, match=r"index_bits must be an int in \[1, 16\] or None, got 0"):
            kcc.entropy_coded_size(trained_lenet, index_bits=0)
        with pytest.raises(ValueError, match="encoding must be one of 'raw', 'dense', 'sparse', got 'zip'"):
            kcc.entropy_coded_size(trained_lenet, encoding="zip")
        with pytest.raises(TypeError):
            kcc.entropy_coded_size(b"flatbuffer")

    def test_wrapped_models_are_refused(self, trained_lenet):
        pruned = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.5))
        with pytest.raises(ValueError, match="strip it first"):
            kcc.entropy_coded_size(pruned)


def test_total_is_bits_rounded_up_plus_codebooks(trained_lenet):
    r = kcc.entropy_coded_size(trained_lenet)
    for t in r.tensors:
        assert t.total_bytes == math.ceil((t.value_bits + t.index_bits) / 8) + t.codebook_bytes


def test_entropy_coded_size_lives_in_evaluation_and_clustering_reexports_it():
    assert kc.clustering.entropy_coded_size is kc.evaluation.entropy_coded_size
    assert kc.clustering.EntropyReport is kc.evaluation.EntropyReport
