"""Training helpers shared by experiments and pipelines."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

from absl import logging

from kcompress._keras import check_model, keras, tf
from kcompress.data import Dataset
from kcompress.validation import check_bool, check_choice, check_fraction, check_int, check_number


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
    learning_rate = check_number("learning_rate", learning_rate, 0.0, low_open=True)
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    check_choice("optimizer", optimizer, sorted(optimizers))
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


class RestoreBest(keras.callbacks.EarlyStopping):
    """Keras ``EarlyStopping(restore_best_weights=True)`` that never stops: training runs every epoch
    and ends with the weights of the epoch with the best validation metric.

    Model selection on the held-out validation split, never on the test set. tf_keras 2.21's
    ``EarlyStopping`` restores the best weights at the end of training also when it never stopped
    early, and keeps the first of tied epochs (it keeps a new epoch only when strictly better), so
    this is that callback with an infinite ``patience``; what it adds is a loud failure when the
    monitored metric is missing (``EarlyStopping`` only logs a warning and restores nothing).
    ``kcompress.models.fit(restore_best=True)`` uses it.

    Args:
        monitor: a metric in the epoch logs, e.g. ``"val_accuracy"`` or ``"val_loss"``.
        mode: ``"max"`` or ``"min"``.

    Attributes:
        best: the best value of ``monitor``; ``best_epoch``: its epoch (0-based), after training.

    Raises:
        ValueError: ``mode`` is not ``"max"`` or ``"min"``; at an epoch's end, ``monitor`` is not in its logs.
    """

    def __init__(self, monitor: str = "val_accuracy", mode: str = "max"):
        check_choice("mode", mode, ("max", "min"))
        super().__init__(monitor=monitor, mode=mode, patience=math.inf, restore_best_weights=True)
        self.mode = mode

    def get_monitor_value(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"RestoreBest monitors {self.monitor!r} but the epoch logs hold {sorted(logs or {})}; "
                "train with a validation split or monitor another metric."
            )
        return value

    def get_config(self):
        return {"monitor": self.monitor, "mode": self.mode}


class BackupAndResume(keras.callbacks.BackupAndRestore):
    """Keras ``BackupAndRestore`` that also keeps the state at the end of training.

    Backs the model, its optimizer and the epoch up into ``backup_dir`` after every
    epoch (under ``MultiWorkerMirroredStrategy`` only the chief's copy persists), so a
    ``fit`` restarted after a worker died resumes at the epoch after the last backup.
    Unlike Keras's callback it does not delete the backup when ``fit`` finishes: it
    backs up the final weights (after :class:`RestoreBest`, when listed after it), so
    running the same ``fit`` again restores them and trains no more epochs. That is
    how a restarted :class:`~kcompress.pipeline.Pipeline` skips the stages it finished.

    Args:
        backup_dir: a folder every worker can read (shared storage across machines).

    Attributes:
        initial_epoch: the epoch ``fit`` resumed at (0: nothing to restore), after ``on_train_begin``.
    """

    def __init__(self, backup_dir):
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise TypeError(f"backup_dir must be a folder path, got {backup_dir!r}.")
        super().__init__(os.fspath(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.initial_epoch = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        saved = int(self._training_state._ckpt_saved_epoch.numpy())  # noqa: SLF001 - Keras keeps it there
        self.initial_epoch = saved + 1 if saved >= 0 else 0
        if self.initial_epoch:
            logging.info("Resuming from the backup in %s at epoch %d", self.backup_dir, self.initial_epoch + 1)

    def on_train_end(self, logs=None):
        self._backup(epoch=self._current_epoch)  # the final weights, e.g. after RestoreBest
        super().on_train_end(logs)

    def get_config(self):
        return {"backup_dir": self.backup_dir}


def fit(model, dataset: Dataset, epochs: int, batch_size: int = 256, validation_split: float = 0.1,
        callbacks=None, verbose: int | None = None, max_train: int | None = None,
        restore_best: bool = False, backup_dir: str | os.PathLike | None = None, seed: int | None = 0):
    """Fits a compiled model on ``dataset``'s training split (the last ``validation_split`` held out).

    In-memory datasets go to Keras as arrays; a streaming one
    (:class:`kcompress.data.StreamingDataset`) as ``tf.data`` pipelines from
    ``dataset.fit_splits`` (the same held-out tail, shuffled through a bounded buffer).
    Under ``MultiWorkerMirroredStrategy`` (the model built in its scope) ``batch_size``
    is the global batch, split across the workers.

    Args:
        restore_best: end with the weights of the epoch with the best validation
            accuracy (needs ``validation_split > 0``).
        backup_dir: back up every epoch into this folder with :class:`BackupAndResume`,
            and resume from it when a backup is there (a restarted worker).
        seed: shuffle seed of a streaming dataset (the same on every worker).

    Returns:
        The Keras ``History``.
    """
    check_model(model, in_place="fit")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    epochs = check_int("epochs", epochs, minimum=1)
    validation_split = check_fraction("validation_split", validation_split, high_open=True)
    restore_best = check_bool("restore_best", restore_best)
    if restore_best and validation_split <= 0:
        raise ValueError("restore_best=True needs validation_split > 0 to choose the best epoch.")
    if not dataset.num_train:
        raise ValueError(f"dataset {dataset.name!r} has an empty training split; fit needs training images.")
    callbacks = list(callbacks or []) + ([RestoreBest("val_accuracy")] if restore_best else [])
    if backup_dir is not None:
        callbacks.append(BackupAndResume(backup_dir))  # last: it backs up what RestoreBest restored
    verbose = progress_verbosity() if verbose is None else verbose
    if dataset.streams:
        train, val = dataset.fit_splits(batch_size, validation_split, seed=seed, max_train=max_train)
        history = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose)
    else:
        x, y = dataset.x_train[:max_train], dataset.y_train[:max_train]
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                            callbacks=callbacks, verbose=verbose)
    # The epoch a restarted fit resumed at (0: none), for logs such as a pipeline stage's.
    history.resumed_at_epoch = callbacks[-1].initial_epoch if backup_dir is not None else 0
    return history


STRATEGIES = ("default", "mirrored", "multiworker")
_MULTIWORKER = []  # one MultiWorkerMirroredStrategy per process: TensorFlow's collectives are set up once


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            "strategy 'multiworker' reads the cluster from the TF_CONFIG environment variable, which is not set. "
            'Set it on every machine, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' (index 1 on the second machine).'
        )
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {text[:200]!r}.") from err
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG must hold 'cluster' ({{'worker': [hosts]}}) and 'task' ({{'type', 'index'}}), got {text[:200]!r}.")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"TF_CONFIG task {task!r} does not name a host of its cluster {cluster!r}.")
    return config


def get_strategy(name: str):
    """The ``tf.distribute`` strategy named by ``name``.

    Args:
        name: ``"default"`` (one device), ``"mirrored"`` (every local GPU/CPU device,
            ``MirroredStrategy``) or ``"multiworker"`` (``MultiWorkerMirroredStrategy`` over
            the machines that ``TF_CONFIG`` lists; every worker runs the same program).

    Returns:
        The strategy; ``"multiworker"`` returns the same object on every call in a process.

    Raises:
        ValueError: an unknown name, or ``"multiworker"`` without a usable ``TF_CONFIG``.

    Example:
        >>> strategy = get_strategy("multiworker")   # TF_CONFIG set on each machine
        >>> with strategy.scope():
        ...     model = kc.models.get("lenet5", ds.input_shape, ds.num_classes)
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not _MULTIWORKER:
            config = _tf_config()
            logging.info("MultiWorkerMirroredStrategy: task %s of cluster %s", config["task"], config["cluster"])
            _MULTIWORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _MULTIWORKER[0]
    raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {name!r}.")


def is_chief(strategy=None) -> bool:
    """Whether this process should write results: True unless it is a non-chief worker of a cluster.

    Reads ``strategy.cluster_resolver.task_type`` / ``task_id`` (the chief is the ``"chief"``
    task, or worker 0 when the cluster has none). Single-process strategies are always chief.

    Args:
        strategy: a ``tf.distribute`` strategy (None: the one in scope).
    """
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy must be None or a tf.distribute.Strategy, got {type(strategy).__name__}.")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def writable_dir(output_dir: str | os.PathLike, strategy=None):
    """The folder this process writes results into: ``output_dir`` on the chief, a temporary one elsewhere.

    Every worker of a ``MultiWorkerMirroredStrategy`` cluster runs the same script; the
    chief's files are the results, the others write into a temporary folder (so code that
    reads back what it wrote still works) that is removed on exit, as Keras's own
    checkpoints do under that strategy.

    Args:
        output_dir: the results folder (created on the chief).
        strategy: a ``tf.distribute`` strategy (None: the one in scope).

    Example:
        >>> with kc.models.writable_dir(FLAGS.output_dir, strategy) as out:
        ...     kc.export.save(flat, os.path.join(out, "model.tflite"))
    """
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise TypeError(f"output_dir must be a folder path, got {output_dir!r}.")
    if is_chief(strategy):
        os.makedirs(output_dir, exist_ok=True)
        yield os.fspath(output_dir)
        return
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="kcompress-worker-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
