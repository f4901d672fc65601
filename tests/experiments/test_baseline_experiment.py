import json
import os

import pytest
from experiment_scripts import run_main


@pytest.mark.slow
def test_baseline_script_writes_every_output(tmp_path, capsys):
    # In process, through the script's absl entry point (app.run(main)): no second TensorFlow start-up.
    out = tmp_path / "run"
    status, _ = run_main("baseline", "--dataset=mnist", "--model=tiny_cnn", "--epochs=2", "--batch_size=64",
                         "--learning_rate=0.005", "--max_train=2000", "--max_test=200", "--latency_runs=1",
                         "--calibration_samples=20", "--seeds=0,1", f"--output_dir={out}")
    stdout = capsys.readouterr().out
    assert status == 0
    assert {"results.json", "results.csv", "report.md", "flags.json"} <= set(os.listdir(out))
    for seed in (0, 1):
        assert {"model.keras", "tiny_cnn_float32.tflite", "tiny_cnn_int8.tflite"} <= set(os.listdir(out / f"seed{seed}"))
    payload = json.loads((out / "results.json").read_text())
    variants = [r["variant"] for r in payload["records"] if r["seed"] == 0]
    assert variants == ["keras", "tflite_float32", "tflite_dynamic", "tflite_float16", "tflite_int8"]
    int8 = payload["records"][-1]
    assert int8["seed"] == 1 and int8["num_samples"] == 200 and 0.8 < int8["accuracy"] <= 1.0
    assert int8["size_bytes"] == (out / "seed1" / "tiny_cnn_int8.tflite").stat().st_size
    assert [r["n"] for r in payload["summary"]] == [2] * 5
    assert " ± " in (out / "report.md").read_text() and "(n=2)" in (out / "report.md").read_text()
    assert payload["flags"]["epochs"] == 2 and payload["flags"]["model"] == "tiny_cnn"
    assert "| tflite_int8 |" in (out / "report.md").read_text()
    assert "| tflite_int8 |" in stdout  # the summary table at the end


def test_baseline_script_rejects_bad_flags(tmp_path, capsys):
    status, _ = run_main("baseline", "--model=alexnet", f"--output_dir={tmp_path}")
    assert status != 0
    assert "flag --model=alexnet" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
