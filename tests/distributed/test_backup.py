"""BackupAndResume and Pipeline(backup_dir=...) in one process: an interrupted fit resumes, a finished one restores."""

from __future__ import annotations

import numpy as np
import pytest

import kcompress as kc
from kcompress._keras import keras
from kcompress.pipeline import Distill, Pipeline, Prune, QuantizeAware


class _Crash(keras.callbacks.Callback):
    """Dies at the end of an epoch, before that epoch's backup (BackupAndResume runs last)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("worker lost")


class _Snapshot(keras.callbacks.Callback):
    """The weights at the end of ``end_of`` and at the beginning of ``start_of``."""

    def __init__(self, end_of=None, start_of=None):
        super().__init__()
        self.end_of, self.start_of, self.weights = end_of, start_of, None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.end_of:
            self.weights = self.model.get_weights()

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.start_of:
            self.weights = self.model.get_weights()


def _model(ds):
    kc.keras.utils.set_random_seed(0)
    return kc.models.compile_classifier(kc.models.get("mlp_tiny", ds.input_shape, ds.num_classes, seed=0), 2e-3)


@pytest.mark.slow
def test_interrupted_fit_resumes_at_the_epoch_after_the_last_backup(tmp_path, mnist_small):
    ds = mnist_small.take(train=1000, test=200)
    backup = tmp_path / "backup"
    model = _model(ds)
    saved = _Snapshot(end_of=1)
    with pytest.raises(RuntimeError, match="worker lost"):
        kc.models.fit(model, ds, epochs=4, batch_size=100, callbacks=[saved, _Crash(2)], backup_dir=backup, verbose=0)
    # A new process would start from a fresh model: the backup brings weights, optimizer and epoch back.
    fresh = _model(ds)
    restored = _Snapshot(start_of=2)
    history = kc.models.fit(fresh, ds, epochs=4, batch_size=100, callbacks=[restored], backup_dir=backup, verbose=0)
    assert history.resumed_at_epoch == 2  # epochs 0 and 1 were backed up; epoch 2 is redone
    assert history.epoch == [2, 3]
    for a, b in zip(restored.weights, saved.weights, strict=True):  # training goes on from epoch 1's weights
        np.testing.assert_array_equal(a, b)
    assert history.history["val_accuracy"][-1] > 0.6
    # Once finished, the same fit restores the final weights and trains nothing.
    again = _model(ds)
    history = kc.models.fit(again, ds, epochs=4, batch_size=100, backup_dir=backup, verbose=0)
    assert (history.resumed_at_epoch, history.epoch) == (4, [])
    for a, b in zip(again.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_restore_best_is_what_the_final_backup_keeps(tmp_path, mnist_small):
    ds = mnist_small.take(train=1000, test=200)
    model = _model(ds)
    kc.models.fit(model, ds, epochs=3, batch_size=100, restore_best=True, backup_dir=tmp_path, verbose=0)
    restored = _model(ds)
    kc.models.fit(restored, ds, epochs=3, batch_size=100, restore_best=True, backup_dir=tmp_path, verbose=0)
    for a, b in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_pipeline_run_again_restores_every_finished_stage(tmp_path, trained_lenet, mnist_small):
    ds = mnist_small.take(train=1000, test=300)
    pipe = Pipeline([Prune(0.6, epochs=1, batch_size=100, finetune=Distill(temperature=2, alpha=0.5)),
                     QuantizeAware(epochs=1, batch_size=100)], name="bk")
    first = pipe.run(ds, model=trained_lenet, seed=0, verbose=0, backup_dir=tmp_path / "bk")
    assert sorted(p.name for p in (tmp_path / "bk").iterdir()) == ["stage00_prune", "stage02_quantize_aware"]
    assert all("resumed_at_epoch" not in entry for entry in first.log)
    second = pipe.run(ds, model=trained_lenet, seed=0, verbose=0, backup_dir=tmp_path / "bk")
    assert [entry.get("resumed_at_epoch") for entry in second.log] == [1, 1]
    assert second.log[0]["sparsity"] == first.log[0]["sparsity"]
    for a, b in zip(second.model.get_weights(), first.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_backup_arguments_are_checked(mnist_small):
    with pytest.raises(TypeError, match="backup_dir must be a folder path, got 3"):
        kc.models.BackupAndResume(3)
    with pytest.raises(TypeError, match="backup_dir must be None or a folder path, got ''"):
        Pipeline([Prune(0.5, epochs=1)]).run(mnist_small, model=kc.models.get("mlp_tiny"), backup_dir="")
    with pytest.raises(TypeError, match="strategy must be None or a tf.distribute.Strategy, got str"):
        Pipeline([Prune(0.5, epochs=1)]).run(mnist_small, model=kc.models.get("mlp_tiny"), strategy="mirrored")
