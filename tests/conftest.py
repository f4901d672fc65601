"""Shared fixtures: real MNIST slices, a briefly trained LeNet-5, two logical CPUs."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from trained_once import trained_once_per_run

_SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
if not os.environ.get("KCOMPRESS_DATA_DIR") and _SHARED.is_dir():
    os.environ["KCOMPRESS_DATA_DIR"] = str(_SHARED)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist every worker trains at once: TensorFlow's default of one intra-op thread per
# core then oversubscribes the cores (measured on 2 cores, -n 2: 149 s -> 123 s for the
# distillation/models/factorization tests; about even on the whole suite, whose scripts and
# notebooks leave a core idle). Read by TensorFlow when it starts its runtime, and inherited by
# the scripts and notebook kernels the tests start.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _per_worker = max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(_per_worker))

import kcompress as kc  # noqa: E402
from kcompress._keras import tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy tests run on one machine; must
# happen before TensorFlow initialises its devices.
try:
    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # pragma: no cover - devices already initialised by an earlier import
    pass


# The longest files first (worker-seconds, from `--durations=0` of the whole suite with -n 2 on a
# 2-core AVX-512 machine, 2026-12-02: 817 worker-s, 7:25 of wall time), so the two xdist workers
# (pyproject: --dist loadfile) finish together instead of one waiting on a long file started last.
# The other files (each under 21 s there) follow in collection order.
_LONGEST_FIRST = (
    "tests/compression/test_compress.py",  # 121 s
    "tests/distributed/test_multiworker.py",  # 101 s
    "tests/notebooks/test_notebooks.py",  # 55 s
    "tests/data/test_streaming.py",  # 47 s
    "tests/experiments/test_compare_experiment.py",  # 46 s
    "tests/pipeline/test_pipeline.py",  # 33 s
    "tests/experiments/test_prune_experiment.py",  # 28 s
    "tests/experiments/test_deep_compression_experiment.py",  # 27 s
    "tests/experiments/test_distill_experiment.py",  # 26 s
    "tests/experiments/test_compress_experiment.py",  # 26 s
    "tests/quantization/test_qat.py",  # 25 s
    "tests/experiments/test_quantize_experiment.py",  # 21 s
    "tests/quantization/test_qat_sparsity.py",  # 20 s
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep order


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    Separate MirroredStrategy objects in one process can hand out the same collective
    instance keys, so a second strategy's all-reduce may meet the first's tensors;
    reducing through one device avoids collective ops altogether.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.fixture(scope="session")
def mnist():
    """The full real MNIST dataset (from $KCOMPRESS_DATA_DIR)."""
    return kc.data.load("mnist")


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """4,000 training and 1,000 test images of real MNIST."""
    return mnist.take(train=4000, test=1000)


@pytest.fixture(scope="session")
def trained_lenet(mnist_small, tmp_path_factory):
    """LeNet-5 trained for 3 epochs on 4,000 MNIST images (~96% test accuracy). Do not mutate.

    Trained once per run and shared by the xdist workers (compiled, fresh optimizer in the others).
    """

    def build():
        kc.keras.utils.set_random_seed(0)
        model = kc.models.get("lenet5", mnist_small.input_shape, mnist_small.num_classes, seed=0)
        kc.models.compile_classifier(model, 2e-3)
        return model

    def train(model):
        kc.models.fit(model, mnist_small, epochs=3, batch_size=64, validation_split=0.0, verbose=0)

    return trained_once_per_run(tmp_path_factory, "trained_lenet", build, train)


@pytest.fixture()
def fresh_copy(trained_lenet):
    """A function returning an independent copy of the trained LeNet-5."""

    def make():
        clone = kc.keras.models.clone_model(trained_lenet)
        clone.set_weights(trained_lenet.get_weights())
        return clone

    return make


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
