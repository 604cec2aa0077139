"""Gather and scatter (DESIGN §6): banked mode, and the crossbar arbiter by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.gather import crossbar_schedule, gather_banked, gather_crossbar
from bbsparse.golden.scatter import scatter_banked, scatter_crossbar

LANES = 4
MEMORY = np.arange(32) * 10  # index i holds 10 * i: data shows which index was read


def test_gather_banked_reads_own_bank():
    banks = np.arange(12).reshape(3, 4)  # bank l holds 4*l .. 4*l + 3
    data = gather_banked(banks, np.array([[0, 1, 2], [3, 3, 3]]))
    assert data.tolist() == [[0, 5, 10], [3, 7, 11]]
    with pytest.raises(ValueError, match=r"addrs\[1, 2\] = 4 is outside the memory \(0..3\)"):
        gather_banked(banks, np.array([[0, 1, 2], [3, 3, 4]]))


def test_crossbar_permutation_has_no_stalls():
    # Each row hits every bank once, in any order.
    indices = np.array([[0, 1, 2, 3], [7, 6, 5, 4], [9, 8, 11, 10]])
    data, cycles, stalls = gather_crossbar(MEMORY, indices, LANES)
    assert data.tolist() == (indices * 10).tolist()
    assert (cycles, stalls) == (3, 0)


def test_crossbar_all_lanes_on_one_bank():
    # Every request of a row falls on bank 0: the row takes `lanes` cycles.
    indices = np.array([[0, 4, 8, 12], [16, 20, 24, 28]])
    data, cycles, stalls = gather_crossbar(MEMORY, indices, LANES)
    assert data.tolist() == (indices * 10).tolist()  # request order, not service order
    assert (cycles, stalls) == (8, 6)
    assert crossbar_schedule(indices, LANES).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_crossbar_all_on_one_address():
    # No read combining: four reads of one address are four reads of bank 1.
    data, cycles, stalls = gather_crossbar(MEMORY, np.full((1, LANES), 5), LANES)
    assert data.tolist() == [[50] * 4]
    assert (cycles, stalls) == (4, 3)


def test_crossbar_partial_collision_hand_example():
    # Row 0: lanes 0 and 2 on bank 1 -> 2 cycles; lane 2 waits one cycle.
    # Row 1: lanes 1, 2, 3 on bank 2 -> 3 cycles, starting after row 0 (cycle 2).
    indices = np.array([[1, 2, 5, 3], [0, 2, 6, 10]])
    assert crossbar_schedule(indices, LANES).tolist() == [[0, 0, 1, 0], [2, 2, 3, 4]]
    _, cycles, stalls = gather_crossbar(MEMORY, indices, LANES)
    assert (cycles, stalls) == (5, 3)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6), st.integers(0, 6), st.integers(0, 2**32 - 1))
def test_schedule_invariants(lanes, rows, seed):
    indices = np.random.default_rng(seed).integers(0, 3 * lanes, (rows, lanes))
    schedule = crossbar_schedule(indices, lanes)
    banks = indices % lanes
    # No bank serves two requests in one cycle.
    pairs = {(int(c), int(b)) for c, b in zip(schedule.ravel(), banks.ravel(), strict=True)}
    assert len(pairs) == indices.size
    # Rows are served in order and each takes as many cycles as its busiest bank.
    for r in range(1, rows):
        assert schedule[r].min() == schedule[r - 1].max() + 1
    busiest = [np.bincount(row, minlength=lanes).max() for row in banks]
    data, cycles, stalls = gather_crossbar(np.arange(3 * lanes), indices, lanes)
    assert cycles == sum(busiest) and stalls == cycles - rows
    assert (data == indices).all()


def test_crossbar_refuses_bad_requests():
    with pytest.raises(ValueError, match=r"indices\[0, 3\] = 32 is outside the memory \(0..31\)"):
        gather_crossbar(MEMORY, np.array([[0, 1, 2, 32]]), LANES)
    with pytest.raises(
        ValueError, match=r"indices must be \(rows, lanes = 4\), not shape \(1, 3\)"
    ):
        gather_crossbar(MEMORY, np.array([[0, 1, 2]]), LANES)


# -- scatter --------------------------------------------------------------------------------


def test_scatter_banked_write_and_accumulate():
    banks = np.zeros((2, 3), dtype=np.int64)
    addrs = np.array([[0, 2], [0, 2], [1, 2]])
    values = np.array([[1, 10], [2, 20], [3, 30]])
    # Back-to-back writes to one address: the later one wins.
    assert scatter_banked(banks, addrs, values, accumulate=False).tolist() == [
        [2, 3, 0],
        [0, 0, 30],
    ]
    # Back-to-back accumulations to one address: none is lost.
    assert scatter_banked(banks, addrs, values, accumulate=True).tolist() == [
        [3, 3, 0],
        [0, 0, 60],
    ]
    assert banks.tolist() == [[0, 0, 0], [0, 0, 0]]  # the input is not modified


def test_scatter_crossbar_all_on_one_address():
    memory = np.full(8, 100)
    indices = np.array([[5, 5, 5, 5], [5, 2, 3, 4]])
    values = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    summed, cycles, stalls = scatter_crossbar(memory, indices, values, LANES, accumulate=True)
    assert summed.tolist() == [100, 100, 106, 107, 108, 115, 100, 100]
    assert (cycles, stalls) == (5, 3)  # row 0: 4 cycles on bank 1; row 1: one cycle
    written, _, _ = scatter_crossbar(memory, indices, values, LANES, accumulate=False)
    assert written.tolist() == [100, 100, 6, 7, 8, 5, 100, 100]
    assert memory.tolist() == [100] * 8


def test_scatter_crossbar_permutation_has_no_stalls():
    indices = np.array([[3, 2, 1, 0], [4, 5, 6, 7]])
    memory, cycles, stalls = scatter_crossbar(np.zeros(8, int), indices, indices * 2, LANES, False)
    assert memory.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert (cycles, stalls) == (2, 0)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.booleans(), st.integers(0, 2**32 - 1))
def test_scatter_crossbar_matches_sequential_model(lanes, rows, accumulate, seed):
    rng = np.random.default_rng(seed)
    size = 2 * lanes
    indices = rng.integers(0, size, (rows, lanes))
    values = rng.integers(-50, 50, (rows, lanes))
    start = rng.integers(-50, 50, size)
    expected = [int(v) for v in start]
    for r in range(rows):  # request order: row by row, lane by lane
        for lane in range(lanes):
            i = indices[r, lane]
            expected[i] = expected[i] + int(values[r, lane]) if accumulate else int(values[r, lane])
    memory, cycles, stalls = scatter_crossbar(start, indices, values, lanes, accumulate)
    assert memory.tolist() == expected
    assert cycles == gather_crossbar(start, indices, lanes)[1]
    assert stalls == cycles - rows


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 6), st.booleans(), st.integers())
def test_scatter_banked_matches_sequential_model(lanes, depth, cycles, accumulate, seed):
    rng = np.random.default_rng(seed % 2**32)
    banks = rng.integers(-50, 50, (lanes, depth))
    addrs = rng.integers(0, depth, (cycles, lanes))
    values = rng.integers(-50, 50, (cycles, lanes))
    expected = banks.tolist()
    for c in range(cycles):
        for lane in range(lanes):
            a, v = addrs[c, lane], int(values[c, lane])
            expected[lane][a] = expected[lane][a] + v if accumulate else v
    assert scatter_banked(banks, addrs, values, accumulate).tolist() == expected


def test_scatter_refuses_mismatched_values():
    with pytest.raises(ValueError, match=r"values must have the shape of the requests \(1, 4\)"):
        scatter_crossbar(np.zeros(8), np.zeros((1, 4), int), np.zeros((1, 3)), LANES, True)
