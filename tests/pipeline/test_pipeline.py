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
    pipeline = Pipeline([Prune(0.8, epochs=2, batch_size=64, finetune=Distill(temperature=4, alpha=0.2)),
                         QuantizeAware(epochs=1, batch_size=64), Export("int8"), Evaluate(latency_runs=10)],
                        name="prune_distill_qat")
    before = [w.copy() for w in trained_lenet.get_weights()]
    result = pipeline.run(tiny, model=trained_lenet, output_dir=str(tmp_path), verbose=0)
    assert [e["stage"] for e in result.log] == ["Prune + Distill", "QuantizeAware", "Export", "Evaluate"]
    assert result.log[0]["finetune"].startswith("distill(T=4")
    (record,) = result.records
    assert record["variant"] == "prune_distill_qat" and record["flatbuffer"] == "int8"
    assert record["nonzero_params"] <= 0.22 * record["params"]  # the zeros survived QAT and int8
    assert record["accuracy"] > 0.8, record
    assert (tmp_path / "prune_distill_qat_int8.tflite").read_bytes() == result.flatbuffers["int8"]
    for a, b in zip(before, trained_lenet.get_weights(), strict=True):  # the input model is untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_prune_then_distill_with_a_feature_hint(trained_lenet, tiny, tmp_path):
    stage = stage_from_config({"stage": "distill", "temperature": 1.0, "alpha": 0.5, "hint": "fc2",
                               "hint_weight": 0.1, "batch_size": 64})
    assert stage == Distill(temperature=1.0, alpha=0.5, hint="fc2", hint_weight=0.1, batch_size=64)
    pipeline = Pipeline([Prune(0.8, epochs=1, batch_size=64, finetune=stage), Evaluate(keras=True, latency_runs=5)],
                        name="prune_hint")
    result = pipeline.run(tiny, model=trained_lenet, output_dir=str(tmp_path), verbose=0)
    assert result.log[0]["finetune"] == "distill(T=1.0, alpha=0.5, hint=fc2 x0.1)"
    (record,) = result.records
    assert record["nonzero_params"] <= 0.22 * record["params"] and record["accuracy"] > 0.8, record


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
    pipeline = Pipeline([Prune(0.5, initial_sparsity=0.2, schedule_epochs=2, finetune=Distill(temperature=2.0, hint="fc2")),
                         QuantizeAware(preserve_sparsity=True), Distill(epochs=1), Export("int8", sparse=True),
                         Evaluate()], name="p")
    config = pipeline.get_config()
    assert config["version"] == 2
    assert config["stages"][0]["finetune"] == {"stage": "distill", **Distill(temperature=2.0, hint="fc2").get_config()}
    assert config["stages"][1]["finetune"] is None
    again = Pipeline.from_config(config)
    assert again.get_config() == config and again.stages == pipeline.stages
    (tmp_path / "r.json").write_text(json.dumps(config))
    assert Pipeline.load(tmp_path / "r.json").get_config() == config
    # YAML, the nested Distill written short (no "stage" key), and a distill step of its own after plain fine-tuning.
    (tmp_path / "r.yaml").write_text(
        "name: small\nversion: 2\nstages:\n  - {stage: prune_channels, ratio: 0.5, finetune: {temperature: 2}}\n"
        "  - {stage: low_rank, rank: 4}\n  - {stage: distill, epochs: 1}\n  - {stage: export, mode: int8}\n")
    loaded = Pipeline.load(tmp_path / "r.yaml")
    assert loaded.name == "small" and loaded.stages == [
        PruneChannels(0.5, finetune=Distill(temperature=2)), LowRank(rank=4), Distill(epochs=1), Export("int8")]
    assert [s.steps for s in loaded.stages] == [2, 1, 1, 1]


def _old_recipe(**first):
    return {"name": "old", "stages": [{"stage": "prune_channels", "ratio": None, "channels": {"fc1": 30}, "epochs": 1,
                                       **first},
                                      {"stage": "distill", "temperature": 2.0, "alpha": 0.5, "epochs": 1},
                                      {"stage": "export", "mode": "int8"}]}


class TestOldRecipes:
    """Recipes from before ``finetune`` (no version): a distill stage after a fine-tuning stage took it over."""

    NEW_FORM = ('{"stage": "prune_channels", "ratio": null, "channels": {"fc1": 30}, "epochs": 1, "finetune": '
                '{"stage": "distill", "temperature": 2.0, "alpha": 0.5, "epochs": 1}}')

    def test_the_implicit_take_over_is_refused_with_the_new_form(self, tmp_path):
        with pytest.raises(ValueError) as err:
            Pipeline.from_config(_old_recipe())
        message = str(err.value)
        assert "recipe stage 0 ('prune_channels') is followed by a 'distill' stage and has no 'finetune' key" in message
        assert self.NEW_FORM in message and '"version": 2' in message
        # The form it shows is what loads now, and runs as the old recipe did.
        fixed = Pipeline.from_config({"version": 2, "name": "old", "stages": [json.loads(self.NEW_FORM),
                                                                             {"stage": "export", "mode": "int8"}]})
        assert fixed.stages[0] == PruneChannels(None, channels={"fc1": 30}, epochs=1,
                                                finetune=Distill(temperature=2.0, alpha=0.5, epochs=1))
        (tmp_path / "old.yaml").write_text(
            "stages:\n  - {stage: prune, sparsity: 0.5}\n  - {stage: distill}\n  - {stage: quantize_aware}\n"
            "  - {stage: distill}\n")
        with pytest.raises(ValueError, match=r"recipe stage 0 \('prune'\) .*\(and the same at stages \[2\]\)"):
            Pipeline.load(tmp_path / "old.yaml")
        with pytest.raises(ValueError, match="recipe stage 0"):  # stage configs given to Pipeline are unversioned too
            Pipeline(_old_recipe()["stages"])
        with pytest.raises(ValueError, match="recipe stage 0"):
            Pipeline.from_config({**_old_recipe(), "version": 1})

    def test_what_is_not_old(self):
        # Version 2 (or an explicit finetune key): the distill stage is a step of its own.
        for config in ({**_old_recipe(), "version": 2}, _old_recipe(finetune=None)):
            stages = Pipeline.from_config(config).stages
            assert [s.kind for s in stages] == ["prune_channels", "distill", "export"] and stages[0].finetune is None
        # Unversioned recipes without the pattern meant the same then and now.
        loose = {"stages": [{"stage": "train"}, {"stage": "distill"}, {"stage": "prune"}, {"stage": "export"}]}
        assert [s.kind for s in Pipeline.from_config(loose).stages] == ["train", "distill", "prune", "export"]
        # Stage objects are explicit.
        assert len(Pipeline([Prune(0.5), Distill()]).stages) == 2
        with pytest.raises(ValueError, match="recipe version must be 1 or 2 \\(or absent\\), got 3"):
            Pipeline.from_config({**_old_recipe(), "version": 3})


class TestFinetune:
    @pytest.fixture(scope="class")
    def slice_(self, mnist_small):
        return mnist_small.take(train=640, test=100)

    @pytest.fixture(scope="class")
    def models(self, slice_):
        student = kc.models.get("mlp_small", slice_.input_shape, slice_.num_classes, seed=0)
        teacher = kc.models.get("tiny_cnn", slice_.input_shape, slice_.num_classes, seed=1)
        return student, teacher

    @pytest.fixture(scope="class")
    def plain(self, slice_, models):
        """The student pruned and fine-tuned on the labels (the default finetune), seed 3. Do not mutate."""
        student, teacher = models
        return Pipeline([Prune(0.5, epochs=1, batch_size=64)]).run(slice_, model=student, teacher=teacher, seed=3,
                                                                   verbose=0)

    @staticmethod
    def _weights(result):
        return result.model.get_weights()

    @pytest.mark.slow
    def test_a_distilling_finetune_is_a_distiller_run_with_the_teacher(self, slice_, models, plain):
        student, teacher = models
        distill = Distill(temperature=2.0, alpha=0.5, batch_size=64)
        result = Pipeline([Prune(0.5, epochs=1, batch_size=64, finetune=distill)]).run(
            slice_, model=student, teacher=teacher, seed=3, verbose=0)
        assert [e["stage"] for e in result.log] == ["Prune + Distill"]
        assert result.log[0]["finetune"] == "distill(T=2.0, alpha=0.5)"
        # By hand: the pruned student distilled from the teacher, the stage's epochs and rate, the Distill's batch.
        copy = kc.keras.models.clone_model(student)
        copy.set_weights(student.get_weights())
        kc.keras.utils.set_random_seed(3)
        wrapped = kc.pruning.prune(copy, kc.pruning.ConstantSparsity(0.5))
        d = kc.distillation.Distiller(student=wrapped, teacher=teacher)
        d.compile(optimizer=kc.keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.5, temperature=2.0)
        kc.models.fit(d, slice_, epochs=1, batch_size=64, callbacks=kc.pruning.callbacks(per_layer=False), verbose=0)
        for a, b in zip(self._weights(result), kc.pruning.strip(wrapped).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        # Plain fine-tuning (the default) learns from the labels only: other weights.
        assert plain.log[0]["finetune"] == "plain" and plain.log[0]["stage"] == "Prune"
        assert not np.array_equal(self._weights(plain)[-2], self._weights(result)[-2])

    @pytest.mark.slow
    def test_a_distill_stage_after_prune_is_a_step_of_its_own(self, slice_, models, plain):
        student, teacher = models
        both = Pipeline([Prune(0.5, epochs=1, batch_size=64), Distill(temperature=2.0, alpha=0.5, epochs=2, batch_size=64)])
        result = both.run(slice_, model=student, teacher=teacher, seed=3, verbose=0)
        assert [(e["stage"], e["finetune"]) for e in result.log] == [("Prune", "plain"),
                                                                    ("Distill", "distill(T=2.0, alpha=0.5)")]
        # The same as 1 epoch of plain fine-tuning (seed 3), then 2 epochs of distillation (seed 4).
        pruned = kc.keras.models.clone_model(plain.model)
        pruned.set_weights(plain.model.get_weights())
        kc.keras.utils.set_random_seed(4)
        d = kc.distillation.Distiller(student=pruned, teacher=teacher)
        d.compile(optimizer=kc.keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.5, temperature=2.0)
        kc.models.fit(d, slice_, epochs=2, batch_size=64, verbose=0)
        for a, b in zip(self._weights(result), pruned.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("cls", [Prune, PruneChannels, LowRank, Cluster, QuantizeAware])
    def test_every_fine_tuning_stage_takes_finetune(self, cls):
        extra = {"param_ratio": 0.5} if cls is LowRank else {}
        stage = cls(**extra, finetune=Distill(temperature=3.0))
        assert cls.finetunes and stage.steps == 2 and cls(**extra).steps == 1
        assert stage_from_config({"stage": cls.kind, **stage.get_config()}) == stage
        for bad in (Train(), "distill", {"temperature": 2.0}, Distill):
            with pytest.raises(TypeError, match=r"finetune must be None \(plain fine-tuning on the labels\) or a "
                                                r"Distill stage .*, got "):
                cls(**extra, finetune=bad)
        with pytest.raises(TypeError, match=r"finetune must be None or a distill stage config .* got \{'stage': 'prune'\}"):
            stage_from_config({"stage": cls.kind, **extra, "finetune": {"stage": "prune"}})

    def test_stages_register_themselves(self):
        from kcompress.pipeline import STAGES, Stage

        assert {k: c.__name__ for k, c in STAGES.items()} == {
            "train": "Train", "prune": "Prune", "prune_channels": "PruneChannels", "quantize_aware": "QuantizeAware",
            "distill": "Distill", "low_rank": "LowRank", "cluster": "Cluster", "export": "Export",
            "evaluate": "Evaluate"}
        try:
            class Noop(Stage):
                kind = "test_noop"

                def run(self, state):
                    return {}

            assert STAGES["test_noop"] is Noop
            with pytest.raises(ValueError, match="stage kind 'prune' of .*Twice is already taken by Prune"):
                class Twice(Stage):
                    kind = "prune"
        finally:
            STAGES.pop("test_noop", None)


def test_schedule_of_a_gradual_prune_stage():
    schedule = Prune(0.8, initial_sparsity=0.5, schedule_epochs=3, batch_size=100).schedule(1000)
    assert (schedule.begin_step, schedule.end_step) == (0, 27)
    assert isinstance(Prune(0.8).schedule(1000), kc.pruning.ConstantSparsity)


class TestBadInput:
    @pytest.mark.parametrize("make, match", [
        (lambda: Prune(1.0), r"sparsity must be a finite number in \[0, 1\), got 1.0"),
        (lambda: Distill(temperature=0), "temperature must be a finite number > 0, got 0"),
        (lambda: Distill(alpha=1.5), r"alpha must be a finite number in \[0, 1\], got 1.5"),
        (lambda: Distill(hint="fc2:"), "hint must be a layer name or 'student_layer:teacher_layer', got 'fc2:'"),
        (lambda: Distill(hint="fc2", hint_weight=-0.1), "hint_weight must be a finite number >= 0, got -0.1"),
        (lambda: Export("int4"), "mode must be one of"),
        (lambda: Train(epochs=0), "epochs must be an int >= 1, got 0"),
        (lambda: Prune(0.5, learning_rate=-1e-3), "learning_rate must be a finite number > 0, got -0.001"),
        (lambda: Distill(epochs=0), "epochs must be an int >= 1 or None, got 0"),
        (lambda: stage_from_config({"stage": "shrink"}), r"stage must be one of \[.*\], got 'shrink'"),
        (lambda: stage_from_config({"stage": "prune", "amount": 3}), "bad options for stage 'prune'"),
        (lambda: Pipeline([], name="x"), "at least one stage"),
        (lambda: Pipeline([Export()], name="a b"), "name must be a non-empty string without spaces"),
    ])
    def test_value_errors(self, make, match):
        with pytest.raises(ValueError, match=match):
            make()

    def test_type_errors(self, tiny):
        for make, match in ((lambda: Train(epochs=2.0), "epochs must be an int >= 1, got 2.0"),
                            (lambda: Distill(temperature="hot"), "temperature must be a finite number > 0, got 'hot'"),
                            (lambda: Export(sparse=1), "sparse must be True or False, got 1"),
                            (lambda: Export(mode=8), "mode must be one of 'float32', .*, got 8")):
            with pytest.raises(TypeError, match=match):
                make()
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
