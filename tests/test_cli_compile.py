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


def test_clock_and_baud_are_refused_where_they_mean_nothing(sklearn_model, tmp_path, capsys):
    """--clock-mhz needs an FPGA target, --baud a board, and on a board both must make a
    clock the PLL can and a UART rate within 2 %: refused before the model is read."""
    base = ["compile", tmp_path / "missing.onnx", "--calibration", sklearn_model / "X.npy",
            *BBS, "--out", tmp_path / "out"]
    status, _, stderr = run(capsys, *base, "--clock-mhz", "50")
    assert_refused(status, stderr, "--clock-mhz: only with an FPGA target", "not sim")
    status, _, stderr = run(capsys, *base, "--clock-mhz", "50", "--baud", "9600")
    assert_refused(status, stderr, "--clock-mhz and --baud: only with an FPGA target")
    status, _, stderr = run(capsys, *base, "--target", "ecp5-25k", "--baud", "9600")
    assert_refused(status, stderr, "--baud: only with a board target (icebreaker, ulx3s); "
                                   "ecp5-25k is a chip")
    status, _, stderr = run(capsys, *base, "--target", "icebreaker", "--baud", "2900000")
    assert_refused(status, stderr, "baud 2900000 is 3.4% off at 30 MHz")
    status, _, stderr = run(capsys, *base, "--target", "icebreaker", "--clock-mhz", "900")
    assert_refused(status, stderr, "--clock-mhz 900 on the icebreaker")
    status, _, stderr = run(capsys, *base, "--target", "icebreaker", "--clock-mhz", "0")
    assert_refused(status, stderr, "--clock-mhz: must be a frequency in MHz, not '0'")
    assert not (tmp_path / "out").exists()


def test_the_clock_and_baud_reach_the_board_build_and_run_takes_the_baud(sklearn_model,
                                                                         tmp_path, capsys,
                                                                         monkeypatch):
    """The board build gets --clock-mhz and --baud (its figures go to the manifest, and
    `bbsparse run --port` uses that baud unless told); a chip's flow gets the clock as its
    constraint. The FPGA tools are replaced: what is checked is what reaches them."""
    from bbsparse.compiler import run as compiled_run
    from bbsparse.synth import boards, flow

    seen = {}

    def board_build(model, board_name, folder, **kwargs):
        seen["board"] = kwargs
        return {"bitstream": str(folder / "bbs_board.bin"), "clock_mhz": 24.0,
                "baud": kwargs["baud"], "fmax": {"achieved_mhz": 31.5, "constraint_mhz": 24.0,
                                                  "met": True}}

    def chip_flow(target, config, folder, **kwargs):
        seen["chip"] = kwargs
        kwargs["core"]._MustUse__silence = True  # the model core a real flow would build
        report = {"fmax": {"achieved_mhz": 180.0, "constraint_mhz": kwargs["freq_mhz"],
                           "met": True}}
        return flow.FlowResult(report, folder / "report.json", folder / "bbs_synth_top.bit")

    monkeypatch.setattr(boards, "build_model_board", board_build)
    monkeypatch.setattr(flow, "run_flow", chip_flow)
    base = ["compile", sklearn_model / "mlp.onnx", "--calibration", sklearn_model / "X.npy",
            *BBS]
    status, _, stderr = run(capsys, *base, "--target", "icebreaker", "--clock-mhz", "24",
                            "--baud", "57600", "--out", tmp_path / "board")
    assert status == 0, stderr
    assert (seen["board"]["clock_mhz"], seen["board"]["baud"]) == (24.0, 57600)
    manifest = json.loads((tmp_path / "board" / "manifest.json").read_text())
    assert (manifest["bitstream"]["clock_mhz"], manifest["bitstream"]["baud"]) == (24.0, 57600)
    # Without --baud the board's UART runs at 115200, and the clock is the board's default.
    status, _, stderr = run(capsys, *base, "--target", "icebreaker", "--out", tmp_path / "b2")
    assert status == 0, stderr
    assert (seen["board"]["clock_mhz"], seen["board"]["baud"]) == (None, 115200)
    status, _, stderr = run(capsys, *base, "--target", "ecp5-25k", "--clock-mhz", "150",
                            "--out", tmp_path / "chip")
    assert status == 0, stderr
    assert seen["chip"]["freq_mhz"] == 150.0
    chip = json.loads((tmp_path / "chip" / "manifest.json").read_text())["bitstream"]
    assert chip["constraint_mhz"] == 150.0 and "baud" not in chip

    bauds = []

    def fake_run(compiled, X, **kwargs):
        bauds.append(kwargs["baud"])
        raise SystemExit(0)  # stop before anything would talk to a port

    monkeypatch.setattr(compiled_run, "run_compiled", fake_run)
    x = sklearn_model / "X.npy"
    for folder, extra in (("board", []), ("board", ["--baud", "9600"]), ("chip", [])):
        main(["run", str(tmp_path / folder), "--x", str(x), "--out",
              str(tmp_path / f"y{len(bauds)}.npy"), "--port", "/dev/null", *extra])
    assert bauds == [57600, 9600, 115200]
