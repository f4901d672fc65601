"""Results -> JSON, CSV and Markdown tables, written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import os

from kcompress._files import write_atomic

DEFAULT_COLUMNS = (
    "variant", "format", "accuracy", "params", "nonzero_params", "size_bytes", "gzip_bytes",
    "compression", "macs", "latency_ms", "latency_ratio",
)
_HEADERS = {
    "variant": "variant",
    "format": "format",
    "flatbuffer": "flatbuffer",
    "accuracy": "accuracy (%)",
    "keras_accuracy": "Keras acc. (%)",
    "sparsity": "sparsity (%)",
    "target_sparsity": "target (%)",
    "top1_agreement": "agreement (%)",
    "gzip_compression": "gzip ratio",
    "macs_ratio": "MACs ratio",
    "entropy_bytes": "entropy bytes",
    "latency_ratio_builtin": "latency ratio (builtin)",
    "max_logit_error": "max logit error",
    "published_ratio": "published ratio",
    "entropy_ratio": "entropy ratio",
    "accuracy_delta": "Δ acc (pts)",
    "params": "params",
    "nonzero_params": "nonzero",
    "size_bytes": "bytes",
    "gzip_bytes": "gzip bytes",
    "compression": "size ratio",
    "macs": "MACs",
    "latency_ms": "latency (ms)",
    "latency_ratio": "latency ratio",
    "throughput_sps": "samples/s",
}


def add_ratios(records: list[dict], reference: str) -> list[dict]:
    """Adds ``compression`` (reference bytes / bytes), ``latency_ratio`` and ``accuracy_delta``.

    Args:
        records: result dicts with ``variant``, ``size_bytes``, ``latency_ms``, ``accuracy``.
        reference: the ``variant`` the others are compared with (e.g. the float32 flatbuffer).

    Returns:
        New dicts; the inputs are not changed.
    """
    ref = next((r for r in records if r.get("variant") == reference), None)
    if ref is None:
        raise ValueError(f"reference must name one of the variants {[r.get('variant') for r in records]}, got {reference!r}.")
    out = []
    for r in records:
        r = dict(r)
        if r.get("size_bytes"):
            r["compression"] = ref["size_bytes"] / r["size_bytes"]
        if r.get("latency_ms"):
            r["latency_ratio"] = r["latency_ms"] / ref["latency_ms"]
        if r.get("accuracy") is not None:
            r["accuracy_delta"] = 100.0 * (r["accuracy"] - ref["accuracy"])
        out.append(r)
    return out


def _is_count(key) -> bool:
    """Columns counted in whole units (bytes, parameters, MACs): a mean over seeds is shown rounded."""
    return key.endswith("_bytes") or key in ("params", "nonzero_params", "macs")


def _fmt(key, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key in ("accuracy", "keras_accuracy", "sparsity", "target_sparsity", "top1_agreement") or key.startswith("robust_"):
        return f"{100 * value:.2f}"
    if key in ("compression", "latency_ratio", "gzip_compression", "macs_ratio", "entropy_ratio",
               "latency_ratio_builtin", "published_ratio"):
        return f"{value:.2f}x"
    if key == "accuracy_delta":
        return f"{value:+.2f}"
    if key == "latency_ms":
        return f"{value:.4f}" if value < 0.1 else f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float) and _is_count(key):
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def _fmt_std(key, value) -> str:
    """A standard deviation in the unit its mean is shown in (points for accuracies)."""
    if key in ("accuracy", "keras_accuracy", "sparsity", "target_sparsity", "top1_agreement") or key.startswith("robust_"):
        return f"{100 * value:.2f}"
    if key == "accuracy_delta" or key.endswith("ratio") or key in ("compression", "gzip_compression"):
        return f"{value:.2f}"
    if key == "latency_ms":
        return f"{value:.4f}" if value < 0.1 else f"{value:.3f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _cell(key, record) -> str:
    """``mean ± std`` where the record is a summary over several seeds and they differ, else the value."""
    text = _fmt(key, record.get(key))
    std = record.get(f"{key}_std")
    if record.get("n", 1) > 1 and isinstance(std, float) and std > 0 and not math.isnan(std):
        text += f" ± {_fmt_std(key, std)}"
    return text


def to_markdown(records: list[dict], columns=DEFAULT_COLUMNS) -> str:
    """A Markdown table of ``records`` (columns no record has are left out).

    A summary row of several seeds (``kcompress.reporting.study.summarize``: ``n`` > 1 and a
    ``<column>_std``) shows ``mean ± std``.
    """
    cols = [c for c in columns if any(c in r for r in records)]
    lines = [
        "| " + " | ".join(_HEADERS.get(c, c) for c in cols) + " |",
        "|" + "|".join("---" if c in ("variant", "format", "flatbuffer") else "---:" for c in cols) + "|",
    ]
    for r in records:
        lines.append("| " + " | ".join(_cell(c, r) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def to_csv(records: list[dict]) -> str:
    """CSV text with one row per record and the union of their keys as columns."""
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: r.get(k, "") for k in keys})
    return buf.getvalue()


def write_results(output_dir: str | os.PathLike, records: list[dict], flags: dict | None = None,
                  title: str = "Results", notes: str = "", columns=DEFAULT_COLUMNS) -> dict[str, str]:
    """Writes ``results.json``, ``results.csv`` and ``report.md`` into ``output_dir`` atomically.

    ``results.json`` is ``{"records": [...], "flags": {...}}`` as DESIGN.md fixes it.

    Returns:
        The paths written, by kind.
    """
    if not isinstance(records, list) or not all(isinstance(r, dict) and "variant" in r for r in records):
        raise ValueError("records must be a list of dicts, each with a 'variant' key.")
    out = os.fspath(output_dir)
    payload = {"records": records, "flags": dict(flags or {})}
    report = f"# {title}\n\n" + to_markdown(records, columns) + (f"\n{notes.strip()}\n" if notes else "")
    return {
        "json": write_atomic(os.path.join(out, "results.json"), json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n"),
        "csv": write_atomic(os.path.join(out, "results.csv"), to_csv(records)),
        "markdown": write_atomic(os.path.join(out, "report.md"), report),
    }


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
