"""Cycle and utilization figures, checked against hand-worked configurations."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.config import Config
from bbsparse.golden.cycles import (
    dense_cycles,
    dense_steady_cycles,
    ideal_cycles,
    steady_cycles,
    useful_macs,
    utilization,
)


def test_default_config_figures():
    cfg = Config()  # 8 lanes x 2 PEs, 128 banks of 8 keeping 1
    # 16 rounds of 1 slot; x has 16 rounds of 8 words; 1024 rows are 512 row groups.
    assert steady_cycles(cfg, 1024) == 512 * 16
    assert ideal_cycles(cfg, 1024) == 128 + 8192
    # The next x (128 beats) hides behind the 8192 w beats of the current matrix.
    assert ideal_cycles(cfg, 1024, batch=3) == 128 + 3 * 8192
    assert useful_macs(cfg, 1024) == 1024 * 128
    assert utilization(cfg, 1024, steady_cycles(cfg, 1024)) == 1.0
    assert utilization(cfg, 1024, ideal_cycles(cfg, 1024)) == pytest.approx(8192 / 8320)
    assert dense_steady_cycles(cfg, 1024) == 512 * 128
    assert dense_cycles(cfg, 1024) == 128 + 512 * 128
    assert dense_cycles(cfg, 1024) / ideal_cycles(cfg, 1024) < cfg.ideal_speedup


def test_x_longer_than_matrix_shows_between_matrices():
    cfg = Config()
    # One row group streams 16 beats while the next x needs 128: 112 cycles show each time.
    assert ideal_cycles(cfg, 2) == 128 + 16
    assert ideal_cycles(cfg, 2, batch=3) == 128 + 3 * 16 + 2 * 112


def test_padding_banks_and_rows_lower_utilization():
    # 5 banks on 4 lanes: 2 rounds, 3 of the 8 lane slots per row are padding.
    cfg = Config(lanes=4, pes=2, bank_size=4, nnz_per_bank=2, cols=20)
    assert steady_cycles(cfg, 3) == 2 * 4  # 3 rows -> 2 row groups of 4 beats
    assert useful_macs(cfg, 3) == 3 * 5 * 2
    assert utilization(cfg, 3, steady_cycles(cfg, 3)) == pytest.approx(30 / (8 * 8))


@settings(max_examples=60, deadline=None)
@given(
    lanes=st.integers(1, 8),
    pes=st.integers(1, 4),
    bank_size=st.integers(1, 8),
    banks=st.integers(1, 20),
    rows=st.integers(1, 50),
    batch=st.integers(1, 4),
    data=st.data(),
)
def test_figures_are_consistent(lanes, pes, bank_size, banks, rows, batch, data):
    nnz = data.draw(st.integers(1, bank_size))
    cfg = Config(lanes=lanes, pes=pes, bank_size=bank_size, nnz_per_bank=nnz,
                 cols=banks * bank_size)  # fmt: skip
    ideal = ideal_cycles(cfg, rows, batch)
    steady = steady_cycles(cfg, rows, batch)
    assert steady < ideal <= steady + batch * cfg.x_beats
    assert 0 < utilization(cfg, rows, ideal, batch) <= utilization(cfg, rows, steady, batch) <= 1
    assert dense_cycles(cfg, rows, batch) >= ideal
    if nnz == bank_size:
        assert dense_cycles(cfg, rows, batch) == ideal


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda cfg: ideal_cycles(cfg, 4, batch=0), "batch must be a positive integer, not 0"),
        (lambda cfg: utilization(cfg, 4, 0), "cycles must be a positive integer, not 0"),
        (lambda cfg: useful_macs(cfg, 0), "rows must be at least 1, not 0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(Config())
