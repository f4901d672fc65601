import json
import os

import pytest
from experiment_scripts import argv, load, run_main


@pytest.fixture(scope="module")
def compare():
    return load("compare")


def _args(out, **overrides):
    args = dict(dataset="mnist", model="lenet5", student="lenet5_student", epochs=1, finetune_epochs=1, qat_epochs=1,
                batch_size=128, learning_rate=1e-3, qat_learning_rate=1e-4, sparsity=0.8, channel_ratio=0.5,
                temperature=4.0, alpha=0.1, prune_distill_temperature=1.0, prune_distill_alpha=0.5,
                prune_distill_hint="fc2", prune_distill_hint_weight=0.1, seeds=["0"], strategy="default", output_dir=str(out), data_dir=None, max_train=500,
                max_test=100, latency_runs=2, latency_rounds=1, robustness_samples=50, clusters=16,
                variants=["prune80_distill_qat_int8", "channels50_distill_qat_int8"])
    args.update(overrides)
    return args


@pytest.mark.slow
def test_runs_resumes_and_reruns_only_what_is_missing(compare, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    records = compare.run(_args(out))
    labels = {(r["variant"], r["flatbuffer"]) for r in records}
    assert {("baseline", "keras"), ("baseline", "float32"), ("baseline", "int8"),
            ("prune80_distill_qat_int8", "int8"), ("channels50_distill_int8", "int8"),
            ("channels50_distill_qat_int8", "int8")} <= labels
    # channels50_distill_qat_int8 continues from channels50_distill_int8 (run too, unasked): QAT only, same widths.
    chained = json.loads((out / "seed0" / "variants" / "channels50_distill_qat_int8.json").read_text())
    assert chained["start"] == "channels50_distill_int8" and chained["log"][0]["stage"] == "QuantizeAware + Distill"
    for name in ("results.json", "results.csv", "report.md", "pareto.png", "flags.json", "seed0/baseline.keras",
                 "seed0/channels50_distill_int8_int8.tflite", "seed0/variants/baseline.json"):
        assert (out / name).exists(), name
    by = {(r["variant"], r["flatbuffer"]): r for r in json.loads((out / "results.json").read_text())["records"]}
    assert by[("baseline", "float32")]["latency_ratio"] == 1.0
    assert by[("channels50_distill_int8", "int8")]["compression"] > 8
    assert by[("channels50_distill_qat_int8", "int8")]["params"] == by[("channels50_distill_int8", "int8")]["params"]
    arena = by[("channels50_distill_int8", "int8")]
    assert 1024 <= arena["tflm_arena_bytes"] <= arena["arena_estimate_bytes"] <= 1.25 * arena["tflm_arena_bytes"]
    assert by[("prune80_distill_qat_int8", "int8")]["nonzero_params"] < 0.22 * by[("baseline", "int8")]["params"]
    assert "![accuracy vs size](pareto.png)" in (out / "report.md").read_text()
    # Unstructured pruning recovers on logits plus the teacher's fc2 features.
    log = json.loads((out / "seed0" / "variants" / "prune80_distill_qat_int8.json").read_text())["log"]
    assert log[0]["finetune"] == "distill(T=1.0, alpha=0.5, hint=fc2 x0.1)"
    assert "plus the teacher's fc2 features x0.1" in (out / "report.md").read_text()

    ran = []
    original = compare.Pipeline.run

    def spy(self, *a, **k):
        ran.append(self.name)
        return original(self, *a, **k)

    monkeypatch.setattr(compare.Pipeline, "run", spy)
    compare.run(_args(out))  # everything re-used
    assert ran == []

    # An interrupted run: one variant never wrote its completion file, another's is cut short.
    os.remove(out / "seed0" / "variants" / "channels50_distill_int8.json")
    (out / "seed0" / "variants" / "prune80_distill_qat_int8.json").write_text('{"fingerprint": "abc", "reco')
    compare.run(_args(out))
    assert sorted(ran) == ["channels50_distill_int8", "prune80_distill_qat_int8"]

    ran.clear()
    compare.run(_args(out, temperature=2.0, variants=["channels50_distill_int8"]))  # other settings: re-run
    assert ran == ["channels50_distill_int8"]  # the baseline does not depend on the temperature


def test_unknown_variant(compare, tmp_path):
    with pytest.raises(ValueError, match=r"--variants names \['everything'\], not among .* \(or 'all'\)"):
        compare.run(_args(tmp_path, variants=["everything"]))


def test_default_runs_the_core_rows_and_all_runs_every_row(compare, tmp_path, monkeypatch):
    args = _args(tmp_path, variants=None, compress_recipe="auto")
    every = compare.variants(args)
    core = compare.core_variants(args, every)
    assert core == ["prune_80", "channels_50", "qat_int8", "prune80_qat_int8", "channels50_qat_int8",
                    "compressed_budget"]
    assert len(every) == 14 and set(core) < set(every)
    # The names follow the flags; a row that does not exist (no recipe) is simply not in the core.
    other = dict(args, sparsity=0.5, channel_ratio=0.25, compress_recipe="")
    assert compare.core_variants(other, compare.variants(other)) == [
        "prune_50", "channels_25", "qat_int8", "prune50_qat_int8", "channels25_qat_int8"]
    seen = {}

    class Stop(Exception):
        pass

    def fake_study(entries, *a, **k):
        seen["names"] = [e.name for e in entries]
        raise Stop

    monkeypatch.setattr(compare.study, "Study", fake_study)
    for chosen, expected in ((None, core), (["all"], list(every))):
        with pytest.raises(Stop):
            compare.run(dict(args, variants=chosen))
        assert seen["names"] == expected


@pytest.mark.slow
def test_two_seeds_of_the_compressed_budget_row_report_mean_and_std(compare, tmp_path, capsys):
    recipe = {"model": "lenet5", "dataset": "mnist", "budget": "max_bytes=30,000", "command": "compress.py (test)",
              "recipe": {"version": 2, "name": "compressed", "stages": [
                  {"stage": "prune_channels", "ratio": None, "channels": {"fc1": 30}, "epochs": 1,
                   "finetune": {"stage": "distill", "temperature": 2.0, "alpha": 0.5, "epochs": 1}},
                  {"stage": "export", "mode": "int8", "slim": True, "per_channel": False},
                  {"stage": "evaluate"}]}}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    out = tmp_path / "cmp"
    # In process, through the script's absl entry point (app.run(main)): no second TensorFlow start-up.
    status, _ = run_main("compare", *argv(**_args(out, seeds=["0", "1"], variants=["compressed_budget"],
                                                  compress_recipe=str(path), robustness_samples=20, latency_runs=1)))
    assert status == 0
    assert "| compressed_budget | int8 |" in capsys.readouterr().out  # main's summary table
    payload = json.loads((out / "results.json").read_text())
    records = payload["records"]
    assert sorted({r["seed"] for r in records}) == [0, 1]
    rows = [r for r in records if r["variant"] == "compressed_budget"]
    assert [r["flatbuffer"] for r in rows] == ["int8", "int8"] and all(r["compression"] > 8 for r in rows)
    row = next(r for r in payload["summary"] if (r["variant"], r["flatbuffer"]) == ("compressed_budget", "int8"))
    assert row["n"] == 2 and row["accuracy"] == pytest.approx(sum(r["accuracy"] for r in rows) / 2)
    report = (out / "report.md").read_text()
    assert " ± " in report and "over seeds 0, 1 (n=2)" in report
    assert "compressed_budget: the recipe `kc.compress` found for max_bytes=30,000" in report
    assert (out / "seed1" / "baseline.keras").exists() and payload["flags"]["machine"]["cores"] >= 1
    assert compare._compress_recipe(_args(out, compress_recipe="")) is None  # no such row
    assert compare._compress_recipe(_args(out, model="lenet300_100", compress_recipe=str(path))) is None
    with pytest.raises(ValueError, match="--compress_recipe names 'missing.json', which is not a file"):
        compare._compress_recipe(_args(out, compress_recipe="missing.json"))


def test_compare_script_rejects_bad_flags(tmp_path, capsys):
    status, _ = run_main("compare", "--student=alexnet", f"--output_dir={tmp_path}")
    assert status != 0
    assert "flag --student=alexnet" in capsys.readouterr().err
