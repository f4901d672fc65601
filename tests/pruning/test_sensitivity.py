"""Sensitivity analysis: validation accuracy with each channel group cut alone."""

import numpy as np
import pytest

import kcompress as kc


@pytest.fixture(scope="module")
def report(trained_lenet, mnist_small):
    return kc.pruning.sensitivity(trained_lenet, mnist_small, ratios=(0.25, 0.75), max_samples=400)


# The report builds and runs eight cut models (seconds): slow, like the tests below that use it. The fast
# subset runs sensitivity() through tests/keras3/test_entry_points.py (one group, one ratio).
@pytest.mark.slow
def test_every_prunable_group_at_every_ratio(report, trained_lenet, mnist_small):
    groups = {r["group"] for r in report.rows}
    assert groups == {"conv1", "conv2", "fc1", "fc2"}
    assert report.skipped == {"logits": "its channels reach the model output through 'logits'"}
    assert len(report.rows) == 8 and report.samples == 400
    x, y = kc.pruning.validation_split(mnist_small, max_samples=400)
    base = float(np.mean(np.argmax(trained_lenet.predict(x, verbose=0), -1) == y))
    assert report.baseline == pytest.approx(base)
    for r in report.rows:
        cut = kc.pruning.prune_channels(trained_lenet, channels={r["group"]: r["kept"]})
        assert r["params"] == cut.count_params() and r["drop"] == pytest.approx(base - r["accuracy"])
    # Removing three quarters of conv2's filters costs more than removing a quarter.
    by = {(r["group"], r["ratio"]): r["accuracy"] for r in report.rows}
    assert by[("conv2", 0.75)] < by[("conv2", 0.25)]
    assert sorted(report.cheapest(max_drop=1.0)) == sorted(groups)


@pytest.mark.slow
def test_table_and_plot(report, tmp_path):
    text = report.to_markdown()
    assert "| conv2 | conv2 | 16 |" in text and "cut 75%" in text and "not cut: its channels reach" in text
    path = report.plot(tmp_path / "s.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_validation_split_is_the_one_keras_holds_out(mnist_small):
    x, y = kc.pruning.validation_split(mnist_small)
    assert len(x) == 400 and np.array_equal(x, mnist_small.x_train[3600:])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"ratios": 0.5}, TypeError, "ratios must be a sequence"),
    ({"ratios": ()}, ValueError, "ratios must hold at least one"),
    ({"ratios": (0.5, 1.0)}, ValueError, r"ratios must hold fractions in \(0, 1\), got 1.0"),
    ({"layers": ["pool1"]}, ValueError, "layers names 'pool1', a MaxPooling2D; this takes layers that produce a channel group"),
    ({"max_samples": 0}, ValueError, "max_samples must be an int >= 1 or None, got 0"),
    ({"max_samples": "100"}, TypeError, "max_samples must be an int >= 1 or None, got '100'"),
    ({"max_samples": 1.5}, TypeError, "max_samples must be an int >= 1 or None, got 1.5"),
    ({"max_samples": True}, TypeError, "max_samples must be an int >= 1 or None, got True"),
])
def test_bad_arguments(trained_lenet, mnist_small, kwargs, error, message):
    with pytest.raises(error, match=message):
        kc.pruning.sensitivity(trained_lenet, mnist_small, **kwargs)


def test_validation_split_checks_its_arguments(mnist_small):
    with pytest.raises(TypeError, match="max_samples must be an int >= 1 or None, got '10'"):
        kc.pruning.validation_split(mnist_small, max_samples="10")
    with pytest.raises(TypeError, match=r"fraction must be a finite number in \(0, 1\), got '0.1'"):
        kc.pruning.validation_split(mnist_small, fraction="0.1")
    with pytest.raises(ValueError, match=r"fraction must be a finite number in \(0, 1\), got 1.0"):
        kc.pruning.validation_split(mnist_small, fraction=1.0)


@pytest.mark.slow
def test_a_streamed_dataset_gives_the_same_report_without_arrays(trained_lenet, mnist, tmp_path):
    arrays = mnist.take(train=1000, test=10)  # the last 100 training images validate
    kc.data.save_tfrecord(arrays, tmp_path, shards=2)
    streamed = kc.data.load_tfrecord(tmp_path)  # has no x_train: reading it would raise NotInMemoryError
    for max_samples in (None, 60):  # the tail read again for every cut; its first 60 read once
        # Two groups, a conv and a dense one: each group is one more model to build and run.
        kwargs = dict(ratios=(0.5,), layers=["conv2", "fc1"], max_samples=max_samples)
        want = kc.pruning.sensitivity(trained_lenet, arrays, **kwargs)
        got = kc.pruning.sensitivity(trained_lenet, streamed, **kwargs)
        assert got.samples == want.samples == (max_samples or 100)
        assert got.baseline == want.baseline and got.rows == want.rows and len(got.rows) == 2
    x, y = kc.pruning.validation_split(streamed, max_samples=30)
    np.testing.assert_array_equal(x, arrays.x_train[900:930])
    np.testing.assert_array_equal(y, arrays.y_train[900:930])
    batches = list(streamed.validation_batches(64))
    assert [len(b[1]) for b in batches] == [64, 36]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), arrays.x_train[900:])
    with pytest.raises(ValueError, match=r"fraction must be a finite number in \(0, 1\), got 1.5"):
        next(streamed.validation_batches(64, fraction=1.5))
    with pytest.raises(TypeError, match="max_samples must be an int >= 1 or None, got 2.5"):
        next(arrays.validation_batches(64, max_samples=2.5))
