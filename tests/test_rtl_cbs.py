"""The column engine (pattern "cbs") under Verilator: exact results under random stalls,
the cycles of the golden cycle model exactly, the zero activations really skipped, and the
error output on a frame that breaks the format."""

import numpy as np
import pytest

from bbsparse.golden import cbs, prune, spmv
from bbsparse.golden.arith import signed_range
from bbsparse.golden.config import Config
from bbsparse.tb.harness import Stalls, run_spmv, simulate

CONFIGS = {
    "lanes1": dict(lanes=1, pes=1, bank_size=4, cols=16),
    "lanes4-pes2": dict(lanes=4, pes=2, bank_size=4, cols=32),
    "lanes3-pes3-bank6": dict(lanes=3, pes=3, bank_size=6, nnz_per_bank=2, cols=36),
    "lanes8-pes2-odd": dict(lanes=8, pes=2, bank_size=8, nnz_per_bank=2, cols=128,
                            weight_width=6, act_width=5, out_width=9, out_shift=2, relu=True),
    "wrap": dict(lanes=2, pes=2, bank_size=4, nnz_per_bank=4, cols=24, acc_width=17),
}
STALLS = Stalls(x_idle=0.25, w_idle=0.3, y_stall=0.4, y_burst=0.01)


def problem(config, rows, zero_fractions, seed):
    """A cbs-pruned matrix and one vector per zero fraction (the first all nonzero where the
    fraction is 0, one all zero where it is 1)."""
    rng = np.random.default_rng(seed)
    w_lo, w_hi = signed_range(config.weight_width)
    x_lo, x_hi = signed_range(config.act_width)
    padded = -(-rows // config.bank_size) * config.bank_size
    dense = rng.integers(w_lo, w_hi + 1, size=(padded, config.cols))
    W = prune.prune_cbs(dense, config.bank_size, config.nnz_per_bank)[:rows]
    X = rng.integers(x_lo, x_hi + 1, size=(len(zero_fractions), config.cols))
    X[X == 0] = 1
    for k, fraction in enumerate(zero_fractions):
        X[k, rng.random(config.cols) < fraction] = 0
    return W, X


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_stalls_match_golden(name, tmp_path):
    config = Config(pattern="cbs", **CONFIGS[name])
    seed = 500 + len(name)
    rows = config.cols - config.bank_size // 2 - 1  # a last bank that is only partly there
    W, X = problem(config, rows, [0.5, 1.0, 0.0, 0.75, 0.25], seed)
    result = run_spmv(config, W, X, seed=seed, stalls=STALLS, workdir=tmp_path)
    assert np.array_equal(result.y, spmv.spmv(config, W, X)), f"seed {seed}"
    assert not result.report["error"] and result.report["y_tlast_ok"], f"seed {seed}"
    if name == "wrap":
        exact = W.astype(object) @ X.T.astype(object)
        assert (np.abs(exact) >= 1 << 16).any(), "the accumulator never wraps: test is void"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cycles_match_the_model(name, tmp_path):
    """Without stalls, the whole run and the w stream take exactly the cycles of
    golden.cbs.run_cycles, and the core takes exactly the beats of the nonzero columns."""
    config = Config(pattern="cbs", **CONFIGS[name])
    rows = config.cols
    W, X = problem(config, rows, [0.0, 0.5, 1.0, 0.9], seed=7)
    result = run_spmv(config, W, X, workdir=tmp_path)
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
    report = result.report
    nonzeros = [int(np.count_nonzero(x)) for x in X]
    timing = cbs.run_cycles(config, rows, nonzeros)
    assert report["cycles"] == timing.cycles
    assert report["cycles"] == report["predicted_cycles"] + report["pipeline_latency"]
    assert report["steady_cycles"] == report["predicted_steady_cycles"]
    assert report["steady_cycles"] == timing.steady_cycles
    assert report["w_beats"] == sum(cbs.frame_beats(config, rows, k) for k in nonzeros)


def test_skipping_pays_only_for_nonzero_activations(tmp_path):
    """One matrix, vectors with fewer and fewer nonzeros: the measured w stream shrinks in
    proportion, column_rounds * nnz_per_bank beats per nonzero activation."""
    config = Config(pattern="cbs", lanes=4, pes=2, bank_size=8, nnz_per_bank=2, cols=64)
    W, X = problem(config, 64, [0.0], seed=11)
    steady = {}
    for keep in (64, 32, 8):
        x = X[0].copy()
        x[keep:] = 0
        result = run_spmv(config, W, x, workdir=tmp_path)
        assert np.array_equal(result.y, spmv.spmv(config, W, x))
        steady[keep] = result.report["steady_cycles"]
    per_column = cbs.column_rounds(config, 64) * config.nnz_per_bank
    assert steady == {keep: 1 + keep * per_column for keep in (64, 32, 8)}


def _words(config, W, x):
    packed = config.format.pack(config, W, x[None, :])
    return packed.x_words, packed.w_words


@pytest.mark.parametrize("fault", ["none", "early-tlast", "missing-tlast", "row-past-matrix"])
def test_error_output(fault, tmp_path):
    """The core counts a frame's beats itself (header, then column_rounds * nnz_per_bank
    per nonzero activation of its list): a tlast one beat early or one beat late, or a
    nonzero slot in a row group past the header's, raises the sticky error; the correct
    frame does not. The results still arrive (the matrix ends where the count or the tlast
    says), so the core does not hang."""
    config = Config(pattern="cbs", lanes=2, pes=1, bank_size=4, cols=16)
    W, X = problem(config, 16, [0.5], seed=3)
    packed = config.format.pack(config, W, X)
    words = list(packed.w_words)
    y_beats = config.row_groups(16)
    if fault == "early-tlast":
        words = words[:-1]
    elif fault == "missing-tlast":
        words = words + [0]  # the real last beat goes without tlast; this one carries it
    elif fault == "row-past-matrix":
        rg_bits, _ = cbs.header_bits(config)
        words[0] = (words[0] & ~((1 << rg_bits) - 1)) | 1  # 2 row groups: rows 0 and 1
        y_beats = 2
    raw = simulate(config, packed.x_words, words, vectors=1, y_beats=y_beats,
                   workdir=tmp_path, w_frames=[len(words)])
    assert bool(raw.figures["error"]) == (fault != "none"), fault
