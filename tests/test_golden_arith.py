"""Fixed-point rules (DESIGN §5) against a direct Python-integer model written here."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.arith import (
    as_integers,
    check_signed,
    output_stage,
    saturate,
    signed_range,
    wrap,
)
from bbsparse.golden.config import Config


def model_wrap(value: int, width: int) -> int:
    """Two's complement of `width` bits, by subtracting 2**width until in range."""
    value %= 2**width
    return value - 2**width if value >= 2 ** (width - 1) else value


def model_output(acc: int, cfg: Config) -> int:
    """DESIGN §5 with Python integers; rounding half up written as a floor division."""
    r = acc
    if cfg.out_shift:
        r = (2 * acc + 2**cfg.out_shift) // 2 ** (cfg.out_shift + 1)
    if cfg.relu:
        r = max(r, 0)
    lo, hi = -(2 ** (cfg.out_width - 1)), 2 ** (cfg.out_width - 1) - 1
    return min(max(r, lo), hi)


def cfg_for(acc_width: int, **params) -> Config:
    return Config(weight_width=8, act_width=8, acc_width=acc_width, **params)


# -- wrap / saturate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "width", "expected"),
    [(127, 8, 127), (128, 8, -128), (255, 8, -1), (256, 8, 0), (-129, 8, 127), (1, 1, -1),
     (2**63, 64, -(2**63)), (-(2**69) - 1, 70, 2**69 - 1), (-(2**70) - 1, 70, -1)],
)  # fmt: skip
def test_wrap_scalar(value, width, expected):
    result = wrap(value, width)
    assert result == expected and type(result) is int


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20), st.integers(1, 64))
def test_wrap_int64_array(values, width):
    result = wrap(np.array(values, dtype=np.int64), width)
    assert result.dtype == np.int64
    assert result.tolist() == [model_wrap(v, width) for v in values]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-(2**100), 2**100), min_size=1, max_size=10), st.integers(1, 90))
def test_wrap_wide_values(values, width):
    result = wrap(np.array(values, dtype=object), width)
    assert [int(v) for v in result] == [model_wrap(v, width) for v in values]
    if width <= 64:
        assert result.dtype == np.int64


def test_saturate():
    assert saturate(np.array([-200, -128, 0, 127, 500]), 8).tolist() == [-128, -128, 0, 127, 127]
    assert saturate(3, 2) == 1 and saturate(-3, 2) == -2
    assert saturate(np.array([2**80], dtype=object), 70)[0] == 2**69 - 1


def test_signed_range_and_bad_width():
    assert signed_range(1) == (-1, 0)
    assert signed_range(8) == (-128, 127)
    with pytest.raises(ValueError, match="width must be an integer of at least 1 bit, not 0"):
        wrap(3, 0)


# -- output stage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acc", "expected"),
    # shift 1: -3/2 = -1.5 -> -1, 3/2 = 1.5 -> 2, -1/2 -> 0, 1/2 -> 1, -5/2 -> -2.
    [(-3, -1), (3, 2), (-1, 0), (1, 1), (-5, -2), (5, 3), (4, 2), (-4, -2), (0, 0)],
)
def test_round_half_up(acc, expected):
    cfg = cfg_for(16, out_shift=1)
    assert output_stage(acc, cfg) == expected
    assert output_stage(np.array([acc]), cfg).tolist() == [expected]


def test_rounding_add_does_not_wrap():
    # (32767 + 1) >> 1 needs 17 bits; the stage keeps acc_width + 1 bits and does not wrap.
    cfg = cfg_for(16, out_shift=1)
    assert output_stage(32767, cfg) == 16384
    assert output_stage(-32768, cfg) == -16384


@pytest.mark.parametrize(
    ("params", "acc", "expected"),
    [
        ({}, 32767, 32767),
        ({}, -32768, -32768),
        ({"out_width": 8}, 32767, 127),
        ({"out_width": 8}, -32768, -128),
        ({"out_width": 8}, 127, 127),
        ({"out_width": 8}, -129, -128),
        ({"relu": True}, -1, 0),
        ({"relu": True}, -32768, 0),
        ({"relu": True, "out_width": 8}, 300, 127),
        ({"out_shift": 4, "out_width": 8}, 32767, 127),
        ({"out_shift": 15}, -32768, -1),
        ({"out_shift": 15}, 32767, 1),
        ({"out_shift": 15}, 16383, 0),
        ({"out_shift": 15}, 16384, 1),
    ],
)
def test_output_stage_edges(params, acc, expected):
    cfg = cfg_for(16, **params)
    assert output_stage(acc, cfg) == expected == model_output(acc, cfg)


def test_output_stage_64_bit_accumulator_does_not_overflow():
    cfg = Config(weight_width=32, act_width=32, acc_width=64, out_shift=1)
    top, bottom = 2**63 - 1, -(2**63)
    result = output_stage(np.array([top, bottom], dtype=np.int64), cfg)
    assert result.tolist() == [2**62, -(2**62)]
    cfg = Config(weight_width=32, act_width=32, acc_width=64, out_shift=63)
    assert output_stage(np.array([bottom, top]), cfg).tolist() == [-1, 1]


def test_output_stage_refuses_unwrapped_accumulator():
    with pytest.raises(ValueError) as info:
        output_stage(np.array([0, 40000]), cfg_for(16))
    assert (
        str(info.value)
        == "acc[1] = 40000 does not fit acc_width = 16 (signed range [-32768, 32767])"
    )


@st.composite
def stage_cases(draw):
    acc_width = draw(st.integers(16, 80))
    cfg = cfg_for(
        acc_width,
        out_width=draw(st.integers(1, acc_width)),
        out_shift=draw(st.integers(0, acc_width - 1)),
        relu=draw(st.booleans()),
    )
    lo, hi = -(2 ** (acc_width - 1)), 2 ** (acc_width - 1) - 1
    edges = st.sampled_from([lo, lo + 1, -1, 0, 1, hi - 1, hi])
    accs = draw(st.lists(st.integers(lo, hi) | edges, min_size=1, max_size=12))
    return cfg, accs


@settings(max_examples=100, deadline=None)
@given(stage_cases())
def test_output_stage_matches_model(case):
    cfg, accs = case
    array = np.array(accs, dtype=np.int64 if cfg.acc_width <= 64 else object)
    result = output_stage(array, cfg)
    assert [int(v) for v in result] == [model_output(a, cfg) for a in accs]
    if cfg.out_width <= 64:
        assert result.dtype == np.int64


# -- integer helpers ------------------------------------------------------------------------


def test_as_integers_refuses_floats_and_bools():
    with pytest.raises(ValueError, match=r"^W must hold integers, not float64$"):
        as_integers(np.zeros(3), "W")
    with pytest.raises(ValueError, match=r"^x must hold integers, not bool$"):
        as_integers(np.array([True]), "x")
    with pytest.raises(ValueError, match=r"^W must hold integers, not float \(at 1\)$"):
        as_integers(np.array([1, 2.5], dtype=object), "W")


def test_as_integers_keeps_big_values_exact():
    assert as_integers([1, -2]).dtype == np.int64
    big = as_integers(np.array([2**64, 1], dtype=object))
    assert big.dtype == object and big[0] == 2**64
    assert as_integers(np.array([2**63], dtype=np.uint64))[0] == 2**63


def test_check_signed_names_first_offender():
    values = np.array([[0, 1, 2], [3, 200, -300]])
    with pytest.raises(ValueError) as info:
        check_signed(values, 8, "W", "weight_width")
    assert (
        str(info.value) == "W[1, 1] = 200 does not fit weight_width = 8 (signed range [-128, 127])"
    )
    check_signed(np.array([-128, 127]), 8, "W", "weight_width")  # in range: no error
