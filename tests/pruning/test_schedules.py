import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import kcompress as kc
from kcompress.pruning import ConstantSparsity, PolynomialDecay


def events(schedule, last):
    return [(t, round(float(schedule(t)[1]), 6)) for t in range(last + 1) if bool(schedule(t)[0])]


class TestConstantSparsity:
    def test_prunes_at_the_first_step_then_every_frequency(self):
        assert events(ConstantSparsity(0.8), 250) == [(1, 0.8), (101, 0.8), (201, 0.8)]
        assert events(ConstantSparsity(0.5, begin_step=10, end_step=40), 60) == [(10, 0.5), (40, 0.5)]

    @pytest.mark.slow
    def test_a_fine_tune_shorter_than_100_steps_prunes(self, finetune, trained_lenet, mnist_small):
        # 256 samples / batch 64 = 4 steps: TFMOT's ConstantSparsity never fires, ours does. Eagerly:
        # four steps without tracing (the graph-mode fits of the other pruning tests prune the same).
        small = mnist_small.take(train=256)
        ours = kc.pruning.prune(trained_lenet, ConstantSparsity(0.8, begin_step=0))
        finetune(ours, small, eagerly=True)
        assert kc.pruning.sparsity(kc.pruning.strip(ours)).prunable == pytest.approx(0.8, abs=0.01)
        theirs = kc.pruning.prune(trained_lenet, tfmot.sparsity.keras.ConstantSparsity(0.8, begin_step=0))
        finetune(theirs, small, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], eagerly=True)
        assert kc.pruning.sparsity(kc.pruning.strip(theirs)).prunable < 0.01


class TestPolynomialDecay:
    def test_reaches_final_sparsity_at_end_step_whatever_the_frequency(self):
        s = PolynomialDecay(0.5, 0.8, begin_step=0, end_step=50, frequency=7)
        ev = events(s, 80)
        assert ev[0] == (1, pytest.approx(0.5 + 0.3 * (1 - (1 - 1 / 50) ** 3), abs=1e-5))
        assert ev[-1] == (50, 0.8)
        values = [v for _, v in ev]
        assert values == sorted(values)
        # TFMOT's own schedule with the same arguments never applies 0.8.
        theirs = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=50, frequency=7)
        assert max(v for _, v in events(theirs, 80)) < 0.8

    def test_default_frequency_fits_the_span(self):
        assert PolynomialDecay(0.5, 0.8, 0, 50).frequency == 3
        assert PolynomialDecay(0.5, 0.8, 0, 5).frequency == 1

    def test_from_epochs(self):
        spe = kc.pruning.steps_per_epoch(60000, 256, validation_split=0.1)
        assert spe == 211
        s = PolynomialDecay.from_epochs(0.5, 0.8, begin_epoch=1, end_epoch=4, steps_per_epoch=spe)
        assert (s.begin_step, s.end_step) == (211, 844)
        assert float(s(844)[1]) == pytest.approx(0.8) and bool(s(844)[0])


@pytest.mark.parametrize("schedule", [ConstantSparsity(0.7, begin_step=3, end_step=90, frequency=9),
                                      PolynomialDecay(0.2, 0.9, 5, 500, power=2, frequency=11)])
def test_config_round_trip(schedule):
    restored = type(schedule).from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    serialized = kc.keras.utils.serialize_keras_object(schedule)
    assert kc.keras.utils.get_registered_name(type(schedule)) == f"kcompress>{type(schedule).__name__}"
    again = kc.keras.utils.deserialize_keras_object(serialized)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    for t in (0, 5, 50, 90, 500):
        assert bool(again(t)[0]) == bool(schedule(t)[0])
        assert np.isclose(float(again(t)[1]), float(schedule(t)[1]))


@pytest.mark.parametrize("make, match", [
    (lambda: ConstantSparsity(1.0), r"target_sparsity must be a finite number in \[0, 1\), got 1.0"),
    (lambda: ConstantSparsity(-0.1), "target_sparsity must be a finite number in"),
    (lambda: ConstantSparsity(0.5, begin_step=10, end_step=10), r"end_step must be -1 or an int > begin_step \(10\), got 10"),
    (lambda: ConstantSparsity(0.5, frequency=0), "frequency must be an int >= 1, got 0"),
    (lambda: PolynomialDecay(0.5, 1.2, 0, 10), "final_sparsity must be a finite number in"),
    (lambda: PolynomialDecay(0.5, 0.8, 10, 5), r"end_step must be an int > begin_step \(10\), got 5"),
    (lambda: PolynomialDecay(0.5, 0.8, -1, 5), "begin_step must be an int >= 0, got -1"),
    (lambda: PolynomialDecay(0.5, 0.8, 0, 5, power=0), "power must be a finite number > 0, got 0"),
    (lambda: PolynomialDecay.from_epochs(0.5, 0.8, 2, 2, 10), r"end_epoch must be an int > begin_epoch \(2\), got 2"),
    (lambda: kc.pruning.steps_per_epoch(100, 0), "batch_size must be an int >= 1, got 0"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
