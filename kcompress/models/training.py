"""Training helpers shared by experiments and pipelines."""

from __future__ import annotations

import sys

from absl import logging

from kcompress._keras import check_model, keras, tf
from kcompress.data import Dataset


def compile_classifier(model, learning_rate: float = 1e-3, optimizer: str = "adam", from_logits: bool | None = None):
    """Compiles ``model`` for integer labels with sparse categorical cross-entropy and accuracy.

    Args:
        model: a tf_keras classifier.
        learning_rate: a positive number.
        optimizer: ``"adam"`` or ``"sgd"``.
        from_logits: whether the model outputs logits. ``None`` (default): logits unless its last
            layer applies a softmax (then the loss takes probabilities), so a softmax-output model
            never trains on the loss of logits.
    """
    model = check_model(model)
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}.")
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}.")
    if from_logits is None:
        from kcompress.distillation.distiller import ends_with_softmax

        from_logits = not ends_with_softmax(model)
        if not from_logits:
            logging.info("Model %r ends with a softmax: compiling the loss for probabilities.", model.name)
    elif not isinstance(from_logits, bool):
        raise TypeError(f"from_logits must be None, True or False, got {from_logits!r}.")
    model.compile(
        optimizer=optimizers[optimizer](learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    return model


def progress_verbosity() -> int:
    """Keras ``verbose``: live progress bars on a terminal, one line per epoch in logs."""
    return 1 if sys.stdout.isatty() else 2


class RestoreBest(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best validation metric and restores them at the end.

    Model selection on the held-out validation split, never on the test set.

    Args:
        monitor: a metric in the epoch logs, e.g. ``"val_accuracy"`` or ``"val_loss"``.
        mode: ``"max"`` or ``"min"``.
    """

    def __init__(self, monitor: str = "val_accuracy", mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.monitor, self.mode = monitor, mode
        self.best, self.best_epoch, self._weights = None, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"RestoreBest monitors {self.monitor!r} but the epoch logs hold {sorted(logs or {})}; "
                "train with a validation split or monitor another metric."
            )
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.best_epoch, self._weights = value, epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)

    def get_config(self):
        return {"monitor": self.monitor, "mode": self.mode}


def fit(model, dataset: Dataset, epochs: int, batch_size: int = 256, validation_split: float = 0.1,
        callbacks=None, verbose: int | None = None, max_train: int | None = None,
        restore_best: bool = False):
    """Fits a compiled model on ``dataset``'s training split (the last ``validation_split`` held out).

    Args:
        restore_best: end with the weights of the epoch with the best validation
            accuracy (needs ``validation_split > 0``).

    Returns:
        The Keras ``History``.
    """
    check_model(model, in_place="fit")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}.")
    if restore_best and validation_split <= 0:
        raise ValueError("restore_best=True needs validation_split > 0 to choose the best epoch.")
    if not len(dataset.x_train):
        raise ValueError(f"dataset {dataset.name!r} has an empty training split; fit needs training images.")
    x, y = dataset.x_train[:max_train], dataset.y_train[:max_train]
    callbacks = list(callbacks or []) + ([RestoreBest("val_accuracy")] if restore_best else [])
    return model.fit(
        x, y, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
        callbacks=callbacks, verbose=progress_verbosity() if verbose is None else verbose,
    )


def get_strategy(name: str):
    """The ``tf.distribute`` strategy named by ``name`` (``default`` or ``mirrored``)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"strategy must be 'default' or 'mirrored', got {name!r}.")
