"""The ONNX reader (bbsparse.onnx_import): every supported form gives layers that reproduce
onnxruntime's float model, the head and tail reproduce the graph's outputs, and every model
the core cannot run is refused with one line naming the culprit."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bbsparse.onnx_import import FloatLayer, FloatModel, OnnxModelError, read_model
from tests import onnx_models as om

SEED = 20261203
SKLEARN_TAIL = ["Softmax", "Identity", "ArgMax", "ArrayFeatureExtractor", "Reshape", "Cast"]


def samples(model: FloatModel, batch=7, seed=SEED):
    """Random samples shaped like the model's graph input, `batch` of them."""
    graph_input = onnx.load(model.path).graph.input[0]
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:]
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, *dims)).astype(np.float32)


def assert_chain_matches(model: FloatModel, X):
    """The FloatLayers in NumPy, from preprocess(X), against onnxruntime's logits."""
    logits = om.numpy_forward(model.layers, model.preprocess(X))
    reference = model.reference_logits(X)
    assert reference.shape == (len(X), model.outputs)
    np.testing.assert_allclose(logits, reference, rtol=1e-5,
                               atol=1e-5 * np.abs(reference).max())
    return logits


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def refusal(path) -> str:
    with pytest.raises(OnnxModelError) as caught:
        read_model(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- scikit-learn through skl2onnx ---------------------------------------------------------

@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory):
    path, X_test, y_test = om.sklearn_mlp(tmp_path_factory.mktemp("onnx") / "mlp.onnx")
    return read_model(path), X_test, y_test


def test_sklearn_mlp_structure(sklearn_model):
    model, _, _ = sklearn_model
    assert model.input_name == "input"
    assert (model.inputs, model.outputs) == (64, 10)
    assert [layer.name for layer in model.layers] == ["MatMul", "MatMul1", "MatMul2"]
    assert [layer.weight.shape for layer in model.layers] == [(32, 64), (16, 32), (10, 16)]
    assert [layer.relu for layer in model.layers] == [True, True, False]
    assert model.head_ops == ["Scaler", "Cast"]
    assert model.tail_ops == SKLEARN_TAIL
    assert model.logits_name == "add_result2"
    weights = initializers(model.path)
    for layer, suffix in zip(model.layers, ["", "1", "2"], strict=True):
        assert layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64
        np.testing.assert_array_equal(layer.weight, weights[f"coefficient{suffix}"].T)
        np.testing.assert_array_equal(layer.bias, weights[f"intercepts{suffix}"].ravel())


def test_sklearn_head_is_the_scaler(sklearn_model):
    model, X_test, _ = sklearn_model
    scaler = next(n for n in onnx.load(model.path).graph.node if n.op_type == "Scaler")
    attributes = {a.name: np.array(a.floats, dtype=np.float32) for a in scaler.attribute}
    features = model.preprocess(X_test)
    assert features.dtype == np.float32 and features.shape == X_test.shape
    np.testing.assert_allclose(features, (X_test - attributes["offset"]) * attributes["scale"],
                               rtol=1e-6, atol=1e-6)


def test_sklearn_layers_and_tail_reproduce_onnxruntime(sklearn_model):
    model, X_test, y_test = sklearn_model
    logits = assert_chain_matches(model, X_test)
    reference = model.reference(X_test)
    assert sorted(reference) == ["label", "probabilities"]
    outputs = model.postprocess(logits)
    assert sorted(outputs) == ["label", "probabilities"]
    np.testing.assert_array_equal(outputs["label"], reference["label"])
    np.testing.assert_allclose(outputs["probabilities"], reference["probabilities"],
                               rtol=1e-5, atol=1e-6)
    assert np.mean(outputs["label"] == y_test) > 0.9


def test_float_model_pickles(sklearn_model):
    model, X_test, _ = sklearn_model
    model.reference_logits(X_test[:3])  # a session is cached; it must not travel
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.reference_logits(X_test[:3]),
                                  model.reference_logits(X_test[:3]))


# -- hand-built forms ------------------------------------------------------------------------

def test_torch_form(tmp_path):
    sizes = (64, 48, 32, 10)
    model = read_model(om.torch_form_mlp(tmp_path / "torch.onnx", sizes=sizes, seed=SEED))
    assert [layer.name for layer in model.layers] == ["/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"]
    assert [layer.relu for layer in model.layers] == [True, True, False]
    assert (model.input_name, model.inputs, model.outputs) == ("input", 64, 10)
    assert model.head_ops == [] and model.tail_ops == []
    weights = initializers(model.path)
    for k, layer in enumerate(model.layers, start=1):
        np.testing.assert_array_equal(layer.weight, weights[f"fc{k}.weight"])
        np.testing.assert_array_equal(layer.bias, weights[f"fc{k}.bias"])
    X = samples(model)
    np.testing.assert_array_equal(model.preprocess(X), X)
    logits = assert_chain_matches(model, X)
    assert model.postprocess(logits) == {}
    np.testing.assert_array_equal(model.reference(X)["output"], model.reference_logits(X))


def test_noop_head_is_no_head(tmp_path):
    """nn.Flatten of a (batch, features) input is a no-op: X goes to the core as it is."""
    model = read_model(om.torch_form_mlp(tmp_path / "flat.onnx", flatten=True, seed=SEED))
    assert "Flatten" in [n.op_type for n in onnx.load(model.path).graph.node]
    assert model.head_ops == [] and len(model.layers) == 3
    X = samples(model)
    np.testing.assert_array_equal(model.preprocess(X), X)
    assert_chain_matches(model, X)


def test_fixed_batch_dimension_runs_any_batch(tmp_path):
    """torch.onnx.export without dynamic_axes fixes the batch at the example's size."""
    model = read_model(om.torch_form_mlp(tmp_path / "fixed.onnx", batch=1, seed=SEED))
    assert_chain_matches(model, samples(model, batch=5))


@pytest.mark.parametrize("constant_nodes", [True, False], ids=["Constant", "initializer"])
def test_matmul_add_unnamed(tmp_path, constant_nodes):
    path = om.matmul_add_model(tmp_path / "matmul.onnx", sizes=(20, 12, 9, 6), seed=SEED,
                               constant_nodes=constant_nodes)
    model = read_model(path)
    assert [layer.name for layer in model.layers] == [
        "MatMul -> product1", "MatMul -> product2", "MatMul -> Y"]
    assert [layer.weight.shape for layer in model.layers] == [(12, 20), (9, 12), (6, 9)]
    assert [layer.relu for layer in model.layers] == [True, True, False]
    constants = initializers(path) | {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in onnx.load(str(path)).graph.node if n.op_type == "Constant"}
    for k, layer in enumerate(model.layers[:-1], start=1):
        np.testing.assert_array_equal(layer.weight, constants[f"W{k}"].T)
        np.testing.assert_array_equal(layer.bias, constants[f"B{k}"].ravel())
    assert model.layers[-1].bias.shape == (6,) and not model.layers[-1].bias.any()
    assert model.head_ops == [] and model.tail_ops == []
    assert_chain_matches(model, samples(model))


def test_gemm_attributes_and_noops(tmp_path):
    model = read_model(om.gemm_variants_model(tmp_path / "gemm.onnx", seed=SEED))
    assert [layer.name for layer in model.layers] == ["gemm1", "gemm2", "gemm3"]
    assert [layer.relu for layer in model.layers] == [True, False, True]
    assert model.head_ops == [] and model.tail_ops == ["Reshape"]
    assert model.logits_name == "r3"
    weights = initializers(model.path)
    np.testing.assert_allclose(model.layers[0].weight, 0.5 * weights["w1"].T.astype(float))
    np.testing.assert_allclose(model.layers[0].bias, 2.0 * weights["c1"].ravel())
    np.testing.assert_array_equal(model.layers[1].weight, weights["w2"])
    np.testing.assert_array_equal(model.layers[2].bias, weights["b3"])
    X = samples(model)
    logits = assert_chain_matches(model, X)
    outputs = model.postprocess(logits)
    assert list(outputs) == ["y"]
    np.testing.assert_allclose(outputs["y"], model.reference(X)["y"], rtol=1e-5, atol=1e-5)


def test_head_and_tail_on_the_host(tmp_path):
    model = read_model(om.head_tail_model(tmp_path / "head.onnx", seed=SEED))
    assert (model.input_name, model.inputs, model.outputs) == ("image", 20, 4)
    assert model.head_ops == ["Sub", "Div", "Flatten"] and model.tail_ops == ["Softmax"]
    X = samples(model)
    weights = initializers(model.path)
    expected = ((X - weights["mean"]) / weights["scale"]).reshape(len(X), -1)
    np.testing.assert_allclose(model.preprocess(X), expected, rtol=1e-6, atol=1e-6)
    logits = assert_chain_matches(model, X)
    outputs, reference = model.postprocess(logits), model.reference(X)
    assert list(outputs) == ["logits", "probabilities"]
    for name in outputs:
        np.testing.assert_allclose(outputs[name], reference[name], rtol=1e-5, atol=1e-6)


def test_torch_export(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (too heavy for CI)")
    model = read_model(om.torch_mlp_export(tmp_path / "export.onnx"))
    assert [layer.weight.shape for layer in model.layers] == [(48, 64), (32, 48), (10, 32)]
    assert [layer.relu for layer in model.layers] == [True, True, False]
    assert_chain_matches(model, samples(model))


# -- refusals ------------------------------------------------------------------------------

REFUSALS = {
    "unsupported_model": "node '/act/Tanh' (Tanh) between linear layers is not supported "
                         "(supported: Gemm, MatMul+Add, Relu)",
    "dynamic_features_model": "input 'input' has a dynamic dimension 1 ('features'): only the "
                              "first (batch) dimension may be dynamic",
    "two_inputs_model": "ONNX model '{path}' has 2 graph inputs ('input', 'mask'): exactly one "
                        "(the batch of samples) is supported",
    "no_linear_model": "ONNX model '{path}' has no linear layer (Gemm, or MatMul by a constant "
                       "weight)",
    "non_constant_weight_model": "node '/fc/MatMul' (MatMul): weight 'W_t' is not a constant "
                                 "(an initializer or a Constant node); it is computed by node "
                                 "'/Transpose' (Transpose)",
    "branching_model": "tensor 'r' after linear layer '/fc1/Gemm' has 2 consumers (node "
                       "'/fc2/Gemm' (Gemm), node '/fc3/Gemm' (Gemm)): branching between "
                       "linear layers is not supported",
    "hidden_output_model": "tensor 'r' after linear layer '/fc1/Gemm' has 2 consumers (graph "
                           "output 'r', node '/fc2/Gemm' (Gemm)): branching between linear "
                           "layers is not supported",
    "tail_reads_input_model": "graph output 'echo' needs tensor 'input', which is not computed "
                              "from the last linear layer's output 'output': only nodes after "
                              "the linear chain may run on the host",
    "mismatched_model": "layer shapes do not chain: '/fc1/Gemm' has 6 outputs but '/fc2/Gemm' "
                        "takes 5 inputs",
    "trans_a_model": "node '/fc1/Gemm' (Gemm) has transA=1: a transposed batch input is not "
                     "supported",
    "bad_bias_model": "node '/fc1/Gemm' (Gemm): bias 'fc1.bias' has shape (2, 6); (6,) or "
                      "(1, 6) is expected",
}


@pytest.mark.parametrize("builder", sorted(REFUSALS))
def test_refused(tmp_path, builder):
    path = getattr(om, builder)(tmp_path / f"{builder}.onnx")
    assert refusal(path) == REFUSALS[builder].format(path=path)


@pytest.mark.parametrize("op", ["Tanh", "Sigmoid", "Softmax"])
def test_refused_activation_names_the_node(tmp_path, op):
    path = om.unsupported_model(tmp_path / "act.onnx", op=op)
    assert refusal(path) == (f"node '/act/{op}' ({op}) between linear layers is not "
                             f"supported (supported: Gemm, MatMul+Add, Relu)")


def test_refused_unnamed_node_is_named_by_its_output(tmp_path):
    path = om.unsupported_model(tmp_path / "act.onnx", op="Tanh")
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(path))
    assert refusal(path).startswith("node 'Tanh -> a' (Tanh) between linear layers")


@pytest.mark.parametrize("kind", ["random", "truncated"])
def test_refused_corrupt_file(tmp_path, kind):
    path = om.corrupt_files(tmp_path)[kind]
    assert refusal(path).startswith(f"cannot read ONNX model '{path}': not a valid ONNX file (")


def test_refused_empty_missing_directory_and_checker(tmp_path):
    empty = om.corrupt_files(tmp_path)["empty"]
    assert refusal(empty) == f"cannot read ONNX model '{empty}': the file is empty"
    missing = tmp_path / "missing.onnx"
    assert refusal(missing) == f"cannot read ONNX model '{missing}': no such file"
    assert refusal(tmp_path) == f"cannot read ONNX model '{tmp_path}': it is a directory"
    invalid = om.invalid_graph_model(tmp_path / "invalid.onnx")
    assert refusal(invalid).startswith(
        f"ONNX model '{invalid}' fails the ONNX checker: Nodes in a graph must be "
        f"topologically sorted")


def test_wrong_samples_are_one_line_errors(tmp_path):
    model = read_model(om.torch_form_mlp(tmp_path / "torch.onnx"))
    with pytest.raises(OnnxModelError, match=r"^X has shape \(3, 60\); the model .* takes "
                                             r"\(batch, 64\)$"):
        model.preprocess(np.zeros((3, 60)))
    with pytest.raises(OnnxModelError, match=r"^onnxruntime failed on '.*' \(model\): ") as e:
        model.reference(np.zeros((3, 60)))
    assert "\n" not in str(e.value)


def test_hand_made_float_model_has_no_runtime():
    layer = FloatLayer("fc", np.eye(3), np.zeros(3), relu=False)
    model = FloatModel("by hand", "x", 3, 3, [layer], [], [])
    np.testing.assert_array_equal(model.preprocess([[1, 2, 3]]), [[1.0, 2.0, 3.0]])
    assert model.postprocess(np.zeros((1, 3))) == {}
    with pytest.raises(OnnxModelError, match="was not read from an ONNX file"):
        model.reference(np.zeros((1, 3)))
