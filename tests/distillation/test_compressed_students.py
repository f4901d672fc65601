"""Prune -> distill and QAT -> distill are one ``fit`` each."""

import logging

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import kcompress as kc
from kcompress._keras import keras


def _accuracy(model, ds):
    return float(np.mean(np.argmax(model.predict(ds.x_test, verbose=0), -1) == ds.y_test))


@pytest.mark.slow
def test_prune_then_distill_in_one_fit(mnist_small, fresh_copy):
    teacher = fresh_copy()
    student = kc.pruning.prune(fresh_copy(), kc.pruning.ConstantSparsity(0.8, begin_step=0, frequency=20))
    d = kc.distillation.Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"], alpha=0.1, temperature=4.0)
    history = d.fit(mnist_small.x_train[:2000], mnist_small.y_train[:2000], epochs=2, batch_size=64, verbose=0,
                    callbacks=kc.pruning.callbacks(per_layer=False)).history
    # The callbacks found the student's pruned layers through the Distiller.
    assert history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    small = kc.pruning.strip(d.student)
    assert not kc.pruning.is_pruned(small)
    assert kc.pruning.sparsity(small).prunable == pytest.approx(0.8, abs=0.01)
    accuracy = _accuracy(small, mnist_small)
    assert accuracy > 0.85, accuracy


def test_pruned_student_without_the_callback_fails_loudly(mnist_small, fresh_copy):
    student = tfmot.sparsity.keras.prune_low_magnitude(
        kc.models.get("tiny_cnn"), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
    d = kc.distillation.Distiller(student=student, teacher=fresh_copy())
    d.compile()
    with pytest.raises(Exception, match="UpdatePruningStep"):
        d.fit(mnist_small.x_train[:64], mnist_small.y_train[:64], epochs=1, verbose=0)


@pytest.mark.slow
def test_qat_then_distill_in_one_fit(mnist_small, fresh_copy):
    # Distillation as the QAT fine-tuning step: the teacher is the float model itself.
    kc.keras.utils.set_random_seed(0)
    qat = kc.quantization.quantize_aware(fresh_copy())
    d = kc.distillation.Distiller(student=qat, teacher=fresh_copy())
    d.compile(keras.optimizers.Adam(1e-4), metrics=["accuracy"], alpha=0.5, temperature=2.0)
    history = d.fit(mnist_small.x_train[:512], mnist_small.y_train[:512], epochs=2, batch_size=64,
                    verbose=0).history
    assert history["loss"][-1] < history["loss"][0], history
    flat = kc.export.to_tflite(d.student, "int8")
    result = kc.evaluation.evaluate(flat, mnist_small, max_samples=300, latency_runs=3)
    assert result["accuracy"] > 0.9, result
    assert result["size_bytes"] < 0.4 * kc.evaluation.evaluate(fresh_copy(), mnist_small, max_samples=10,
                                                                 latency_runs=1)["size_bytes"]


@pytest.mark.parametrize("compress", ["prune", pytest.param("qat", marks=pytest.mark.slow)])
def test_compressed_copy_of_the_teacher_is_not_taken_for_a_swap(fresh_copy, caplog, compress):
    # Pruning masks and quantizer ranges make count_params() of the copy larger than the teacher's.
    teacher = fresh_copy()
    if compress == "prune":
        student = kc.pruning.prune(fresh_copy(), kc.pruning.ConstantSparsity(0.8))
    else:
        student = kc.quantization.quantize_aware(fresh_copy())
    assert student.count_params() > teacher.count_params()
    with caplog.at_level(logging.WARNING):
        kc.distillation.Distiller(student=student, teacher=teacher)
    assert "may be swapped" not in caplog.text
    with caplog.at_level(logging.WARNING):  # the real swap still warns
        kc.distillation.Distiller(student=teacher, teacher=kc.models.get("tiny_cnn"))
    assert "teacher and student may be swapped" in caplog.text


@pytest.mark.slow
def test_sparsity_of_a_distiller_counts_only_the_student(fresh_copy):
    student = kc.pruning.prune(fresh_copy(), kc.pruning.ConstantSparsity(0.8))
    d = kc.distillation.Distiller(student=student, teacher=fresh_copy())
    x = np.zeros((2, 28, 28, 1), np.float32)
    d.compile()
    d.fit(x, np.zeros(2), epochs=1, verbose=0, callbacks=kc.pruning.callbacks(per_layer=False))
    report, of_student = kc.pruning.sparsity(d), kc.pruning.sparsity(student)
    assert report.prunable == pytest.approx(0.8, abs=0.01)
    assert (report.params, report.zeros) == (of_student.params, of_student.zeros)
    # The dense teacher's 61,706 weights would pull the overall sparsity far below the student's.
    assert report.params == fresh_copy().count_params()
    assert report.overall > 0.75
