"""The guided choice of which trajectory candidate ``compress`` finishes next (no training)."""

from kcompress.compression.search import _next_finish

# Explored validation accuracies of a real LeNet-5/MNIST trajectory (index 0: the original, int8).
ACC = [0.9902, 0.9907, 0.9895, 0.9888, 0.9892, 0.9893, 0.9898, 0.9852, 0.9853, 0.9807, 0.9830, 0.9832, 0.9818,
       0.9815]
FLOOR = 0.98833
# What finishing those candidates gave (validation accuracy of the chosen export).
FINISHED = {6: 0.9898, 7: 0.9892, 8: 0.9892, 9: 0.9868, 11: 0.9867}


def replay(accuracies, outcome, floor, prior_gain=0.004, tolerance=0.0015, lo=0, hi=None):
    hi = len(accuracies) - 1 if hi is None else hi
    done = {}
    while True:
        j = _next_finish(accuracies, done, lo, hi, floor, prior_gain, tolerance)
        if j is None:
            return done
        assert j not in done and lo <= j <= hi
        done[j] = (outcome[j], outcome[j] >= floor)


def test_the_smallest_passing_candidate_is_found_in_two_finishes():
    done = replay(ACC, FINISHED, FLOOR)
    assert list(done) == [11, 8]  # 11 is predicted within tolerance and misses; 8 passes; nothing smaller is likely
    assert max(j for j, (_, ok) in done.items() if ok) == 8


def test_a_larger_observed_gain_moves_the_search_to_smaller_candidates():
    outcome = {j: a + 0.008 for j, a in enumerate(ACC)}  # finishing adds 0.8 points everywhere
    done = replay(ACC, outcome, FLOOR)
    passing = [j for j, (_, ok) in done.items() if ok]
    assert max(passing) == 13 and len(done) <= 2


def test_without_any_likely_candidate_the_most_accurate_is_tried_and_the_search_ends():
    outcome = {j: a - 0.01 for j, a in enumerate(ACC)}  # finishing hurts: nothing passes
    done = replay(ACC, outcome, FLOOR, lo=1)
    # The prior picks 11; once finishing is seen to lose accuracy, the most accurate candidate is the last
    # hope, and its failure dominates every smaller, less accurate one: the search ends.
    assert list(done) == [11, 1]
    assert not any(ok for _, ok in done.values())


def test_only_candidates_between_lo_and_hi_are_finished():
    done = replay(ACC, {j: 0.999 for j in range(len(ACC))}, FLOOR, lo=3, hi=9)
    assert set(done) <= set(range(3, 10)) and 9 in done
