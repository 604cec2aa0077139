"""The generated core under Verilator, through the Python-free harness (tb/harness.py):
every configuration, random stalls on every stream, compared with the golden model."""

import numpy as np
import pytest

from bbsparse.golden import cycles, prune, spmv
from bbsparse.golden.config import Config
from bbsparse.tb.harness import Stalls, run_spmv

from .rtl_configs import RTL_CONFIGS

STALLS = Stalls(x_idle=0.25, w_idle=0.3, y_stall=0.4, y_burst=0.01)


def random_problem(config: Config, rows: int, vectors: int, seed: int):
    """BBS weights and vectors, with some rows and vectors at the extremes of their ranges
    so that products, sums, rounding and saturation reach their edges."""
    rng = np.random.default_rng(seed)
    w_lo, w_hi = -(1 << (config.weight_width - 1)), (1 << (config.weight_width - 1)) - 1
    x_lo, x_hi = -(1 << (config.act_width - 1)), (1 << (config.act_width - 1)) - 1
    dense = rng.integers(w_lo, w_hi + 1, size=(rows, config.cols))
    dense[0] = w_lo
    if rows > 1:
        dense[1] = w_hi
    W = prune.prune_bbs(dense, config.bank_size, config.nnz_per_bank)
    X = rng.integers(x_lo, x_hi + 1, size=(vectors, config.cols))
    X[0] = x_lo
    return W, X


@pytest.mark.parametrize("name", list(RTL_CONFIGS))
def test_random_stalls_match_golden(name, tmp_path):
    config = Config(**RTL_CONFIGS[name])
    seed = 1000 + len(name)
    rows = 3 * config.pes + 1  # never a multiple of pes > 1
    rows = max(rows, 37 if config.cols <= 128 else 19)
    W, X = random_problem(config, rows, vectors=4, seed=seed)
    result = run_spmv(config, W, X, seed=seed, stalls=STALLS, workdir=tmp_path)
    expected = spmv.spmv(config, W, X)
    mismatches = np.argwhere(result.y != expected)
    assert mismatches.size == 0, (
        f"seed {seed}: {len(mismatches)} results differ, first (vector, row) "
        f"{tuple(mismatches[0])}: RTL {result.y[tuple(mismatches[0])]}, "
        f"golden {expected[tuple(mismatches[0])]}")
    assert not result.report["error"], f"seed {seed}: error output rose"
    assert result.report["y_tlast_ok"], f"seed {seed}: y tlast misplaced"
    # The stalls really happened (else this test proves nothing about back-pressure).
    assert result.report["y_wait_cycles"] > 0 and result.report["x_wait_cycles"] >= 0


@pytest.mark.parametrize("name", list(RTL_CONFIGS))
def test_full_throughput_without_stalls(name, tmp_path):
    """With no stall anywhere, the w stream runs without a bubble, across rows and matrices:
    the run takes exactly the ideal cycle count plus the pipeline latency."""
    config = Config(**RTL_CONFIGS[name])
    # Enough rows that a matrix takes at least as long as loading the next x (else the run is
    # bound by the x stream, which the ideal count allows for but steady state does not).
    groups = -(-config.x_beats // config.cycles_per_row) + 1
    rows = groups * config.pes - (1 if config.pes > 1 else 0)
    W, X = random_problem(config, rows, vectors=3, seed=7)
    result = run_spmv(config, W, X, seed=7, workdir=tmp_path)
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
    report = result.report
    assert report["steady_cycles"] == cycles.steady_cycles(config, rows, 3)
    assert report["cycles"] == report["ideal_cycles"] + report["pipeline_latency"]


def test_long_matrix_in_one_frame(tmp_path):
    """Many row groups in one frame, one x: the credits and double buffer cycle many times."""
    config = Config(lanes=2, pes=2, bank_size=2, nnz_per_bank=1, cols=4)
    W, X = random_problem(config, rows=600, vectors=5, seed=11)
    result = run_spmv(config, W, X, seed=11, stalls=STALLS, workdir=tmp_path)
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
    assert not result.report["error"]


def test_single_vector_shape(tmp_path):
    config = Config(lanes=4, pes=2, bank_size=4, nnz_per_bank=1, cols=32)
    W, X = random_problem(config, rows=9, vectors=1, seed=3)
    result = run_spmv(config, W, X[0], workdir=tmp_path)
    assert result.y.shape == (9,)
    assert np.array_equal(result.y, spmv.spmv(config, W, X[0]))


def test_shorter_matrix_is_padded(tmp_path):
    """A matrix with fewer columns than the core's cols is padded with zero banks."""
    config = Config(lanes=4, pes=2, bank_size=4, nnz_per_bank=2, cols=64)
    rng = np.random.default_rng(5)
    W = prune.prune_bbs(rng.integers(-128, 128, size=(10, 24)), 4, 2)
    X = rng.integers(-128, 128, size=(2, 24))
    result = run_spmv(config, W, X, workdir=tmp_path)
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
