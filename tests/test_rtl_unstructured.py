"""The unstructured engine under Verilator: exact results under random stalls, and the
cycle count the golden crossbar model predicts."""

import numpy as np
import pytest

from bbsparse.golden import prune, spmv, unstructured
from bbsparse.golden.config import Config
from bbsparse.tb.harness import Stalls, run_spmv

CONFIGS = {
    "lanes1": dict(lanes=1, pes=1, cols=16),
    "lanes4-pes2": dict(lanes=4, pes=2, cols=64),
    "lanes8-pes3-odd": dict(lanes=8, pes=3, cols=72, weight_width=6, act_width=5,
                            out_width=9, out_shift=2, relu=True, product_registers=1,
                            operand_registers=1),
    "lanes16": dict(lanes=16, pes=2, cols=128),
}
STALLS = Stalls(x_idle=0.25, w_idle=0.3, y_stall=0.4, y_burst=0.01)


def problem(config, rows, vectors, density, seed):
    rng = np.random.default_rng(seed)
    w_max = (1 << (config.weight_width - 1)) - 1
    x_max = (1 << (config.act_width - 1)) - 1
    dense = rng.integers(-w_max - 1, w_max + 1, size=(rows, config.cols))
    W = prune.prune_unstructured(dense, int(rows * config.cols * density))
    W[rows // 2] = 0  # an empty row
    X = rng.integers(-x_max - 1, x_max + 1, size=(vectors, config.cols))
    return W, X


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_stalls_match_golden(name, tmp_path):
    config = Config(pattern="unstructured", bank_size=1, **CONFIGS[name])
    seed = 300 + len(name)
    W, X = problem(config, rows=3 * config.pes + 2, vectors=3, density=0.3, seed=seed)
    result = run_spmv(config, W, X, seed=seed, stalls=STALLS, workdir=tmp_path)
    expected = spmv.spmv(config, W, X)
    assert np.array_equal(result.y, expected), f"seed {seed}"
    assert not result.report["error"] and result.report["y_tlast_ok"]


@pytest.mark.parametrize("order", ["columns", "banks"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cycles_match_crossbar_model(name, order, tmp_path):
    """Without stalls the w stream takes exactly the cycles the golden arbiter model says
    (one per beat plus its bank conflicts) and the run adds only the pipeline latency."""
    config = Config(pattern="unstructured", bank_size=1, **CONFIGS[name])
    W, X = problem(config, rows=8 * config.pes, vectors=2, density=0.5, seed=4)
    result = run_spmv(config, W, X, workdir=tmp_path, order=order)
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
    report = result.report
    assert report["steady_cycles"] == report["predicted_steady_cycles"]
    assert report["cycles"] == report["predicted_cycles"] + report["pipeline_latency"]
    values, columns, _ = unstructured.pack_w(config, W, order)
    stream, stalls = unstructured.stream_cycles(config, values, columns)
    assert report["crossbar_stall_cycles"] == 2 * stalls
    if config.lanes > 1 and order == "columns":
        assert stalls > 0  # random columns do collide
    if order == "banks":
        assert stalls == 0


def test_all_on_one_bank(tmp_path):
    """Adversarial: every nonzero of every row in bank 0 -> lanes cycles a beat."""
    config = Config(pattern="unstructured", lanes=4, pes=1, bank_size=1, cols=32)
    W = np.zeros((6, 32), int)
    W[:, 0::4] = 7  # columns 0, 4, ..., 28: all bank 0, eight a row = two beats
    X = np.arange(32)[None, :] - 16
    result = run_spmv(config, W, X, workdir=tmp_path, order="columns")
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
    # Accepted beats are 4 cycles apart; the last beat's own 3 extra cycles follow it.
    assert result.report["steady_cycles"] == 6 * 2 * 4 - 3
    assert result.report["crossbar_stall_cycles"] == 6 * 2 * 3


@pytest.mark.parametrize("stalls", [Stalls(), STALLS], ids=["no-stalls", "stalls"])
def test_short_matrices_do_not_reuse_a_read_x(stalls, tmp_path):
    """A matrix of one or two w beats ends before the gather's last response frees its x
    buffer: the reader switches twice before the first release. It must not take the
    buffer it has just read for the next vector (found by the x-buffer proof, tb/formal.py)."""
    config = Config(pattern="unstructured", lanes=2, pes=1, bank_size=1, cols=4)
    W = np.zeros((1, 4), dtype=np.int64)
    W[0, 1] = 3
    X = np.random.default_rng(1).integers(-8, 8, (6, 4))
    result = run_spmv(config, W, X, seed=5, stalls=stalls, workdir=tmp_path)
    assert np.array_equal(result.y, spmv.spmv(config, W, X))
    assert not result.report["error"] and result.report["y_tlast_ok"]
