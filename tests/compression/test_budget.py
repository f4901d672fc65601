"""Budgets: checked once, errors name the argument, the value and what is allowed."""

import pytest

import kcompress as kc


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_bytes": -5}, ValueError, "max_bytes must be an int >= 1 or None, got -5"),
    ({"max_bytes": 0}, ValueError, "max_bytes must be an int >= 1 or None, got 0"),
    ({"max_bytes": "16k"}, TypeError, "max_bytes must be an int >= 1 or None, got '16k'"),
    ({"max_bytes": 1.5e4}, TypeError, "max_bytes must be an int >= 1"),
    ({"max_bytes": True}, TypeError, "max_bytes must be an int >= 1"),
    ({"max_accuracy_drop": -0.1}, ValueError,
     r"max_accuracy_drop must be a finite number in \[0, 1\] or None, got -0.1"),
    ({"max_accuracy_drop": 2}, ValueError, r"max_accuracy_drop must be a finite number in \[0, 1\]"),
    ({"max_accuracy_drop": "0.2"}, TypeError, "max_accuracy_drop must be a finite number"),
    ({"min_accuracy": 0}, ValueError, r"min_accuracy must be a finite number in \(0, 1\]"),
    ({"min_accuracy": float("nan")}, ValueError, "min_accuracy must be a finite number"),
    ({"max_macs": -1}, ValueError, "max_macs must be an int >= 1"),
    ({"max_arena_bytes": 0}, ValueError, "max_arena_bytes must be an int >= 1"),
    ({}, ValueError, "give at least one budget"),
])
def test_bad_budgets(kwargs, error, message):
    with pytest.raises(error, match=message):
        kc.Budget(**kwargs)


def test_floor_and_size_checks():
    b = kc.Budget(max_bytes=1000, max_accuracy_drop=0.01, min_accuracy=0.95)
    assert b.floor(0.99) == pytest.approx(0.98)
    assert b.floor(0.955) == pytest.approx(0.95)  # the stricter of the two
    assert b.size_ok({"size_bytes": 1000}) and not b.size_ok({"size_bytes": 1001})
    assert b.size_excess({"size_bytes": 2000}) == 2.0
    assert kc.Budget(max_macs=10).floor(0.9) is None
    assert "max_bytes=1,000" in b.describe() and "min_accuracy=0.95" in b.describe()


def test_compress_checks_budget_and_arguments_before_any_work(trained_lenet, mnist_small, tmp_path):
    with pytest.raises(ValueError, match="give at least one budget"):
        kc.compress(trained_lenet, mnist_small)
    with pytest.raises(ValueError, match="max_bytes must be an int >= 1 or None, got -1"):
        kc.compress(trained_lenet, mnist_small, max_bytes=-1)
    with pytest.raises(TypeError, match="dataset must be a kcompress.data.Dataset"):
        kc.compress(trained_lenet, (mnist_small.x_train, mnist_small.y_train), max_bytes=10_000)
    with pytest.raises(ValueError, match="recovery_epochs must be an int >= 1, got 0"):
        kc.compress(trained_lenet, mnist_small, max_bytes=10_000, recovery_epochs=0)
    with pytest.raises(ValueError, match=r"step_fraction must be a finite number in \(0, 0.9\], got 1.5"):
        kc.compress(trained_lenet, mnist_small, max_bytes=10_000, step_fraction=1.5)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="output_dir .* is not a writable folder"):
        kc.compress(trained_lenet, mnist_small, max_bytes=10_000, output_dir=str(blocker / "sub"))


@pytest.mark.slow
def test_impossible_budget_ends_quickly_with_the_smallest_size(trained_lenet, mnist_small):
    import time

    t0 = time.perf_counter()
    with pytest.raises(kc.BudgetError, match=r"max_bytes=1,000.*cannot be met.*cutting every channel group to 2 "
                                             r"channels gives an int8 flatbuffer with size_bytes=\d") as info:
        kc.compress(trained_lenet, mnist_small, max_bytes=1000)
    assert time.perf_counter() - t0 < 60  # no training happened
    assert info.value.best["size_bytes"] > 1000
    assert 0.0 <= info.value.best["val_accuracy"] <= 1.0
