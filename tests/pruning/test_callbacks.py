import csv
import os

import pytest

import kcompress as kc


@pytest.mark.slow
def test_sparsity_is_in_history_csv_logs_and_tensorboard_without_a_warning(finetune, trained_lenet, mnist_small,
                                                                           tmp_path, recwarn):
    # One fine-tune for the three (each trained its own): History, CSVLogger, TensorBoard summaries,
    # and no warning from a schedule that finishes within the fit.
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.PolynomialDecay(0.2, 0.6, begin_step=0, end_step=6))
    log = tmp_path / "log.csv"
    history = finetune(pruned, mnist_small.take(train=512), epochs=2,
                       callbacks=[*kc.pruning.callbacks(log_dir=str(tmp_path / "tb")),
                                  kc.keras.callbacks.CSVLogger(str(log))])
    assert history.history["sparsity"][0] == pytest.approx(0.6, abs=0.01)  # 8 steps/epoch > end_step
    assert history.history["sparsity/fc1"][-1] == pytest.approx(0.6, abs=0.01)
    rows = list(csv.DictReader(open(log)))
    assert len(rows) == 2 and float(rows[-1]["sparsity"]) == pytest.approx(0.6, abs=0.01)
    assert "sparsity/conv1" in rows[0] and "sparsity_overall" in rows[0]
    files = [f for _, _, fs in os.walk(tmp_path / "tb") for f in fs]
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert not [w for w in recwarn if "will not be reached" in str(w.message)]


@pytest.mark.slow
def test_warns_once_when_the_schedule_cannot_finish(finetune, trained_lenet, mnist_small):
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=1000))
    monitor = kc.pruning.SparsityMonitor()
    with pytest.warns(UserWarning, match=r"reaches its target sparsity at step 1000, but this fit runs only to step 2"):
        finetune(pruned, mnist_small.take(train=128), callbacks=[kc.pruning.callbacks()[0], monitor], eagerly=True)
    assert len(monitor.warnings) == 1


def test_monitor_on_an_unpruned_model_raises(trained_lenet, fresh_copy, mnist_small):
    model = kc.models.compile_classifier(fresh_copy())
    with pytest.raises(ValueError, match=r"without pruning wrappers; build it with kcompress.pruning.prune"):
        model.fit(mnist_small.x_train[:64], mnist_small.y_train[:64], callbacks=[kc.pruning.SparsityMonitor()], verbose=0)


def test_monitor_config_round_trip_and_bad_args():
    monitor = kc.pruning.SparsityMonitor(per_layer=False)
    assert kc.pruning.SparsityMonitor(**monitor.get_config()).per_layer is False
    with pytest.raises(TypeError, match="per_layer must be True or False, got 'yes'"):
        kc.pruning.SparsityMonitor(per_layer="yes")
    with pytest.raises(TypeError, match="log_dir must be None or a folder path string"):
        kc.pruning.callbacks(log_dir=3)
