"""`bbsparse compile` + `bbsparse run` end to end (DESIGN §16.4): models from real exporters
compiled and run on their RTL under Verilator, every output equal to the golden integer
model, accuracy against onnxruntime's float model reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bbsparse.cli import main
from bbsparse.compiler.build import load_compiled
from tests import onnx_models


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def sklearn_compiled(tmp_path_factory):
    """An sklearn MLPClassifier (StandardScaler head, 3 linear layers, classifier tail),
    exported by skl2onnx, pruned to BBS 2/8, fine-tuned, compiled for 8 lanes x 2 PEs."""
    folder = tmp_path_factory.mktemp("sk")
    path, X, y = onnx_models.sklearn_mlp(folder / "mlp.onnx")
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    status = main([str(a) for a in (
        "compile", path, "--calibration", folder / "X.npy", "--bank-size", 8,
        "--nnz-per-bank", 2, "--pes", 2, "--finetune", folder / "X.npy", "--labels",
        folder / "y.npy", "--epochs", 10, "--out", folder / "out")])
    assert status == 0
    return folder


def test_sklearn_mlp_runs_bit_exact(sklearn_compiled, capsys):
    folder = sklearn_compiled
    status, stdout, stderr = run(capsys, "run", folder / "out", "--x", folder / "X.npy",
                                 "--labels", folder / "y.npy", "--out", folder / "Y.npy")
    assert status == 0, stderr
    report = json.loads((folder / "Y.json").read_text())
    Y = np.load(folder / "Y.npy")
    assert Y.shape == (len(np.load(folder / "X.npy")), 10) and Y.dtype == np.float32
    assert report["golden_mismatches"] == 0
    assert report["error"] is False
    assert report["cycles_per_inference"] >= report["ideal_cycles"] > 0
    # Fine-tuned BBS 2/8 at int8 stays close to the float model it came from.
    assert report["accuracy"] > 0.85
    assert report["accuracy"] == report["accuracy_golden"]
    assert report["top1_agreement_with_onnxruntime"] > 0.85
    assert report["latency_us"] is None  # a sim folder has no Fmax to quote
    assert "golden_mismatches 0" in stdout


def test_rtl_outputs_are_the_golden_model_dequantized(sklearn_compiled, capsys):
    folder = sklearn_compiled
    X = np.load(folder / "X.npy")[:20]
    np.save(folder / "X20.npy", X)
    assert run(capsys, "run", folder / "out", "--x", folder / "X20.npy", "--out",
               folder / "Y20.npy")[0] == 0
    compiled = load_compiled(folder / "out")
    features = compiled.float_model.preprocess(X)
    np.testing.assert_array_equal(np.load(folder / "Y20.npy"), compiled.quantized.run(features))


def test_torch_form_model_runs_bit_exact(tmp_path, capsys):
    """Gemm transB=1 with biases and named nodes, as torch.onnx.export writes nn.Linear;
    pruned one-shot (no fine-tuning), 4 lanes x 1 PE."""
    path = onnx_models.torch_form_mlp(tmp_path / "t.onnx", sizes=(40, 24, 16, 6))
    rng = np.random.default_rng(3)
    np.save(tmp_path / "cal.npy", rng.normal(size=(64, 40)))
    np.save(tmp_path / "x.npy", rng.normal(size=(16, 40)))
    status, _, stderr = run(capsys, "compile", path, "--calibration", tmp_path / "cal.npy",
                            "--bank-size", 4, "--nnz-per-bank", 2, "--lanes", 4,
                            "--out", tmp_path / "out")
    assert status == 0, stderr
    status, _, stderr = run(capsys, "run", tmp_path / "out", "--x", tmp_path / "x.npy",
                            "--out", tmp_path / "y.npy")
    assert status == 0, stderr
    report = json.loads((tmp_path / "y.json").read_text())
    assert report["golden_mismatches"] == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [layer["name"] for layer in manifest["layers"]] == ["/fc1/Gemm", "/fc2/Gemm",
                                                               "/fc3/Gemm"]
    assert np.load(tmp_path / "y.npy").shape == (16, 6)


def test_run_refuses_a_folder_that_is_not_compiled(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    status, _, stderr = run(capsys, "run", tmp_path, "--x", tmp_path / "x.npy", "--out",
                            tmp_path / "y.npy")
    assert status == 2
    assert "is not a compiled model" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()


def test_run_refuses_inputs_of_the_wrong_width(sklearn_compiled, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 60)))
    status, _, stderr = run(capsys, "run", sklearn_compiled / "out", "--x", tmp_path / "x.npy",
                            "--out", tmp_path / "y.npy")
    assert status == 2, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()
