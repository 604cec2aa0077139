"""Golden model of the column engine (DESIGN §9.4): the cbs pruner and check, the header
and column frames, the column dataflow, the cycle model and the configuration rules."""

import numpy as np
import pytest

from bbsparse.golden import cbs, prune, spmv
from bbsparse.golden.config import Config, ConfigError
from bbsparse.golden.csb import PatternError
from bbsparse.golden.prune import PRUNERS, PruneOptionError


def config(**kw):
    return Config(pattern="cbs", **{"lanes": 2, "pes": 2, "bank_size": 4, "cols": 16, **kw})


def test_prune_cbs_is_bbs_of_the_transpose():
    rng = np.random.default_rng(0)
    W = rng.integers(-50, 50, (24, 10))
    pruned = prune.prune_cbs(W, 8, 3)
    assert np.array_equal(pruned, prune.prune_bbs(W.T, 8, 3).T)
    banks = (pruned != 0).reshape(3, 8, 10).sum(axis=1)
    assert banks.max() <= 3
    assert pruned.dtype == W.dtype and pruned.flags.c_contiguous


def test_prune_cbs_ties_go_to_the_lower_row():
    W = np.array([[5], [-5], [5], [1]])
    assert prune.prune_cbs(W, 4, 2).ravel().tolist() == [5, -5, 0, 0]


def test_check_cbs_names_the_first_column_bank():
    W = np.zeros((8, 3), int)
    W[4:7, 2] = 1  # column 2, bank 1: rows 4..7 hold 3
    W[0:2, 1] = 1  # column 1, bank 0 holds 2: allowed with 2
    violation = cbs.check_cbs(W, 4, 2)
    assert violation.message == ("column 2, bank 1 (rows 4..7) holds 3 nonzeros; the pattern "
                                 "allows 2")
    assert cbs.check_cbs(W, 4, 3) is None


def test_pruner_registry_entry():
    pruner = PRUNERS["cbs"]
    params, text = pruner.resolve({"bank_size": 4, "nnz_per_bank": 1}, (8, 6))
    assert params == {"bank_size": 4, "nnz_per_bank": 1} and "cbs 1/4" in text
    # Rows need not be a multiple of the bank: the last bank counts as padded (as checked).
    assert pruner.resolve({"bank_size": 4, "nnz_per_bank": 1}, (6, 8))[0] == params
    with pytest.raises(PruneOptionError, match="must not exceed --bank-size"):
        pruner.resolve({"bank_size": 4, "nnz_per_bank": 5}, (8, 8))


def test_prune_cbs_pads_a_short_last_bank():
    """10 rows in banks of 8: the last bank holds rows 8..9 and keeps its largest |w| as if
    padded with zero rows; the result follows the pattern and equals pruning the padded
    matrix."""
    rng = np.random.default_rng(3)
    W = rng.integers(-50, 50, (10, 12))
    W[8:, 0] = 0  # a short bank of zeros keeps zeros, never a padding row's place
    pruned = prune.prune_cbs(W, 8, 1)
    assert pruned.shape == W.shape and cbs.check_cbs(pruned, 8, 1) is None
    padded = np.zeros((16, 12), dtype=W.dtype)
    padded[:10] = W
    np.testing.assert_array_equal(pruned, prune.prune_bbs(padded.T, 8, 1).T[:10])
    assert (np.count_nonzero(pruned[8:], axis=0) == (np.abs(W[8:]).max(axis=0) > 0)).all()
    with pytest.raises(ValueError, match="bank_size must be a positive integer"):
        prune.prune_cbs(W, 0, 1)


def test_header_and_frame_lengths():
    c = config()  # M = 4 lanes over the row banks of 4 rows
    rg_bits, round_bits = cbs.header_bits(c)
    assert (rg_bits, round_bits) == (3, 1)  # 8 row groups, 1..1 rounds of 4 banks
    assert cbs.column_rounds(c, 16) == 1 and cbs.column_rounds(c, 1) == 1
    c = config(lanes=1, pes=1, cols=16)  # M = 1: a 16-row column is 4 rounds
    assert cbs.column_rounds(c, 16) == 4 and cbs.column_rounds(c, 9) == 3
    assert cbs.header_word(c, 9) == (9 - 1) | ((3 - 1) << 4)
    assert cbs.frame_beats(c, 9, 0) == 1 and cbs.frame_beats(c, 9, 5) == 1 + 5 * 3


def test_frames_carry_exactly_the_nonzero_columns():
    c = config(lanes=2, pes=1, bank_size=4, nnz_per_bank=2, cols=16)
    rng = np.random.default_rng(1)
    W = prune.prune_cbs(rng.integers(-9, 9, (12, 14)), 4, 2)
    X = rng.integers(-3, 4, (3, 14))
    X[1] = 0
    frames = cbs.pack_w_frames(c, W, X)
    per_column = cbs.column_rounds(c, 12) * 2
    for x, frame in zip(X, frames, strict=True):
        assert len(frame) == 1 + np.count_nonzero(x) * per_column
        carried = cbs.unpack_frame(c, frame, x, 14)
        assert np.array_equal(carried[:12], W * (x != 0)[None, :])
    assert frames[1] == [cbs.header_word(c, 12)]  # no nonzero: the header alone


def test_packer_refuses_what_the_core_cannot_hold():
    c = config()
    with pytest.raises(PatternError, match="column 0, bank 0"):
        cbs.column_slots(c, np.ones((8, 4), int))
    with pytest.raises(ValueError, match="1 <= rows <= 16"):
        cbs.column_slots(c, np.zeros((17, 4), int))
    assert "accumulators hold at most cols = 16 rows" in c.format.weights_violation(
        c, np.zeros((17, 4), int))


@pytest.mark.parametrize("acc_width", [None, 17])
def test_column_dataflow_is_the_golden_product(acc_width):
    c = config(cols=32, acc_width=acc_width, out_shift=3, out_width=12, relu=True)
    rng = np.random.default_rng(2)
    W = prune.prune_cbs(rng.integers(-128, 128, (32, 32)), 4, 1)
    x = rng.integers(-128, 128, 32) * (rng.random(32) < 0.5)
    assert np.array_equal(cbs.column_spmv(c, W, x), spmv.spmv(c, W, x))


def test_cycle_model_by_hand():
    c = config(lanes=1, pes=1, cols=16)  # x_beats 16, 4 rounds a column of 16 rows
    timing = cbs.run_cycles(c, 16, [3, 0, 2])
    # Matrix 0: x 0..15, header 16, 3 columns * 4 beats -> last beat 28; reads 32..47.
    assert timing.headers[0] == 16 and timing.ends[0] == 28
    assert timing.readouts[0] == (28 + cbs.DRAIN, 28 + cbs.DRAIN + 15)
    # Matrix 1 (no nonzero): x 16..31, header at 32, its reads after matrix 0's.
    assert timing.headers[1] == 32 and timing.ends[1] == 32
    assert timing.readouts[1] == (48, 63)
    # Matrix 2: its list buffer is free after matrix 0's last beat (x 32..47), its
    # accumulator set after matrix 0's last read (47): header at 48.
    assert timing.headers[2] == 48 and timing.ends[2] == 56
    assert timing.readouts[2] == (64, 79)
    assert timing.cycles == 79 + cbs.READOUT_LATENCY + 1
    assert timing.steady_cycles == 56 - 16 + 1


def test_cycles_scale_with_the_nonzero_activations():
    c = config(lanes=16, pes=2, bank_size=8, cols=1024)
    dense = cbs.run_cycles(c, 1024, [1024, 1024]).steady_cycles
    half = cbs.run_cycles(c, 1024, [512, 512]).steady_cycles
    assert dense == 2 * (1 + 1024 * 4)  # back to back: 4 beats a column
    assert half == 2 * (1 + 512 * 4)


def test_useful_macs_count_only_nonzero_activations():
    c = config()
    X = np.array([[1, 0, 2, 0], [0, 0, 0, 0]])
    assert cbs.useful_macs(c, 10, X) == 2 * 3 * c.nnz_per_bank  # 3 banks of 4 for 10 rows


def test_configuration_rules():
    with pytest.raises(ConfigError, match=r"bank_size must be a multiple of pes \(3\) for "
                                          r"pattern 'cbs'.*, not 4"):
        config(pes=3)
    with pytest.raises(ConfigError, match=r"lanes must leave room for the cbs header"):
        Config(pattern="cbs", lanes=1, pes=1, bank_size=2, cols=1024, weight_width=1)
    c = config()
    assert c.x_beats == 8 and c.index_width == 2
    assert c.acc_width == 8 + 8 + 4  # a row may meet all 16 columns
    assert c.w_beat_width == 4 * (8 + 2)


@pytest.mark.parametrize("pattern", ["cbs", "unstructured"])
def test_compile_refuses_engines_the_model_core_does_not_run(pattern, tmp_path, capsys):
    """The model core runs BBS only (DESIGN §16.3): `bbsparse compile --pattern cbs` is
    refused in one line naming the supported pattern, and so is the compiler's API, before
    it reads anything."""
    from bbsparse.cli import main
    from bbsparse.compiler.build import CompileOptions, compile_model
    from bbsparse.compiler.quantize import CompileError, CoreShape

    assert main(["compile", str(tmp_path / "m.onnx"), "--calibration", "c.npy", "--pattern",
                 pattern, "--bank-size", "8", "--nnz-per-bank", "2", "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"invalid choice: '{pattern}' (choose from 'bbs')" in err[0]
    shape = CoreShape(pattern=pattern, bank_size=8, nnz_per_bank=2)
    options = CompileOptions(model=str(tmp_path / "missing.onnx"),
                             calibration=np.zeros((2, 64)), shape=shape)
    with pytest.raises(CompileError) as caught:
        compile_model(options, tmp_path / "out", log=lambda _: None)
    assert str(caught.value) == (
        f"pattern '{pattern}': the model core runs only 'bbs' (the '{pattern}' engine runs "
        f"one layer at a time: bbsparse spmv --set pattern={pattern})")
    assert not (tmp_path / "out").exists()
