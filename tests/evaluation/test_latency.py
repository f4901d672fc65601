import numpy as np
import pytest

import kcompress as kc


@pytest.fixture(scope="module")
def flats(trained_lenet, mnist_small):
    return {
        "float32": kc.export.to_tflite(trained_lenet, "float32", verbose=False),
        "int8": kc.export.to_tflite(trained_lenet, "int8", representative_data=mnist_small.representative(50), verbose=False),
    }


@pytest.mark.parametrize("op_resolver", ["auto", "builtin_without_default_delegates"])
def test_interleaved_comparison(flats, mnist_small, op_resolver):
    r = kc.evaluation.compare_latency(flats, mnist_small.x_test, rounds=6, runs_per_round=20, warmup=10,
                                      op_resolver=op_resolver)
    assert list(r) == ["float32", "int8"]
    assert r["float32"]["latency_ratio"] == 1.0 and r["float32"]["op_resolver"] == op_resolver
    for variant in r.values():
        assert 0 < variant["latency_ms_p05"] <= variant["latency_ms"] <= variant["latency_ms_p95"] < 5
        assert variant["latency_ratio_p05"] <= variant["latency_ratio"] <= variant["latency_ratio_p95"]
        assert variant["rounds"] == 6
    assert 0.2 < r["int8"]["latency_ratio"] < 3


def test_reference_variant(flats, mnist_small):
    r = kc.evaluation.compare_latency(flats, mnist_small.x_test[:5], reference="int8", rounds=2, runs_per_round=5)
    assert r["int8"]["latency_ratio"] == 1.0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reference": "int4"}, ValueError, r"reference must be one of \['float32', 'int8'\], got 'int4'"),
    ({"rounds": 0}, ValueError, "rounds must be an int >= 1, got 0"),
    ({"runs_per_round": 2.5}, TypeError, "runs_per_round must be an int >= 1, got 2.5"),
])
def test_bad_arguments(flats, mnist_small, kwargs, error, match):
    with pytest.raises(error, match=match):
        kc.evaluation.compare_latency(flats, mnist_small.x_test, **kwargs)


def test_bad_inputs(flats, mnist_small):
    with pytest.raises(ValueError, match="flatbuffers must be a non-empty dict"):
        kc.evaluation.compare_latency({}, mnist_small.x_test)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 28, 28, 1\) for 'float32', got \(3, 32, 32, 3\)"):
        kc.evaluation.compare_latency(flats, np.zeros((3, 32, 32, 3), np.float32))
