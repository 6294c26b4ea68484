"""The validation and training-curve subsets (suite.data.holdout): fixed by their seed, each
class's share, disjoint from what trains."""
import numpy as np
import pytest

from suite.data.holdout import stratified_sample, stratified_split


def test_a_split_holds_out_each_classs_share_reproducibly_and_disjointly():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    np.random.default_rng(1).shuffle(labels)
    kept, held = stratified_split(labels, 10, seed=3)
    assert np.bincount(labels[held], minlength=4).tolist() == [4, 3, 2, 1]
    assert len(kept) + len(held) == 100 and not set(kept) & set(held)
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)  # the dataset's order
    again = stratified_split(labels, 10, seed=3)
    np.testing.assert_array_equal(again[1], held)
    assert not np.array_equal(stratified_split(labels, 10, seed=4)[1], held)


def test_every_class_is_held_out_where_the_count_allows():
    labels = np.repeat(np.arange(5), [96, 1, 1, 1, 1])
    _, held = stratified_split(labels, 5, seed=0)
    assert sorted(labels[held].tolist()) == [0, 1, 2, 3, 4]


def test_a_class_sorted_set_samples_every_class_where_its_first_n_is_one():
    labels = np.repeat(np.arange(10), 200)  # as a folder lists it: class by class
    sample = stratified_sample(labels, 50, seed=0)
    assert np.bincount(labels[sample]).tolist() == [5] * 10
    assert set(labels[:50].tolist()) == {0}  # what "the first 50" measured
    assert len(stratified_sample(labels, 5000, seed=0)) == 2000  # all, when there are no more


@pytest.mark.parametrize("count", [0, 100])
def test_a_split_that_leaves_nothing_on_one_side_is_refused(count):
    with pytest.raises(ValueError, match=f"cannot hold out {count} of 100 examples"):
        stratified_split(np.zeros(100, int), count, seed=0)
