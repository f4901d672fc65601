import logging

import pytest

import kcompress as kc


@pytest.mark.slow
def test_sparse_float32_flatbuffer_is_smaller_and_as_accurate(pruned80, mnist_small):
    _, stripped, _ = pruned80
    dense = kc.export.to_tflite(stripped, "float32", verbose=False)
    sparse = kc.export.to_tflite(stripped, "float32", sparse=True, verbose=False)
    assert len(sparse) <= 0.45 * len(dense)
    rd = kc.evaluation.evaluate(dense, mnist_small, latency_runs=10)
    rs = kc.evaluation.evaluate(sparse, mnist_small, latency_runs=10)
    assert rs["accuracy"] == pytest.approx(rd["accuracy"], abs=1e-9)
    assert rs["nonzero_params"] == rd["nonzero_params"] <= 0.21 * rd["params"]
    assert kc.export.describe(sparse).sparse_tensors == 5


@pytest.mark.slow
def test_sparse_int8_runs_on_the_builtin_kernels_and_says_so(pruned80, mnist_small, caplog):
    _, stripped, _ = pruned80
    data = mnist_small.representative(100)
    dense = kc.export.to_tflite(stripped, "int8", representative_data=data, verbose=False)
    sparse = kc.export.to_tflite(stripped, "int8", representative_data=data, sparse=True, verbose=False)
    assert len(sparse) < 0.8 * len(dense)
    with caplog.at_level(logging.WARNING):
        r = kc.evaluation.evaluate(sparse, mnist_small, latency_runs=10)
    assert r["runtime"] == "litert:builtin_without_default_delegates"
    assert "default delegate cannot run this flatbuffer" in caplog.text
    rd = kc.evaluation.evaluate(dense, mnist_small, latency_runs=10)
    assert rd["runtime"] == "litert:auto"
    assert abs(r["accuracy"] - rd["accuracy"]) <= 0.002
