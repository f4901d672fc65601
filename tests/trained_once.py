"""A model trained once per test run, not once per pytest-xdist worker (used by the conftests)."""

from __future__ import annotations

import os

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: each worker trains its own
    fcntl = None


def trained_once_per_run(tmp_path_factory, name, build, train):
    """``build()`` and ``train(model)`` once per test run, not once per pytest-xdist worker.

    The first worker to get here trains and writes the weights next to every worker's temp
    folder; the others build the same model and load those weights (the same numbers, one
    training instead of one per worker). Without xdist it simply trains.
    """
    model = build()
    if not os.environ.get("PYTEST_XDIST_WORKER") or fcntl is None:
        train(model)
        return model
    shared = tmp_path_factory.getbasetemp().parent / f"{name}.npz"
    with open(shared.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if shared.exists():
            with np.load(shared) as saved:
                model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
        else:
            train(model)
            partial = shared.with_suffix(".partial.npz")
            np.savez(partial, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
            os.replace(partial, shared)
    return model
