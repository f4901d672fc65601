import json
import os

import pytest
from experiment_scripts import argv, load, run_main


def _module():
    return load("distill")


@pytest.mark.slow
def test_distill_script_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    # Cheap: an MLP teacher (it has the fc2 the hint names), one candidate per selection (the choice
    # itself is select_on_validation's, tested in tests/reporting), the seed-0 run at alpha_temperature
    # re-used from the alpha selection; in process, through the script's absl entry point (app.run(main),
    # which passes its flags to run()): no second TensorFlow start-up.
    flags = dict(teacher="lenet300_100", teacher_epochs=1, student="tiny_cnn", epochs=1, batch_size=64,
                 learning_rate=0.005, temperatures=["4"], alphas=["0.5"], alpha_temperature=4, seeds=["0", "1"],
                 prune_seeds=["0"], prune_epochs=1, prune_alphas=["0.5"], prune_temperatures=["1"],
                 prune_hint="fc2:fc2", prune_hint_weights=["0.1"], max_train=640, max_test=100, latency_runs=1)
    status, module = run_main("distill", *argv(**flags, output_dir=out))
    assert status == 0
    assert "## Temperature sweep" in capsys.readouterr().out  # main prints the report
    assert {"results.json", "results.csv", "report.md", "flags.json"} <= set(os.listdir(out))
    payload = json.loads((out / "results.json").read_text())
    by_role = {}
    for r in payload["records"]:
        by_role.setdefault(r["role"], []).append(r)
    assert len(by_role["teacher"]) == 1 and by_role["teacher"][0]["params"] == 266_610
    assert len(by_role["alpha_selection"]) == 1
    assert [r["seed"] for r in by_role["scratch"]] == [0, 1]
    assert sorted((r["temperature"], r["seed"]) for r in by_role["distilled"]) == [(4, 0), (4, 1)]
    chosen = payload["flags"]["chosen_alpha"]
    best_val = max(by_role["alpha_selection"], key=lambda r: r["val_accuracy"])  # ties: the first
    assert chosen == best_val["alpha"] and all(r["alpha"] == chosen for r in by_role["distilled"])
    reused = next(r for r in by_role["distilled"] if r["seed"] == 0)  # the chosen alpha's run, stored once
    assert (reused["pipeline"], reused["accuracy"]) == (best_val["pipeline"], best_val["accuracy"])
    assert (out / "seed0" / "variants" / f"{reused['pipeline']}.json").is_file()
    scratch = by_role["scratch_mean"][0]
    assert scratch["params"] == 2922 and 0.3 < scratch["accuracy"] <= 1.0 and scratch["num_seeds"] == 2
    assert scratch["accuracy"] == pytest.approx(sum(r["accuracy"] for r in by_role["scratch"]) / 2)
    assert sum(bool(r.get("best_by_validation")) for r in by_role["distilled_mean"]) == 1
    assert sorted((r["temperature"], r["hint_weight"]) for r in by_role["prune_selection"]) == [(1, 0.1)]
    for role in ("prune_fine-tune", "prune_distill", "prune_distill-logits"):
        (row,) = by_role[role]
        assert abs(row["sparsity"] - 0.8) < 0.01 and row["nonzero_params"] < 0.3 * row["params"]
    chosen = payload["flags"]["prune_chosen"]
    best_val = max(by_role["prune_selection"], key=lambda r: r["val_accuracy"])
    assert (chosen["temperature"], chosen["hint_weight"]) == (best_val["temperature"], 0.1)
    (hinted,), (logits,) = by_role["prune_distill"], by_role["prune_distill-logits"]
    assert (hinted["hint"], hinted["hint_weight"], logits["hint"], logits["hint_weight"]) == ("fc2", 0.1, None, 0.0)
    assert logits["temperature"] == hinted["temperature"] == chosen["temperature"]
    means = {r["role"]: r for r in payload["records"] if r["role"].endswith("_mean")}
    gain = 100 * (means["prune_distill_mean"]["accuracy"] - means["prune_fine-tune_mean"]["accuracy"])
    assert payload["flags"]["prune_gain_points"] == pytest.approx(gain)
    assert payload["flags"]["epochs"] == 1 and payload["flags"]["student"] == "tiny_cnn"
    report = (out / "report.md").read_text()
    assert "## Temperature sweep" in report and "| distilled T=4 |" in report
    assert "from scratch" in report and " ± " in report.split("from scratch")[0] and "(n=2)" in report
    assert "prune 80% + distill (T=" in report and "Best distilled student" in report
    assert ", hint fc2 x0.1) |" in report and "| prune 80% + distill, logits (T=" in report
    assert "vs prune + fine-tune" in report and "| prune 80% + fine-tune |" in report and "| scratch |" in report

    # A multi-worker worker writes into its own (temporary) folder but resumes from the chief's: nothing trains.
    ran = []
    original = module.Pipeline.run
    module.Pipeline.run = lambda self, *a, **k: ran.append(self.name) or original(self, *a, **k)
    try:
        again = module._run(str(tmp_path / "worker"), **flags, resume_dir=str(out))
    finally:
        module.Pipeline.run = original
    assert ran == [] and len(again) == len(payload["records"])


def test_seed_means_and_tables():
    module = _module()
    runs = [{"variant": f"s{i}", "seed": i, "accuracy": a, "val_accuracy": v, "params": 10, "nonzero_params": 10,
             "size_bytes": 100, "gzip_bytes": 90, "latency_ms": ms}
            for i, (a, v, ms) in enumerate([(0.98, 0.97, 0.01), (0.99, 0.99, 0.03), (0.97, 0.98, 0.02)])]
    mean = module._mean_record("scratch", runs)
    assert mean["accuracy"] == pytest.approx(0.98) and mean["accuracy_std"] == pytest.approx(0.01)
    assert mean["val_accuracy"] == pytest.approx(0.98) and mean["latency_ms"] == 0.02
    assert mean["seed_accuracies"] == [0.98, 0.99, 0.97] and mean["num_seeds"] == 3
    table = module._summary_table([mean], [0, 1, 2])
    assert "| scratch | – | – | 98.00 | 99.00 | 97.00 | 98.00 | 1.00 | 98.00 | 10 | 100 | 90 | 0.0200 |" in table


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperatures=["1", "-2"]), "temperatures must be a non-empty list of finite positive numbers"),
    (dict(alphas=["1.5"]), r"alphas and prune_alphas must lie in \[0, 1\], got \[1.5\]"),
    (dict(seeds=[]), "seeds must name at least one seed"),
    (dict(hint="conv2"), "hint must be 'student_layer:teacher_layer', got 'conv2'"),
    (dict(prune_hint="fc2:"), "prune_hint must be 'student_layer:teacher_layer', got 'fc2:'"),
    (dict(prune_hint_weights=["-1"]), r"prune_hint_weights must be >= 0, got \[-1.0\]"),
    (dict(validation_split=0.0), r"validation_split must be 0.1 \(> 0: alpha and T are chosen on it"),
])
def test_distill_run_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _module().run(str(tmp_path), **kwargs)
