"""Pruning: BBS keeps exactly nnz_per_bank slots per bank, ties go to the lower index."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.prune import (
    PatternViolation,
    bbs_mask,
    check_bbs,
    prune,
    prune_bbs,
    prune_block,
    prune_nm,
    prune_unstructured,
)


def ranked(entries):
    """(magnitude, position) pairs sorted largest first, lower position first on ties."""
    return sorted(entries, key=lambda item: (-item[0], item[1]))


def naive_bbs(W, bank_size, nnz):
    out = np.zeros_like(W)
    for r in range(W.shape[0]):
        for start in range(0, W.shape[1], bank_size):
            bank = [(abs(int(W[r, c])), c) for c in range(start, start + bank_size)]
            for _, c in ranked(bank)[:nnz]:
                out[r, c] = W[r, c]
    return out


@st.composite
def bbs_cases(draw):
    bank_size = draw(st.integers(1, 8))
    nnz = draw(st.integers(1, bank_size))
    shape = (draw(st.integers(1, 6)), bank_size * draw(st.integers(1, 6)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # A small value range makes ties common; -128 checks |int8| does not overflow.
    low, high = draw(st.sampled_from([(-3, 3), (-128, 127)]))
    W = rng.integers(low, high, shape, endpoint=True).astype(np.int8)
    return W, bank_size, nnz


@settings(max_examples=100, deadline=None)
@given(bbs_cases())
def test_bbs_keeps_exactly_nnz_slots_per_bank(case):
    W, bank_size, nnz = case
    rows, cols = W.shape
    mask = bbs_mask(W, bank_size, nnz)
    assert (mask.reshape(rows, -1, bank_size).sum(axis=-1) == nnz).all()
    pruned = prune_bbs(W, bank_size, nnz)
    assert pruned.dtype == W.dtype
    assert (pruned == np.where(mask, W, 0)).all()
    counts = np.count_nonzero(pruned.reshape(rows, -1, bank_size), axis=-1)
    assert (counts <= nnz).all()
    assert check_bbs(pruned, bank_size, nnz) is None


@settings(max_examples=100, deadline=None)
@given(bbs_cases())
def test_bbs_keeps_the_largest_with_ties_to_lower_column(case):
    W, bank_size, nnz = case
    magnitude = np.abs(W.astype(np.int64)).reshape(W.shape[0], -1, bank_size)
    mask = bbs_mask(W, bank_size, nnz).reshape(magnitude.shape)
    for r, b in np.ndindex(magnitude.shape[:2]):
        kept = [(magnitude[r, b, k], k) for k in range(bank_size) if mask[r, b, k]]
        dropped = [(magnitude[r, b, k], k) for k in range(bank_size) if not mask[r, b, k]]
        for kept_mag, kept_col in kept:
            for dropped_mag, dropped_col in dropped:
                assert kept_mag >= dropped_mag
                if kept_mag == dropped_mag:
                    assert kept_col < dropped_col
    assert (prune_bbs(W, bank_size, nnz) == naive_bbs(W, bank_size, nnz)).all()


def test_equal_magnitudes_keep_first_columns():
    W = np.array([[5, -5, 5, -5, 5, -5, 5, -5]], dtype=np.int16)
    assert prune_bbs(W, 4, 2).tolist() == [[5, -5, 0, 0, 5, -5, 0, 0]]
    assert prune_bbs(np.ones((2, 6)), 3, 1).tolist() == [[1, 0, 0, 1, 0, 0]] * 2


def test_int8_minimum_is_the_largest_magnitude():
    W = np.array([[127, -128, 0, 1]], dtype=np.int8)
    assert prune_bbs(W, 4, 1).tolist() == [[0, -128, 0, 0]]
    assert prune_bbs(np.array([[2**63 - 1, -(2**63)]], dtype=np.int64), 2, 1).tolist() == [
        [0, -(2**63)]
    ]


def test_bbs_on_floats_and_unsigned():
    W = np.array([[0.5, -2.0, 1.0, 0.25]], dtype=np.float32)
    result = prune_bbs(W, 2, 1)
    assert result.dtype == np.float32 and result.tolist() == [[0.0, -2.0, 1.0, 0.0]]
    assert prune_bbs(np.array([[1, 200, 3, 3]], dtype=np.uint8), 2, 1).tolist() == [[0, 200, 3, 0]]


def test_dense_and_2_4():
    rng = np.random.default_rng(7)
    W = rng.integers(-100, 100, (3, 8))
    assert (prune_bbs(W, 4, 4) == W).all()
    assert (prune_nm(W, 2, 4) == prune_bbs(W, 4, 2)).all()
    assert prune_nm(np.array([[1, -4, 3, 2, 9, 0, 0, 8]]), 2, 4).tolist() == [
        [0, -4, 3, 0, 9, 0, 0, 8]
    ]


@pytest.mark.parametrize(
    ("shape", "bank_size", "nnz", "message"),
    [
        ((2, 10), 4, 1, r"^cols must be a multiple of bank_size \(4\), not 10$"),
        ((2, 8), 4, 5, r"^nnz_per_bank must not exceed bank_size \(4\), not 5$"),
        ((2, 8), 4, 0, r"^nnz_per_bank must be a positive integer, not 0$"),
        ((2, 8), 0, 1, r"^bank_size must be a positive integer, not 0$"),
        ((8,), 4, 1, r"^the weights must be a 2-D matrix \(rows, cols\), not shape \(8,\)$"),
    ],
)
def test_bbs_refuses_bad_arguments(shape, bank_size, nnz, message):
    with pytest.raises(ValueError, match=message):
        prune_bbs(np.ones(shape, dtype=np.int8), bank_size, nnz)


def test_nan_and_strings_are_refused():
    with pytest.raises(ValueError, match=r"NaN at \(0, 1\)"):
        prune_bbs(np.array([[1.0, np.nan]]), 2, 1)
    with pytest.raises(ValueError, match="integers or floats, not <U1"):
        prune_bbs(np.array([["a", "b"]]), 2, 1)


# -- unstructured ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 2**32 - 1), st.data())
def test_unstructured_matches_global_ranking(rows, cols, seed, data):
    W = np.random.default_rng(seed).integers(-3, 4, (rows, cols))
    nnz = data.draw(st.integers(0, W.size))
    result = prune_unstructured(W, nnz)
    order = ranked([(abs(int(v)), i) for i, v in enumerate(W.ravel())])
    expected = np.zeros(W.size, dtype=W.dtype)
    for _, i in order[:nnz]:
        expected[i] = W.ravel()[i]
    assert result.ravel().tolist() == expected.tolist()


def test_unstructured_keeps_exactly_nnz():
    W = np.array([[3, -3, 1], [3, 2, -3]])
    # Four entries of magnitude 3 tie; the first two in row-major order win.
    assert prune_unstructured(W, 2).tolist() == [[3, -3, 0], [0, 0, 0]]
    assert np.count_nonzero(prune_unstructured(W, 5)) == 5
    with pytest.raises(
        ValueError, match=r"^nnz must be an integer from 0 to 6 \(the matrix size\)"
    ):
        prune_unstructured(W, 7)


# -- block ----------------------------------------------------------------------------------


def naive_block(W, block, keep):
    rows, cols = W.shape
    tiles = []
    for br in range(0, rows, block):
        for bc in range(0, cols, block):
            norm = sum(abs(int(v)) for v in W[br : br + block, bc : bc + block].ravel())
            tiles.append((norm, len(tiles), br, bc))
    out = np.zeros_like(W)
    for _, _, br, bc in sorted(tiles, key=lambda t: (-t[0], t[1]))[:keep]:
        out[br : br + block, bc : bc + block] = W[br : br + block, bc : bc + block]
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(0, 2**32 - 1), st.data()
)
def test_block_matches_naive(rows, cols, block, seed, data):
    W = np.random.default_rng(seed).integers(-2, 3, (rows, cols)).astype(np.int8)
    tiles = -(-rows // block) * -(-cols // block)
    keep = data.draw(st.integers(0, tiles))
    result = prune_block(W, block, keep)
    assert result.dtype == np.int8
    assert (result == naive_block(W, block, keep)).all()


def test_block_hand_example():
    W = np.array(
        [
            [1, 1, 9, 0],
            [1, 1, 0, 0],
            [0, 2, 1, 1],
            [2, 0, 1, 1],
        ]
    )
    # Norms: 4, 9, 4, 4 -> the 9 first, then the first 4 (top-left) on the tie.
    assert prune_block(W, 2, 2).tolist() == [[1, 1, 9, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"^keep must be an integer from 0 to 4"):
        prune_block(W, 2, 5)


def test_block_int64_norms_do_not_overflow():
    W = np.array([[-(2**63), -(2**63), 1, 1]], dtype=np.int64)
    assert prune_block(W, 2, 1).tolist() == [[-(2**63), -(2**63), 0, 0]]


# -- dispatcher -----------------------------------------------------------------------------


def test_prune_dispatches_by_name():
    W = np.arange(-8, 8).reshape(2, 8)
    assert (prune(W, "bbs", bank_size=4, nnz_per_bank=1) == prune_bbs(W, 4, 1)).all()
    assert (prune(W, "nm", n=2, m=4) == prune_nm(W, 2, 4)).all()
    assert (prune(W, "unstructured", nnz=3) == prune_unstructured(W, 3)).all()
    assert (prune(W, "block", block=2, keep=1) == prune_block(W, 2, 1)).all()


def test_prune_refuses_unknown_pattern_and_parameters():
    W = np.ones((2, 4), dtype=int)
    with pytest.raises(ValueError,
                       match="unknown pattern 'csr'; known: bbs, nm, unstructured, block, cbs$"):
        prune(W, "csr")
    with pytest.raises(ValueError, match="pattern 'block' takes block, keep, not block$"):
        prune(W, "block", block=2)


# -- check_bbs ------------------------------------------------------------------------------


def test_check_bbs_names_first_offending_bank():
    W = np.zeros((5, 48), dtype=np.int8)
    W[3, 40:43] = [1, 2, 3]  # row 3, bank 5: 3 nonzeros
    W[4, 0:2] = [1, 1]  # a later row: not the first violation
    violation = check_bbs(W, 8, 1)
    assert violation == PatternViolation(row=3, bank=5, nonzeros=3, allowed=1, bank_size=8)
    assert violation.message == (
        "row 3, bank 5 (columns 40..47) holds 3 nonzeros; the pattern allows 1"
    )
    assert str(violation) == violation.message


def test_check_bbs_accepts_fewer_nonzeros():
    W = np.zeros((2, 8), dtype=np.int8)
    W[0, 1] = 4
    assert check_bbs(W, 4, 2) is None
    assert check_bbs(np.ones((2, 8)), 4, 4) is None
    assert check_bbs(np.ones((2, 8)), 4, 3) is not None


def test_check_bbs_refuses_cols_not_multiple():
    with pytest.raises(ValueError, match=r"^cols must be a multiple of bank_size \(4\), not 6$"):
        check_bbs(np.zeros((1, 6)), 4, 1)
