"""Pruning schedules that always reach their target, and step helpers.

TFMOT's schedules prune every ``frequency`` (default 100) steps counted from
``begin_step``, and the wrapper's first training step is step 1. So with
``begin_step=0`` a fine-tune shorter than 100 steps never prunes, and a
``PolynomialDecay`` whose span is not a multiple of ``frequency`` never applies
its final sparsity. These schedules prune at the first step of the range, at
``end_step``, and every ``frequency`` steps between; the default frequency fits
the span.
"""

from __future__ import annotations

import math

import tensorflow_model_optimization as tfmot

from kcompress._keras import keras, tf
from kcompress.validation import check_fraction, check_int, check_number

_DEFAULT_EVENTS = 16  # mask updates spread over a PolynomialDecay span by default
_CONSTANT_FREQUENCY = 100  # re-threshold period of an open-ended ConstantSparsity


def _check_sparsity(name, value):
    """A sparsity: a fraction of zero weights in [0, 1) (every schedule and the Prune stage alike)."""
    return check_fraction(name, value, high_open=True)


def _check_int(name, value, minimum):
    return check_int(name, value, minimum=minimum)


class _Schedule(tfmot.sparsity.keras.PruningSchedule):
    """Base: pruning events at max(begin_step, 1), every ``frequency`` steps, and at ``end_step``."""

    begin_step: int
    end_step: int
    frequency: int

    def _should_prune(self, step):
        step = tf.cast(step, tf.int64)
        first = tf.constant(max(self.begin_step, 1), tf.int64)
        in_range = step >= first
        if self.end_step >= 0:
            in_range = tf.logical_and(in_range, step <= self.end_step)
        turn = tf.logical_or(tf.equal(tf.math.floormod(step - first, self.frequency), 0),
                             tf.equal(step, self.end_step))
        return tf.logical_and(in_range, turn)

    @property
    def final_sparsity(self) -> float:
        raise NotImplementedError

    @property
    def last_step(self) -> int:
        """The step by which the final sparsity is in place."""
        return max(self.begin_step, 1) if self.end_step < 0 else self.end_step

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.utils.register_keras_serializable(package="kcompress")
class ConstantSparsity(_Schedule):
    """Prunes to ``target_sparsity`` at the first step and keeps it.

    Args:
        target_sparsity: fraction of weights set to zero, in [0, 1).
        begin_step: first training step (0-based) at which pruning may happen.
        end_step: last step at which masks are updated; -1 for never stopping.
        frequency: steps between mask updates; default: 100 when open-ended,
            else the whole span (one update at the first step, one at end_step).

    Example:
        >>> schedule = ConstantSparsity(0.8, begin_step=0)
        >>> pruned = kcompress.pruning.prune(model, schedule)
    """

    def __init__(self, target_sparsity: float, begin_step: int = 0, end_step: int = -1, frequency: int | None = None):
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        self.begin_step = _check_int("begin_step", begin_step, 0)
        check_int("end_step", end_step)
        if end_step != -1 and end_step <= begin_step:
            raise ValueError(f"end_step must be -1 or an int > begin_step ({begin_step}), got {end_step!r}.")
        self.end_step = end_step
        if frequency is None:
            frequency = _CONSTANT_FREQUENCY if end_step < 0 else max(1, end_step - max(begin_step, 1))
        self.frequency = _check_int("frequency", frequency, 1)

    @property
    def final_sparsity(self) -> float:
        return self.target_sparsity

    def __call__(self, step):
        return self._should_prune(step), tf.constant(self.target_sparsity, tf.float32)

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency}

    def __repr__(self):
        return f"ConstantSparsity({self.target_sparsity}, begin_step={self.begin_step}, end_step={self.end_step}, frequency={self.frequency})"


@keras.utils.register_keras_serializable(package="kcompress")
class PolynomialDecay(_Schedule):
    """Raises sparsity from ``initial_sparsity`` to ``final_sparsity`` between two steps.

    sparsity(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** power,
    applied at the first step, every ``frequency`` steps, and always at ``end_step``
    (so the final sparsity is in place however short the run).

    Args:
        initial_sparsity, final_sparsity: fractions in [0, 1).
        begin_step, end_step: 0 <= begin_step < end_step.
        power: exponent of the decay (3 as in Zhu & Gupta 2017).
        frequency: steps between mask updates; default: span / 16, at least 1.

    Example:
        >>> spe = steps_per_epoch(54000, batch_size=256)
        >>> PolynomialDecay.from_epochs(0.5, 0.8, begin_epoch=0, end_epoch=3, steps_per_epoch=spe)
    """

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int,
                 power: float = 3, frequency: int | None = None):
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity_ = _check_sparsity("final_sparsity", final_sparsity)
        self.begin_step = _check_int("begin_step", begin_step, 0)
        check_int("end_step", end_step)
        if end_step <= begin_step:
            raise ValueError(f"end_step must be an int > begin_step ({begin_step}), got {end_step!r}.")
        self.end_step = end_step
        check_number("power", power, 0.0, low_open=True)
        self.power = power
        if frequency is None:
            frequency = max(1, (end_step - max(begin_step, 1)) // _DEFAULT_EVENTS)
        self.frequency = _check_int("frequency", frequency, 1)

    @property
    def final_sparsity(self) -> float:
        return self.final_sparsity_

    def sparsity_at(self, step):
        """The target sparsity at ``step`` (a tensor)."""
        step = tf.cast(step, tf.float32)
        progress = tf.clip_by_value((step - self.begin_step) / float(self.end_step - self.begin_step), 0.0, 1.0)
        return self.final_sparsity_ + (self.initial_sparsity - self.final_sparsity_) * tf.pow(1.0 - progress, float(self.power))

    def __call__(self, step):
        return self._should_prune(step), tf.cast(self.sparsity_at(step), tf.float32)

    @classmethod
    def from_epochs(cls, initial_sparsity, final_sparsity, begin_epoch, end_epoch, steps_per_epoch, **kwargs):
        """A schedule that starts at ``begin_epoch`` and reaches the final sparsity at ``end_epoch``.

        Epochs are 0-based boundaries: ``from_epochs(0.5, 0.8, 0, 3, spe)`` prunes over
        the first three epochs and leaves later epochs to recover.
        """
        _check_int("steps_per_epoch", steps_per_epoch, 1)
        _check_int("begin_epoch", begin_epoch, 0)
        check_int("end_epoch", end_epoch)
        if end_epoch <= begin_epoch:
            raise ValueError(f"end_epoch must be an int > begin_epoch ({begin_epoch}), got {end_epoch!r}.")
        return cls(initial_sparsity, final_sparsity, begin_step=begin_epoch * steps_per_epoch,
                   end_step=end_epoch * steps_per_epoch, **kwargs)

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity_,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power,
                "frequency": self.frequency}

    def __repr__(self):
        return (f"PolynomialDecay({self.initial_sparsity}, {self.final_sparsity_}, begin_step={self.begin_step}, "
                f"end_step={self.end_step}, power={self.power}, frequency={self.frequency})")


def steps_per_epoch(num_samples: int, batch_size: int, validation_split: float = 0.0) -> int:
    """Optimizer steps in one epoch of ``model.fit`` (after the validation split is held out)."""
    _check_int("num_samples", num_samples, 1)
    _check_int("batch_size", batch_size, 1)
    validation_split = check_fraction("validation_split", validation_split, high_open=True)
    train = num_samples - int(num_samples * validation_split)
    return math.ceil(train / batch_size)
