"""``Pipeline``: run stages in order on a model and a dataset, recording every step."""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import logging

from kcompress._keras import check_model, keras, tf
from kcompress.data import Dataset
from kcompress.pipeline.stages import Distill, Stage, State, stage_from_config


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


# Stages that rebuild the layer graph (clone_model), which a subclassed model does not expose.
_GRAPH_STAGES = ("Prune", "PruneChannels", "LowRank", "Cluster", "QuantizeAware")
# Stages that only read the model.
_READ_ONLY_STAGES = ("Export", "Evaluate")


def _is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def _copy(model, stages):
    """The model the pipeline works on: a copy, so the caller's model is never changed."""
    if _is_graph_model(model):
        start = keras.models.clone_model(model)
        start.set_weights(model.get_weights())
        return start
    if all(type(stage).__name__ in _READ_ONLY_STAGES for stage in stages):
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
        import tempfile

        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".kcompress-write-test-"):
            pass
    except OSError as err:
        raise ValueError(
            f"output_dir {output_dir!r} cannot be written ({type(err).__name__}: {err.strerror or err}); pass a "
            "folder you can write to (checked before any stage trains)."
        ) from err
    return output_dir


class Pipeline:
    """An ordered list of stages, e.g. prune -> distill -> QAT -> int8.

    A :class:`Distill` stage right after a stage that fine-tunes (Prune,
    PruneChannels, QuantizeAware) does that stage's fine-tuning.

    Args:
        stages: :class:`Stage` objects (or their configs, ``{"stage": "prune", ...}``).
        name: used in records and file names.

    Example:
        >>> from kcompress.pipeline import *
        >>> p = Pipeline([Prune(0.8), Distill(temperature=4), QuantizeAware(), Export("int8"), Evaluate()],
        ...              name="prune_distill_qat")
        >>> result = p.run(ds, model=baseline, output_dir="runs/p")
        >>> result.records[0]["accuracy"], result.records[0]["size_bytes"]
    """

    def __init__(self, stages, name: str = "pipeline"):
        if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
            raise ValueError(f"name must be a non-empty string without spaces or slashes, got {name!r}.")
        if isinstance(stages, (Stage, dict, str, bytes)) or not hasattr(stages, "__iter__"):
            raise TypeError(f"stages must be a list of Stage objects or stage configs, got {type(stages).__name__}.")
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
        return {"name": self.name, "stages": [{"stage": s.kind, **s.get_config()} for s in self.stages]}

    @classmethod
    def from_config(cls, config: dict) -> Pipeline:
        if not isinstance(config, dict) or "stages" not in config:
            raise ValueError("a pipeline config must be a dict with 'stages' (and optionally 'name').")
        return cls(config["stages"], name=config.get("name", "pipeline"))

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
                import yaml

                config = yaml.safe_load(text)
        except ValueError as err:  # json.JSONDecodeError
            raise ValueError(f"recipe file {path!r} is not valid JSON: {err}.") from err
        except Exception as err:  # noqa: BLE001 - yaml.YAMLError and its kinds
            raise ValueError(f"recipe file {path!r} is not valid YAML: {err}.") from err
        return cls.from_config(config)

    # ---------------------------------------------------------------- run

    def _check_model(self, model):
        """Refuses, before any training, a model some stage cannot work on."""
        from kcompress.distillation.distiller import ends_with_softmax

        kinds = [type(stage).__name__ for stage in self.stages]
        if "Distill" in kinds and ends_with_softmax(model):
            raise ValueError(
                f"model {model.name!r} ends with a softmax, but the Distill stage needs a logits output (soft "
                "targets are softened logits). Build the model without the final softmax (apply it at "
                "inference), or leave Distill out: the other stages detect the softmax and train with the "
                "loss for probabilities."
            )
        if not _is_graph_model(model):
            graph = [k for k in kinds if k in _GRAPH_STAGES]
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
            seed: if given, every stage ``i`` starts from ``keras.utils.set_random_seed(seed + i)``,
                so a run (and a ``kcompress.compress`` recipe) repeats itself.

        Returns:
            A :class:`PipelineResult`.
        """
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}.")
        if model is None:
            raise ValueError("model is required: pass the starting tf_keras model (e.g. kcompress.models.get(...)).")
        model = check_model(model)
        if teacher is not None:
            teacher = check_model(teacher, "teacher")
        from kcompress.models.training import is_chief

        if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be None or a tf.distribute.Strategy, got {type(strategy).__name__}.")
        if backup_dir is not None and (not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir)):
            raise TypeError(f"backup_dir must be None or a folder path, got {backup_dir!r}.")
        # Only the chief writes results; the other workers keep theirs in memory.
        output_dir = _check_output_dir(output_dir) if is_chief(strategy) else None
        self._check_model(model)
        import contextlib

        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            start = _copy(model, self.stages)
        state = State(model=start, dataset=dataset, teacher=teacher if teacher is not None else model,
                      name=self.name, output_dir=output_dir, strategy=strategy, verbose=verbose,
                      backup_dir=None if backup_dir is None else os.fspath(backup_dir))
        i, n = 0, len(self.stages)
        while i < n:
            stage = self.stages[i]
            follower = self.stages[i + 1] if i + 1 < n else None
            finetuner = follower if stage.finetunes and isinstance(follower, Distill) else None
            label = type(stage).__name__ + (" + Distill" if finetuner else "")
            logging.info("[%s] stage %d/%d: %s", self.name, i + 1, n, label)
            t0 = time.perf_counter()
            if seed is not None:
                keras.utils.set_random_seed(int(seed) + i)
            state.stage_index = i
            info = stage.run(state, finetuner=finetuner) or {}
            state.log.append({"stage": label, "seconds": round(time.perf_counter() - t0, 2), **info})
            i += 2 if finetuner else 1
        return PipelineResult(records=state.records, model=state.model, flatbuffers=state.flatbuffers, log=state.log)
