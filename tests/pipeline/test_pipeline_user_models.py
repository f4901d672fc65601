"""Pipelines on users' own models: softmax outputs, subclassed models and bad output folders fail or work clearly."""

import time

import numpy as np
import pytest
import user_models as um

import kcompress as kc
from kcompress.pipeline import Distill, Evaluate, Export, Pipeline, Prune, QuantizeAware, Train


@pytest.fixture(scope="module")
def small(mnist):
    return mnist.take(train=1500, test=300)


@pytest.mark.slow
def test_softmax_model_trains_on_the_loss_for_probabilities(small):
    """Case 6: the pipeline compiled from_logits=True on a softmax output."""
    result = Pipeline([Train(epochs=2, batch_size=32, learning_rate=3e-3, restore_best=False)]).run(
        small, model=um.softmax_model(0), verbose=0)
    loss = result.model.loss
    assert loss.get_config()["from_logits"] is False
    assert result.log[0]["val_accuracy"] > 0.8
    # The probabilities' own cross-entropy: from_logits=True on probabilities would be ~ln(10) at best.
    x, y = small.x_test, small.y_test
    probs = result.model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)
    assert float(loss(y, probs)) < 1.0


def test_compile_classifier_detects_softmax_and_logits():
    assert kc.models.compile_classifier(um.softmax_model(0)).loss.get_config()["from_logits"] is False
    assert kc.models.compile_classifier(um.sequential_cnn(0)).loss.get_config()["from_logits"] is True
    assert kc.models.compile_classifier(um.sequential_cnn(0), from_logits=False).loss.get_config()["from_logits"] is False
    with pytest.raises(TypeError, match="from_logits must be None, True or False, got 'yes'"):
        kc.models.compile_classifier(um.sequential_cnn(0), from_logits="yes")


@pytest.mark.parametrize("last", [[Prune(0.5), Distill()], [Prune(0.5, finetune=Distill())]])
def test_distill_on_a_softmax_model_stops_before_training(small, last):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"ends with a softmax, but the Distill stage needs a logits output"):
        Pipeline([Train(epochs=3), *last]).run(small, model=um.softmax_model(0), verbose=0)
    assert time.perf_counter() - t0 < 5  # refused up front, not after the Train stage


@pytest.mark.parametrize("stages, match", [
    ([Train(epochs=1), Prune(0.5, epochs=1)], r"subclassed model \(SubclassedNet\), but stage\(s\) \['Prune'\]"),
    ([QuantizeAware(epochs=1)], r"stage\(s\) \['QuantizeAware'\] rebuild the model"),
])
def test_subclassed_model_is_refused_before_training(small, stages, match):
    """Case 7: Pipeline.run crashed in set_weights."""
    with pytest.raises(ValueError, match=match):
        Pipeline(stages).run(small, model=um.subclassed(0), verbose=0)


@pytest.mark.slow
def test_subclassed_model_trains_on_a_copy(small):
    model = um.subclassed(0)
    before = [w.copy() for w in model.get_weights()]
    result = Pipeline([Train(epochs=1, batch_size=64, restore_best=False)]).run(small, model=model, verbose=0)
    assert result.model is not model and result.log[0]["val_accuracy"] > 0.5
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_subclassed_model_exports_and_evaluates_in_a_pipeline(small):
    model = um.subclassed(0)
    before = [w.copy() for w in model.get_weights()]
    result = Pipeline([Export("int8", calibration_samples=50), Evaluate(keras=True, latency_runs=2)]).run(
        small, model=model)
    by_label = {r["flatbuffer"]: r for r in result.records}
    assert set(by_label) == {"keras", "int8"}
    assert by_label["keras"]["macs"] == by_label["int8"]["macs"] == 26 * 26 * 8 * 9 + 13 * 13 * 8 * 10
    assert abs(by_label["keras"]["accuracy"] - by_label["int8"]["accuracy"]) < 0.05
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_unwritable_output_dir_is_refused_before_training(small, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"output_dir '.*a_file/runs' cannot be written \(NotADirectoryError"):
        Pipeline([Train(epochs=3), Export("float32")]).run(small, model=um.sequential_cnn(0),
                                                            output_dir=str(blocker / "runs"))
    with pytest.raises(ValueError, match=r"output_dir '.*a_file' is a file, not a folder"):
        Pipeline([Train(epochs=3)]).run(small, model=um.sequential_cnn(0), output_dir=blocker)
    with pytest.raises(TypeError, match=r"output_dir must be None or a folder path, got 42"):
        Pipeline([Train(epochs=3)]).run(small, model=um.sequential_cnn(0), output_dir=42)
    assert time.perf_counter() - t0 < 5
