"""Distillation: train a small student on a frozen teacher's soft targets (and hints).

Example:
    >>> d = kc.distillation.Distiller(student=student, teacher=teacher)
    >>> d.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=6)
    >>> d.fit(x, y, epochs=10, validation_split=0.1)
    >>> d.student  # the trained student
"""

from kcompress.distillation.distiller import Distiller, ends_with_softmax
from kcompress.distillation.hints import HintDistiller
from kcompress.distillation.losses import hint_loss, soft_target_loss

__all__ = ["Distiller", "HintDistiller", "ends_with_softmax", "hint_loss", "soft_target_loss"]
