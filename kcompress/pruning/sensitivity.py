"""Sensitivity analysis: how much validation accuracy each channel group costs when it is cut."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from kcompress._keras import check_model
from kcompress.data import Dataset
from kcompress.pruning.channels import channel_groups, prune_channels


def validation_split(dataset: Dataset, fraction: float = 0.1, max_samples: int | None = None):
    """The held-out validation images and labels: the last ``fraction`` of the training split.

    It is the split ``model.fit(..., validation_split=fraction)`` holds out, so every
    decision made on it stays off the test set.

    Returns:
        ``(x, y)`` NumPy arrays (at most ``max_samples`` of them, taken from the start of the split).
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}.")
    n = len(dataset.x_train)
    split_at = int(n * (1.0 - fraction))  # the same rounding as Keras' validation_split
    if split_at >= n:
        raise ValueError(f"dataset {dataset.name!r} has {n} training images: too few to hold out {fraction:.0%}.")
    x, y = dataset.x_train[split_at:], dataset.y_train[split_at:]
    return x[:max_samples], y[:max_samples]


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Top-1 accuracy of a Keras classifier on arrays (logits or probabilities out)."""
    pred = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=-1) == y))


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
    """Validation accuracy of the model with one channel group cut at a time.

    Attributes:
        baseline: validation accuracy of the uncut model.
        rows: one dict per (group, ratio): ``group``, ``producers``, ``width``, ``ratio``,
            ``kept``, ``params`` (of the cut model), ``params_saved``, ``accuracy``, ``drop``.
        skipped: groups that cannot be cut, with the reason.
        samples: validation images used.
    """

    baseline: float
    rows: tuple
    skipped: dict
    samples: int

    def cheapest(self, max_drop: float = 0.01) -> list[str]:
        """Groups sorted by the validation accuracy lost per parameter saved at their largest cut
        within ``max_drop``; groups that lose more than ``max_drop`` even at the smallest cut come last."""
        best = {}
        for r in self.rows:
            score = r["params_saved"] if r["drop"] <= max_drop else -r["drop"]
            best[r["group"]] = max(best.get(r["group"], float("-inf")), score)
        return sorted(best, key=lambda g: -best[g])

    def to_markdown(self) -> str:
        """A table: one row per group, one column per ratio (accuracy drop in points)."""
        ratios = sorted({r["ratio"] for r in self.rows})
        head = "| group | layers | width | " + " | ".join(f"cut {x:.0%}" for x in ratios) + " |"
        lines = [f"Validation accuracy of the uncut model: {100 * self.baseline:.2f}% on {self.samples:,} images; "
                 "cells: accuracy drop in points when only that group is cut, no fine-tuning.", "",
                 head, "|---|---|---:|" + "---:|" * len(ratios)]
        by_group: dict = {}
        for r in self.rows:
            by_group.setdefault(r["group"], {})[r["ratio"]] = r
        for group, cells in by_group.items():
            first = next(iter(cells.values()))
            vals = " | ".join(f"{-100 * cells[x]['drop']:+.2f}" if x in cells else "–" for x in ratios)
            lines.append(f"| {group} | {', '.join(first['producers'])} | {first['width']} | {vals} |")
        for group, reason in self.skipped.items():
            lines.append(f"| {group} | not cut: {reason} | | " + " | ".join("–" for _ in ratios) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike) -> str:
        """Accuracy against cut ratio, one line per group, written as a PNG (atomically)."""
        from kcompress.reporting import plot_sweep

        return plot_sweep(list(self.rows), path, x="ratio", y="accuracy", group="group", baseline=self.baseline,
                          title="Sensitivity: validation accuracy with one group cut")

    def as_dict(self) -> dict:
        return {"baseline": self.baseline, "rows": list(self.rows), "skipped": dict(self.skipped),
                "samples": self.samples}


def sensitivity(model, dataset: Dataset, ratios=(0.25, 0.5, 0.75), layers=None, max_samples: int | None = 5000,
                criterion: str = "l1") -> SensitivityReport:
    """Cuts each channel group alone at each ratio and measures validation accuracy (no fine-tuning).

    The groups that lose little are the cheap ones to cut; the report's
    :meth:`~SensitivityReport.cheapest` lists them first.

    Args:
        model: a Sequential or Functional tf_keras model (a Keras 3 model is converted).
        dataset: a :class:`kcompress.data.Dataset`; the last 10% of its training split is
            the validation set (the test split is never used).
        ratios: fractions of each group's channels to remove, each in (0, 1).
        layers: optional layer names whose groups are analysed (default: every prunable group).
        max_samples: validation images to score on (None: all).
        criterion: ``"l1"`` or ``"l2"``, as in :func:`prune_channels`.

    Returns:
        A :class:`SensitivityReport` (``to_markdown()``, ``plot(path)``, ``cheapest()``).

    Raises:
        TypeError / ValueError: bad model, dataset, ratios, layers or max_samples.

    Example:
        >>> report = kc.pruning.sensitivity(model, ds, ratios=(0.25, 0.5, 0.75))
        >>> print(report.to_markdown()); report.plot("sensitivity.png")
    """
    model = check_model(model)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    if isinstance(ratios, (int, float)) or not hasattr(ratios, "__iter__"):
        raise TypeError(f"ratios must be a sequence of fractions in (0, 1), got {ratios!r}.")
    ratios = tuple(ratios)
    if not ratios:
        raise ValueError("ratios must hold at least one fraction in (0, 1).")
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 < r < 1.0:
            raise ValueError(f"ratios must hold fractions in (0, 1), got {r!r} in {ratios!r}.")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}.")
    x, y = validation_split(dataset, max_samples=max_samples)
    groups = channel_groups(model)
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        wanted = {p: g for g in groups for p in g.producers}
        for name in layers:
            if name not in wanted:
                raise ValueError(f"layers names {name!r}, which produces no channel group; groups are "
                                 f"{[g.name for g in groups]}.")
        names = {wanted[n].name for n in layers}
        groups = [g for g in groups if g.name in names]
    baseline = accuracy(model, x, y)
    params = model.count_params()
    rows, skipped = [], {}
    for group in groups:
        if not group.prunable:
            skipped[group.name] = group.reason
            continue
        for r in ratios:
            kept = max(1, int(round(group.width * (1.0 - r))))
            if kept == group.width:
                continue
            cut = prune_channels(model, channels={group.name: kept}, criterion=criterion)
            acc = accuracy(cut, x, y)
            rows.append({"group": group.name, "producers": list(group.producers), "width": group.width,
                         "ratio": float(r), "kept": kept, "params": cut.count_params(),
                         "params_saved": params - cut.count_params(), "accuracy": acc, "drop": baseline - acc})
            logging.info("sensitivity %s cut %.0f%% (%d -> %d): %.4f", group.name, 100 * r, group.width, kept, acc)
    return SensitivityReport(baseline=baseline, rows=tuple(rows), skipped=skipped, samples=len(x))
