import json

import pytest

import kcompress as kc

RECORDS = [
    {"variant": "tflite_float32", "accuracy": 0.9886, "size_bytes": 250_000, "latency_ms": 0.02, "params": 61706},
    {"variant": "tflite_int8", "accuracy": 0.9881, "size_bytes": 72_000, "latency_ms": 0.015, "params": 61706},
]


def test_add_ratios():
    out = kc.reporting.add_ratios(RECORDS, reference="tflite_float32")
    assert out[1]["compression"] == pytest.approx(250_000 / 72_000)
    assert out[1]["latency_ratio"] == pytest.approx(0.75)
    assert out[1]["accuracy_delta"] == pytest.approx(-0.05)
    assert "compression" not in RECORDS[1]  # inputs untouched
    with pytest.raises(ValueError, match="reference must name one of the variants .* got 'keras'"):
        kc.reporting.add_ratios(RECORDS, reference="keras")


def test_markdown_table():
    md = kc.reporting.to_markdown(kc.reporting.add_ratios(RECORDS, "tflite_float32"))
    lines = md.strip().splitlines()
    assert lines[0] == "| variant | accuracy (%) | params | bytes | size ratio | latency (ms) | latency ratio |"
    assert lines[3] == "| tflite_int8 | 98.81 | 61,706 | 72,000 | 3.47x | 0.0150 | 0.75x |"


def test_seed_means_of_counts_show_as_whole_numbers():
    # A mean over seeds of byte and parameter counts is a float; it is shown as a count, not "4.338e+04".
    row = {"variant": "prune80_int8_sparse", "n": 3, "accuracy": 0.987, "accuracy_std": 0.001,
           "size_bytes": 43379.33, "size_bytes_std": 32.3, "nonzero_params": 12345.67, "nonzero_params_std": 0.0,
           "macs": 416_520.0, "macs_std": 0.0}
    md = kc.reporting.to_markdown([row], ("variant", "accuracy", "size_bytes", "nonzero_params", "macs"))
    assert md.strip().splitlines()[2] == "| prune80_int8_sparse | 98.70 ± 0.10 | 43,379 ± 32.3 | 12,346 | 416,520 |"


def test_write_results(tmp_path):
    paths = kc.reporting.write_results(tmp_path / "out", RECORDS, {"epochs": 10}, title="T", notes="n")
    payload = json.loads(open(paths["json"]).read())
    assert payload == {"records": RECORDS, "flags": {"epochs": 10}}
    csv_lines = open(paths["csv"]).read().splitlines()
    assert csv_lines[0] == "variant,accuracy,size_bytes,latency_ms,params" and len(csv_lines) == 3
    assert open(paths["markdown"]).read().startswith("# T\n\n| variant |")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md", "results.csv", "results.json"]


def test_write_results_rejects_records_without_variant(tmp_path):
    with pytest.raises(ValueError, match="each with a 'variant' key"):
        kc.reporting.write_results(tmp_path, [{"accuracy": 1.0}])


def test_pareto_front():
    records = [
        {"variant": "a", "size_bytes": 100, "accuracy": 0.90},
        {"variant": "b", "size_bytes": 50, "accuracy": 0.95},   # beats a on both axes
        {"variant": "c", "size_bytes": 200, "accuracy": 0.99},
        {"variant": "d", "size_bytes": 20, "accuracy": 0.80},
        {"variant": "e", "size_bytes": 300, "accuracy": 0.98},  # beaten by c
    ]
    assert [r["variant"] for r in kc.reporting.pareto_front(records)] == ["d", "b", "c"]


def test_plots_are_png_files(tmp_path):
    records = [{"variant": f"v{i}", "size_bytes": 1000 * (i + 1), "accuracy": 0.9 + i / 100, "temperature": i}
               for i in range(5)]
    for path in (kc.reporting.plot_pareto(records, tmp_path / "pareto.png"),
                 kc.reporting.plot_sweep(records, tmp_path / "sweep.png", x="temperature", baseline=0.95)):
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="no entry with both 'size_bytes' and 'accuracy'"):
        kc.reporting.plot_pareto([{"variant": "x"}], tmp_path / "empty.png")
