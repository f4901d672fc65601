"""Factorization: low-rank (truncated SVD) splits of Dense and Conv2D layers.

Example:
    >>> import kcompress as kc
    >>> r = kc.factorization.low_rank(model, param_ratio=0.5, layers=["fc1", "fc2"])
    >>> r.model, r.ranks, r.params_after / r.params_before
"""

from kcompress.factorization.lowrank import LowRankResult, low_rank

__all__ = ["LowRankResult", "low_rank"]
