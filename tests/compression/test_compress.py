"""kc.compress on real MNIST slices: budgets met, flatbuffers run, the recipe reproduces, runs resume.

One search (the ``run`` fixture) serves most tests: resumed with other budgets, replayed from its
recipe, and repeated on the same images streamed from TFRecord (a StreamingDataset) to show the
same decisions.
"""

import time

import numpy as np
import pytest
from model_builders import depthwise_net, residual_net

import kcompress as kc
from kcompress.compression.search import _fingerprint

pytestmark = pytest.mark.slow

FAST = dict(recovery_epochs=1, step_epochs=1, step_fraction=0.5, batch_size=128, verbose=0, calibration_samples=100)
# LeNet-5 is 70,592 B as int8: one exploration step (a low-rank fc1, about 34-40 KB) meets 40,000 B.
# max_steps=1 keeps a resumed run with an accuracy budget from exploring further (it is in the
# search's fingerprint, so every call on the module's output_dir passes it).
MAX_BYTES = 40_000
SEARCH = dict(qat_epochs=1, max_steps=1, **FAST)


@pytest.fixture(scope="module")
def tiny(mnist_small):
    """1,000 training (the last 100 are the validation split) and 200 test images."""
    return mnist_small.take(train=1000, test=200)


@pytest.fixture(scope="module")
def streamed(tiny, tmp_path_factory):
    """The same images as TFRecord shards, read as a StreamingDataset."""
    folder = tmp_path_factory.mktemp("tfrecord")
    kc.data.save_tfrecord(tiny, folder, shards=2)
    return kc.data.load_tfrecord(folder, shuffle_buffer=512)


@pytest.fixture(scope="module")
def run(trained_lenet, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("compress")
    t0 = time.perf_counter()
    res = kc.compress(trained_lenet, tiny, max_bytes=MAX_BYTES, output_dir=str(out), **SEARCH)
    return res, out, time.perf_counter() - t0


def test_budget_met_by_a_runnable_int8_flatbuffer(run, trained_lenet, tiny):
    res, out, _ = run
    assert len(res.flatbuffer) <= MAX_BYTES < res.baseline["int8"]["size_bytes"]
    info = kc.export.describe(res.flatbuffer)
    assert info.inputs[0].dtype == np.int8 and info.size_bytes == len(res.flatbuffer)
    measured = kc.evaluation.evaluate(res.flatbuffer, tiny, latency_runs=1)
    assert measured["accuracy"] == pytest.approx(res.winner["test_accuracy"])
    assert measured["accuracy"] > 0.8  # 1 epoch of recovery on 900 images
    assert res.winner["meets_budget"] and res.winner["size_ratio"] > 250_164 / MAX_BYTES
    phases = {r["phase"] for r in res.records}
    assert phases == {"baseline", "explore", "finish", "winner"}
    assert all(r["size_bytes"] > 0 and 0 <= r["val_accuracy"] <= 1 for r in res.records)
    assert res.float_model.count_params() < trained_lenet.count_params()
    for name in ("winner.tflite", "recipe.json", "results.json", "results.csv", "report.md", "pareto.png"):
        assert (out / name).stat().st_size > 0
    assert "Winner:" in (out / "report.md").read_text()


def test_recipe_reproduces_the_winner(run, trained_lenet, tiny):
    res, _, _ = run
    recipe = kc.pipeline.Pipeline.from_config(res.recipe.get_config())  # through its config, as from recipe.json
    replay = recipe.run(tiny, model=trained_lenet, seed=0, verbose=0)
    flat = next(iter(replay.flatbuffers.values()))
    # The same graph and weights' shapes; the bytes may differ by a few alignment words (34,408 vs
    # 34,440 once in a full suite run, equal when run alone).
    got, want = kc.export.describe(flat), kc.export.describe(res.flatbuffer)
    assert (got.ops, got.params, got.macs, got.weight_dtypes) == (want.ops, want.params, want.macs, want.weight_dtypes)
    assert abs(len(flat) - len(res.flatbuffer)) <= 64, (len(flat), len(res.flatbuffer))
    assert [tuple(w.shape) for w in replay.model.get_weights()] == [tuple(w.shape) for w in res.model.get_weights()]
    assert abs(replay.records[0]["accuracy"] - res.winner["test_accuracy"]) <= 0.03


def test_a_second_run_resumes_another_budget_reuses_the_search_other_settings_are_refused(run, trained_lenet, tiny):
    res, out, first_seconds = run
    t0 = time.perf_counter()
    again = kc.compress(trained_lenet, tiny, max_bytes=MAX_BYTES, output_dir=str(out), **SEARCH)
    assert again.flatbuffer == res.flatbuffer
    assert time.perf_counter() - t0 < first_seconds / 2
    # Another budget re-uses the search and its finished candidates (no training), chosen anew.
    t0 = time.perf_counter()
    other = kc.compress(trained_lenet, tiny, max_bytes=MAX_BYTES, max_macs=10**9, output_dir=str(out), **SEARCH)
    assert other.winner["step"] == res.winner["step"] and len(other.flatbuffer) <= MAX_BYTES
    assert time.perf_counter() - t0 < first_seconds / 2
    with pytest.raises(ValueError, match="holds a compress run with another model, dataset or settings"):
        kc.compress(trained_lenet, tiny, max_bytes=MAX_BYTES, output_dir=str(out), **{**SEARCH, "recovery_epochs": 2})


def test_accuracy_budget_guided_search_finds_the_smallest_passing(run, trained_lenet, tiny):
    # On the module's search (its trajectory and finished candidates re-used, as another budget is):
    # with an accuracy floor the smallest finished export that keeps the floor wins.
    _, out, first_seconds = run
    t0 = time.perf_counter()
    res = kc.compress(trained_lenet, tiny, max_accuracy_drop=0.05, output_dir=str(out), **SEARCH)
    assert time.perf_counter() - t0 < first_seconds / 2  # chosen among what the search finished: nothing trains
    floor = res.baseline["val_accuracy"] - 0.05
    assert res.winner["val_accuracy"] >= floor and res.winner["meets_budget"]
    finished = [r for r in res.records if r["phase"] == "finish"]
    assert {r["export"] for r in finished} == {"ptq_int8_per_channel", "ptq_int8_per_tensor", "qat_int8"}
    passing = [r for r in finished if r["val_accuracy"] >= floor]
    assert all(r["meets_budget"] for r in passing) and res.winner["size_bytes"] == min(r["size_bytes"] for r in passing)
    smaller_passing = [r for r in finished if r["meets_budget"] and r["size_bytes"] < res.winner["size_bytes"]]
    assert not smaller_passing  # the winner is the smallest finished candidate that keeps the accuracy


def test_compress_streams_and_decides_as_on_arrays(run, streamed, trained_lenet, tmp_path):
    on_arrays = run[0]
    on_stream = kc.compress(trained_lenet, streamed, max_bytes=MAX_BYTES, output_dir=str(tmp_path),
                            **SEARCH)  # never reads x_train

    def by_phase(res, phase):
        return [r for r in res.records if r["phase"] == phase]

    # Before any training both runs see the same model and validation images: identical measurements.
    assert on_stream.baseline["val_accuracy"] == on_arrays.baseline["val_accuracy"]
    assert on_stream.baseline["test_accuracy"] == on_arrays.baseline["test_accuracy"]
    first_a, first_s = by_phase(on_arrays, "explore")[0], by_phase(on_stream, "explore")[0]
    assert first_s["proposals"] == first_a["proposals"]
    # The same cuts and the same finished candidate; accuracies within the noise of a shuffle
    # buffer (instead of a permutation) and another calibration draw.
    assert [r["move"] for r in by_phase(on_stream, "explore")] == [r["move"] for r in by_phase(on_arrays, "explore")]
    # The export (per-tensor, per-channel or after QAT) may flip where their accuracies are that close.
    assert on_stream.winner["step"] == on_arrays.winner["step"]
    assert len(on_stream.flatbuffer) <= MAX_BYTES and len(on_arrays.flatbuffer) <= MAX_BYTES
    assert on_stream.winner["val_accuracy"] == pytest.approx(on_arrays.winner["val_accuracy"], abs=0.03)
    assert on_stream.winner["test_accuracy"] == pytest.approx(on_arrays.winner["test_accuracy"], abs=0.03)
    assert on_stream.winner["test_accuracy"] > 0.8
    # What it measured on the streamed test split is what evaluate measures on the arrays.
    arrays = streamed.to_arrays()
    assert kc.evaluation.evaluate(on_stream.flatbuffer, arrays, latency_runs=1)["accuracy"] == pytest.approx(
        on_stream.winner["test_accuracy"])
    # The streamed images fingerprint as the arrays they were written from: either resumes the other's output_dir.
    config = {"seed": 0}
    assert _fingerprint(trained_lenet, streamed, config) == _fingerprint(trained_lenet, arrays, config)
    assert (tmp_path / "compress_state.json").is_file() and (tmp_path / "winner.tflite").is_file()


def test_too_small_a_streamed_dataset_is_refused(streamed, trained_lenet):
    with pytest.raises(ValueError, match=r"too small to compress: 10 training and 200 test images"):
        kc.compress(trained_lenet, streamed.take(train=10), max_bytes=MAX_BYTES)
    with pytest.raises(TypeError, match="strategy must be None or a tf.distribute.Strategy, got str"):
        kc.compress(trained_lenet, streamed, max_bytes=MAX_BYTES, strategy="multiworker")


@pytest.mark.parametrize("build", [residual_net, depthwise_net])
def test_residual_and_depthwise_nets_shrink_to_a_bytes_and_macs_budget(build, tiny):
    # Sizes and MACs are asserted, not accuracy: 600 images (60 validate) train and recover enough.
    data = tiny.take(train=600, test=100)
    kc.keras.utils.set_random_seed(0)
    model = build(width=8)
    kc.models.compile_classifier(model, 3e-3)
    kc.models.fit(model, data, epochs=1, batch_size=64, verbose=0)
    base = kc.export.to_tflite(model, "int8", representative_data=data.representative(100), verbose=False)
    macs = kc.evaluation.keras_macs(model)
    res = kc.compress(model, data, max_bytes=int(0.75 * len(base)), max_macs=int(0.75 * macs), qat_epochs=0,
                      max_steps=4, **{**FAST, "step_fraction": 0.6})
    assert len(res.flatbuffer) <= 0.75 * len(base)
    assert res.winner["macs"] <= 0.75 * macs
    out = kc.evaluation.litert.predict(res.flatbuffer, data.x_test[:16])
    assert out.shape == (16, 10)
    moves = [r["move"] for r in res.records if r["phase"] == "explore"]
    assert moves  # it cut something


def test_a_keras3_model_is_accepted(tiny):
    import keras  # Keras 3, next to tf_keras

    k3 = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, name="c"),
                           keras.layers.Flatten(name="f"), keras.layers.Dense(10, name="out")])
    with pytest.raises(kc.BudgetError, match="cannot be met"):  # converted, measured, refused before training
        kc.compress(k3, tiny, max_bytes=100)
