"""`bbsparse generate` and `bbsparse spmv` (DESIGN §4 JSON, §8 command line)."""

import json

import numpy as np
import pytest

from bbsparse.cli import main
from bbsparse.golden import prune, spmv

SECTION_2 = ["lanes", "pes", "bank_size", "nnz_per_bank", "cols", "weight_width", "act_width",
             "acc_width", "out_width", "out_shift", "relu"]


def test_generate_writes_verilog_and_json(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", "--set", "lanes=4", "--set", "relu=true", "--set", "out_shift=2",
                 "--out", str(out)]) == 0
    text = (out / "bbs_spmv.v").read_text()
    assert "module bbs_spmv(" in text
    for port in ["s_axis_x_tdata", "s_axis_w_tlast", "m_axis_y_tready", "error", "clk", "rst"]:
        assert port in text
    assert "/work" not in text and str(tmp_path) not in text  # no source paths
    info = json.loads((out / "bbs_spmv.json").read_text())
    params = info["parameters"]
    assert all(name in params for name in SECTION_2)
    assert params["lanes"] == 4 and params["relu"] is True and params["out_shift"] == 2
    assert params["acc_width"] == 8 + 8 + 7  # 128 banks x 1 nonzero: log2(128) = 7
    derived = info["derived"]
    assert derived["x_beats"] == 32 * 8 and derived["cycles_per_row"] == 32
    assert derived["w_beat_width"] == 2 * 4 * (8 + 3)
    assert derived["ports"]["m_axis_y_tdata"] == {"direction": "out", "width": 2 * 23}
    # Regenerating leaves the text as it was (stable for build caches).
    mtime = (out / "bbs_spmv.v").stat().st_mtime_ns
    assert main(["generate", "--set", "lanes=4", "--set", "relu=true", "--set", "out_shift=2",
                 "--out", str(out)]) == 0
    assert (out / "bbs_spmv.v").stat().st_mtime_ns == mtime


def test_generate_reads_toml_and_rejects_bad_config(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("lanes = 2\npes = 1\nbank_size = 4\nnnz_per_bank = 5\ncols = 16\n")
    assert main(["generate", "--config", str(config), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "bbsparse: error: nnz_per_bank must not exceed bank_size (4), not 5"
    assert not (tmp_path / "g").exists()


@pytest.fixture
def problem(tmp_path):
    rng = np.random.default_rng(9)
    W = prune.prune_bbs(rng.integers(-128, 128, size=(10, 32)), 4, 1).astype(np.int8)
    X = rng.integers(-128, 128, size=(2, 32)).astype(np.int8)
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "X.npy", X)
    return tmp_path, W, X


SMALL = ["--set", "lanes=4", "--set", "pes=2", "--set", "bank_size=4", "--set", "nnz_per_bank=1",
         "--set", "cols=32"]


def test_spmv_runs_rtl_and_reports(problem, capsys):
    tmp_path, W, X = problem
    out = tmp_path / "Y.npy"
    assert main(["spmv", *SMALL, "--weights", str(tmp_path / "W.npy"), "--x",
                 str(tmp_path / "X.npy"), "--out", str(out), "--y-stall", "0.3"]) == 0
    from bbsparse.golden.config import Config
    config = Config(lanes=4, pes=2, bank_size=4, nnz_per_bank=1, cols=32)
    Y = np.load(out)
    assert Y.shape == (2, 10)
    assert np.array_equal(Y, spmv.spmv(config, W, X))
    report = json.loads(out.with_suffix(".json").read_text())
    for key in ["cycles", "ideal_cycles", "utilization", "utilization_steady", "useful_macs",
                "multipliers", "sim_cycles_per_second"]:
        assert key in report
    assert report["useful_macs"] == 2 * 10 * 8 and report["multipliers"] == 8
    assert report["cycles"] >= report["ideal_cycles"]
    assert 0 < report["utilization"] <= report["utilization_steady"] <= 1
    assert report["golden_mismatches"] == 0
    assert "cycles" in capsys.readouterr().out


def test_spmv_single_vector(problem):
    tmp_path, W, X = problem
    np.save(tmp_path / "x1.npy", X[1])
    assert main(["spmv", *SMALL, "--weights", str(tmp_path / "W.npy"), "--x",
                 str(tmp_path / "x1.npy"), "--out", str(tmp_path / "y1.npy")]) == 0
    assert np.load(tmp_path / "y1.npy").shape == (10,)


def test_spmv_refuses_pattern_violation(problem, capsys):
    tmp_path, W, X = problem
    W = W.copy()
    W[3, 9] = W[3, 8] = 5  # row 3, bank 2 (columns 8..11) now holds two nonzeros
    np.save(tmp_path / "bad.npy", W)
    out = tmp_path / "Y.npy"
    assert main(["spmv", *SMALL, "--weights", str(tmp_path / "bad.npy"), "--x",
                 str(tmp_path / "X.npy"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbsparse: error:") and "row 3, bank 2" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("change, message", [
    (lambda W, X: (W, X[:, :16]), "has 16 columns"),
    (lambda W, X: (np.zeros((4, 64), np.int8), X), "the core is generated for cols = 32"),
    (lambda W, X: (W, X.astype(np.float32)), "need integers"),
    (lambda W, X: (W.astype(np.int32) * 0 + 300 * (W != 0), X), "weight_width"),
])
def test_spmv_refuses_bad_input(problem, capsys, change, message):
    tmp_path, W, X = problem
    W2, X2 = change(W, X)
    np.save(tmp_path / "W2.npy", W2)
    np.save(tmp_path / "X2.npy", X2)
    out = tmp_path / "Y.npy"
    assert main(["spmv", *SMALL, "--weights", str(tmp_path / "W2.npy"), "--x",
                 str(tmp_path / "X2.npy"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
