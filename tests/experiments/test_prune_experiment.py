import json

import pytest
from experiment_scripts import run_main


@pytest.mark.slow
def test_prune_script_writes_the_table(tmp_path, capsys):
    # In process, through the script's absl entry point (app.run(main)): no second TensorFlow start-up.
    out = tmp_path / "run"
    status, _ = run_main("prune", "--epochs=1", "--finetune_epochs=1", "--schedule_end_epoch=1", "--max_train=600",
                         "--max_test=100", "--batch_size=128", "--latency_runs=1", "--seeds=0,1", f"--output_dir={out}")
    assert status == 0
    assert "| constant_80 | float32 sparse |" in capsys.readouterr().out  # main's summary table
    payload = json.loads((out / "results.json").read_text())
    rows = {(r["variant"], r["flatbuffer"]): r for r in payload["records"]}
    assert set(rows) == {("baseline", "float32 dense"), ("channels_50", "float32 dense")} | {
        (v, f"float32 {k}") for v in ("constant_50", "constant_80", "scheduled_50_80") for k in ("dense", "sparse")}
    for variant, target in (("constant_50", 0.5), ("constant_80", 0.8), ("scheduled_50_80", 0.8)):
        dense, sparse = rows[(variant, "float32 dense")], rows[(variant, "float32 sparse")]
        assert dense["sparsity"] == pytest.approx(target, abs=0.01)
        assert sparse["accuracy"] == pytest.approx(dense["accuracy"], abs=1e-9)
    assert rows[("constant_80", "float32 sparse")]["size_bytes"] <= 0.45 * rows[("baseline", "float32 dense")]["size_bytes"]
    assert rows[("channels_50", "float32 dense")]["macs_ratio"] <= 0.35
    assert (out / "seed1" / "constant_80_sparse_float32.tflite").exists() and (out / "report.md").exists()
    assert sorted({r["seed"] for r in payload["records"]}) == [0, 1] and " ± " in (out / "report.md").read_text()
    assert payload["flags"]["finetune_epochs"] == 1


def test_prune_script_rejects_bad_flags(tmp_path, capsys):
    status, _ = run_main("prune", "--finetune_epochs=0", f"--output_dir={tmp_path}")
    assert status != 0
    assert "flag --finetune_epochs=0" in capsys.readouterr().err
