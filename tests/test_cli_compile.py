"""`bbsparse compile` (DESIGN §16.2): the folder it writes, and every refusal as one line,
exit status 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bbsparse.cli import main
from bbsparse.compiler.build import load_compiled
from bbsparse.golden.prune import check_bbs
from tests import onnx_models

BBS = ["--bank-size", "8", "--nnz-per-bank", "2"]


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(status, stderr, *fragments):
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bbsparse: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sk")
    path, X, y = onnx_models.sklearn_mlp(folder / "mlp.onnx")
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return folder


def test_compile_writes_a_complete_folder(sklearn_model, tmp_path, capsys):
    out = tmp_path / "compiled"
    status, stdout, stderr = run(capsys, "compile", sklearn_model / "mlp.onnx", "--calibration",
                                 sklearn_model / "X.npy", *BBS, "--labels",
                                 sklearn_model / "y.npy", "--out", out)
    assert status == 0, stderr
    for step in range(1, 6):
        assert f"[{step}/5]" in stdout
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "bbs_model.v", "bbs_model.json", "integer_model.npz",
            "w_rom.hex", "bias_rom.hex", "model.onnx"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert [layer["rows"] for layer in manifest["layers"]] == [32, 16, 10]
    assert manifest["source"]["host_before"] == ["Scaler", "Cast"]
    assert "ArgMax" in manifest["source"]["host_after"]
    assert set(manifest["accuracy"]) == {"float", "pruned", "int8_golden"}
    compiled = load_compiled(out)
    for layer in compiled.quantized.model.layers:
        assert np.count_nonzero(layer.weights) <= layer.weights.size * 2 / 8
        assert check_bbs(np.pad(layer.weights, ((0, 0), (0, -layer.cols % 8))), 8, 2) is None
    # The ROM image holds every layer's w beats.
    words = (out / "w_rom.hex").read_text().split()
    assert len(words) == manifest["memory"]["w_rom_words"] == sum(
        layer["w_beats"] for layer in manifest["layers"])


def test_a_layer_already_in_the_pattern_is_kept(tmp_path, capsys):
    from tests.onnx_models import torch_form_mlp

    path = torch_form_mlp(tmp_path / "t.onnx", sizes=(16, 8, 4))
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name == "fc1.weight":
            W = numpy_helper.to_array(init).copy()
            W[np.abs(W) < np.sort(np.abs(W).reshape(8, 2, 8), axis=-1)[..., -2].repeat(8, 1)] = 0
            init.CopyFrom(numpy_helper.from_array(W, init.name))
    onnx.save(model, path)
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).normal(size=(32, 16)))
    status, _, stderr = run(capsys, "compile", path, "--calibration", tmp_path / "cal.npy",
                            *BBS, "--out", tmp_path / "out")
    assert status == 0, stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [layer["pruning"] for layer in manifest["layers"]] == ["kept", "pruned"]


@pytest.mark.parametrize("builder, fragments", [
    (onnx_models.unsupported_model, ["(Tanh) between linear layers is not supported",
                                     "(supported: Gemm, MatMul+Add, Relu)"]),
    (onnx_models.dynamic_features_model, ["dynamic"]),
], ids=["tanh", "dynamic"])
def test_unsupported_models_are_refused_and_nothing_is_written(builder, fragments, tmp_path,
                                                               capsys):
    path = builder(tmp_path / "m.onnx") or tmp_path / "m.onnx"
    np.save(tmp_path / "cal.npy", np.zeros((4, 16)))
    status, _, stderr = run(capsys, "compile", path, "--calibration", tmp_path / "cal.npy",
                            *BBS, "--out", tmp_path / "out")
    assert_refused(status, stderr, *fragments)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.npy", "m.onnx"]


def test_a_corrupt_file_is_refused(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage" * 10)
    np.save(tmp_path / "cal.npy", np.zeros((4, 16)))
    status, _, stderr = run(capsys, "compile", tmp_path / "m.onnx", "--calibration",
                            tmp_path / "cal.npy", *BBS, "--out", tmp_path / "out")
    assert_refused(status, stderr, "m.onnx")
    assert not (tmp_path / "out").exists()


def test_a_model_that_does_not_fit_is_refused_before_any_tool(tmp_path, capsys):
    path = onnx_models.torch_form_mlp(tmp_path / "big.onnx", sizes=(1024, 1024, 512, 10))
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).normal(size=(8, 1024)))
    status, _, stderr = run(capsys, "compile", path, "--calibration", tmp_path / "cal.npy",
                            "--bank-size", "8", "--nnz-per-bank", "4", "--target", "icebreaker",
                            "--out", tmp_path / "out")
    assert_refused(status, stderr, "does not fit the ice40-up5k", "weight ROM", "/fc1/Gemm")
    assert not (tmp_path / "out").exists()


def test_calibration_of_the_wrong_width_is_refused(sklearn_model, tmp_path, capsys):
    np.save(tmp_path / "cal.npy", np.zeros((4, 60)))
    status, _, stderr = run(capsys, "compile", sklearn_model / "mlp.onnx", "--calibration",
                            tmp_path / "cal.npy", *BBS, "--out", tmp_path / "out")
    assert_refused(status, stderr)
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_compiled_model_is_not_replaced(sklearn_model, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    status, _, stderr = run(capsys, "compile", sklearn_model / "mlp.onnx", "--calibration",
                            sklearn_model / "X.npy", *BBS, "--out", out)
    assert_refused(status, stderr, "not replacing")
    assert (out / "thesis.tex").read_text() == "keep me"
