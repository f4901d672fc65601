"""kc.compress on a StreamingDataset (TFRecord written here): the decisions of the in-memory run, no arrays read."""

import pytest

import kcompress as kc
from kcompress.compression.search import _fingerprint

pytestmark = pytest.mark.slow

SETTINGS = dict(max_bytes=40_000, recovery_epochs=1, step_epochs=1, qat_epochs=0, step_fraction=0.5, batch_size=128,
                calibration_samples=100, verbose=0)


@pytest.fixture(scope="module")
def slices(mnist, tmp_path_factory):
    """1,000 training (the last 100 validate) and 200 test images, in memory and as TFRecord shards."""
    arrays = mnist.take(train=1000, test=200)
    folder = tmp_path_factory.mktemp("tfrecord")
    kc.data.save_tfrecord(arrays, folder, shards=2)
    return arrays, kc.data.load_tfrecord(folder, shuffle_buffer=512)


def test_compress_streams_and_decides_as_on_arrays(slices, trained_lenet, tmp_path):
    arrays, streamed = slices
    on_arrays = kc.compress(trained_lenet, arrays, **SETTINGS)
    on_stream = kc.compress(trained_lenet, streamed, output_dir=str(tmp_path), **SETTINGS)  # never reads x_train

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
    # The export (per-tensor or per-channel scales) may flip where their accuracies are that close.
    assert on_stream.winner["step"] == on_arrays.winner["step"]
    assert len(on_stream.flatbuffer) <= 40_000 and len(on_arrays.flatbuffer) <= 40_000
    assert on_stream.winner["val_accuracy"] == pytest.approx(on_arrays.winner["val_accuracy"], abs=0.03)
    assert on_stream.winner["test_accuracy"] == pytest.approx(on_arrays.winner["test_accuracy"], abs=0.03)
    assert on_stream.winner["test_accuracy"] > 0.8
    # What it measured on the streamed test split is what evaluate measures on the arrays.
    assert kc.evaluation.evaluate(on_stream.flatbuffer, arrays, latency_runs=1)["accuracy"] == pytest.approx(
        on_stream.winner["test_accuracy"])
    # The streamed images fingerprint as the arrays they were written from: either resumes the other's output_dir.
    config = {"seed": 0}
    assert _fingerprint(trained_lenet, streamed, config) == _fingerprint(trained_lenet, arrays, config)
    assert (tmp_path / "compress_state.json").is_file() and (tmp_path / "winner.tflite").is_file()


def test_too_small_a_streamed_dataset_is_refused(slices, trained_lenet):
    _, streamed = slices
    with pytest.raises(ValueError, match=r"too small to compress: 10 training and 200 test images"):
        kc.compress(trained_lenet, streamed.take(train=10), max_bytes=40_000)
    with pytest.raises(TypeError, match="strategy must be None or a tf.distribute.Strategy, got str"):
        kc.compress(trained_lenet, streamed, max_bytes=40_000, strategy="multiworker")
