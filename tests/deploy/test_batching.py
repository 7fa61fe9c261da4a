"""Cutting sorted inputs into batches: every input once, no batch over its size, and the cheapest cuts."""

from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from sora.deploy.batching import call_cost_positions, length_batches
from tests.helpers import fuzz


def cost(lengths, batches, call_cost):
    return sum(call_cost + len(b) * max(lengths[i] for i in b) for b in batches)


def cheapest(lengths, max_batch, call_cost):
    """Every way to cut the sorted lengths into consecutive runs, by recursion: the reference answer."""
    ordered = sorted(lengths)

    @cache
    def best(j):
        if j == 0:
            return 0
        return min(best(j - s) + call_cost + s * ordered[j - 1] for s in range(1, min(max_batch, j) + 1))

    return best(len(ordered))


@fuzz(60)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=9),
    max_batch=st.integers(1, 5),
    call_cost=st.sampled_from([0.5, 8, 64, 1e9]),
)
def test_batches_cover_every_input_once_and_cost_the_least(lengths, max_batch, call_cost):
    batches = length_batches(lengths, max_batch, call_cost)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= max_batch for b in batches)
    assert cost(lengths, batches, call_cost) == cheapest(lengths, max_batch, call_cost)


def test_a_costly_call_keeps_full_batches_and_a_cheap_one_splits_by_length():
    lengths = [5] * 10 + [60] * 10
    assert [len(b) for b in length_batches(lengths, 32, 1e9)] == [20]
    split = length_batches(lengths, 32, 8)
    assert sorted(sorted(lengths[i] for i in b) for b in split) == [[5] * 10, [60] * 10]


def test_the_call_cost_is_read_from_two_timings():
    # a call costs 2 ms plus 0.01 ms a position: 200 positions
    assert round(call_cost_positions(lambda b, t: 0.002 + 1e-5 * b * t, length=32, batch=32)) == 200
