import json
import os

import pytest
from experiment_scripts import run_main

VARIANTS = ["keras_float32", "float32", "ptq_dynamic", "ptq_int8", "qat_int8", "pruned_qat_int8",
            "pruned_qat_int8_sparse"]


@pytest.mark.slow
def test_quantize_script_writes_every_output(tmp_path, capsys):
    # In process, through the script's absl entry point (app.run(main)): no second TensorFlow start-up.
    out = tmp_path / "run"
    status, _ = run_main("quantize", "--model=tiny_cnn", "--epochs=2", "--qat_epochs=1", "--prune_epochs=1",
                         "--learning_rate=0.003", "--batch_size=64", "--max_train=2000", "--max_test=200",
                         "--latency_rounds=1", "--latency_runs=1", "--calibration_samples=20",
                         "--noplain_qat_of_pruned", "--seeds=0,1", f"--output_dir={out}")
    stdout = capsys.readouterr().out
    assert status == 0
    assert {"results.json", "results.csv", "report.md", "flags.json"} <= set(os.listdir(out))
    assert {"baseline.keras", "qat.h5", "pruned_qat.h5", "tiny_cnn_ptq_int8.tflite", "tiny_cnn_qat_int8.tflite",
            "tiny_cnn_pruned_qat_int8_sparse.tflite"} <= set(os.listdir(out / "seed1"))
    assert sorted(os.listdir(out / "seed0" / "micro")) == ["tiny_cnn_qat_int8.cc", "tiny_cnn_qat_int8.h",
                                                 "tiny_cnn_qat_int8_resolver.h"]
    payload = json.loads((out / "results.json").read_text())
    records = {r["variant"]: r for r in payload["records"] if r["seed"] == 0}
    assert list(records) == VARIANTS
    for name in VARIANTS[1:]:
        r = records[name]
        floor = 0.4 if name.startswith("pruned") else 0.6  # tiny_cnn, 2 epochs, then 80% pruned for one
        assert r["num_samples"] == 200 and floor < r["accuracy"] <= 1.0, r
        assert r["top1_agreement"] >= 0.95 and r["latency_ms"] > 0 and r["latency_ratio_builtin"] > 0
    assert records["float32"]["latency_ratio"] == 1.0
    assert records["ptq_int8"]["size_bytes"] == (out / "seed0" / "tiny_cnn_ptq_int8.tflite").stat().st_size
    assert records["qat_int8"]["published_accuracy"] == 0.9832
    assert records["pruned_qat_int8"]["zero_weight_fraction"] >= 0.75
    assert records["pruned_qat_int8_sparse"]["sparse_tensors"] >= 1
    assert payload["flags"]["qat_epochs"] == 1 and payload["flags"]["micro"]["arena_bytes"] > 0
    report = (out / "report.md").read_text()
    assert "| qat_int8 |" in report and "Published LeNet-5/MNIST table" in report
    assert " ± " in report and "(n=2)" in report
    assert "| pruned_qat_int8_sparse |" in stdout


def test_quantize_script_rejects_bad_flags(tmp_path, capsys):
    status, _ = run_main("quantize", "--qat_epochs=0", f"--output_dir={tmp_path}")
    assert status != 0
    assert "flag --qat_epochs=0" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
