"""Pruning: schedules, Keras wrappers and callbacks, sparsity reports, structured and channel pruning.

Example:
    >>> import kcompress as kc
    >>> pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.8))
    >>> pruned.compile(...); pruned.fit(x, y, callbacks=kc.pruning.callbacks())
    >>> small = kc.pruning.strip(pruned); kc.pruning.sparsity(small).prunable
"""

from kcompress.pruning.callbacks import SparsityMonitor, callbacks
from kcompress.pruning.channels import ChannelGroup, channel_groups, prune_channels
from kcompress.pruning.prune import is_pruned, prunable_kernels, prune, strip
from kcompress.pruning.report import PRUNED_FRACTION, LayerSparsity, SparsityReport, sparsity
from kcompress.pruning.schedules import ConstantSparsity, PolynomialDecay, steps_per_epoch
from kcompress.pruning.sensitivity import SensitivityReport, sensitivity, validation_split
from kcompress.pruning.wrapper import PruneLowMagnitude

__all__ = [
    "PRUNED_FRACTION",
    "ChannelGroup",
    "ConstantSparsity",
    "LayerSparsity",
    "PolynomialDecay",
    "PruneLowMagnitude",
    "SensitivityReport",
    "SparsityMonitor",
    "SparsityReport",
    "callbacks",
    "channel_groups",
    "is_pruned",
    "prunable_kernels",
    "prune",
    "prune_channels",
    "sensitivity",
    "sparsity",
    "steps_per_epoch",
    "strip",
    "validation_split",
]
