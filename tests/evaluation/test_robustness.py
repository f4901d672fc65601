import numpy as np
import pytest

import kcompress as kc


def test_perturb_is_seeded_clipped_and_strong_enough():
    x = np.full((4, 28, 28, 1), 0.5, np.float32)
    a = kc.evaluation.perturb(x, "gauss", 0.2, seed=3)
    np.testing.assert_array_equal(a, kc.evaluation.perturb(x, "gauss", 0.2, seed=3))
    assert a.min() >= 0 and a.max() <= 1 and abs(float(np.std(a - x)) - 0.2) < 0.01
    sp = kc.evaluation.perturb(x, "saltpepper", 0.1, seed=0)
    hit = sp != 0.5
    assert abs(hit.mean() - 0.1) < 0.01 and set(np.unique(sp[hit])) == {0.0, 1.0}


@pytest.mark.slow
def test_keras_and_flatbuffer(trained_lenet, mnist_small):
    keys = {"robust_gauss_0.1", "robust_gauss_0.3", "robust_gauss_0.6", "robust_saltpepper_0.05"}
    r = kc.evaluation.robustness(trained_lenet, mnist_small, noise=(0.1, 0.3, 0.6), max_samples=500)
    assert set(r) == keys
    clean = kc.evaluation.evaluate(trained_lenet, mnist_small, max_samples=500, latency_runs=1)["accuracy"]
    assert r["robust_gauss_0.1"] > clean - 0.03  # mild noise barely matters
    assert r["robust_gauss_0.6"] < r["robust_gauss_0.1"] - 0.1  # strong noise does
    flat = kc.export.to_tflite(trained_lenet, "float32", verbose=False)
    rf = kc.evaluation.robustness(flat, mnist_small, noise=(0.1, 0.3, 0.6), max_samples=500)
    for key in keys:  # the same perturbed inputs: the float32 flatbuffer agrees with Keras
        assert rf[key] == pytest.approx(r[key], abs=0.005)


def test_bad_inputs(trained_lenet, mnist_small):
    with pytest.raises(ValueError, match=r"noise strengths must be a finite number in \(0, 1\], got 1.5"):
        kc.evaluation.robustness(trained_lenet, mnist_small, noise=(0.1, 1.5))
    with pytest.raises(ValueError, match="salt_pepper strengths"):
        kc.evaluation.robustness(trained_lenet, mnist_small, salt_pepper=(0,))
    with pytest.raises(ValueError, match="max_samples"):
        kc.evaluation.robustness(trained_lenet, mnist_small, max_samples=0)
    with pytest.raises(TypeError, match="Dataset"):
        kc.evaluation.robustness(trained_lenet, (np.zeros((2, 28, 28, 1)), np.zeros(2)))
    with pytest.raises(ValueError, match="kind must be one of"):
        kc.evaluation.perturb(np.zeros((1, 2)), "blur", 0.1)
