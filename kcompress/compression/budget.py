"""Budgets: what a compressed model must meet, checked once, with the same rules everywhere."""

from __future__ import annotations

import dataclasses

from kcompress.validation import check_fraction, check_int


class BudgetError(ValueError):
    """A budget that cannot be met. ``records`` holds every candidate measured on the way, ``best``
    the smallest one reached (or None)."""

    def __init__(self, message: str, records=(), best=None):
        super().__init__(message)
        self.records = list(records)
        self.best = best


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits on the exported int8 flatbuffer and its accuracy.

    Attributes:
        max_bytes: flatbuffer bytes (what ships in flash).
        max_accuracy_drop: validation accuracy may fall at most this much (a fraction, 0.002 = 0.2
            points) below the original model's.
        min_accuracy: validation accuracy of the flatbuffer must reach this fraction.
        max_macs: multiply-accumulates of one inference.
        max_arena_bytes: TFLite Micro tensor arena (``kcompress.export.estimate_arena``).
    """

    max_bytes: int | None = None
    max_accuracy_drop: float | None = None
    min_accuracy: float | None = None
    max_macs: int | None = None
    max_arena_bytes: int | None = None

    def __post_init__(self):
        check_int("max_bytes", self.max_bytes, minimum=1, allow_none=True)
        check_fraction("max_accuracy_drop", self.max_accuracy_drop, allow_none=True)
        check_fraction("min_accuracy", self.min_accuracy, low_open=True, allow_none=True)
        check_int("max_macs", self.max_macs, minimum=1, allow_none=True)
        check_int("max_arena_bytes", self.max_arena_bytes, minimum=1, allow_none=True)
        if all(v is None for v in dataclasses.asdict(self).values()):
            raise ValueError(
                "give at least one budget: max_bytes, max_accuracy_drop, min_accuracy, max_macs or max_arena_bytes "
                "(e.g. max_bytes=16384, or max_accuracy_drop=0.002 for the smallest model within 0.2 points)."
            )

    @property
    def has_size(self) -> bool:
        return any(v is not None for v in (self.max_bytes, self.max_macs, self.max_arena_bytes))

    @property
    def has_accuracy(self) -> bool:
        return self.max_accuracy_drop is not None or self.min_accuracy is not None

    def floor(self, baseline_accuracy: float) -> float | None:
        """The lowest validation accuracy allowed, given the original model's."""
        floors = []
        if self.max_accuracy_drop is not None:
            floors.append(baseline_accuracy - self.max_accuracy_drop)
        if self.min_accuracy is not None:
            floors.append(self.min_accuracy)
        return max(floors) if floors else None

    def size_ok(self, record: dict) -> bool:
        """Whether a measured candidate (``size_bytes``, ``macs``, ``arena_bytes``) fits the size limits."""
        for limit, key in ((self.max_bytes, "size_bytes"), (self.max_macs, "macs"), (self.max_arena_bytes, "arena_bytes")):
            if limit is not None and (record.get(key) is None or record[key] > limit):
                return False
        return True

    def size_excess(self, record: dict) -> float:
        """How far over the size limits a candidate is (the largest ratio value / limit; <= 1 fits)."""
        ratios = [record[key] / limit for limit, key in ((self.max_bytes, "size_bytes"), (self.max_macs, "macs"),
                                                          (self.max_arena_bytes, "arena_bytes"))
                  if limit is not None and record.get(key) is not None]
        return max(ratios) if ratios else 0.0

    def describe(self) -> str:
        parts = []
        if self.max_bytes is not None:
            parts.append(f"max_bytes={self.max_bytes:,}")
        if self.max_accuracy_drop is not None:
            parts.append(f"max_accuracy_drop={self.max_accuracy_drop:g}")
        if self.min_accuracy is not None:
            parts.append(f"min_accuracy={self.min_accuracy:g}")
        if self.max_macs is not None:
            parts.append(f"max_macs={self.max_macs:,}")
        if self.max_arena_bytes is not None:
            parts.append(f"max_arena_bytes={self.max_arena_bytes:,}")
        return ", ".join(parts)
