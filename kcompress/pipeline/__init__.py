"""Pipelines: compose Train, Prune, PruneChannels, LowRank, Cluster, Distill, QuantizeAware, Export, Evaluate.

A stage that fine-tunes distills when its ``finetune`` is a Distill; a Distill in the
list is a distillation step of its own.

Example:
    >>> from kcompress.pipeline import Pipeline, Prune, Distill, QuantizeAware, Export, Evaluate
    >>> result = Pipeline([Prune(0.8, finetune=Distill()), QuantizeAware(), Export("int8"), Evaluate()],
    ...                   name="prune_distill_qat").run(ds, model=baseline)
"""

from kcompress.pipeline.pipeline import Pipeline, PipelineResult
from kcompress.pipeline.stages import (
    STAGES,
    Cluster,
    Distill,
    Evaluate,
    Export,
    LowRank,
    Prune,
    PruneChannels,
    QuantizeAware,
    Stage,
    State,
    Train,
    stage_from_config,
)

__all__ = [
    "STAGES", "Cluster", "Distill", "Evaluate", "Export", "LowRank", "Pipeline", "PipelineResult", "Prune", "PruneChannels",
    "QuantizeAware", "Stage", "State", "Train", "stage_from_config",
]
