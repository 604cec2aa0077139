"""Wire formats (DESIGN §3-4): hand examples, the contract's formulas, round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.config import Config
from bbsparse.golden.csb import (
    PatternError,
    pack_fields,
    pack_w,
    pack_x,
    pack_y,
    unpack_fields,
    unpack_w,
    unpack_x,
    unpack_y,
    w_beat_ints,
    w_fields_from_ints,
    x_beat_ints,
    x_fields_from_ints,
    x_layout,
)
from bbsparse.golden.prune import prune_bbs
from bbsparse.golden.spmv import spmv


@st.composite
def configs(draw, max_width=10):
    bank_size = draw(st.integers(1, 6))
    return Config(
        lanes=draw(st.integers(1, 5)),
        pes=draw(st.integers(1, 4)),
        bank_size=bank_size,
        nnz_per_bank=draw(st.integers(1, bank_size)),
        # Up to 7 banks: lanes often do not divide banks_per_row.
        cols=bank_size * draw(st.integers(1, 7)),
        weight_width=draw(st.integers(2, max_width)),
        act_width=draw(st.integers(2, max_width)),
    )


@st.composite
def bbs_matrices(draw, cfg):
    """A BBS matrix of cfg's pattern with random rows (pes need not divide them) and cols_w."""
    rows = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = -(2 ** (cfg.weight_width - 1)), 2 ** (cfg.weight_width - 1) - 1
    dense = rng.integers(lo, hi, (rows, cfg.cols), endpoint=True)
    dense = np.where(rng.random(dense.shape) < 0.3, 0, dense)  # some banks hold fewer
    W = prune_bbs(dense, cfg.bank_size, cfg.nnz_per_bank)
    cols_w = draw(st.integers(1, cfg.cols))
    return W[:, :cols_w]


def rand_x(cfg, shape, seed):
    lo, hi = -(2 ** (cfg.act_width - 1)), 2 ** (cfg.act_width - 1) - 1
    return np.random.default_rng(seed).integers(lo, hi, shape, endpoint=True)


# -- x --------------------------------------------------------------------------------------


def test_x_layout_hand_example():
    cfg = Config(lanes=3, bank_size=4, nnz_per_bank=1, cols=20)
    # Column 13 is in bank 3 -> lane 0, second round -> address 4 + 1.
    assert x_layout(cfg, 13) == (0, 5)
    assert x_layout(cfg, 0) == (0, 0)
    assert x_layout(cfg, 7) == (1, 3)
    lanes, addresses = x_layout(cfg, np.array([8, 19]))
    assert lanes.tolist() == [2, 1] and addresses.tolist() == [0, 7]
    with pytest.raises(ValueError, match="column index out of range 0..19"):
        x_layout(cfg, 20)


def test_pack_x_hand_example():
    # 3 banks of 2 on 2 lanes: lane 0 holds banks 0 and 2, lane 1 bank 1 and a padding bank.
    cfg = Config(lanes=2, bank_size=2, nnz_per_bank=1, cols=6)
    beats = pack_x(cfg, np.array([10, 11, 12, 13, 14, 15]))
    assert beats.tolist() == [[10, 12], [11, 13], [14, 0], [15, 0]]
    assert pack_x(cfg, np.array([10, 11, 12])).tolist() == [[10, 12], [11, 0], [0, 0], [0, 0]]


@settings(max_examples=80, deadline=None)
@given(configs(), st.integers(0, 2**32 - 1), st.data())
def test_pack_x_follows_layout_and_round_trips(cfg, seed, data):
    n = data.draw(st.integers(0, cfg.cols))
    x = rand_x(cfg, n, seed)
    beats = pack_x(cfg, x)
    assert beats.shape == (cfg.x_beats, cfg.lanes)
    expected = np.zeros((cfg.x_beats, cfg.lanes), dtype=np.int64)
    for j in range(n):
        lane, address = x_layout(cfg, j)
        expected[address, lane] = x[j]
    assert (beats == expected).all()
    assert (unpack_x(cfg, beats, n) == x).all()
    assert (x_fields_from_ints(cfg, x_beat_ints(cfg, beats)) == beats).all()


def test_pack_x_batch_and_errors():
    cfg = Config(lanes=2, bank_size=2, nnz_per_bank=1, cols=6)
    X = np.arange(12).reshape(2, 6)
    beats = pack_x(cfg, X)
    assert beats.shape == (2, 4, 2)
    assert (beats[1] == pack_x(cfg, X[1])).all()
    assert (unpack_x(cfg, beats) == X).all()
    assert len(x_beat_ints(cfg, beats)) == 8
    with pytest.raises(ValueError, match=r"x\[0, 0\] = 128 does not fit act_width = 8"):
        pack_x(cfg, [[128]])
    with pytest.raises(ValueError, match=r"n <= cols = 6, not \(7,\)"):
        pack_x(cfg, np.zeros(7, int))


# -- w --------------------------------------------------------------------------------------


def expected_w_beats(cfg, W):
    """DESIGN §4, read literally: a loop over beats and entries."""
    rows, cols_w = W.shape
    full = np.zeros((rows, cfg.padded_banks_per_row * cfg.bank_size), dtype=np.int64)
    full[:, :cols_w] = W
    groups = -(-rows // cfg.pes)
    values = np.zeros((groups * cfg.cycles_per_row, cfg.pes * cfg.lanes), dtype=np.int64)
    indices = np.zeros_like(values)
    for g in range(groups):
        for s in range(cfg.cycles_per_row):
            for p in range(cfg.pes):
                for lane in range(cfg.lanes):
                    row = g * cfg.pes + p
                    bank = (s // cfg.nnz_per_bank) * cfg.lanes + lane
                    slot = s % cfg.nnz_per_bank
                    if row >= rows:
                        continue
                    segment = full[row, bank * cfg.bank_size : (bank + 1) * cfg.bank_size]
                    nonzero = [k for k in range(cfg.bank_size) if segment[k] != 0]
                    if slot < len(nonzero):
                        values[g * cfg.cycles_per_row + s, p * cfg.lanes + lane] = segment[
                            nonzero[slot]
                        ]
                        indices[g * cfg.cycles_per_row + s, p * cfg.lanes + lane] = nonzero[slot]
    return values, indices


def test_pack_w_hand_example():
    # 2 lanes, 1 PE, 3 banks of 4 keeping 2: rounds = 2, cycles_per_row = 4.
    cfg = Config(lanes=2, pes=1, bank_size=4, nnz_per_bank=2, cols=12)
    W = np.array([[0, 5, 0, -6, 7, 0, 0, 0, 0, 0, 1, 2]])
    values, indices = pack_w(cfg, W)
    # Beat s: lane 0 serves bank 2*(s//2), lane 1 bank 2*(s//2)+1 (bank 3 is padding).
    assert values.tolist() == [[5, 7], [-6, 0], [1, 0], [2, 0]]
    assert indices.tolist() == [[1, 0], [3, 0], [2, 0], [3, 0]]


@settings(max_examples=80, deadline=None)
@given(configs().flatmap(lambda cfg: st.tuples(st.just(cfg), bbs_matrices(cfg))))
def test_pack_w_follows_contract_and_round_trips(case):
    cfg, W = case
    values, indices = pack_w(cfg, W)
    expected_values, expected_indices = expected_w_beats(cfg, W)
    assert values.tolist() == expected_values.tolist()
    assert indices.tolist() == expected_indices.tolist()
    rows, cols_w = W.shape
    assert values.shape == (cfg.row_groups(rows) * cfg.cycles_per_row, cfg.pes * cfg.lanes)
    assert (unpack_w(cfg, values, indices, rows, cols_w) == W).all()
    ints = w_beat_ints(cfg, values, indices)
    assert all(0 <= v < 2**cfg.w_beat_width for v in ints)
    back_values, back_indices = w_fields_from_ints(cfg, ints)
    assert (back_values == values).all() and (back_indices == indices).all()


def simulate_core(cfg, W, x):
    """The dataflow the wire formats imply: each PE multiplies slot values by the word at
    (round * bank_size + index) of its lane's memory, one beat at a time."""
    memory = pack_x(cfg, x)  # memory[address, lane]
    values, indices = pack_w(cfg, W)
    rows = W.shape[0]
    acc = [0] * (cfg.row_groups(rows) * cfg.pes)
    for beat in range(values.shape[0]):
        g, s = divmod(beat, cfg.cycles_per_row)
        rnd = s // cfg.nnz_per_bank
        for p in range(cfg.pes):
            for lane in range(cfg.lanes):
                e = p * cfg.lanes + lane
                word = memory[rnd * cfg.bank_size + indices[beat, e], lane]
                acc[g * cfg.pes + p] += int(values[beat, e]) * int(word)
    return acc[:rows]


@settings(max_examples=60, deadline=None)
@given(configs().flatmap(lambda cfg: st.tuples(st.just(cfg), bbs_matrices(cfg))), st.integers())
def test_wire_formats_compute_the_product(case, seed):
    cfg, W = case
    x = rand_x(cfg, W.shape[1], seed % 2**32)
    assert simulate_core(cfg, W, x) == spmv(cfg, W, x).tolist()


def test_pack_w_refuses_pattern_violation():
    cfg = Config(lanes=2, pes=2, bank_size=4, nnz_per_bank=1, cols=16)
    W = np.zeros((3, 14), dtype=np.int64)
    W[2, 12:14] = [1, -1]  # row 2, bank 3 (a bank cut short by cols_w < cols)
    with pytest.raises(PatternError) as info:
        pack_w(cfg, W)
    assert (
        str(info.value) == "row 2, bank 3 (columns 12..15) holds 2 nonzeros; the pattern allows 1"
    )
    assert isinstance(info.value, ValueError)


def test_pack_w_refuses_bad_matrices():
    cfg = Config(lanes=2, pes=2, bank_size=4, nnz_per_bank=1, cols=16)
    with pytest.raises(ValueError, match=r"W\[0, 0\] = -129 does not fit weight_width = 8"):
        pack_w(cfg, np.array([[-129]]))
    with pytest.raises(ValueError, match=r"cols_w <= cols = 16, not shape \(1, 17\)"):
        pack_w(cfg, np.zeros((1, 17), int))


def test_unpack_w_adds_duplicates_and_ignores_zero_slots():
    cfg = Config(lanes=1, pes=1, bank_size=4, nnz_per_bank=3, cols=4)
    values = np.array([[5], [-2], [0]])
    indices = np.array([[1], [1], [3]])
    assert unpack_w(cfg, values, indices, rows=1).tolist() == [[0, 3, 0, 0]]
    with pytest.raises(ValueError, match=r"indices\[2, 0\] = 7 carries a nonzero weight"):
        unpack_w(cfg, np.array([[0], [0], [1]]), np.array([[0], [0], [7]]), rows=1)
    with pytest.raises(ValueError, match=r"values must have shape \(6, 1\) for 2 rows"):
        unpack_w(cfg, values, indices, rows=2)


# -- beats as integers ----------------------------------------------------------------------


def test_pack_fields_hand_example():
    # Element 0 in the low bits; -1 is all ones in its field.
    assert pack_fields([[1, -1]], 4) == [0xF1]
    assert pack_fields([[1, 2, 3], [-1, 0, -2]], 8) == [0x030201, 0xFE00FF]
    assert pack_fields(np.array([[-1]]), 70) == [2**70 - 1]
    assert unpack_fields([0xF1], 2, 4).tolist() == [[1, -1]]
    assert unpack_fields([0xF1], 2, 4, signed=False).tolist() == [[1, 15]]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 70), st.integers(1, 6), st.booleans(), st.data())
def test_fields_round_trip(width, count, signed, data):
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    beats = data.draw(
        st.lists(st.lists(st.integers(lo, hi), min_size=count, max_size=count), max_size=5)
    )
    fields = np.array(beats, dtype=object).reshape(len(beats), count)
    ints = pack_fields(fields, width)
    assert len(ints) == len(beats)
    # Reference packing with Python integers, element 0 lowest.
    for value, beat in zip(ints, beats, strict=True):
        assert value == sum((v % 2**width) << (i * width) for i, v in enumerate(beat))
    back = unpack_fields(ints, count, width, signed=signed)
    assert back.shape == (len(beats), count)
    assert [[int(v) for v in row] for row in back] == beats


def test_unpack_fields_refuses_wide_beat():
    with pytest.raises(ValueError, match="beat 1 = 0x100 does not fit 2 x 4 bits"):
        unpack_fields([0xFF, 0x100], 2, 4)


def test_w_beat_ints_hand_example():
    cfg = Config(lanes=2, pes=1, bank_size=8, nnz_per_bank=1, cols=16)
    # Entry = value (8 bits) | index << 8, 11 bits per entry.
    ints = w_beat_ints(cfg, np.array([[-1, 3]]), np.array([[5, 7]]))
    assert ints == [(0x5FF) | ((3 | 7 << 8) << 11)]
    with pytest.raises(ValueError, match=r"indices\[0, 1\] = 8 does not fit index_width = 3"):
        w_beat_ints(cfg, np.array([[-1, 3]]), np.array([[5, 8]]))


# -- y --------------------------------------------------------------------------------------


def test_y_hand_example_and_padding():
    cfg = Config(pes=2, bank_size=4, nnz_per_bank=1, cols=16, out_width=8, acc_width=20)
    ints = pack_y(cfg, np.array([1, -1, 7]))
    assert ints == [0xFF01, 0x0007]
    assert unpack_y(cfg, ints, 3).tolist() == [1, -1, 7]
    with pytest.raises(ValueError, match="expected 2 y beats"):
        unpack_y(cfg, ints[:1], 3)


@settings(max_examples=50, deadline=None)
@given(configs(), st.integers(1, 9), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_y_round_trip(cfg, rows, batch, seed):
    lo, hi = -(2 ** (cfg.out_width - 1)), 2 ** (cfg.out_width - 1) - 1
    Y = np.random.default_rng(seed).integers(lo, hi, (batch, rows), endpoint=True)
    ints = pack_y(cfg, Y)
    assert len(ints) == batch * cfg.row_groups(rows)
    assert (unpack_y(cfg, ints, rows, batch=batch) == Y).all()
    assert (unpack_y(cfg, pack_y(cfg, Y[0]), rows) == Y[0]).all()


def test_wide_config_round_trips():
    cfg = Config(lanes=2, pes=1, bank_size=2, nnz_per_bank=1, cols=4, weight_width=60,
                 act_width=40)  # fmt: skip
    W = np.array([[-(2**59), 0, 0, 2**59 - 1]], dtype=object)
    values, indices = pack_w(cfg, W)
    ints = w_beat_ints(cfg, values, indices)
    back_values, back_indices = w_fields_from_ints(cfg, ints)
    assert (unpack_w(cfg, back_values, back_indices, rows=1) == W).all()
    y = spmv(cfg, W, np.array([1, 0, 0, 1]))
    assert [int(v) for v in unpack_y(cfg, pack_y(cfg, y), 1)] == [-1]
