"""`bbsparse demo digits`: the per-layer int8 scheme is exactly the core's output stage, the
ONNX export is what torch writes for nn.Linear and computes the float network, the compiled
BBS rows and the per-layer rows agree with the golden model on real images, and any
disagreement fails the demo."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
from threadpoolctl import threadpool_limits

from bbsparse import demo_digits as demo
from bbsparse.cli import main
from bbsparse.golden.cbs import check_cbs
from bbsparse.golden.config import load_config
from bbsparse.golden.prune import check_bbs

SEED = 7


def pattern(name):
    return next(p for p in demo.PATTERNS if p.name == name)


@pytest.fixture(scope="module")
def data():
    return demo.load_split()


@pytest.fixture(scope="module")
def trained(data):
    X_train, y_train, _, _ = data
    with threadpool_limits(limits=1):
        W1, W2 = demo.init_weights(SEED)
        return demo.train(W1, W2, X_train, y_train, epochs=4, rate=demo.LEARNING_RATE,
                          seed=SEED)


def integer_reference(W1, W2, pixels, out_shift):
    """The int8 network with Python integers only: no golden model, no NumPy shifts."""
    hidden, logits = [], []
    for x in pixels.tolist():
        h = []
        for row in W1.tolist():
            acc = sum(w * v for w, v in zip(row, x, strict=True))
            r = (acc + 2 ** (out_shift - 1)) // 2**out_shift  # floor division: round half up
            h.append(min(max(r, 0), 127))
        hidden.append(h)
        logits.append([sum(w * v for w, v in zip(row, h, strict=True)) for row in W2.tolist()])
    return np.array(hidden), np.array(logits)


@pytest.mark.parametrize("name", ["bbs-8-2", "nm-2-4", "unstructured-1-8", "block4-2-8"])
def test_golden_int8_equals_an_independent_integer_network(name, data, trained):
    X_train, _, X_test, _ = data
    p = pattern(name)
    W1, W2 = (p.prune(W) for W in trained)
    net = demo.quantize(W1, W2, X_train, p.bank)
    assert net.W1.dtype == np.int8 and net.W2.dtype == np.int8
    assert net.layer1.relu and net.layer1.out_width == 8 and net.layer1.out_shift >= 1
    assert not net.layer2.relu and net.layer2.out_shift == 0
    if p.bank is not None:
        for W in (net.W1, net.W2):
            assert check_bbs(W, *p.bank) is None
    pixels = X_test[:40]
    hidden, logits = demo.golden_inference(net, pixels)
    ref_hidden, ref_logits = integer_reference(net.W1, net.W2, pixels, net.layer1.out_shift)
    np.testing.assert_array_equal(hidden, ref_hidden)
    np.testing.assert_array_equal(logits, ref_logits)


def test_out_shift_is_the_power_of_two_rescaling(data, trained):
    """With power-of-two scales, the dequantized hidden activation is the float activation
    of the dequantized weights to within half a hidden step (where it does not saturate),
    so a wrong out_shift (off by one either way) fails here."""
    X_train, _, X_test, _ = data
    net = demo.quantize(*trained, X_train, (8, 8))
    e = net.exponents
    hidden, _ = demo.golden_inference(net, X_test)
    exact = np.maximum((X_test / 16.0) @ (net.W1 * 2.0 ** e["w1"]).T, 0.0)  # exact in float64
    step = 2.0 ** e["hidden"]
    inside = hidden < 127
    assert inside.mean() > 0.99
    error = np.abs(hidden * step - exact)[inside]
    assert error.max() <= step / 2
    # The hidden scale is the finest that holds the training split's largest activation.
    largest = demo.forward(*trained, X_train / 16.0)[1].max()
    assert largest <= 127 * step < 2 * largest


def test_block_pruning_ranks_edge_tiles_by_mean(data):
    """Layer 2 has 10 rows: its bottom 4x4 tiles hold only 2. Ranked by their sum they would
    never be kept (classes 8 and 9 with no weight at all); ranked by their mean they are."""
    rng = np.random.default_rng(SEED)
    W = rng.normal(size=(demo.CLASSES, demo.HIDDEN))
    pruned = pattern("block4-4-8").prune(W)
    assert np.count_nonzero(pruned[8:]) > 0
    assert abs(np.count_nonzero(pruned) - W.size // 2) <= 8  # one 2x4 edge tile at most
    # Kept tiles are whole: every kept position of a tile is kept in all of it.
    tiles = (pruned[:8] != 0).reshape(2, 4, 64, 4).transpose(0, 2, 1, 3).reshape(128, 16)
    assert set(tiles.sum(axis=1).tolist()) <= {0, 16}


def test_export_is_torch_form_and_computes_the_float_network(tmp_path, data, trained):
    """The export is Gemm(transB=1) + zero bias, Relu, Gemm, as torch.onnx.export writes
    nn.Linear, and onnxruntime gives the float network's logits on test images."""
    from bbsparse.onnx_import import read_model

    _, _, X_test, _ = data
    W1, W2 = (pattern("bbs-8-2").prune(W) for W in trained)
    path = demo.export_onnx(W1, W2, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    assert [(n.op_type, n.name) for n in model.graph.node] == [
        ("Gemm", "/fc1/Gemm"), ("Relu", "/relu1/Relu"), ("Gemm", "/fc2/Gemm")]
    for node in (model.graph.node[0], model.graph.node[2]):
        assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}["transB"] == 1
    read = read_model(str(path))
    assert [layer.weight.shape for layer in read.layers] == [(256, 64), (10, 256)]
    assert [layer.relu for layer in read.layers] == [True, False]
    assert all(not layer.bias.any() for layer in read.layers)
    np.testing.assert_array_equal(read.layers[0].weight, W1.astype(np.float32))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = demo.as_float(X_test[:50]).astype(np.float32)
    (logits,) = session.run(None, {"input": x})
    np.testing.assert_allclose(logits, demo.forward(W1, W2, x)[2], rtol=1e-4, atol=1e-4)


def test_rtl_matches_golden_on_a_few_images(tmp_path, capsys):
    """The demo's own paths, small: BBS 1/8 exported, compiled and run whole on the model
    core; unstructured 1/8 per layer on the unstructured engine; 6 test images each."""
    from bbsparse.compiler.build import load_compiled

    out = tmp_path / "demo"
    results = demo.run(out, SEED, patterns=[pattern("bbs-8-1"), pattern("unstructured-1-8")],
                       test_images=6, train_epochs=2, finetune_epochs=1, log=lambda _: None)
    bbs, unstructured = results["rows"]
    rtl = bbs["rtl"]
    assert rtl["path"] == "compiled"
    assert rtl["logit_mismatches"] == 0 and not rtl["error"]
    assert demo.all_match(results)
    folder = out / "bbs-8-1"
    logits_rtl = np.load(folder / "logits_rtl.npy")
    assert logits_rtl.shape == (6, 10)
    np.testing.assert_array_equal(logits_rtl, np.load(folder / "logits_golden.npy"))
    # Logits are not all equal (a core that returned zeros everywhere would match nothing).
    assert len(np.unique(logits_rtl)) > 10
    # The compiler kept the demo's pruning and fine-tuning: both layers already BBS 1/8.
    compiled = load_compiled(folder / demo.COMPILED)
    manifest = compiled.manifest
    assert [layer["pruning"] for layer in manifest["layers"]] == ["kept", "kept"]
    assert (manifest["core"]["bank_size"], manifest["core"]["nnz_per_bank"]) == (8, 1)
    assert (manifest["core"]["lanes"], manifest["core"]["pes"]) == (demo.LANES, demo.PES)
    # Batch 1 takes at least every layer's x and w beats; the batch at least its w beats
    # for every image (one w beat a cycle at most).
    w_beats = sum(layer["w_beats"] for layer in manifest["layers"])
    ideal = sum(layer["x_beats"] for layer in manifest["layers"]) + w_beats
    assert rtl["batch1_ideal_cycles"] == ideal
    assert rtl["batch1_cycles"] == ideal + rtl["batch1_fill_cycles"] > ideal
    assert rtl["cycles"] >= 6 * w_beats and 0 < rtl["utilization"] <= 1
    loose = unstructured["rtl"]
    assert loose["path"] == "per-layer"
    assert loose["logit_mismatches"] == 0 and loose["hidden_mismatches"] == 0
    assert loose["cycles"] >= loose["ideal_cycles"]
    np.testing.assert_array_equal(np.load(out / "unstructured-1-8" / "logits_rtl.npy"),
                                  np.load(out / "unstructured-1-8" / "logits_golden.npy"))
    table = (out / "table.md").read_text()
    assert "on-chip batch-1 cycles" in table.splitlines()[2]
    assert "Unstructured and block rows: per layer" in table.splitlines()[0]
    bbs_line = next(row for row in table.splitlines() if row.startswith("| BBS 1/8"))
    assert f"| {rtl['batch1_cycles']} |" in bbs_line and "0 / 6" in bbs_line
    line = next(row for row in table.splitlines() if row.startswith("| unstructured"))
    assert demo.RTL_NA not in line and "0 / 6" in line
    assert [cell.strip() for cell in line.split("|")][9] == "-"  # no batch-1 figure
    assert [cell.strip() for cell in line.split("|")][12] == "unstructured, unstructured"
    assert bbs_line.rstrip(" |").endswith("bbs, bbs (model core)")
    assert json.loads((out / "results.json").read_text())["test_images"] == 6
    # The unstructured layer configurations replay with `bbsparse spmv --config`.
    assert load_config(out / "unstructured-1-8" / "layer2.toml").pattern == "unstructured"
    # The compiled folder replays with `bbsparse run` on the saved float test inputs.
    replay = tmp_path / "Y.npy"
    assert main(["run", str(folder / demo.COMPILED), "--x", str(out / demo.X_TEST_FLOAT),
                 "--labels", str(out / "y_test.npy"), "--out", str(replay)]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(np.load(replay), logits_rtl)


def test_choice_row_runs_layer1_on_cbs_and_layer2_on_bbs(tmp_path):
    """The "BBS or cbs" row, small: each layer on the engine the golden cycle models predict
    faster. Layer 1 (256 x 64) skips the half of the pixels that are zero and wins on cbs;
    layer 2 has 10 rows, two row banks over 16 lanes, and stays on BBS. Both layers agree
    with golden on the RTL, in exactly the cycles predicted for the engine that ran."""
    out = tmp_path / "demo"
    results = demo.run(out, SEED, patterns=[pattern("choice-8-2")], test_images=6,
                       train_epochs=2, finetune_epochs=1, log=lambda _: None)
    (row,) = results["rows"]
    rtl = row["rtl"]
    assert rtl["path"] == "per-layer" and demo.all_match(results)
    assert rtl["logit_mismatches"] == 0 and rtl["hidden_mismatches"] == 0
    assert rtl["engines"] == ["cbs", "bbs"]
    first, second = rtl["layers"]
    for layer in (first, second):
        chosen = layer["chosen_by"]
        assert chosen[layer["engine"]] == min(chosen.values())
        # Without stalls the RTL takes exactly the golden model's cycles.
        assert layer["predicted_cycles_per_inference"][layer["engine"]] == pytest.approx(
            layer["cycles_per_inference"])
    assert 0.3 < first["input_zero_fraction"] < 0.7  # the pixels' background
    assert second["input_zero_fraction"] > 0  # ReLU zeros
    assert first["chosen_by"]["cbs"] < 0.7 * first["chosen_by"]["bbs"]
    assert second["chosen_by"]["cbs"] > 3 * second["chosen_by"]["bbs"]
    assert rtl["cycles"] == first["cycles"] + second["cycles"]
    # Layer 1 follows cbs (column banks of 8 keep 2), layer 2 BBS (row banks of 8 keep 2).
    W1, W2 = np.load(out / "choice-8-2" / "W1.npy"), np.load(out / "choice-8-2" / "W2.npy")
    assert check_cbs(W1, 8, 2) is None and check_bbs(W1, 8, 2) is not None
    assert check_bbs(W2, 8, 2) is None
    layer1 = load_config(out / "choice-8-2" / "layer1.toml")
    # The cbs accumulators hold cols rows: layer 1's 256 rows take a core 256 wide.
    assert (layer1.pattern, layer1.cols) == ("cbs", 256)
    table = (out / "table.md").read_text().splitlines()
    line = next(line for line in table if line.startswith("| BBS or cbs 2/8"))
    assert "0 / 6" in line and line.rstrip(" |").endswith("cbs, bbs")
    layer_lines = [line for line in table if line.startswith("| BBS or cbs 2/8 per layer | ")]
    assert len(layer_lines) == 3  # the row and its two layers
    assert "| 1 | 256 x 64 |" in layer_lines[1] and "| cbs |" in layer_lines[1]
    assert "| 2 | 10 x 256 |" in layer_lines[2] and "| bbs |" in layer_lines[2]


def _row(**rtl):
    return {"pattern": "p", "rtl": {"logit_mismatches": 0, "hidden_mismatches": None,
                                    "error": False, "y_tlast_ok": None, **rtl}}


@pytest.mark.parametrize("rtl, ok", [
    ({}, True),  # the compiled path measures neither hidden layer nor tlast: no verdict
    ({"logit_mismatches": 1}, False),
    ({"hidden_mismatches": 2}, False),
    ({"error": True}, False),
    ({"y_tlast_ok": False}, False),
    ({"hidden_mismatches": 0, "y_tlast_ok": True}, True),
])
def test_all_match_fails_on_any_disagreement(rtl, ok):
    results = {"rows": [_row(), _row(**rtl), {"pattern": "golden only", "rtl": None}]}
    assert demo.all_match(results) is ok


def test_cli_rejects_unknown_model_and_bad_out(tmp_path, capsys):
    assert main(["demo", "mnist"]) == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "digits", "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"bbsparse: error: cannot write into {blocker}: it is not a directory")
