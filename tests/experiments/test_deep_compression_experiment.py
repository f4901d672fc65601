import json

import pytest
from experiment_scripts import run_main


@pytest.mark.slow
def test_deep_compression_script_writes_the_table(tmp_path, capsys):
    # In process, through the script's absl entry point (app.run(main)): no second TensorFlow start-up.
    out = tmp_path / "run"
    status, _ = run_main("deep_compression", "--models=lenet5", "--epochs=1", "--prune_epochs=1", "--cluster_epochs=1",
                         "--lowrank_epochs=1", "--max_train=600", "--max_test=100", "--robustness_samples=20",
                         "--batch_size=128", "--seeds=0,1", f"--output_dir={out}")
    assert status == 0
    assert "# Deep Compression on mnist" in capsys.readouterr().out  # main prints the report
    payload = json.loads((out / "results.json").read_text())
    rows = {r["variant"]: r for r in payload["records"] if r["seed"] == 1}
    assert list(rows)[:4] == ["lenet5 baseline", "lenet5 pruned", "lenet5 pruned+clustered",
                              "lenet5 pruned+PQ d=4 k=256"]
    assert any(v.startswith("lenet5 low-rank") for v in rows)
    for r in rows.values():  # robustness columns for every variant
        assert {"robust_gauss_0.1", "robust_gauss_0.2", "robust_gauss_0.3", "robust_saltpepper_0.05"} <= set(r)
        assert r["float32_bytes"] == 4 * 61706 or r["variant"].startswith("lenet5 low-rank")
    shared = rows["lenet5 pruned+clustered"]
    assert shared["entropy_lossless"] and shared["entropy_ratio"] > 15 and shared["published_ratio"] == 39.0
    assert shared["entropy_bytes"] < shared["gzip_bytes"] < shared["size_bytes"]
    low = next(r for v, r in rows.items() if v.startswith("lenet5 low-rank"))
    assert low["params"] <= 0.5 * 61706
    assert (out / "report.md").exists() and (out / "flags.json").exists() and (out / "results.csv").exists()
    assert payload["flags"]["cluster_epochs"] == 1
    assert all(r["n"] == 2 for r in payload["summary"]) and " ± " in (out / "report.md").read_text()


def test_deep_compression_script_rejects_bad_flags(tmp_path, capsys):
    status, _ = run_main("deep_compression", "--dense_clusters=1", f"--output_dir={tmp_path}")
    assert status != 0
    assert "flag --dense_clusters=1" in capsys.readouterr().err
