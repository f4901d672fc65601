"""``Pipeline``: run stages in order on a model and a dataset, recording every step."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time

import yaml
from absl import logging

from kcompress._keras import check_model, keras, tf
from kcompress.data import Dataset
from kcompress.distillation.distiller import ends_with_softmax
from kcompress.models.training import is_chief
from kcompress.pipeline.stages import STAGES, Distill, Stage, State, stage_from_config
from kcompress.validation import check_int

# The recipe format Pipeline.get_config writes. Version 2: a stage's fine-tuning is its
# ``finetune`` key. Before (no ``version``, or 1) a distill stage right after a fine-tuning
# stage silently took over that fine-tuning; such recipes are refused with the new form.
RECIPE_VERSION = 2


@dataclasses.dataclass
class PipelineResult:
    """What a pipeline run produced.

    Attributes:
        records: one dict per evaluated target with ``evaluate``'s keys plus
            ``variant`` (the pipeline name) and ``flatbuffer`` (its label or ``keras``).
        model: the final Keras model.
        flatbuffers: exported flatbuffers by label.
        log: one entry per stage: ``stage``, ``seconds`` and what the stage measured.
    """

    records: list
    model: keras.Model
    flatbuffers: dict
    log: list


def _is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def _copy(model, stages):
    """The model the pipeline works on: a copy, so the caller's model is never changed."""
    if _is_graph_model(model):
        start = keras.models.clone_model(model)
        start.set_weights(model.get_weights())
        return start
    if all(stage.read_only for stage in stages):
        return model  # read only: no copy needed
    try:
        start = type(model).from_config(model.get_config())
        start.build(model.save_spec(dynamic_batch=True)[0][0].shape)
        start.set_weights(model.get_weights())
    except (NotImplementedError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"model {model.name!r} is a subclassed model ({type(model).__name__}) that kcompress cannot copy "
            f"({type(err).__name__}: {str(err)[:120]}), and the pipeline never changes the model it is given. "
            "Implement get_config() (and from_config) for it, or rebuild it with the Functional API."
        ) from err
    return start


def _check_output_dir(output_dir):
    """Creates ``output_dir`` and proves it writable before any stage trains."""
    if output_dir is None:
        return None
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise TypeError(f"output_dir must be None or a folder path, got {output_dir!r}.")
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir {output_dir!r} is a file, not a folder; pass a folder to write flatbuffers into.")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".kcompress-write-test-"):
            pass
    except OSError as err:
        raise ValueError(
            f"output_dir {output_dir!r} cannot be written ({type(err).__name__}: {err.strerror or err}); pass a "
            "folder you can write to (checked before any stage trains)."
        ) from err
    return output_dir


class Pipeline:
    """An ordered list of stages, e.g. prune (distilled) -> QAT -> int8.

    A stage that fine-tunes (Prune, PruneChannels, LowRank, Cluster, QuantizeAware)
    distills when its ``finetune`` is a :class:`Distill`; a Distill in the list is a
    distillation step of its own.

    Args:
        stages: :class:`Stage` objects (or their configs, ``{"stage": "prune", ...}``; configs
            are read as an unversioned recipe, see :meth:`from_config`).
        name: used in records and file names.

    Example:
        >>> from kcompress.pipeline import *
        >>> p = Pipeline([Prune(0.8, finetune=Distill(temperature=4)), QuantizeAware(), Export("int8"), Evaluate()],
        ...              name="prune_distill_qat")
        >>> result = p.run(ds, model=baseline, output_dir="runs/p")
        >>> result.records[0]["accuracy"], result.records[0]["size_bytes"]
    """

    def __init__(self, stages, name: str = "pipeline"):
        if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
            raise ValueError(f"name must be a non-empty string without spaces or slashes, got {name!r}.")
        if isinstance(stages, (Stage, dict, str, bytes)) or not hasattr(stages, "__iter__"):
            raise TypeError(f"stages must be a list of Stage objects or stage configs, got {type(stages).__name__}.")
        stages = list(stages)
        _refuse_implicit_finetuning(stages, version=None)
        built = []
        for i, stage in enumerate(stages):
            if isinstance(stage, dict):
                stage = stage_from_config(stage)
            if not isinstance(stage, Stage):
                raise TypeError(f"stages[{i}] must be a Stage or a stage config dict, got {type(stage).__name__}.")
            built.append(stage)
        if not built:
            raise ValueError("stages must hold at least one stage.")
        self.stages = built
        self.name = name

    def __repr__(self):
        return f"Pipeline({self.name!r}: {' -> '.join(type(s).__name__ for s in self.stages)})"

    # ---------------------------------------------------------------- config

    def get_config(self) -> dict:
        return {"version": RECIPE_VERSION, "name": self.name,
                "stages": [{"stage": s.kind, **s.get_config()} for s in self.stages]}

    @classmethod
    def from_config(cls, config: dict) -> Pipeline:
        """The pipeline of a recipe (``get_config``'s dict, as JSON / YAML files hold it).

        Raises:
            ValueError: a recipe without ``version`` (or version 1) in which a fine-tuning stage
                with no ``finetune`` key is right before a ``distill`` stage: that distill stage
                used to take over the fine-tuning, which no recipe does implicitly any more; the
                message shows the stage as it is written now. Also an unknown ``version``.
        """
        if not isinstance(config, dict) or "stages" not in config:
            raise ValueError("a pipeline config must be a dict with 'stages' (and optionally 'name', 'version').")
        version = config.get("version")
        if version is not None and (isinstance(version, bool) or version not in (1, RECIPE_VERSION)):
            raise ValueError(f"recipe version must be 1 or {RECIPE_VERSION} (or absent), got {version!r}; this "
                             f"kcompress reads recipe versions up to {RECIPE_VERSION}.")
        stages = config["stages"]
        if isinstance(stages, (list, tuple)):
            _refuse_implicit_finetuning(stages, version)
            # Read as configs here, so __init__ does not read them again as an unversioned recipe.
            stages = [stage_from_config(s) if isinstance(s, dict) else s for s in stages]
        return cls(stages, name=config.get("name", "pipeline"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        """Reads a recipe from a ``.json`` or ``.yaml`` / ``.yml`` file."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path, got {type(path).__name__}.")
        path = os.fspath(path)
        if not path.endswith((".yaml", ".yml", ".json")):
            raise ValueError(f"path must end with .json, .yaml or .yml, got {path!r}.")
        if not os.path.isfile(path):
            raise ValueError(f"recipe file {path!r} does not exist (or is not a file).")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            if path.endswith(".json"):
                config = json.loads(text)
            else:
                config = yaml.safe_load(text)
        except ValueError as err:  # json.JSONDecodeError
            raise ValueError(f"recipe file {path!r} is not valid JSON: {err}.") from err
        except Exception as err:  # noqa: BLE001 - yaml.YAMLError and its kinds
            raise ValueError(f"recipe file {path!r} is not valid YAML: {err}.") from err
        return cls.from_config(config)

    # ---------------------------------------------------------------- run

    def _check_model(self, model):
        """Refuses, before any training, a model some stage cannot work on."""
        distills = any(isinstance(s, Distill) or isinstance(getattr(s, "finetune", None), Distill) for s in self.stages)
        if distills and ends_with_softmax(model):
            raise ValueError(
                f"model {model.name!r} ends with a softmax, but the Distill stage needs a logits output (soft "
                "targets are softened logits). Build the model without the final softmax (apply it at "
                "inference), or leave Distill out: the other stages detect the softmax and train with the "
                "loss for probabilities."
            )
        if not _is_graph_model(model):
            graph = [type(s).__name__ for s in self.stages if s.rebuilds_graph]
            if graph:
                raise ValueError(
                    f"model {model.name!r} is a subclassed model ({type(model).__name__}), but stage(s) "
                    f"{graph} rebuild the model layer by layer, which needs a Functional or Sequential model. "
                    "Rebuild it with the Functional API; a subclassed model can only be trained, distilled, "
                    "exported and evaluated."
                )


    def run(self, dataset: Dataset, model=None, teacher=None, output_dir: str | None = None,
            strategy=None, verbose: int | None = None, seed: int | None = None,
            backup_dir: str | os.PathLike | None = None) -> PipelineResult:
        """Runs every stage in order.

        Args:
            dataset: a :class:`kcompress.data.Dataset`.
            model: the starting tf_keras or Keras 3 model; it is copied, never changed.
            teacher: the teacher for Distill stages (default: the model after the last
                Train stage, or the starting model).
            output_dir: where flatbuffers are saved (nothing is written when None). Under
                ``MultiWorkerMirroredStrategy`` only the chief writes (``kcompress.models.is_chief``);
                the other workers train, export and evaluate the same model in memory.
            strategy: a ``tf.distribute`` strategy to train under, e.g.
                ``kcompress.models.get_strategy("multiworker")``; every worker runs the same
                pipeline with the same ``seed``.
            backup_dir: back up every training stage each epoch into ``backup_dir/stageNN_<kind>``
                (``kcompress.models.BackupAndResume``). A pipeline run again with the same
                arguments restores the stages that finished (no training) and resumes the one
                that was interrupted at its last finished epoch. Under multi-worker training it
                must be a folder every worker reads (the chief writes it).
            verbose: Keras verbosity for training (None: progress bars on a terminal).
            seed: if given, every stage starts from ``keras.utils.set_random_seed(seed + i)``, ``i``
                its index with a stage that distills (``finetune=Distill(...)``) before it counting
                twice (``Stage.steps``: it stood for two stages before fine-tuning was explicit),
                so a run (and a ``kcompress.compress`` recipe) repeats itself.

        Returns:
            A :class:`PipelineResult`.
        """
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
        seed = check_int("seed", seed, minimum=0, allow_none=True)
        if model is None:
            raise ValueError("model is required: pass the starting tf_keras model (e.g. kcompress.models.get(...)).")
        model = check_model(model)
        if teacher is not None:
            teacher = check_model(teacher, "teacher")
        if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be None or a tf.distribute.Strategy, got {type(strategy).__name__}.")
        if backup_dir is not None and (not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir)):
            raise TypeError(f"backup_dir must be None or a folder path, got {backup_dir!r}.")
        # Only the chief writes results; the other workers keep theirs in memory.
        output_dir = _check_output_dir(output_dir) if is_chief(strategy) else None
        self._check_model(model)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            start = _copy(model, self.stages)
        state = State(model=start, dataset=dataset, teacher=teacher if teacher is not None else model,
                      name=self.name, output_dir=output_dir, strategy=strategy, verbose=verbose,
                      backup_dir=None if backup_dir is None else os.fspath(backup_dir))
        step, n = 0, len(self.stages)
        for i, stage in enumerate(self.stages):
            label = type(stage).__name__ + (" + Distill" if stage.steps == 2 else "")
            logging.info("[%s] stage %d/%d: %s", self.name, i + 1, n, label)
            t0 = time.perf_counter()
            if seed is not None:
                keras.utils.set_random_seed(int(seed) + step)
            state.stage_index = step
            info = stage.run(state) or {}
            state.log.append({"stage": label, "seconds": round(time.perf_counter() - t0, 2), **info})
            step += stage.steps
        return PipelineResult(records=state.records, model=state.model, flatbuffers=state.flatbuffers, log=state.log)


def _refuse_implicit_finetuning(stages, version):
    """Raises when an old recipe relies on a distill stage taking over the fine-tuning before it.

    Old means: ``version`` absent or 1, and a stage config of a fine-tuning kind without a
    ``finetune`` key right before a ``{"stage": "distill"}`` config. (Stage objects, recipes of
    version 2 and stages that have ``finetune`` are explicit already.)
    """
    if version not in (None, 1):
        return
    pairs = []
    for i in range(len(stages) - 1):
        stage, nxt = stages[i], stages[i + 1]
        if not (isinstance(stage, dict) and isinstance(nxt, dict) and nxt.get("stage") == Distill.kind):
            continue
        cls = STAGES.get(stage.get("stage"))
        if cls is not None and cls.finetunes and "finetune" not in stage:
            pairs.append(i)
    if not pairs:
        return
    i = pairs[0]
    now = {**stages[i], "finetune": stages[i + 1]}
    more = f" (and the same at stages {[j for j in pairs[1:]]})" if len(pairs) > 1 else ""
    raise ValueError(
        f"recipe stage {i} ({stages[i]['stage']!r}) is followed by a 'distill' stage and has no 'finetune' key{more}: "
        f"in recipes written before fine-tuning was explicit (no 'version', or version 1) that distill stage "
        f"took over the stage's fine-tuning, which no longer happens implicitly. Write the distillation into "
        f"the stage and drop the distill stage after it:\n  {json.dumps(now)}\nand mark the recipe "
        f"\"version\": {RECIPE_VERSION}. (To fine-tune on the labels and then distill as a separate step, give the "
        f"stage \"finetune\": null instead.)"
    )
