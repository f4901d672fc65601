"""Pipeline stages: each transforms a model (and records what it did).

A stage is a small configurable object with ``run(state)``. Stages that change
the model and then fine-tune it (Prune, PruneChannels, LowRank, Cluster,
QuantizeAware) take ``finetune=``: None fine-tunes on the labels with the stage's
own epochs and learning rate, a :class:`Distill` distills from the pipeline's
teacher with that Distill's settings, e.g.
``Prune(0.8, finetune=Distill(temperature=1, alpha=0.5, hint="fc2"))``. A Distill
stage in the list is always a separate distillation step.

Every stage class registers itself in :data:`STAGES` under its ``kind`` (the
name recipes use) when it is defined.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from kcompress import clustering, export, factorization, pruning, quantization
from kcompress._keras import keras
from kcompress.clustering.cluster import _check_clusters
from kcompress.data import Dataset
from kcompress.distillation import Distiller, HintDistiller
from kcompress.distillation.hints import _check_hint_weight
from kcompress.evaluation import entropy_coded_size, evaluate, keras_macs, robustness
from kcompress.models.training import compile_classifier, fit
from kcompress.pruning.schedules import _check_sparsity
from kcompress.validation import (
    check_bool,
    check_choice,
    check_fraction,
    check_instance,
    check_int,
    check_number,
    check_temperature,
)

# kind -> Stage class; filled by Stage.__init_subclass__, so a new stage needs no entry here.
STAGES: dict[str, type[Stage]] = {}


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
        stage_index: the step number of the stage running now (names its backup folder): its
            index, a stage with ``finetune=Distill(...)`` before it counting twice (``Stage.steps``).
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


def _check_training(stage):
    """Checks the ``epochs``, ``batch_size`` and ``learning_rate`` every training stage has, and ``finetune``."""
    check_int("epochs", stage.epochs, minimum=1)
    check_int("batch_size", stage.batch_size, minimum=1)
    check_number("learning_rate", stage.learning_rate, 0.0, low_open=True)
    if stage.finetunes:
        check_instance("finetune", stage.finetune, Distill, allow_none=True, allowed=(
            "None (plain fine-tuning on the labels) or a Distill stage (distillation from the pipeline's teacher, "
            f"e.g. {type(stage).__name__}(..., finetune=Distill(temperature=2.0, alpha=0.5)))"))


def _scope(state):
    return state.strategy.scope() if state.strategy is not None else contextlib.nullcontext()


def _backup_dir(state, stage):
    """The stage's own backup folder (None without ``backup_dir``)."""
    if state.backup_dir is None:
        return None
    return os.path.join(state.backup_dir, f"stage{state.stage_index:02d}_{stage.kind}")


def _validation(history, restore_best) -> dict:
    """The validation accuracy of the weights a stage ends with: the best epoch's (and which epoch,
    1-based; the first on ties, as ``RestoreBest`` keeps) under ``restore_best``, else the last epoch's."""
    accuracies = history.history.get("val_accuracy")  # none when a finished stage was restored
    if not accuracies:
        return {"val_accuracy": None}
    if restore_best:
        best = max(accuracies)
        return {"val_accuracy": best, "best_epoch": accuracies.index(best) + 1}
    return {"val_accuracy": accuracies[-1]}


def _resumed(history) -> dict:
    """``{"resumed_at_epoch": n}`` when ``kcompress.models.fit`` resumed from a backup."""
    epoch = getattr(history, "resumed_at_epoch", 0)
    return {"resumed_at_epoch": epoch} if epoch else {}


def _train(state, stage, model, epochs, learning_rate, batch_size, callbacks=(), restore_best=False, distill=None):
    """The one training step of every stage: Train, fine-tuning and distillation.

    ``model`` is compiled as a classifier on the labels, or (with ``distill``, a
    :class:`Distill`) wrapped in a Distiller that learns from ``state.teacher``; then
    ``kcompress.models.fit`` trains it (arrays or a streaming dataset, the last 10% of
    the training split held out, a backup per stage in ``stage``'s folder).

    Returns:
        The Keras ``History``.
    """
    if distill is None:
        with _scope(state):
            compile_classifier(model, learning_rate)
    else:
        model = distill.distiller(state, model, learning_rate)
    return fit(model, state.dataset, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks),
               verbose=state.verbose, restore_best=restore_best, backup_dir=_backup_dir(state, stage))


class Stage:
    """Base class: ``run(state)`` transforms the state; ``get_config`` / ``from_config`` round-trip.

    A subclass that sets ``kind`` registers itself in :data:`STAGES` (recipes name it so).
    """

    kind = "stage"
    finetunes = False  # whether the stage fine-tunes the model it changed (then it has a ``finetune`` field)
    rebuilds_graph = False  # rebuilds the layer graph (clone_model), which a subclassed model does not expose
    read_only = False  # only reads the model (no copy of it needed)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:  # a helper base class, not a stage recipes name
            return
        if kind in STAGES and STAGES[kind].__qualname__ != cls.__qualname__:
            raise ValueError(f"stage kind {kind!r} of {cls.__qualname__} is already taken by "
                             f"{STAGES[kind].__qualname__}; give the new stage another kind.")
        STAGES[kind] = cls

    @property
    def steps(self) -> int:
        """Seed offsets (and backup folder numbers) the stage takes in a pipeline: 2 when it
        distills (its finetune is a Distill), else 1.

        A stage with ``finetune=Distill(...)`` counts as the two stages it was written as
        before fine-tuning was explicit (the stage, then the distill stage that took over),
        so ``Pipeline.run(seed=...)`` seeds every later stage as it did then and recipes
        replay bit for bit.
        """
        return 2 if isinstance(getattr(self, "finetune", None), Distill) else 1

    def get_config(self) -> dict:
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(config.get("finetune"), Stage):
            config["finetune"] = {"stage": config["finetune"].kind, **config["finetune"].get_config()}
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if cls.finetunes and isinstance(config.get("finetune"), dict):
            nested = dict(config["finetune"])
            nested.setdefault("stage", Distill.kind)  # ``finetune: {temperature: 2}`` in YAML means a Distill
            if nested["stage"] != Distill.kind:
                raise TypeError(f"finetune must be None or a distill stage config ({{\"stage\": \"distill\", ...}}) "
                                f"in a {cls.kind} stage, got {config['finetune']!r}.")
            config["finetune"] = stage_from_config(nested)
        return cls(**config)

    def run(self, state: State) -> dict:
        raise NotImplementedError

    def _finetune(self, state, model, callbacks=(), restore_best=False):
        """Fine-tunes ``model`` for the stage: on the labels, or by distillation when ``finetune`` is a Distill."""
        distill = self.finetune
        if distill is None:
            history = _train(state, self, model, self.epochs, self.learning_rate, self.batch_size,
                             callbacks=callbacks, restore_best=restore_best)
            how = "plain"
        else:
            # The Distill's own settings; epochs and learning rate it leaves None are the stage's.
            restore_best = restore_best or distill.restore_best
            history = _train(state, self, model, distill.epochs or self.epochs,
                             distill.learning_rate or self.learning_rate, distill.batch_size, callbacks=callbacks,
                             restore_best=restore_best, distill=distill)
            how = distill.describe()
        return {"finetune": how, **_validation(history, restore_best), **_resumed(history)}


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

    def run(self, state):
        history = _train(state, self, state.model, self.epochs, self.learning_rate, self.batch_size,
                         restore_best=self.restore_best)
        if self.teacher:
            state.teacher = state.model
        return {**_validation(history, self.restore_best), **_resumed(history)}


@dataclasses.dataclass
class Prune(Stage):
    """Magnitude pruning to ``sparsity`` (constant, or from ``initial_sparsity`` over ``schedule_epochs``).

    The pruned model is fine-tuned for ``epochs`` (on the labels, or by distillation with
    ``finetune=Distill(...)``) and stripped.

    Args:
        sparsity: final fraction of zero weights in prunable kernels, in [0, 1).
        initial_sparsity: if given, a PolynomialDecay from it to ``sparsity``.
        schedule_epochs: epochs over which the PolynomialDecay ramps (default: half of ``epochs``).
        epochs, batch_size, learning_rate: fine-tuning settings.
        layers: optional layer names to prune (default: every prunable layer).
        finetune: None (fine-tune on the labels) or a :class:`Distill` (distill from the
            pipeline's teacher with its settings; its ``epochs`` / ``learning_rate`` default to these).

    Example:
        >>> Prune(0.8, finetune=Distill(temperature=1, alpha=0.5, hint="fc2"))
    """

    sparsity: float = 0.8
    initial_sparsity: float | None = None
    schedule_epochs: int | None = None
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    layers: list | None = None
    finetune: Distill | None = None
    kind = "prune"
    finetunes = True
    rebuilds_graph = True

    def __post_init__(self):
        _check_sparsity("sparsity", self.sparsity)
        if self.initial_sparsity is not None:
            _check_sparsity("initial_sparsity", self.initial_sparsity)
        check_int("schedule_epochs", self.schedule_epochs, minimum=1, allow_none=True)
        _check_training(self)

    def schedule(self, num_train: int):
        if self.initial_sparsity is None:
            return pruning.ConstantSparsity(self.sparsity)
        spe = pruning.steps_per_epoch(num_train, self.batch_size, validation_split=0.1)
        end = self.schedule_epochs or max(1, self.epochs // 2)
        return pruning.PolynomialDecay.from_epochs(self.initial_sparsity, self.sparsity, 0, end, spe)

    def run(self, state):
        schedule = self.schedule(state.dataset.num_train)
        with _scope(state):
            wrapped = pruning.prune(state.model, schedule, layers=self.layers)
        info = self._finetune(state, wrapped, callbacks=pruning.callbacks(per_layer=False))
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
        finetune: None (fine-tune on the labels) or a :class:`Distill` (distill from the teacher).
    """

    ratio: float | dict | None = 0.5
    criterion: str = "l1"
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    channels: dict | None = None
    finetune: Distill | None = None
    kind = "prune_channels"
    finetunes = True
    rebuilds_graph = True

    def __post_init__(self):
        if (self.ratio is None) == (self.channels is None):
            raise ValueError(
                f"PruneChannels needs exactly one of ratio or channels (set ratio=None with channels), "
                f"got ratio={self.ratio!r}, channels={self.channels!r}."
            )
        if self.channels is not None and (not isinstance(self.channels, dict) or not self.channels):
            raise TypeError(f"channels must be a non-empty dict {{layer: count}}, got {self.channels!r}.")
        _check_training(self)

    def run(self, state):
        macs = keras_macs(state.model)
        with _scope(state):
            state.model = pruning.prune_channels(state.model, self.ratio, criterion=self.criterion,
                                                 channels=self.channels)
        info = self._finetune(state, state.model, restore_best=True)
        return {**info, "params": state.model.count_params(), "macs_ratio": keras_macs(state.model) / macs}


@dataclasses.dataclass
class QuantizeAware(Stage):
    """Quantization-aware training (sparsity kept when the model is mostly zeros), then fine-tuning.

    Args:
        epochs, batch_size, learning_rate: fine-tuning settings (a rate ~10x below training's).
        preserve_sparsity: None (automatic), True or False.
        finetune: None (fine-tune on the labels) or a :class:`Distill` (distill from the teacher).
    """

    epochs: int = 2
    batch_size: int = 256
    learning_rate: float = 1e-4
    preserve_sparsity: bool | None = None
    finetune: Distill | None = None
    kind = "quantize_aware"
    finetunes = True
    rebuilds_graph = True

    def __post_init__(self):
        _check_training(self)

    def run(self, state):
        sparsity = quantization.kernel_sparsity(state.model)
        with _scope(state):
            state.model = quantization.quantize_aware(state.model, preserve_sparsity=self.preserve_sparsity)
        info = self._finetune(state, state.model)
        return {**info, "sparsity_before": sparsity}


@dataclasses.dataclass
class Distill(Stage):
    """Knowledge distillation from the pipeline's teacher.

    As a stage of its own it trains the current model (e.g. a fresh student, or a
    model already fine-tuned by the stage before) with the teacher for ``epochs``.
    As the ``finetune`` of a stage that fine-tunes
    (``Prune(0.8, finetune=Distill(temperature=1, alpha=0.5))``) it is that stage's
    fine-tuning: its epochs and learning rate default to the stage's.

    Args:
        temperature: softmax temperature T > 0.
        alpha: weight of the hard-label loss in [0, 1] (1 - alpha goes to the soft targets).
        epochs: training epochs (None: the fine-tuned stage's; 10 as a stage of its own).
        learning_rate: Adam rate (None: the fine-tuned stage's; 1e-3 as a stage of its own).
        batch_size: batch size (its own, also as a ``finetune``).
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
        check_temperature(self.temperature)
        check_fraction("alpha", self.alpha)
        check_int("epochs", self.epochs, minimum=1, allow_none=True)
        check_number("learning_rate", self.learning_rate, 0.0, low_open=True, allow_none=True)
        check_int("batch_size", self.batch_size, minimum=1)
        check_bool("restore_best", self.restore_best)
        if self.hint is not None and (not isinstance(self.hint, str) or not all(self.hint.split(":"))
                                      or self.hint.count(":") > 1):
            raise ValueError(f"hint must be a layer name or 'student_layer:teacher_layer', got {self.hint!r}.")
        _check_hint_weight(self.hint_weight)

    def describe(self) -> str:
        """How the stage trains, for the pipeline log (its ``finetune`` entry)."""
        hint = f", hint={self.hint} x{self.hint_weight:g}" if self.hint else ""
        return f"distill(T={self.temperature}, alpha={self.alpha}{hint})"

    def distiller(self, state, student, learning_rate):
        """A compiled Distiller (HintDistiller with ``hint``) teaching ``student`` from ``state.teacher``."""
        if state.teacher is None:
            raise ValueError("Distill needs a teacher: put a Train stage first or pass teacher= to Pipeline.run.")
        optimizer = keras.optimizers.Adam(learning_rate)
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
        return distiller

    def run(self, state):
        history = _train(state, self, state.model, self.epochs or 10, self.learning_rate or 1e-3, self.batch_size,
                         restore_best=self.restore_best, distill=self)
        return {"finetune": self.describe(), **_validation(history, self.restore_best), **_resumed(history)}


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
        finetune: None (fine-tune on the labels) or a :class:`Distill` (distill from the teacher).
    """

    rank: int | dict | None = None
    energy: float | None = None
    param_ratio: float | None = None
    layers: list | None = None
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    finetune: Distill | None = None
    kind = "low_rank"
    finetunes = True
    rebuilds_graph = True

    def __post_init__(self):
        if sum(x is not None for x in (self.rank, self.energy, self.param_ratio)) != 1:
            raise ValueError("LowRank needs exactly one of rank, energy or param_ratio.")
        _check_training(self)

    def run(self, state):
        with _scope(state):
            result = factorization.low_rank(state.model, rank=self.rank, energy=self.energy, layers=self.layers,
                                            param_ratio=self.param_ratio)
        state.model = result.model
        info = self._finetune(state, state.model, restore_best=True)
        return {**info, "ranks": dict(result.ranks), "params_ratio": result.params_after / result.params_before}


@dataclasses.dataclass
class Cluster(Stage):
    """Weight sharing (``kcompress.clustering.cluster``): fine-tunes the centroids, then strips.

    Args:
        clusters: centroids per layer (2..256) or ``{layer: clusters}``.
        preserve_sparsity: keep zeros at zero (None: automatic for pruned models).
        epochs, batch_size, learning_rate: fine-tuning settings.
        finetune: None (fine-tune on the labels) or a :class:`Distill` (distill from the teacher).
    """

    clusters: int | dict = 16
    preserve_sparsity: bool | None = None
    epochs: int = 3
    batch_size: int = 256
    learning_rate: float = 1e-4
    finetune: Distill | None = None
    kind = "cluster"
    finetunes = True
    rebuilds_graph = True

    def __post_init__(self):
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

    def run(self, state):
        with _scope(state):
            wrapped = clustering.cluster(state.model, clusters=self.clusters, preserve_sparsity=self.preserve_sparsity)
        info = self._finetune(state, wrapped)
        state.model = clustering.strip(wrapped)
        return {**info, **entropy_coded_size(state.model).as_dict()}


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
    read_only = True

    def __post_init__(self):
        check_choice("mode", self.mode, export.MODES)
        for argname in ("sparse", "slim", "per_channel"):
            check_bool(argname, getattr(self, argname))
        check_int("calibration_samples", self.calibration_samples, minimum=1)

    @property
    def label(self) -> str:
        return f"{self.mode}{'_sparse' if self.sparse else ''}"

    def run(self, state):
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
    read_only = True

    def __post_init__(self):
        check_int("latency_runs", self.latency_runs, minimum=1)
        check_int("robustness_samples", self.robustness_samples, minimum=1)

    def run(self, state):
        try:
            entropy = entropy_coded_size(state.model).total_bytes
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


def stage_from_config(config: dict) -> Stage:
    """``{"stage": "prune", "sparsity": 0.8, ...}`` -> ``Prune(sparsity=0.8, ...)``.

    A nested ``"finetune": {"stage": "distill", ...}`` becomes the stage's Distill.
    """
    if not isinstance(config, dict) or "stage" not in config:
        raise ValueError(f"a stage config must be a dict with a 'stage' key naming one of {sorted(STAGES)}, got {config!r}.")
    config = dict(config)
    kind = config.pop("stage")
    if kind not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {kind!r}.")
    cls = STAGES[kind]
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(config) - set(fields), key=str)
    if unknown:
        raise ValueError(f"bad options for stage {kind!r}: {unknown} are not among its options; it accepts {fields}.")
    return cls.from_config(config)
