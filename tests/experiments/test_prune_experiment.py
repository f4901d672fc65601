import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "prune.py"


@pytest.mark.slow
def test_prune_script_writes_the_table(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPT), "--epochs=1", "--finetune_epochs=1", "--schedule_end_epoch=1",
           "--max_train=600", "--max_test=100", "--batch_size=128", "--latency_runs=2", "--seeds=0,1", f"--output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
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
