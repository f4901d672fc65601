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
