"""Compress to a budget: the smallest runnable int8 flatbuffer that keeps the accuracy.

Example:
    >>> import kcompress as kc
    >>> res = kc.compress(model, ds, max_bytes=16384, max_accuracy_drop=0.002, output_dir="runs/c")
    >>> res.flatbuffer, res.winner["test_accuracy"], res.recipe
"""

from kcompress.compression.budget import Budget, BudgetError
from kcompress.compression.search import CompressionResult, compress, estimated_int8_bytes

__all__ = ["Budget", "BudgetError", "CompressionResult", "compress", "estimated_int8_bytes"]
