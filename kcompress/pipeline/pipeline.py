"""``Pipeline``: run stages in order on a model and a dataset, recording every step."""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import logging

from kcompress._keras import check_model, keras
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
        if isinstance(stages, (Stage, dict)) or not hasattr(stages, "__iter__"):
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
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            import yaml

            config = yaml.safe_load(text)
        elif path.endswith(".json"):
            config = json.loads(text)
        else:
            raise ValueError(f"path must end with .json, .yaml or .yml, got {path!r}.")
        return cls.from_config(config)

    # ---------------------------------------------------------------- run

    def run(self, dataset: Dataset, model=None, teacher=None, output_dir: str | None = None,
            strategy=None, verbose: int | None = None, seed: int | None = None) -> PipelineResult:
        """Runs every stage in order.

        Args:
            dataset: a :class:`kcompress.data.Dataset`.
            model: the starting tf_keras or Keras 3 model; it is copied, never changed.
            teacher: the teacher for Distill stages (default: the model after the last
                Train stage, or the starting model).
            output_dir: where flatbuffers are saved (nothing is written when None).
            strategy: a ``tf.distribute`` strategy to train under.
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
        import contextlib

        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            start = keras.models.clone_model(model)
            start.set_weights(model.get_weights())
        state = State(model=start, dataset=dataset, teacher=teacher if teacher is not None else model,
                      name=self.name, output_dir=output_dir, strategy=strategy, verbose=verbose)
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
            info = stage.run(state, finetuner=finetuner) or {}
            state.log.append({"stage": label, "seconds": round(time.perf_counter() - t0, 2), **info})
            i += 2 if finetuner else 1
        return PipelineResult(records=state.records, model=state.model, flatbuffers=state.flatbuffers, log=state.log)
