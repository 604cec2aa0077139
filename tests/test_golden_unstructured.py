"""The unstructured engine's row-wise stream and its crossbar cycle model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden import unstructured
from bbsparse.golden.config import Config, ConfigError


def test_pattern_parameter():
    config = Config(lanes=4, cols=64, pattern="unstructured")
    assert config.x_beats == 16  # x in order, lanes a beat
    assert config.index_width == 6  # a column index
    assert config.w_beat_width == 2 * 4 * (8 + 6) + 1  # entries and the group-end bit
    assert config.acc_width == 8 + 8 + 6  # a row may hold every column
    with pytest.raises(ConfigError, match="lanes must be a power of two for pattern "
                                          "'unstructured'.*not 6"):
        Config(lanes=6, cols=64, pattern="unstructured")
    with pytest.raises(ConfigError, match="pattern must be one of 'bbs', 'unstructured', 'cbs', "
                                          "not 'blocky'"):
        Config(pattern="blocky")


def test_pack_example():
    config = Config(lanes=2, pes=2, bank_size=1, cols=6, pattern="unstructured")
    W = np.array([[0, 3, 0, 0, 5, 7],   # 3 nonzeros: 2 beats
                  [1, 0, 0, 0, 0, 0],   # 1 nonzero
                  [0, 0, 0, 0, 0, 0]])  # an empty row: its group still takes one beat
    values, columns, ends = unstructured.pack_w(config, W, order="columns")
    assert values.tolist() == [[3, 5, 1, 0], [7, 0, 0, 0], [0, 0, 0, 0]]
    assert columns.tolist() == [[1, 4, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0]]
    assert ends.tolist() == [False, True, True]
    words = unstructured.w_beat_ints(config, values, columns, ends)
    entry = 8 + 3
    assert words[1] >> (4 * entry) == 1 and words[0] >> (4 * entry) == 0
    assert (words[0] & ((1 << entry) - 1)) == 3 | (1 << 8)
    # Beat 0 of PE 0 asks columns 1 and 4: banks 1 and 0, no conflict; PE 1 one request.
    assert unstructured.beat_cycles(config, values, columns).tolist() == [1, 1, 1]
    # By banks: column 4 (bank 0) then 1 and 5 (bank 1): lane = bank, beat = rank in bank.
    values, columns, ends = unstructured.pack_w(config, W, order="banks")
    assert values.tolist() == [[5, 3, 1, 0], [0, 7, 0, 0], [0, 0, 0, 0]]
    assert columns.tolist() == [[4, 1, 0, 0], [0, 5, 0, 0], [0, 0, 0, 0]]


def test_conflicts_cost_cycles():
    config = Config(lanes=4, pes=1, bank_size=1, cols=32, pattern="unstructured")
    same_bank = np.zeros((1, 32), int)
    same_bank[0, [0, 4, 8, 12]] = 1  # all in bank 0: four cycles for one beat
    spread = np.zeros((1, 32), int)
    spread[0, [0, 5, 10, 15]] = 1  # banks 0, 1, 2, 3
    for W, cycles in ((same_bank, 4), (spread, 1)):
        values, columns, _ = unstructured.pack_w(config, W, order="columns")
        assert unstructured.stream_cycles(config, values, columns) == (cycles, cycles - 1)
    # Ordered by banks, the same rows take as many beats, but never a stall.
    for W, cycles in ((same_bank, 4), (spread, 1)):
        values, columns, _ = unstructured.pack_w(config, W)
        assert unstructured.stream_cycles(config, values, columns) == (cycles, 0)


@settings(max_examples=60, deadline=None)
@given(lanes=st.sampled_from([1, 2, 4, 8]), pes=st.integers(1, 3), cols=st.integers(1, 40),
       rows=st.integers(1, 9), density=st.floats(0, 1), seed=st.integers(0, 2**16),
       order=st.sampled_from(unstructured.ORDERS))
def test_round_trip(lanes, pes, cols, rows, density, seed, order):
    config = Config(lanes=lanes, pes=pes, bank_size=1, cols=cols, pattern="unstructured")
    rng = np.random.default_rng(seed)
    W = rng.integers(-128, 128, size=(rows, cols)) * (rng.random((rows, cols)) < density)
    values, columns, ends = unstructured.pack_w(config, W, order)
    assert ends.sum() == config.row_groups(rows)
    if order == "banks":  # never two requests on one bank in a beat
        assert unstructured.stream_cycles(config, values, columns)[1] == 0
    assert np.array_equal(unstructured.unpack_w(config, values, columns, ends, rows), W)
    x = rng.integers(-128, 128, size=cols)
    beats = unstructured.pack_x(config, x)
    assert np.array_equal(beats.reshape(-1)[:cols], x)
    assert not beats.reshape(-1)[cols:].any()


def test_bbs_config_refused():
    with pytest.raises(ValueError, match="pattern = 'bbs'"):
        unstructured.pack_w(Config(), np.zeros((2, 8), int))
