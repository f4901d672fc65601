"""Pipeline stages: each transforms a model (and records what it did).

A stage is a small configurable object with ``run(state)``; stages that change
the model and then fine-tune it (Prune, PruneChannels, QuantizeAware) hand the
fine-tuning to a :class:`Distill` stage placed right after them.
"""

from __future__ import annotations

import dataclasses
import os

from kcompress._keras import keras
from kcompress.data import Dataset


@dataclasses.dataclass
class State:
    """What flows through a pipeline.

    Attributes:
        model: the current Keras model (plain, or quantization-aware after QuantizeAware).
        dataset: the data every stage trains and evaluates on.
        teacher: the model Distill learns from (by default the model after the last Train,
            or the model the pipeline started from).
        flatbuffers: exported flatbuffers by label (e.g. ``"int8"``).
        records: evaluation results (``evaluate`` keys plus ``variant`` / ``stage`` / ``flatbuffer``).
        log: one entry per stage: its name, seconds and what it measured.
        name: the pipeline's name, used for files and records.
        output_dir: where flatbuffers are written (None: kept in memory only; always None on a
            non-chief worker of a multi-worker cluster, so only the chief writes).
        strategy: an optional ``tf.distribute`` strategy for every training step.
        backup_dir: where training stages back up every epoch (``BackupAndResume``), one
            sub-folder per stage; None: no backups.
        stage_index: the index of the stage running now (names its backup folder).
    """

    model: keras.Model
    dataset: Dataset
    teacher: keras.Model | None = None
    flatbuffers: dict = dataclasses.field(default_factory=dict)
    records: list = dataclasses.field(default_factory=list)
    log: list = dataclasses.field(default_factory=list)
    name: str = "pipeline"
    output_dir: str | None = None
    strategy: object = None
    verbose: int | None = None
    backup_dir: str | None = None
    stage_index: int = 0


def _check_positive_int(name, value, allow_none=False):
    if allow_none and value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}.")
    return value


def _check_rate(name, value, allow_none=False):
    if allow_none and value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number{' or None' if allow_none else ''}, got {value!r}.")
    return float(value)


def _check_training(stage):
    """Checks the ``epochs``, ``batch_size`` and ``learning_rate`` every training stage has."""
    _check_positive_int("epochs", stage.epochs)
    _check_positive_int("batch_size", stage.batch_size)
    _check_rate("learning_rate", stage.learning_rate)


def _scope(state):
    import contextlib

    return state.strategy.scope() if state.strategy is not None else contextlib.nullcontext()


def _backup_dir(state, stage):
    """The stage's own backup folder (None without ``backup_dir``)."""
    if state.backup_dir is None:
        return None
    return os.path.join(state.backup_dir, f"stage{state.stage_index:02d}_{stage.kind}")


def _resumed(history) -> dict:
    """``{"resumed_at_epoch": n}`` when ``kcompress.models.fit`` resumed from a backup."""
    epoch = getattr(history, "resumed_at_epoch", 0)
    return {"resumed_at_epoch": epoch} if epoch else {}


class Stage:
    """Base class: ``run(state)`` transforms the state; ``get_config`` / ``from_config`` round-trip."""

    kind = "stage"
    finetunes = False  # whether the stage fine-tunes (so a following Distill can take that over)

    def get_config(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def run(self, state: State, finetuner: Distill | None = None) -> dict:
        raise NotImplementedError

    def _finetune(self, state, model, epochs, learning_rate, callbacks=(), finetuner=None, restore_best=False):
        """Plain fine-tuning, or distillation when a Distill stage follows."""
        if finetuner is not None:
            return finetuner.distill(state, model, epochs=epochs, learning_rate=learning_rate, callbacks=callbacks,
                                     restore_best=restore_best, owner=self)
        from kcompress.models.training import compile_classifier, fit

        with _scope(state):
            compile_classifier(model, learning_rate)
        history = fit(model, state.dataset, epochs=epochs, batch_size=self.batch_size, callbacks=list(callbacks),
                      verbose=state.verbose, restore_best=restore_best, backup_dir=_backup_dir(state, self))
        return {"finetune": "plain", "val_accuracy": history.history.get("val_accuracy", [None])[-1],
                **_resumed(history)}


@dataclasses.dataclass
class Train(Stage):
    """Trains the model (from scratch or further) and makes it the default teacher.

    Args:
        epochs, batch_size, learning_rate: Adam training settings.
        restore_best: end with the best validation-accuracy epoch's weights.
        teacher: make the trained model the teacher of later Distill stages.
    """

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    restore_best: bool = True
    teacher: bool = True
    kind = "train"

    def __post_init__(self):
        _check_training(self)

    def run(self, state, finetuner=None):
        from kcompress.models.training import compile_classifier, fit

        with _scope(state):
            compile_classifier(state.model, self.learning_rate)
        history = fit(state.model, state.dataset, epochs=self.epochs, batch_size=self.batch_size,
                      verbose=state.verbose, restore_best=self.restore_best, backup_dir=_backup_dir(state, self))
        if self.teacher:
            state.teacher = state.model
        accuracies = history.history.get("val_accuracy")  # none when a finished stage was restored
        return {"val_accuracy": max(accuracies) if accuracies else None, **_resumed(history)}


@dataclasses.dataclass
class Prune(Stage):
    """Magnitude pruning to ``sparsity`` (constant, or from ``initial_sparsity`` over ``schedule_epochs``).

    The pruned model is fine-tuned for ``epochs`` (or by a following Distill) and stripped.

    Args:
        sparsity: final fraction of zero weights in prunable kernels, in [0, 1).
        initial_sparsity: if given, a PolynomialDecay from it to ``sparsity``.
        schedule_epochs: epochs over which the PolynomialDecay ramps (default: half of ``epochs``).
        epochs, batch_size, learning_rate: fine-tuning settings.
        layers: optional layer names to prune (default: every prunable layer).
    """

    sparsity: float = 0.8
    initial_sparsity: float | None = None
    schedule_epochs: int | None = None
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    layers: list | None = None
    kind = "prune"
    finetunes = True

    def __post_init__(self):
        from kcompress.pruning.schedules import _check_sparsity

        _check_sparsity("sparsity", self.sparsity)
        if self.initial_sparsity is not None:
            _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_positive_int("schedule_epochs", self.schedule_epochs, allow_none=True)
        _check_training(self)

    def schedule(self, num_train: int):
        from kcompress import pruning

        if self.initial_sparsity is None:
            return pruning.ConstantSparsity(self.sparsity)
        spe = pruning.steps_per_epoch(num_train, self.batch_size, validation_split=0.1)
        end = self.schedule_epochs or max(1, self.epochs // 2)
        return pruning.PolynomialDecay.from_epochs(self.initial_sparsity, self.sparsity, 0, end, spe)

    def run(self, state, finetuner=None):
        from kcompress import pruning

        schedule = self.schedule(state.dataset.num_train)
        with _scope(state):
            wrapped = pruning.prune(state.model, schedule, layers=self.layers)
        info = self._finetune(state, wrapped, self.epochs, self.learning_rate,
                              callbacks=pruning.callbacks(per_layer=False), finetuner=finetuner)
        state.model = pruning.strip(wrapped)
        return {**info, "sparsity": pruning.sparsity(state.model).prunable}


@dataclasses.dataclass
class PruneChannels(Stage):
    """Removes whole filters / units (``kcompress.pruning.prune_channels``), then fine-tunes.

    Args:
        ratio: fraction removed per channel group, or ``{layer: ratio}``.
        criterion: ``"l1"`` or ``"l2"``.
        epochs, batch_size, learning_rate: fine-tuning settings (best validation epoch kept).
        channels: instead of ``ratio`` (set ``ratio=None``), ``{layer: n}``: channels each
            named group keeps (what ``kcompress.compress`` recipes use).
    """

    ratio: float | dict | None = 0.5
    criterion: str = "l1"
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    channels: dict | None = None
    kind = "prune_channels"
    finetunes = True

    def __post_init__(self):
        if (self.ratio is None) == (self.channels is None):
            raise ValueError(
                f"PruneChannels needs exactly one of ratio or channels (set ratio=None with channels), "
                f"got ratio={self.ratio!r}, channels={self.channels!r}."
            )
        if self.channels is not None and (not isinstance(self.channels, dict) or not self.channels):
            raise TypeError(f"channels must be a non-empty dict {{layer: count}}, got {self.channels!r}.")
        _check_training(self)

    def run(self, state, finetuner=None):
        from kcompress import pruning
        from kcompress.evaluation import keras_macs

        macs = keras_macs(state.model)
        with _scope(state):
            state.model = pruning.prune_channels(state.model, self.ratio, criterion=self.criterion,
                                                 channels=self.channels)
        info = self._finetune(state, state.model, self.epochs, self.learning_rate, finetuner=finetuner,
                              restore_best=True)
        return {**info, "params": state.model.count_params(), "macs_ratio": keras_macs(state.model) / macs}


@dataclasses.dataclass
class QuantizeAware(Stage):
    """Quantization-aware training (sparsity kept when the model is mostly zeros), then fine-tuning.

    Args:
        epochs, batch_size, learning_rate: fine-tuning settings (a rate ~10x below training's).
        preserve_sparsity: None (automatic), True or False.
    """

    epochs: int = 2
    batch_size: int = 256
    learning_rate: float = 1e-4
    preserve_sparsity: bool | None = None
    kind = "quantize_aware"
    finetunes = True

    def __post_init__(self):
        _check_training(self)

    def run(self, state, finetuner=None):
        from kcompress import quantization

        sparsity = quantization.kernel_sparsity(state.model)
        with _scope(state):
            state.model = quantization.quantize_aware(state.model, preserve_sparsity=self.preserve_sparsity)
        info = self._finetune(state, state.model, self.epochs, self.learning_rate, finetuner=finetuner)
        return {**info, "sparsity_before": sparsity}


@dataclasses.dataclass
class Distill(Stage):
    """Knowledge distillation from the pipeline's teacher.

    Placed right after Prune / PruneChannels / QuantizeAware it replaces their plain
    fine-tuning (same epochs unless ``epochs`` is set); on its own it trains the
    current model (e.g. a fresh student) with the teacher for ``epochs``.

    Args:
        temperature: softmax temperature T > 0.
        alpha: weight of the hard-label loss in [0, 1] (1 - alpha goes to the soft targets).
        epochs: training epochs (None: the previous stage's; 10 when standalone).
        learning_rate: Adam rate (None: the previous stage's; 1e-3 when standalone).
        batch_size: batch size.
        hint: also match the teacher's features of a layer (``HintDistiller``):
            ``"fc2"`` (same name in both) or ``"student_layer:teacher_layer"``. After
            Prune / QuantizeAware the shapes match and no regressor is used.
        hint_weight: weight of the hint loss (with ``hint``), >= 0.
        restore_best: end with the best validation-accuracy epoch's weights.
    """

    temperature: float = 4.0
    alpha: float = 0.1
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int = 256
    hint: str | None = None
    hint_weight: float = 0.1
    restore_best: bool = False
    kind = "distill"

    def __post_init__(self):
        _check_rate("temperature", self.temperature)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {self.alpha!r}.")
        _check_positive_int("epochs", self.epochs, allow_none=True)
        _check_rate("learning_rate", self.learning_rate, allow_none=True)
        _check_positive_int("batch_size", self.batch_size)
        if self.hint is not None and (not isinstance(self.hint, str) or not all(self.hint.split(":"))
                                      or self.hint.count(":") > 1):
            raise ValueError(f"hint must be a layer name or 'student_layer:teacher_layer', got {self.hint!r}.")
        from kcompress.distillation.hints import _check_hint_weight

        _check_hint_weight(self.hint_weight)

    def distill(self, state, student, epochs, learning_rate, callbacks=(), restore_best=False, owner=None):
        from kcompress.distillation import Distiller, HintDistiller
        from kcompress.models.training import fit

        if state.teacher is None:
            raise ValueError("Distill needs a teacher: put a Train stage first or pass teacher= to Pipeline.run.")
        epochs = self.epochs or epochs
        restore_best = restore_best or self.restore_best
        optimizer = keras.optimizers.Adam(self.learning_rate or learning_rate)
        with _scope(state):
            if self.hint:
                s_layer, _, t_layer = self.hint.partition(":")
                distiller = HintDistiller(student, state.teacher, student_layer=s_layer, teacher_layer=t_layer or s_layer)
                distiller.compile(optimizer=optimizer, metrics=["accuracy"], alpha=self.alpha,
                                  temperature=self.temperature, hint_weight=self.hint_weight)
            else:
                distiller = Distiller(student=student, teacher=state.teacher)
                distiller.compile(optimizer=optimizer, metrics=["accuracy"], alpha=self.alpha,
                                  temperature=self.temperature)
        # Arrays or a streaming dataset, a backup per stage: the same fit as plain fine-tuning.
        history = fit(distiller, state.dataset, epochs=epochs, batch_size=self.batch_size, validation_split=0.1,
                      callbacks=list(callbacks), verbose=state.verbose, restore_best=restore_best,
                      backup_dir=_backup_dir(state, owner or self))
        hint = f", hint={self.hint} x{self.hint_weight:g}" if self.hint else ""
        return {"finetune": f"distill(T={self.temperature}, alpha={self.alpha}{hint})",
                "val_accuracy": history.history.get("val_accuracy", [None])[-1], **_resumed(history)}

    def run(self, state, finetuner=None):
        return self.distill(state, state.model, epochs=self.epochs or 10, learning_rate=self.learning_rate or 1e-3)


@dataclasses.dataclass
class LowRank(Stage):
    """Splits Dense / Conv2D layers by truncated SVD (``kcompress.factorization.low_rank``), then fine-tunes.

    Choose the rank by exactly one of ``rank``, ``energy`` or ``param_ratio``.

    Args:
        rank: an int for every chosen layer, or ``{layer: rank}``.
        energy: retained squared singular-value fraction in (0, 1].
        param_ratio: fraction of the model's parameters to keep, in (0, 1].
        layers: names of the layers to split (default: every Dense/Conv2D).
        epochs, batch_size, learning_rate: fine-tuning settings (best validation epoch kept).
    """

    rank: int | dict | None = None
    energy: float | None = None
    param_ratio: float | None = None
    layers: list | None = None
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    kind = "low_rank"
    finetunes = True

    def __post_init__(self):
        if sum(x is not None for x in (self.rank, self.energy, self.param_ratio)) != 1:
            raise ValueError("LowRank needs exactly one of rank, energy or param_ratio.")
        _check_training(self)

    def run(self, state, finetuner=None):
        from kcompress import factorization

        with _scope(state):
            result = factorization.low_rank(state.model, rank=self.rank, energy=self.energy, layers=self.layers,
                                            param_ratio=self.param_ratio)
        state.model = result.model
        info = self._finetune(state, state.model, self.epochs, self.learning_rate, finetuner=finetuner,
                              restore_best=True)
        return {**info, "ranks": dict(result.ranks), "params_ratio": result.params_after / result.params_before}


@dataclasses.dataclass
class Cluster(Stage):
    """Weight sharing (``kcompress.clustering.cluster``): fine-tunes the centroids, then strips.

    Args:
        clusters: centroids per layer (2..256) or ``{layer: clusters}``.
        preserve_sparsity: keep zeros at zero (None: automatic for pruned models).
        epochs, batch_size, learning_rate: fine-tuning settings.
    """

    clusters: int | dict = 16
    preserve_sparsity: bool | None = None
    epochs: int = 3
    batch_size: int = 256
    learning_rate: float = 1e-4
    kind = "cluster"
    finetunes = True

    def __post_init__(self):
        from kcompress.clustering.cluster import _check_clusters

        # Checked here, not when the stage runs after minutes of earlier stages.
        if isinstance(self.clusters, dict):
            if not self.clusters:
                raise ValueError("clusters must be an int or a non-empty dict {layer: clusters}, got {}.")
            for name, value in self.clusters.items():
                if not isinstance(name, str):
                    raise TypeError(f"clusters keys must be layer names (str), got {name!r}.")
                _check_clusters(value, f"clusters[{name!r}]")
        else:
            _check_clusters(self.clusters)
        if self.preserve_sparsity is not None and not isinstance(self.preserve_sparsity, bool):
            raise TypeError(f"preserve_sparsity must be None, True or False, got {self.preserve_sparsity!r}.")
        _check_training(self)

    def run(self, state, finetuner=None):
        from kcompress import clustering

        with _scope(state):
            wrapped = clustering.cluster(state.model, clusters=self.clusters, preserve_sparsity=self.preserve_sparsity)
        info = self._finetune(state, wrapped, self.epochs, self.learning_rate, finetuner=finetuner)
        state.model = clustering.strip(wrapped)
        return {**info, **clustering.entropy_coded_size(state.model).as_dict()}


@dataclasses.dataclass
class Export(Stage):
    """Converts the current model to a flatbuffer (``kcompress.export.to_tflite``) and saves it.

    Args:
        mode: float32 | dynamic | int8 | float16 | int16x8.
        sparse: use the sparse weight encoding.
        calibration_samples: representative training samples for int8 / int16x8.
        slim: strip names and metadata (``kcompress.export.slim``; same outputs).
        per_channel: per-channel weight scales (False: per-tensor, smaller; post-training only).
    """

    mode: str = "int8"
    sparse: bool = False
    calibration_samples: int = 500
    slim: bool = False
    per_channel: bool = True
    kind = "export"

    def __post_init__(self):
        from kcompress.export import MODES

        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}.")
        for argname in ("sparse", "slim", "per_channel"):
            if not isinstance(getattr(self, argname), bool):
                raise TypeError(f"{argname} must be a bool, got {getattr(self, argname)!r}.")
        _check_positive_int("calibration_samples", self.calibration_samples)

    @property
    def label(self) -> str:
        return f"{self.mode}{'_sparse' if self.sparse else ''}"

    def run(self, state, finetuner=None):
        from kcompress import export

        ds = state.dataset
        # A streaming dataset reads only these samples (through its shuffle buffer).
        data = ds.representative(min(self.calibration_samples, ds.num_train)) if self.mode in ("int8", "int16x8") else None
        flat = export.to_tflite(state.model, self.mode, representative_data=data, sparse=self.sparse, verbose=False,
                                slim=self.slim, per_channel=self.per_channel)
        state.flatbuffers[self.label] = flat
        info = {"flatbuffer": self.label, "size_bytes": len(flat)}
        if state.output_dir:
            info["path"] = export.save(flat, os.path.join(state.output_dir, f"{state.name}_{self.label}.tflite"))
        return info


@dataclasses.dataclass
class Evaluate(Stage):
    """Measures the exported flatbuffers in LiteRT (and the Keras model) with ``evaluate``.

    Every record also gets the Deep Compression entropy-coded size of the final
    Keras model's weights (``entropy_bytes``; None for a quantization-aware model)
    and, with ``robustness``, accuracies under perturbed inputs
    (``kcompress.evaluation.robustness``: ``robust_gauss_<s>``, ``robust_saltpepper_<s>``).

    Args:
        keras: also evaluate the current Keras model.
        latency_runs: timed single-sample inferences per flatbuffer.
        robustness: measure accuracy under Gaussian and salt-and-pepper noise.
        robustness_samples: test samples for the robustness measurements.
    """

    keras: bool = False
    latency_runs: int = 300
    robustness: bool = False
    robustness_samples: int = 2000
    kind = "evaluate"

    def __post_init__(self):
        _check_positive_int("latency_runs", self.latency_runs)
        _check_positive_int("robustness_samples", self.robustness_samples)

    def run(self, state, finetuner=None):
        from kcompress import clustering
        from kcompress.evaluation import evaluate, robustness

        try:
            entropy = clustering.entropy_coded_size(state.model).total_bytes
        except (TypeError, ValueError):  # quantization-aware wrappers: no plain float weights to code
            entropy = None
        targets = [("keras", state.model)] if self.keras or not state.flatbuffers else []
        targets += list(state.flatbuffers.items())
        for label, target in targets:
            r = evaluate(target, state.dataset, latency_runs=self.latency_runs)
            record = {"variant": state.name, "flatbuffer": label, **r, "entropy_bytes": entropy}
            if self.robustness:
                record.update(robustness(target, state.dataset, max_samples=self.robustness_samples))
            state.records.append(record)
        return {"evaluated": [label for label, _ in targets]}


STAGES: dict[str, type[Stage]] = {
    cls.kind: cls for cls in (Train, Prune, PruneChannels, LowRank, Cluster, QuantizeAware, Distill, Export, Evaluate)
}


def stage_from_config(config: dict) -> Stage:
    """``{"stage": "prune", "sparsity": 0.8, ...}`` -> ``Prune(sparsity=0.8, ...)``."""
    if not isinstance(config, dict) or "stage" not in config:
        raise ValueError(f"a stage config must be a dict with a 'stage' key naming one of {sorted(STAGES)}, got {config!r}.")
    config = dict(config)
    kind = config.pop("stage")
    if kind not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {kind!r}.")
    try:
        return STAGES[kind](**config)
    except TypeError as err:
        fields = [f.name for f in dataclasses.fields(STAGES[kind])]
        raise ValueError(f"bad options for stage {kind!r}: {err}; it accepts {fields}.") from err
