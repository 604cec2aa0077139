"""The golden SpMV against a naive Python triple loop with Python integers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.config import Config
from bbsparse.golden.spmv import accumulate, spmv


def naive_spmv(cfg: Config, W, X) -> list[list[int]]:
    """Batch x rows x cols loops; wrap, round, ReLU and saturate written out longhand."""
    results = []
    for x in X:
        y = []
        for row in W:
            acc = 0
            for w, a in zip(row, x, strict=True):
                acc += int(w) * int(a)
            acc = (acc + 2 ** (cfg.acc_width - 1)) % 2**cfg.acc_width - 2 ** (cfg.acc_width - 1)
            if cfg.out_shift:
                acc = (acc + 2 ** (cfg.out_shift - 1)) // 2**cfg.out_shift
            if cfg.relu and acc < 0:
                acc = 0
            acc = min(max(acc, -(2 ** (cfg.out_width - 1))), 2 ** (cfg.out_width - 1) - 1)
            y.append(acc)
        results.append(y)
    return results


@st.composite
def spmv_cases(draw):
    weight_width = draw(st.integers(1, 12))
    act_width = draw(st.integers(1, 12))
    bank_size = draw(st.integers(1, 6))
    cols = bank_size * draw(st.integers(1, 6))
    product = weight_width + act_width
    # Narrow accumulators make the wrap happen; the default one never wraps.
    acc_width = draw(st.none() | st.integers(product, product + 4))
    cfg = Config(
        lanes=draw(st.integers(1, 4)),
        pes=draw(st.integers(1, 3)),
        bank_size=bank_size,
        nnz_per_bank=draw(st.integers(1, bank_size)),
        cols=cols,
        weight_width=weight_width,
        act_width=act_width,
        acc_width=acc_width,
        relu=draw(st.booleans()),
    )
    cfg = Config(
        **{
            **cfg.to_dict(),
            "out_shift": draw(st.integers(0, cfg.acc_width - 1)),
            "out_width": draw(st.integers(1, cfg.acc_width)),
        }
    )
    rows = draw(st.integers(1, 7))
    cols_w = draw(st.integers(1, cols))
    batch = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    wl, al = 2 ** (weight_width - 1), 2 ** (act_width - 1)
    W = rng.integers(-wl, wl, (rows, cols_w), endpoint=False)
    # Extreme values are the interesting ones for wrapping: use them often.
    W = np.where(rng.random(W.shape) < 0.3, -wl, W)
    X = rng.integers(-al, al, (batch, cols_w))
    X = np.where(rng.random(X.shape) < 0.3, -al, X)
    return cfg, W, X


@settings(max_examples=100, deadline=None)
@given(spmv_cases())
def test_spmv_matches_triple_loop(case):
    cfg, W, X = case
    expected = naive_spmv(cfg, W, X)
    assert spmv(cfg, W, X).tolist() == expected
    assert spmv(cfg, W, X[0]).tolist() == expected[0]


def test_default_config_is_exact_matrix_product():
    cfg = Config()
    rng = np.random.default_rng(1)
    W = rng.integers(-128, 128, (8, 1024))
    x = rng.integers(-128, 128, 1024)
    y = spmv(cfg, W, x)
    assert y.dtype == np.int64 and y.shape == (8,)
    assert (y == W @ x).all()


def test_short_rows_are_zero_padded():
    cfg = Config(bank_size=4, nnz_per_bank=1, cols=16)
    W = np.array([[1, 2, 3], [-4, 5, 6]])
    assert spmv(cfg, W, np.array([1, 1, -1])).tolist() == [0, -5]


def test_accumulator_wraps_before_output_stage():
    # 2 x (-128 * -128) = 32768 does not fit 16 signed bits: it wraps to -32768.
    cfg = Config(bank_size=2, nnz_per_bank=2, cols=2, acc_width=16, out_shift=8)
    W = np.array([[-128, -128]])
    x = np.array([-128, -128])
    assert accumulate(cfg, W, x).tolist() == [-32768]
    assert spmv(cfg, W, x).tolist() == [-128]


def test_64_bit_accumulator_wraps_exactly():
    cfg = Config(bank_size=4, nnz_per_bank=4, cols=4, weight_width=32, act_width=32, acc_width=64)
    W = np.full((1, 4), -(2**31))
    x = np.full(4, -(2**31))
    # 4 * 2**62 = 2**64 wraps to 0 in 64 bits.
    assert spmv(cfg, W, x).tolist() == [0]
    assert spmv(cfg, W[:, :3], x[:3]).tolist() == [3 * 2**62 - 2**64]


def test_wide_operands_use_python_integers():
    cfg = Config(bank_size=2, nnz_per_bank=2, cols=2, weight_width=40, act_width=40)
    W = np.array([[-(2**39), 2**39 - 1]], dtype=object)
    x = np.array([-(2**39), -(2**39)], dtype=object)
    expected = naive_spmv(cfg, W, [x])[0]
    assert [int(v) for v in spmv(cfg, W, x)] == expected == [2**39]


@pytest.mark.parametrize(
    ("W", "x", "message"),
    [
        (
            [[1, 2], [3, 128]],
            [0, 0],
            r"^W\[1, 1\] = 128 does not fit weight_width = 8 \(signed range \[-128, 127\]\)$",
        ),
        (
            [[1, 2]],
            [[0, 0], [-129, 0]],
            r"^x\[1, 0\] = -129 does not fit act_width = 8 \(signed range \[-128, 127\]\)$",
        ),
        ([[1, 2]], [0, 0, 0], r"^x must have shape \(2,\) or \(batch, 2\) to match W, not \(3,\)$"),
        ([1, 2], [0, 0], r"^W must be a 2-D matrix \(rows, cols\), not shape \(2,\)$"),
        ([[0.5, 1]], [0, 0], r"^W must hold integers, not float64$"),
        (np.zeros((1, 17), int), np.zeros(17, int), "W has 17 columns, more than cols = 16"),
    ],
)
def test_spmv_refuses_bad_operands(W, x, message):
    cfg = Config(bank_size=4, nnz_per_bank=1, cols=16)
    with pytest.raises(ValueError, match=message):
        spmv(cfg, np.asarray(W), np.asarray(x))
