"""Plots of results as PNG files: accuracy vs size with the Pareto front, and sweeps."""

from __future__ import annotations

import io
import os

from kcompress._files import write_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def pareto_front(records: list[dict], x: str = "size_bytes", y: str = "accuracy") -> list[dict]:
    """Records no other record beats on both axes (smaller ``x``, higher ``y``), sorted by ``x``."""
    points = [r for r in records if r.get(x) is not None and r.get(y) is not None]
    front, best = [], float("-inf")
    for r in sorted(points, key=lambda r: (r[x], -r[y])):
        if r[y] > best:
            front.append(r)
            best = r[y]
    return front


def _save(fig, path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return write_atomic(path, buf.getvalue())


def plot_pareto(records: list[dict], path: str | os.PathLike, x: str = "size_bytes", y: str = "accuracy",
                label: str = "variant", title: str = "Accuracy vs flatbuffer size") -> str:
    """Scatter of accuracy against size (log scale) with the Pareto front drawn and labelled.

    Args:
        records: result dicts holding ``x``, ``y`` and ``label`` keys.
        path: the PNG file to write (atomically).

    Returns:
        The path written.
    """
    points = [r for r in records if r.get(x) is not None and r.get(y) is not None]
    if not points:
        raise ValueError(f"records hold no entry with both {x!r} and {y!r}; nothing to plot.")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    front = pareto_front(points, x, y)
    on_front = {id(r) for r in front}
    ax.scatter([r[x] / 1024 for r in points if id(r) not in on_front],
               [100 * r[y] for r in points if id(r) not in on_front], color="0.6", label="variants")
    ax.plot([r[x] / 1024 for r in front], [100 * r[y] for r in front], "o-", color="C3", label="Pareto front")
    for r in points:
        ax.annotate(str(r.get(label, "")), (r[x] / 1024, 100 * r[y]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points", color="C3" if id(r) in on_front else "0.35")
    ax.set_xscale("log")
    ax.set_xlabel("flatbuffer size (KiB, log scale)" if x == "size_bytes" else x)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_sweep(records: list[dict], path: str | os.PathLike, x: str, y: str = "accuracy",
               group: str | None = None, baseline: float | None = None, title: str | None = None) -> str:
    """Line plot of ``y`` against a swept parameter ``x`` (e.g. temperature or sparsity).

    Args:
        group: optional key whose values get one line each.
        baseline: optional accuracy (fraction) drawn as a horizontal reference line.
    """
    points = [r for r in records if r.get(x) is not None and r.get(y) is not None]
    if not points:
        raise ValueError(f"records hold no entry with both {x!r} and {y!r}; nothing to plot.")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict = {}
    for r in points:
        groups.setdefault(r.get(group) if group else y, []).append(r)
    for name, rows in groups.items():
        rows = sorted(rows, key=lambda r: r[x])
        ax.plot([r[x] for r in rows], [100 * r[y] for r in rows], "o-", label=str(name))
    if baseline is not None:
        ax.axhline(100 * baseline, color="0.4", linestyle="--", label="baseline")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (%)")
    ax.set_title(title or f"{y} vs {x}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)
