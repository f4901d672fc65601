"""What ``compress`` writes: results.json, results.csv, report.md, recipe.json, winner.tflite, pareto.png."""

from __future__ import annotations

import json
import os

_COLUMNS = ("phase", "variant", "move", "size_bytes", "gzip_bytes", "params", "macs", "arena_bytes",
            "val_accuracy", "keras_val_accuracy", "test_accuracy", "meets_budget")


def _fmt(key, value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("accuracy"):
        return f"{100 * value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def records_markdown(records) -> str:
    head = "| " + " | ".join(_COLUMNS) + " |"
    sep = "|" + "|".join("---:" if c not in ("phase", "variant", "move") else "---" for c in _COLUMNS) + "|"
    rows = ["| " + " | ".join(_fmt(c, r.get(c)) for c in _COLUMNS) + " |" for r in records]
    return "\n".join([head, sep, *rows]) + "\n"


def widths_text(widths: dict, baseline: dict) -> str:
    """``conv2 16→10, fc1_svd_u 8 (new), ...``: each group's width against the original's."""
    parts = []
    for k, v in widths.items():
        if k not in baseline:
            parts.append(f"{k} {v} (new)")
        elif baseline[k] != v:
            parts.append(f"{k} {baseline[k]}→{v}")
        else:
            parts.append(f"{k} {v}")
    return ", ".join(parts)


def result_markdown(result) -> str:
    w, b = result.winner, result.baseline
    lines = [
        f"# compress: {result.budget.describe()}", "",
        f"**Winner: {w['size_bytes']:,} bytes ({w['size_ratio']:.1f}x smaller than the {b['float32_bytes']:,}-byte "
        f"float32 flatbuffer), {100 * w['test_accuracy']:.2f}% test accuracy in LiteRT** "
        f"(validation {100 * w['val_accuracy']:.2f}%; original model {100 * b['val_accuracy']:.2f}% validation, "
        f"{100 * b['test_accuracy']:.2f}% test as float32). Export: {w['export']}.", "",
        f"Layer widths: {widths_text(w['widths'], b['int8']['widths'])}.", "",
        "Recipe (`kcompress.pipeline.Pipeline.from_config`):", "", "```json",
        json.dumps(result.recipe.get_config(), indent=1), "```", "",
        "Every candidate (validation accuracy of the int8 flatbuffer in LiteRT; explore rows are after a short "
        "recovery, finish rows after full recovery):", "", records_markdown(result.records),
    ]
    return "\n".join(lines)


def write_outputs(result, output_dir) -> str | None:
    """Writes the result files atomically; returns the Pareto plot's path."""
    from kcompress.export import save, write_atomic
    from kcompress.reporting import plot_pareto, to_csv

    save(result.flatbuffer, os.path.join(output_dir, "winner.tflite"))
    write_atomic(os.path.join(output_dir, "recipe.json"), json.dumps(result.recipe.get_config(), indent=1))
    payload = {"records": result.records, "baseline": result.baseline, "winner": result.winner,
               "budget": {k: getattr(result.budget, k) for k in result.budget.__dataclass_fields__}}
    write_atomic(os.path.join(output_dir, "results.json"), json.dumps(payload, indent=1, default=str))
    write_atomic(os.path.join(output_dir, "results.csv"), to_csv([{k: r.get(k) for k in _COLUMNS} for r in result.records]))
    write_atomic(os.path.join(output_dir, "report.md"), result_markdown(result))
    points = [{**r, "accuracy": r["val_accuracy"], "label": r["variant"]} for r in result.records
              if r.get("val_accuracy") is not None and r.get("size_bytes")]
    return plot_pareto(points, os.path.join(output_dir, "pareto.png"), label="label",
                       title="compress: validation accuracy vs int8 flatbuffer size")
