import json

import pytest
from experiment_scripts import argv, load, run_main


@pytest.fixture(scope="module")
def script():
    return load("compress")


@pytest.mark.slow
def test_compress_script_writes_a_report_with_the_spread_over_seeds(tmp_path, capsys):
    # --strategy=mirrored: every training (baseline, search, replay) under a MirroredStrategy. In process,
    # through the script's absl entry point (app.run(main)): no second TensorFlow start-up.
    # --max_accuracy_drop=-1: no accuracy budget, the bytes only.
    status, _ = run_main("compress", *argv(
        dataset="mnist", model="lenet5", epochs=1, batch_size=128, learning_rate=2e-3, max_bytes=40_000,
        max_accuracy_drop=-1, recovery_epochs=1, step_epochs=1, qat_epochs=0, step_fraction=0.6, temperature=2.0,
        alpha=0.5, compress_batch_size=128, seeds=["0", "1"], output_dir=tmp_path / "c", max_train=1000,
        max_test=200, save_recipe=tmp_path / "recipes" / "lenet5_mnist.json", strategy="mirrored"))
    assert status == 0
    assert "Winner: " in capsys.readouterr().out
    out = tmp_path / "c"
    payload = json.loads((out / "results.json").read_text())
    for name in ("results.json", "results.csv", "report.md", "flags.json", "recipe.json", "winner.tflite",
                 "sensitivity.png", "pareto.png", "search/compress_state.json"):
        assert (out / name).stat().st_size > 0, name
    runs = payload["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert all(r["size_bytes"] <= 40_000 for r in runs)
    assert runs[0]["size_bytes"] == runs[1]["size_bytes"]  # the same recipe, another seed
    report = (out / "report.md").read_text()
    assert " ± " in report and "## Sensitivity of the original model" in report and "## Recipe" in report
    flags = json.loads((out / "flags.json").read_text())
    assert flags["machine"]["cores"] >= 1 and flags["machine"]["cpu"] and flags["strategy"] == "mirrored"
    # --save_recipe: the recipe with what it was found for, which compare.py's compressed_budget row replays.
    saved = json.loads((tmp_path / "recipes" / "lenet5_mnist.json").read_text())
    assert saved["recipe"] == json.loads((out / "recipe.json").read_text())
    assert (saved["model"], saved["dataset"], saved["budget"]) == ("lenet5", "mnist", "max_bytes=40,000")
    assert f"{runs[0]['size_bytes']:,}-byte int8 flatbuffer" in saved["result"] and " ± " in saved["result"]
    compare = load("compare")
    pipeline, meta = compare._compress_recipe({"compress_recipe": str(tmp_path / "recipes" / "lenet5_mnist.json"),
                                               "model": "lenet5", "dataset": "mnist"})
    assert pipeline.get_config() == saved["recipe"] and meta["budget"] == "max_bytes=40,000"


def test_compress_script_rejects_an_unknown_strategy(script, tmp_path):
    with pytest.raises(ValueError, match=r"--strategy must be one of \['default', 'mirrored', 'multiworker'\], "
                                         r"got 'tpu'"):
        script.run({"strategy": "tpu", "seeds": ["0"], "output_dir": str(tmp_path / "c")})
    assert not (tmp_path / "c").exists()  # refused before anything ran


@pytest.mark.parametrize("name", ["baseline", "compare", "compress", "deep_compression", "distill", "prune",
                                  "quantize"])
def test_every_experiment_script_takes_the_strategy_flag(name):
    from absl import flags

    before, was_parsed = set(flags.FLAGS), flags.FLAGS.is_parsed()
    module = load(name, f"{name}_flags_check")
    try:
        module.define_flags()
        assert flags.FLAGS["strategy"].default == "default"
        flags.FLAGS(["script", "--strategy=multiworker"], known_only=True)
        assert flags.FLAGS["strategy"].value == "multiworker"
        with pytest.raises(flags.IllegalFlagValueError, match="tpu"):
            flags.FLAGS(["script", "--strategy=tpu"], known_only=True)
    finally:  # the next script defines the same shared flags
        for flag in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, flag)
        if not was_parsed:
            flags.FLAGS.unparse_flags()
