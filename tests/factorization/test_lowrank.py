import numpy as np
import pytest

import kcompress as kc
import kcompress.factorization as kf

keras = kc.keras


def _dense_model(seed=0):
    inputs = keras.Input((20,))
    x = keras.layers.Dense(30, activation="relu", name="a")(inputs)
    outputs = keras.layers.Dense(10, name="b")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    # Mostly rank 3 plus noise, so energy targets pick small ranks.
    kernel = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 30)) + 0.3 * rng.normal(size=(20, 30))
    model.get_layer("a").set_weights([kernel.astype("float32"), rng.normal(size=30).astype("float32")])
    return model


def _svals(layer):
    w = layer.kernel.numpy()
    return np.linalg.svd(w.reshape(-1, w.shape[-1]).astype(np.float64), compute_uv=False)


class TestReconstruction:
    @pytest.mark.parametrize("rank", [1, 5, 11])
    def test_dense_error_is_the_eckart_young_bound(self, rank):
        model = _dense_model()
        r = kf.low_rank(model, rank={"a": rank})
        s = _svals(model.get_layer("a"))
        bound = np.sqrt((s[rank:] ** 2).sum() / (s ** 2).sum())
        assert r.errors["a"] == pytest.approx(bound, rel=1e-4, abs=1e-6)
        u, v = r.model.get_layer("a_svd_u"), r.model.get_layer("a_svd_v")
        assert u.kernel.shape == (20, rank) and v.kernel.shape == (rank, 30) and u.bias is None
        np.testing.assert_array_equal(v.bias.numpy(), model.get_layer("a").bias.numpy())
        assert r.params_after == r.params_before - 20 * 30 + rank * 50

    @pytest.mark.parametrize("energy", [0.5, 0.9, 0.99])
    def test_energy_keeps_at_least_that_fraction(self, energy):
        model = _dense_model()
        r = kf.low_rank(model, energy=energy, layers=["a"])
        s2 = _svals(model.get_layer("a")) ** 2
        rank = r.ranks["a"]
        assert r.energy["a"] >= energy - 1e-9
        assert s2[: rank - 1].sum() / s2.sum() < energy  # the smallest such rank
        assert r.errors["a"] <= np.sqrt(1 - energy) + 1e-6

    def test_splits_that_save_nothing_are_skipped(self):
        model = _dense_model()
        x = np.random.default_rng(1).normal(size=(8, 20)).astype("float32")
        r_full = kf.low_rank(model, rank={"b": 10})  # b is 30x10: rank 10 is exact, but 410 > 310 params
        assert r_full.ranks == {} and "b" in r_full.skipped
        np.testing.assert_allclose(r_full.model(x), model(x), atol=1e-5)

    def test_conv_split_matches_truncated_kernel(self, trained_lenet):
        r = kf.low_rank(trained_lenet, rank={"conv2": 4})
        first, second = r.model.get_layer("conv2_svd_u"), r.model.get_layer("conv2_svd_v")
        assert first.kernel.shape == (5, 5, 6, 4) and second.kernel.shape == (1, 1, 4, 16)
        s = _svals(trained_lenet.get_layer("conv2"))
        assert r.errors["conv2"] == pytest.approx(np.sqrt((s[4:] ** 2).sum() / (s ** 2).sum()), rel=1e-4)
        assert r.macs_after < r.macs_before and r.params_after == r.params_before - 2400 + 4 * (150 + 16)
        x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
        # The composed layers equal the original conv with the rank-4 kernel.
        w = trained_lenet.get_layer("conv2").kernel.numpy().reshape(150, 16)
        u, sv, vt = np.linalg.svd(w, full_matrices=False)
        truncated = kc.keras.models.clone_model(trained_lenet)
        truncated.set_weights(trained_lenet.get_weights())
        truncated.get_layer("conv2").kernel.assign(((u[:, :4] * sv[:4]) @ vt[:4]).reshape(5, 5, 6, 16))
        np.testing.assert_allclose(r.model(x), truncated(x), atol=1e-4)


@pytest.mark.slow
def test_lenet5_dense_layers_at_half_the_params(trained_lenet, mnist_small):
    before = [w.copy() for w in trained_lenet.get_weights()]
    r = kf.low_rank(trained_lenet, param_ratio=0.5, layers=["fc1", "fc2"])
    assert r.params_after <= 0.5 * 61706 and r.params_before == 61706
    assert set(r.ranks) == {"fc1", "fc2"}
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_lenet.get_weights(), strict=True))
    acc = kc.evaluation.evaluate(r.model, mnist_small, latency_runs=1)["accuracy"]
    base = kc.evaluation.evaluate(trained_lenet, mnist_small, latency_runs=1)["accuracy"]
    assert acc > base - 0.05  # before any fine-tuning


def test_sequential_and_save_load(tmp_path):
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(30, activation="relu", name="a"),
                              keras.layers.Dense(10, name="b")])
    r = kf.low_rank(model, rank=3)
    assert [layer.name for layer in r.model.layers] == ["a_svd_u", "a_svd_v", "b_svd_u", "b_svd_v"]
    x = np.random.default_rng(0).normal(size=(4, 20)).astype("float32")
    path = str(tmp_path / "m.keras")
    r.model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x), r.model(x), atol=1e-6)
    again = keras.Sequential.from_config(r.model.get_config())
    assert [layer.name for layer in again.layers] == [layer.name for layer in r.model.layers]


class TestBadInputs:
    def test_rank_above_the_layers(self):
        with pytest.raises(ValueError, match=r"rank 21 for layer 'a' is outside \[1, 20\]"):
            kf.low_rank(_dense_model(), rank={"a": 21})
        with pytest.raises(ValueError, match="outside"):
            kf.low_rank(_dense_model(), rank=0)

    @pytest.mark.parametrize("energy", [0.0, -0.1, 1.5])
    def test_energy_outside_unit_interval(self, energy):
        with pytest.raises(ValueError, match=r"energy must be in \(0, 1\]"):
            kf.low_rank(_dense_model(), energy=energy)

    def test_one_way_to_choose(self):
        with pytest.raises(ValueError, match="exactly one of rank, energy or param_ratio"):
            kf.low_rank(_dense_model(), rank=2, energy=0.9)
        with pytest.raises(ValueError, match="exactly one"):
            kf.low_rank(_dense_model())

    def test_types_and_layers(self):
        with pytest.raises(TypeError, match="rank must be a positive int"):
            kf.low_rank(_dense_model(), rank=2.5)
        with pytest.raises(ValueError, match="'nope', which is not a layer"):
            kf.low_rank(_dense_model(), rank=2, layers=["nope"])
        with pytest.raises(TypeError, match="tf_keras.Model"):
            kf.low_rank("model", rank=2)
        with pytest.raises(ValueError, match=r"param_ratio must be in \(0, 1\]"):
            kf.low_rank(_dense_model(), param_ratio=2.0)
