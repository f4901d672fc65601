"""tf.data-backed datasets: TFRecord round trip, the same pipeline results as arrays, bounded memory."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import tf
from kcompress.pipeline import Evaluate, Export, Pipeline, Prune, QuantizeAware

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small(mnist):
    return mnist.take(train=2000, test=500)


@pytest.fixture(scope="module")
def records(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfrecord")
    kc.data.save_tfrecord(small, folder, shards=3)
    return folder


def test_tfrecord_round_trip_keeps_images_labels_and_order(small, records):
    ds = kc.data.load_tfrecord(records, shuffle_buffer=256)
    assert ds.streams and not small.streams
    assert (ds.name, ds.num_train, ds.num_test, ds.input_shape, ds.num_classes) == ("mnist", 2000, 500, (28, 28, 1), 10)
    back = ds.to_arrays()
    np.testing.assert_array_equal(back.x_train, small.x_train)  # uint8 round trip is exact for MNIST
    np.testing.assert_array_equal(back.y_train, small.y_train)
    np.testing.assert_array_equal(back.x_test, small.x_test)
    np.testing.assert_array_equal(back.y_test, small.y_test)
    assert sorted(os.listdir(records)) == ["dataset.json"] + [f"{s}-{i:05d}-of-00003.tfrecord" for s in ("test", "train")
                                                              for i in range(3)]
    with pytest.raises(kc.data.NotInMemoryError, match="streams from tfrecord:.* holds no x_train array"):
        ds.x_train  # noqa: B018


@pytest.mark.slow
def test_streaming_splits_match_what_keras_holds_out(small, records):
    ds = kc.data.load_tfrecord(records, shuffle_buffer=256)
    train, val = ds.fit_splits(batch_size=64, validation_split=0.1, seed=0)
    assert int(train.cardinality()) == 29 and int(val.cardinality()) == 4  # ceil(1800/64), ceil(200/64)
    x_val = np.concatenate([x for x, _ in val.as_numpy_iterator()])
    np.testing.assert_array_equal(x_val, small.x_train[1800:])  # the tail, as validation_split on arrays
    labels = np.concatenate([y for _, y in train.as_numpy_iterator()])
    assert sorted(labels.tolist()) == sorted(small.y_train[:1800].tolist())  # every training sample once
    assert not np.array_equal(labels, small.y_train[:1800])  # shuffled
    rep = ds.representative(100, seed=0)
    assert rep.shape == (100, 28, 28, 1) and rep.dtype == np.float32 and 0 <= rep.min() and rep.max() <= 1
    np.testing.assert_array_equal(rep, ds.representative(100, seed=0))  # reproducible calibration
    taken = ds.take(train=300, test=50)
    assert (taken.num_train, taken.num_test) == (300, 50)
    assert sum(len(y) for _, y in taken.test_batches(32)) == 50


def test_from_tf_data_and_argument_checks(small):
    train = tf.data.Dataset.from_tensor_slices(((small.x_train[:200] * 255).round().astype(np.uint8), small.y_train[:200]))
    test = tf.data.Dataset.from_tensor_slices((small.x_test[:50], small.y_test[:50]))
    ds = kc.data.from_tf_data(train, test, name="digits", num_classes=10)
    assert (ds.input_shape, ds.num_train, ds.num_test) == ((28, 28, 1), 200, 50)
    np.testing.assert_array_equal(ds.to_arrays().x_train, small.x_train[:200])
    with pytest.raises(TypeError, match="train must be a tf.data.Dataset"):
        kc.data.from_tf_data(small.x_train, test, name="d", num_classes=10)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2, got 1"):
        kc.data.from_tf_data(train, test, name="d", num_classes=1)
    with pytest.raises(ValueError, match="shuffle_buffer must be an int >= 1, got 0"):
        kc.data.from_tf_data(train, test, name="d", num_classes=10, shuffle_buffer=0)
    with pytest.raises(ValueError, match=r"train images have shape \(28, 28, 1\), expected input_shape \(32, 32, 3\)"):
        kc.data.from_tf_data(train, test, name="d", num_classes=10, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="matches no file"):
        kc.data.from_tfrecord("/nonexistent/*.tfrecord", "/nonexistent/t", name="d", num_classes=10,
                              input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="has no dataset.json"):
        kc.data.load_tfrecord(REPO)
    with pytest.raises(ValueError, match=r"validation_split must be a finite number in \[0, 1\), got 1.5"):
        ds.fit_splits(64, validation_split=1.5)


def test_encoded_png_records(tmp_path, small):
    path = str(tmp_path / "png.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for x, y in zip(small.x_test[:20], small.y_test[:20], strict=True):
            png = tf.io.encode_png((x * 255).round().astype(np.uint8)).numpy()
            feature = {"img": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                       "cls": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y)]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    ds = kc.data.from_tfrecord(path, path, name="png", num_classes=10, input_shape=(28, 28, 1), image_key="img",
                               label_key="cls")
    assert ds.num_test == 20  # counted in one pass
    np.testing.assert_array_equal(ds.to_arrays().x_test, small.x_test[:20])


def _pipeline():
    return Pipeline([Prune(0.75, epochs=1, batch_size=64), QuantizeAware(epochs=1, batch_size=64, learning_rate=1e-4),
                     Export("int8", calibration_samples=50), Evaluate(latency_runs=5)], name="stream")


@pytest.mark.slow
def test_same_pipeline_on_tfrecord_as_on_arrays(small, records, trained_lenet):
    streamed = kc.data.load_tfrecord(records, shuffle_buffer=512)
    on_arrays = _pipeline().run(small, model=trained_lenet, seed=0, verbose=0)
    on_stream = _pipeline().run(streamed, model=trained_lenet, seed=0, verbose=0)
    arrays_acc = {r["flatbuffer"]: r["accuracy"] for r in on_arrays.records}
    stream_acc = {r["flatbuffer"]: r["accuracy"] for r in on_stream.records}
    assert on_stream.log[0]["sparsity"] == pytest.approx(on_arrays.log[0]["sparsity"], abs=0.005)
    assert on_stream.log[0]["sparsity"] == pytest.approx(0.75, abs=0.01)
    # Shuffled through a buffer instead of a permutation of the arrays: the same accuracy within 2 points.
    assert stream_acc["int8"] == pytest.approx(arrays_acc["int8"], abs=0.02), (stream_acc, arrays_acc)
    assert stream_acc["int8"] > 0.9
    # The same flatbuffer and model measure exactly the same on streamed and in-memory test data.
    flat = on_stream.flatbuffers["int8"]
    a, b = kc.evaluation.evaluate(flat, small, latency_runs=1), kc.evaluation.evaluate(flat, streamed, latency_runs=1)
    assert (a["accuracy"], a["num_samples"]) == (b["accuracy"], b["num_samples"]) == (stream_acc["int8"], 500)
    agree = kc.evaluation.agreement(on_stream.model, flat, streamed, max_samples=200)
    assert agree["num_samples"] == 200 and agree["top1_agreement"] > 0.97
    noisy_a = kc.evaluation.robustness(flat, small, noise=(0.2,), salt_pepper=(), max_samples=200)
    noisy_b = kc.evaluation.robustness(flat, streamed, noise=(0.2,), salt_pepper=(), max_samples=200)
    assert noisy_b["robust_gauss_0.2"] == pytest.approx(noisy_a["robust_gauss_0.2"], abs=0.05)


_RSS_SCRIPT = r"""
import json, sys
import kcompress as kc
from kcompress._keras import tf
tf.config.threading.set_intra_op_parallelism_threads(1)
folder, modes = sys.argv[1], sys.argv[2].split(",")
streamed = kc.data.load_tfrecord(folder, shuffle_buffer=512)
for mode in modes:  # in this order; the peak below only grows, so "arrays" goes after "stream"
    ds = streamed.to_arrays() if mode == "arrays" else streamed
    kc.keras.utils.set_random_seed(0)
    model = kc.models.compile_classifier(kc.models.get("mlp_tiny", ds.input_shape, ds.num_classes, seed=0))
    kc.models.fit(model, ds, epochs=1, batch_size=128, verbose=0)
    flat = kc.export.to_tflite(model, "int8", representative_data=ds, verbose=False)
    r = kc.evaluation.evaluate(flat, ds, latency_runs=1)
    # VmHWM: this process's peak resident set so far (ru_maxrss would start from the forking parent's).
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"mode": mode, "rss_mb": peak_kb / 1024, "accuracy": r["accuracy"],
                      "num_samples": r["num_samples"]}), flush=True)
    del ds, model, flat
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc (Linux)")
def test_peak_memory_does_not_grow_with_the_streamed_dataset(tmp_path, mnist):
    folders = {}
    for n in (2000, 20000):
        folders[n] = tmp_path / f"n{n}"
        kc.data.save_tfrecord(mnist.take(train=n, test=n // 3), folders[n])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    # Two processes, not three: the large folder's streamed run goes first, and its in-memory run
    # after it in the same process (the peak only grows: it is at least the streamed run's).
    runs = {n: subprocess.Popen([sys.executable, "-c", _RSS_SCRIPT, str(folders[n]), modes], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for n, modes in ((2000, "stream"), (20000, "stream,arrays"))}
    out = {}
    try:
        for n, proc in runs.items():
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-3000:]
            for line in stdout.strip().splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    out[(n, rec.pop("mode"))] = rec
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
    small, large, arrays = out[(2000, "stream")], out[(20000, "stream")], out[(20000, "arrays")]
    assert (small["num_samples"], large["num_samples"]) == (666, 6666)
    # 18,000 more training and 6,000 more test images are 75 MB as float32 arrays; the
    # in-memory run shows the growth is measurable, the streamed one stays flat.
    assert arrays["rss_mb"] - small["rss_mb"] > 50, out
    assert large["rss_mb"] - small["rss_mb"] < 25, out
    assert large["accuracy"] > 0.8
    print({f"{n}_{mode}": round(v["rss_mb"], 1) for (n, mode), v in out.items()})


@pytest.mark.slow
def test_from_tfds_streams_the_builder_splits():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):  # tfds' own fake records: no download
        ds = kc.data.from_tfds("mnist")
        assert (ds.source, ds.input_shape, ds.num_classes, ds.num_train, ds.num_test) == ("tfds:mnist", (28, 28, 1),
                                                                                           10, 40, 40)
        x, y = next(iter(ds.test_batches(16)))
        assert x.shape == (16, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert y.dtype == np.int64 and 0 <= y.min() and y.max() < 10
        train, val = ds.fit_splits(batch_size=16, validation_split=0.25)
        assert (int(train.cardinality()), int(val.cardinality())) == (2, 1)


@pytest.mark.slow
def test_distill_stage_trains_on_a_streamed_dataset(records, trained_lenet):
    from kcompress.pipeline import Distill

    ds = kc.data.load_tfrecord(records, shuffle_buffer=256).take(train=800, test=200)
    student = kc.models.get("mlp_tiny", ds.input_shape, ds.num_classes, seed=0)
    result = Pipeline([Distill(temperature=2.0, alpha=0.5, epochs=2, batch_size=64), Evaluate(keras=True, latency_runs=2)],
                      name="kd").run(ds, model=student, teacher=trained_lenet, seed=0, verbose=0)
    # Two short epochs of a tiny student: well above chance (0.1), validated on the streamed tail (80 samples).
    assert result.log[0]["val_accuracy"] > 0.3
    assert result.records[0]["num_samples"] == 200 and result.records[0]["accuracy"] > 0.3
