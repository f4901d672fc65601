"""Sensitivity analysis: how much validation accuracy each channel group costs when it is cut."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from kcompress._keras import check_model
from kcompress.data import Dataset
from kcompress.pruning.channels import channel_groups, prune_channels
from kcompress.validation import check_fraction, check_int, resolve_layers


def validation_split(dataset: Dataset, fraction: float = 0.1, max_samples: int | None = None):
    """The held-out validation images and labels: the last ``fraction`` of the training split.

    It is the split ``model.fit(..., validation_split=fraction)`` holds out, so every
    decision made on it stays off the test set. A streaming dataset
    (:class:`kcompress.data.StreamingDataset`) reads it in batches
    (``dataset.validation_batches``); only the samples returned are held in memory, so
    pass ``max_samples`` when the tail is large.

    Returns:
        ``(x, y)`` NumPy arrays (at most ``max_samples`` of them, taken from the start of the split).
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    fraction = check_fraction("fraction", fraction, low_open=True, high_open=True)
    max_samples = check_int("max_samples", max_samples, 1, allow_none=True)
    n = dataset.num_train
    split_at = int(n * (1.0 - fraction))  # the same rounding as Keras' validation_split
    if split_at >= n:
        raise ValueError(f"dataset {dataset.name!r} has {n} training images: too few to hold out {fraction:.0%}.")
    if dataset.streams:
        xs, ys = zip(*dataset.validation_batches(1024, fraction, max_samples), strict=True)
        return np.concatenate(xs), np.concatenate(ys)
    x, y = dataset.x_train[split_at:], dataset.y_train[split_at:]
    return x[:max_samples], y[:max_samples]


def accuracy(model, x, y=None, batch_size: int = 512) -> float:
    """Top-1 accuracy of a Keras classifier (logits or probabilities out) on this process.

    ``x, y`` are arrays, or ``x`` is an iterable of ``(images, labels)`` NumPy batches
    (``y`` None), e.g. ``dataset.validation_batches(512)``, read one batch at a time. The
    model runs batch by batch in this process: under ``MultiWorkerMirroredStrategy`` every
    worker measures the same accuracy by itself, with no collective (``model.predict``
    would gather predictions across the workers).
    """
    return _correct(model, [(x, y)] if y is not None else x, batch_size)[0]


def _correct(model, batches, batch_size: int = 512) -> tuple[float, int]:
    """(accuracy, samples) of ``model`` over ``(images, labels)`` batches."""
    from kcompress.evaluation.metrics import keras_logits

    logits = keras_logits(model, batch_size)
    correct = count = 0
    for x, y in batches:
        correct += int(np.sum(np.argmax(logits(x), axis=-1) == y))
        count += len(y)
    if not count:
        raise ValueError("accuracy needs at least one sample, got none.")
    return correct / count, count


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
            the validation set (the test split is never used). A streaming dataset holds only
            ``max_samples`` of them in memory, or (None) streams the tail for every cut. Every
            model runs on this process, so each worker of a multi-worker strategy computes the
            same report by itself.
        ratios: fractions of each group's channels to remove, each in (0, 1).
        layers: the layers whose groups are analysed (a name, class, layer or list of them, as
            :func:`kcompress.validation.resolve_layers` takes; default: every prunable group).
        max_samples: validation images to score on, from the start of the tail (None: all).
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
    max_samples = check_int("max_samples", max_samples, 1, allow_none=True)
    if dataset.streams and max_samples is None:
        # The whole tail of a streaming dataset may not fit in memory: each model reads it again.
        def score(m):
            return _correct(m, dataset.validation_batches(512))
    else:  # at most max_samples in memory
        x, y = validation_split(dataset, max_samples=max_samples)

        def score(m):
            return _correct(m, [(x, y)])
    groups = channel_groups(model)
    if layers is not None:
        wanted = {p: g for g in groups for p in g.producers}
        named, _ = resolve_layers(model, layers, accept=lambda layer: layer.name in wanted, nested=True,
                                  what="layers that produce a channel group (Conv, Dense, ...)")
        names = {wanted[layer.name].name for layer in named}
        groups = [g for g in groups if g.name in names]
    baseline, n = score(model)
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
            acc = score(cut)[0]
            rows.append({"group": group.name, "producers": list(group.producers), "width": group.width,
                         "ratio": float(r), "kept": kept, "params": cut.count_params(),
                         "params_saved": params - cut.count_params(), "accuracy": acc, "drop": baseline - acc})
            logging.info("sensitivity %s cut %.0f%% (%d -> %d): %.4f", group.name, 100 * r, group.width, kept, acc)
    return SensitivityReport(baseline=baseline, rows=tuple(rows), skipped=skipped, samples=n)
