import json

import numpy as np
import pytest

import kcompress as kc
from kcompress.pipeline import (
    Cluster,
    Distill,
    Evaluate,
    Export,
    LowRank,
    Pipeline,
    Prune,
    PruneChannels,
    QuantizeAware,
    Train,
    stage_from_config,
)


@pytest.fixture(scope="module")
def tiny(mnist_small):
    return mnist_small.take(train=1500, test=300)


@pytest.mark.slow
def test_prune_distill_qat_int8_composes(trained_lenet, mnist_small, tmp_path):
    tiny = mnist_small.take(test=300)
    pipeline = Pipeline([Prune(0.8, epochs=2, batch_size=64), Distill(temperature=4, alpha=0.2),
                         QuantizeAware(epochs=1, batch_size=64), Export("int8"), Evaluate(latency_runs=10)],
                        name="prune_distill_qat")
    before = [w.copy() for w in trained_lenet.get_weights()]
    result = pipeline.run(tiny, model=trained_lenet, output_dir=str(tmp_path), verbose=0)
    assert [e["stage"] for e in result.log] == ["Prune + Distill", "QuantizeAware", "Export", "Evaluate"]
    assert result.log[0]["finetune"].startswith("distill(T=4")
    (record,) = result.records
    assert record["variant"] == "prune_distill_qat" and record["flatbuffer"] == "int8"
    assert record["nonzero_params"] <= 0.22 * record["params"]  # the zeros survived QAT and int8
    assert record["accuracy"] > 0.8
    assert (tmp_path / "prune_distill_qat_int8.tflite").read_bytes() == result.flatbuffers["int8"]
    for a, b in zip(before, trained_lenet.get_weights(), strict=True):  # the input model is untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_prune_then_distill_with_a_feature_hint(trained_lenet, mnist_small, tmp_path):
    stage = stage_from_config({"stage": "distill", "temperature": 1.0, "alpha": 0.5, "hint": "fc2",
                               "hint_weight": 0.1, "batch_size": 64})
    assert stage == Distill(temperature=1.0, alpha=0.5, hint="fc2", hint_weight=0.1, batch_size=64)
    pipeline = Pipeline([Prune(0.8, epochs=2, batch_size=64), stage, Evaluate(keras=True, latency_runs=5)],
                        name="prune_hint")
    result = pipeline.run(mnist_small.take(test=300), model=trained_lenet, output_dir=str(tmp_path), verbose=0)
    assert result.log[0]["finetune"] == "distill(T=1.0, alpha=0.5, hint=fc2 x0.1)"
    (record,) = result.records
    assert record["nonzero_params"] <= 0.22 * record["params"] and record["accuracy"] > 0.8


@pytest.mark.slow
def test_train_then_channel_prune_records_keras_and_flatbuffers(tiny):
    model = kc.models.get("lenet5", seed=1)
    pipeline = Pipeline([Train(epochs=1, batch_size=64), PruneChannels(0.5, epochs=1, batch_size=64),
                         Export("float32"), Export("int8"), Evaluate(keras=True, latency_runs=10)], name="slim")
    result = pipeline.run(tiny, model=model, verbose=0)
    labels = [r["flatbuffer"] for r in result.records]
    assert labels == ["keras", "float32", "int8"]
    assert result.log[1]["macs_ratio"] <= 0.35
    by = {r["flatbuffer"]: r for r in result.records}
    assert by["int8"]["size_bytes"] < 0.4 * by["float32"]["size_bytes"]
    assert by["keras"]["accuracy"] == pytest.approx(by["float32"]["accuracy"], abs=0.005)


def test_config_round_trip_and_recipe_files(tmp_path):
    pipeline = Pipeline([Prune(0.5, initial_sparsity=0.2, schedule_epochs=2), Distill(temperature=2.0),
                         QuantizeAware(preserve_sparsity=True), Export("int8", sparse=True), Evaluate()], name="p")
    config = pipeline.get_config()
    assert Pipeline.from_config(config).get_config() == config
    (tmp_path / "r.json").write_text(json.dumps(config))
    assert Pipeline.load(tmp_path / "r.json").get_config() == config
    (tmp_path / "r.yaml").write_text(
        "name: small\nstages:\n  - {stage: prune_channels, ratio: 0.5}\n  - {stage: distill}\n  - {stage: export, mode: int8}\n")
    loaded = Pipeline.load(tmp_path / "r.yaml")
    assert [s.kind for s in loaded.stages] == ["prune_channels", "distill", "export"] and loaded.name == "small"


def test_schedule_of_a_gradual_prune_stage():
    schedule = Prune(0.8, initial_sparsity=0.5, schedule_epochs=3, batch_size=100).schedule(1000)
    assert (schedule.begin_step, schedule.end_step) == (0, 27)
    assert isinstance(Prune(0.8).schedule(1000), kc.pruning.ConstantSparsity)


class TestBadInput:
    @pytest.mark.parametrize("make, match", [
        (lambda: Prune(1.0), r"sparsity must be a number in \[0, 1\), got 1.0"),
        (lambda: Distill(temperature=0), "temperature must be a positive number, got 0"),
        (lambda: Distill(alpha=1.5), r"alpha must be a number in \[0, 1\], got 1.5"),
        (lambda: Distill(hint="fc2:"), "hint must be a layer name or 'student_layer:teacher_layer', got 'fc2:'"),
        (lambda: Distill(hint="fc2", hint_weight=-0.1), "hint_weight must be a finite number >= 0, got -0.1"),
        (lambda: Export("int4"), "mode must be one of"),
        (lambda: Train(epochs=0), "epochs must be a positive int, got 0"),
        (lambda: stage_from_config({"stage": "shrink"}), r"stage must be one of \[.*\], got 'shrink'"),
        (lambda: stage_from_config({"stage": "prune", "amount": 3}), "bad options for stage 'prune'"),
        (lambda: Pipeline([], name="x"), "at least one stage"),
        (lambda: Pipeline([Export()], name="a b"), "name must be a non-empty string without spaces"),
    ])
    def test_value_errors(self, make, match):
        with pytest.raises(ValueError, match=match):
            make()

    def test_type_errors(self, tiny):
        with pytest.raises(TypeError, match=r"stages\[1\] must be a Stage"):
            Pipeline([Export(), "evaluate"])
        with pytest.raises(TypeError, match="dataset must be a kcompress.data.Dataset"):
            Pipeline([Export()]).run((1, 2), model=kc.models.get("tiny_cnn"))

    def test_unknown_recipe_suffix(self, tmp_path):
        (tmp_path / "r.txt").write_text("{}")
        with pytest.raises(ValueError, match=r"path must end with .json, .yaml or .yml"):
            Pipeline.load(tmp_path / "r.txt")


@pytest.mark.slow
def test_low_rank_and_cluster_stages_with_entropy_and_robustness(trained_lenet, tiny):
    pipeline = Pipeline([LowRank(param_ratio=0.5, layers=["fc1", "fc2"], epochs=1, batch_size=64),
                         Prune(0.8, epochs=1, batch_size=64), Cluster(clusters=8, epochs=1, batch_size=64),
                         Export("float32"), Evaluate(latency_runs=5, robustness=True, robustness_samples=200)],
                        name="lowrank_prune_cluster")
    result = pipeline.run(tiny, model=trained_lenet, verbose=0)
    assert result.log[0]["params_ratio"] <= 0.55
    assert result.log[2]["entropy_ratio"] > 10
    (record,) = result.records
    assert record["entropy_bytes"] < record["size_bytes"] / 10
    assert {"robust_gauss_0.1", "robust_gauss_0.3", "robust_saltpepper_0.05"} <= set(record)
    assert record["robust_gauss_0.3"] <= record["accuracy"] + 0.05
    kernel = result.model.get_layer("fc2").kernel.numpy() if "fc2" in [x.name for x in result.model.layers] else None
    if kernel is not None:
        assert len(np.unique(kernel)) <= 9  # 8 shared values plus the pruned zeros
    with pytest.raises(ValueError, match="exactly one of rank, energy or param_ratio"):
        LowRank(rank=4, energy=0.9)
