"""Callbacks for ``model.fit``: the pruning step update and a sparsity monitor."""

from __future__ import annotations

import warnings

import tensorflow_model_optimization as tfmot
from absl import logging

from kcompress._keras import keras
from kcompress.pruning.report import _wrappers, sparsity
from kcompress.validation import check_bool


@keras.utils.register_keras_serializable(package="kcompress")
class SparsityMonitor(keras.callbacks.Callback):
    """Writes sparsity into the epoch logs and warns when a schedule cannot finish.

    After each epoch the logs gain ``sparsity`` (prunable kernels), ``sparsity_overall``
    and, with ``per_layer=True``, ``sparsity/<layer>``, so History, CSVLogger and
    TensorBoard record them. At the start of training it compares each schedule's
    last pruning step with the steps this ``fit`` will run and warns once if the
    target sparsity cannot be reached.

    Args:
        per_layer: also log each layer's sparsity.
    """

    def __init__(self, per_layer: bool = True):
        super().__init__()
        self.per_layer = check_bool("per_layer", per_layer)
        self.warnings: list[str] = []

    def on_train_begin(self, logs=None):
        wrappers = _wrappers(self.model)
        if not wrappers:
            raise ValueError(
                "SparsityMonitor is training a model without pruning wrappers; build it with "
                "kcompress.pruning.prune(model, schedule) first."
            )
        epochs, steps = (self.params or {}).get("epochs"), (self.params or {}).get("steps")
        if not epochs or not steps:
            return
        start = int(keras.backend.get_value(wrappers[0].pruning_step))
        last = max(start, 0) + epochs * steps
        for layer in wrappers:
            schedule = layer.pruning_schedule
            if getattr(layer, "sparsity_m_by_n", None):
                continue
            target_step = getattr(schedule, "last_step", None)
            if target_step is None:  # a TFMOT schedule: its last pruning event
                target_step = _tfmot_last_event(schedule, last)
            if target_step is None or target_step > last:
                msg = (
                    f"Pruning schedule {schedule!r} of layer {layer.layer.name!r} reaches its target sparsity "
                    f"at step {target_step if target_step is not None else 'never'}, but this fit runs only to "
                    f"step {last} ({epochs} epochs x {steps} steps): the target will not be reached. Shorten "
                    "the schedule (PolynomialDecay.from_epochs) or train longer."
                )
                self.warnings.append(msg)
                logging.warning(msg)
                warnings.warn(msg, stacklevel=2)
                break

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        report = sparsity(self.model).as_dict()
        if not self.per_layer:
            report = {k: v for k, v in report.items() if "/" not in k}
        logs.update(report)

    def get_config(self):
        return {"per_layer": self.per_layer}


def _tfmot_last_event(schedule, last_step):
    """The last step <= last_step at which a TFMOT schedule prunes to its final sparsity, or None."""
    config = schedule.get_config()["config"]
    begin, end, freq = config["begin_step"], config["end_step"], config["frequency"]
    final = config.get("final_sparsity", config.get("target_sparsity"))
    stop = last_step if end < 0 else min(end, last_step)
    step = begin + ((max(1, begin) - begin + freq - 1) // freq) * freq
    found = None
    while step <= stop:
        if abs(float(schedule(step)[1]) - final) < 1e-6:
            return step
        step += freq
    return found


def callbacks(log_dir: str | None = None, per_layer: bool = True) -> list[keras.callbacks.Callback]:
    """The callbacks a pruned model needs in ``fit``.

    Args:
        log_dir: if given, also write TFMOT's TensorBoard pruning summaries there.
        per_layer: log each layer's sparsity in the epoch logs.

    Returns:
        ``[UpdatePruningStep, SparsityMonitor(, PruningSummaries)]``.

    Example:
        >>> pruned.fit(x, y, epochs=2, callbacks=callbacks())
        >>> history.history["sparsity"][-1]
        0.8
    """
    if log_dir is not None and not isinstance(log_dir, str):
        raise TypeError(f"log_dir must be None or a folder path string, got {log_dir!r}.")
    out = [tfmot.sparsity.keras.UpdatePruningStep(), SparsityMonitor(per_layer=per_layer)]
    if log_dir:
        try:
            import tensorboard  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "callbacks(log_dir=...) writes TensorBoard summaries, which needs the tensorboard "
                "package: pip install 'kcompress[tensorboard]' (or pass log_dir=None)."
            ) from err
        out.append(tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir))
    return out
