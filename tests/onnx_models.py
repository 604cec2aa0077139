"""Small ONNX models for the tests of `bbsparse compile` and its reader (bbsparse.onnx_import).

Each builder writes one model to `path` and returns the path (``sklearn_mlp`` also returns a
test split). Weights come from ``numpy.random.default_rng(seed)``; every builder takes well
under 3 s. The hand-built models use ``onnx.helper`` and opset 17, in the forms the
exporters write:

- :func:`sklearn_mlp`: a trained scikit-learn pipeline (StandardScaler + MLPClassifier) from
  skl2onnx: ``Scaler -> Cast -> (MatMul -> Add -> Relu)* -> MatMul -> Add -> Softmax ->
  Identity -> ArgMax -> ArrayFeatureExtractor -> Reshape -> Cast``;
- :func:`torch_form_mlp`: what ``torch.onnx.export`` writes for ``nn.Linear`` + ``nn.ReLU``
  (``Gemm`` with ``transB=1``, nodes ``/fc1/Gemm``, ``/relu1/Relu``, weights ``fc1.weight``);
- :func:`torch_mlp_export`: the same from a real torch module (only where torch is
  installed);
- the others: the MatMul + Add form, Gemm variants and no-op nodes, a host-side head and
  tail, and models the reader must refuse.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what torch.onnx.export writes for opset 17; any onnxruntime runs it

__all__ = [
    "bad_bias_model",
    "branching_model",
    "corrupt_files",
    "dynamic_features_model",
    "gemm_variants_model",
    "head_tail_model",
    "hidden_output_model",
    "invalid_graph_model",
    "matmul_add_model",
    "mismatched_model",
    "no_linear_model",
    "non_constant_weight_model",
    "numpy_forward",
    "sklearn_mlp",
    "tail_reads_input_model",
    "torch_form_mlp",
    "torch_mlp_export",
    "trans_a_model",
    "two_inputs_model",
    "unsupported_model",
]


def numpy_forward(layers, x):
    """The chain of FloatLayers in float64 NumPy, from the first layer's input."""
    h = np.asarray(x, dtype=np.float64)
    for layer in layers:
        h = h @ layer.weight.T + layer.bias
        if layer.relu:
            h = np.maximum(h, 0.0)
    return h


# -- trained and exported models -----------------------------------------------------------

def sklearn_mlp(path, *, hidden=(32, 16), seed=0):
    """A StandardScaler + MLPClassifier pipeline trained on scikit-learn's digits (raw pixels
    0..16, 64 features), exported with skl2onnx without ZipMap. Returns ``(path, X_test
    float32, y_test)``; test accuracy is about 97 %."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y, test_size=0.25, random_state=seed, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=200, random_state=seed)
    pipeline = Pipeline([("scale", StandardScaler()), ("mlp", clf)])
    # One BLAS thread: the same weights on every machine.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(X_train, y_train)
    model = convert_sklearn(
        pipeline, initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        options={id(clf): {"zipmap": False}}, target_opset={"": OPSET, "ai.onnx.ml": 3})
    onnx.save(model, str(path))
    return path, X_test, y_test


def torch_mlp_export(path, *, sizes=(64, 48, 32, 10), seed=0):
    """A real torch ``nn.Linear``/``nn.ReLU`` stack exported with ``torch.onnx.export``
    (ImportError where torch is not installed)."""
    import torch

    torch.manual_seed(seed)
    modules = []
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        modules.append(torch.nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            modules.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*modules).eval()
    example = torch.zeros(2, sizes[0])
    torch.onnx.export(net, (example,), str(path), input_names=["input"],
                      output_names=["output"], opset_version=OPSET,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


# -- hand-built models -----------------------------------------------------------------------

def _save(path, nodes, inputs, outputs, initializers=(), *, opset=OPSET):
    graph = helper.make_graph(nodes, "bbsparse_test", inputs, outputs,
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=IR_VERSION)
    onnx.save(model, str(path))
    return path


def _tensor(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def _io(name, dims, elem_type=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem_type, dims)


def _weights(rng, n_in, n_out):
    """He-scaled weights (out, in) and a small bias, like a trained layer's."""
    return (rng.normal(0.0, math.sqrt(2.0 / n_in), (n_out, n_in)),
            rng.normal(0.0, 0.1, n_out))


def torch_form_mlp(path, *, sizes=(64, 48, 32, 10), seed=0, batch="batch", flatten=False):
    """``torch.onnx.export``'s form of Linear/ReLU stacks: Gemm ``transB=1`` nodes
    ``/fc{k}/Gemm`` with ``fc{k}.weight`` (out x in) and ``fc{k}.bias``, ``/relu{k}/Relu``
    between them, input ``input`` ``[batch, sizes[0]]``, output ``output``. `batch` is a
    dim_param name, or a number for an export without ``dynamic_axes``; `flatten` puts
    ``nn.Flatten``'s ``/flatten/Flatten`` before the first layer."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    if flatten:
        x = "/flatten/Flatten_output_0"
        nodes.append(helper.make_node("Flatten", ["input"], [x], name="/flatten/Flatten",
                                      axis=1))
    layers = len(sizes) - 1
    for k in range(1, layers + 1):
        W, b = _weights(rng, sizes[k - 1], sizes[k])
        inits += [_tensor(f"fc{k}.weight", W), _tensor(f"fc{k}.bias", b)]
        out = "output" if k == layers else f"/fc{k}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [x, f"fc{k}.weight", f"fc{k}.bias"], [out],
                                      name=f"/fc{k}/Gemm", alpha=1.0, beta=1.0, transB=1))
        x = out
        if k < layers:
            x = f"/relu{k}/Relu_output_0"
            nodes.append(helper.make_node("Relu", [out], [x], name=f"/relu{k}/Relu"))
    return _save(path, nodes, [_io("input", [batch, sizes[0]])],
                 [_io("output", [batch, sizes[-1]])], inits)


def unsupported_model(path, op="Tanh", *, seed=0):
    """``/fc1/Gemm -> /act/<op> -> /fc2/Gemm``: an activation the core does not have."""
    rng = np.random.default_rng(seed)
    W1, b1 = _weights(rng, 8, 6)
    W2, b2 = _weights(rng, 6, 3)
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], name="/fc1/Gemm",
                         transB=1),
        helper.make_node(op, ["h"], ["a"], name=f"/act/{op}"),
        helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["output"],
                         name="/fc2/Gemm", transB=1),
    ]
    inits = [_tensor("fc1.weight", W1), _tensor("fc1.bias", b1), _tensor("fc2.weight", W2),
             _tensor("fc2.bias", b2)]
    return _save(path, nodes, [_io("input", ["batch", 8])], [_io("output", ["batch", 3])],
                 inits)


def matmul_add_model(path, *, sizes=(20, 12, 6), seed=0, constant_nodes=True):
    """``MatMul`` by a weight (in x out) then ``Add`` of a bias, as skl2onnx and many other
    exporters write, with **unnamed** nodes: layer 1 adds ``x + b``, layer 2 adds ``b + x``
    (the other operand order), the last layer has no Add (zero bias). Weights and biases are
    `Constant` nodes when `constant_nodes`, else initializers."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "X"
    layers = len(sizes) - 1
    for k in range(1, layers + 1):
        W, b = _weights(rng, sizes[k - 1], sizes[k])
        w_name, b_name = f"W{k}", f"B{k}"
        last = k == layers
        constants = [(w_name, W.T)] + ([] if last else [(b_name, b.reshape(1, -1))])
        for name, value in constants:
            if constant_nodes:
                nodes.append(helper.make_node("Constant", [], [name],
                                              value=_tensor(name, value)))
            else:
                inits.append(_tensor(name, value))
        product = "Y" if last else f"product{k}"
        nodes.append(helper.make_node("MatMul", [x, w_name], [product]))
        if last:
            break
        operands = [product, b_name] if k % 2 else [b_name, product]
        nodes.append(helper.make_node("Add", operands, [f"sum{k}"]))
        nodes.append(helper.make_node("Relu", [f"sum{k}"], [f"hidden{k}"]))
        x = f"hidden{k}"
    return _save(path, nodes, [_io("X", ["N", sizes[0]])], [_io("Y", ["N", sizes[-1]])],
                 inits)


def gemm_variants_model(path, *, seed=0):
    """Every Gemm form and no-op node the reader skips, on 12 -> 10 -> 8 -> 5 (+ Relu):

    - layer 1: ``transA=0`` written out, ``transB=0`` (weight in x out), ``alpha=0.5``,
      ``beta=2``, C of shape (1, 10); then Relu, ``Cast`` to double;
    - layer 2: double weights (out x in, ``transB=1``), C of shape (8,); then ``Identity``,
      ``Dropout`` (inference), ``Cast`` to float, ``Flatten``, ``Reshape`` to ``[-1, 8]``
      (shape from a Constant node);
    - layer 3: Gemm without C, then Add of a bias, Relu, and a trailing ``Reshape [0, -1]``
      that stays in the tail (after the last Relu)."""
    rng = np.random.default_rng(seed)
    W1, b1 = _weights(rng, 12, 10)
    W2, b2 = _weights(rng, 10, 8)
    W3, b3 = _weights(rng, 8, 5)
    inits = [
        _tensor("w1", W1.T), _tensor("c1", b1.reshape(1, -1)),
        _tensor("w2", W2, np.float64), _tensor("c2", b2, np.float64),
        _tensor("w3", W3), _tensor("b3", b3), _tensor("tail_shape", [0, -1], np.int64),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "c1"], ["g1"], name="gemm1", transA=0, transB=0,
                         alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu1"),
        helper.make_node("Cast", ["r1"], ["r1d"], name="to_double", to=TensorProto.DOUBLE),
        helper.make_node("Gemm", ["r1d", "w2", "c2"], ["g2"], name="gemm2", transB=1),
        helper.make_node("Identity", ["g2"], ["i2"], name="identity"),
        helper.make_node("Dropout", ["i2"], ["d2"], name="dropout"),
        helper.make_node("Cast", ["d2"], ["f2"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["f2"], ["fl2"], name="flatten", axis=1),
        helper.make_node("Constant", [], ["shape2"], name="shape2",
                         value=_tensor("shape2", [-1, 8], np.int64)),
        helper.make_node("Reshape", ["fl2", "shape2"], ["rs2"], name="reshape"),
        helper.make_node("Gemm", ["rs2", "w3"], ["g3"], name="gemm3", transB=1),
        helper.make_node("Add", ["g3", "b3"], ["a3"], name="bias3"),
        helper.make_node("Relu", ["a3"], ["r3"], name="relu3"),
        helper.make_node("Reshape", ["r3", "tail_shape"], ["y"], name="tail_reshape"),
    ]
    return _save(path, nodes, [_io("x", ["n", 12])], [_io("y", ["n", 5])], inits)


def head_tail_model(path, *, seed=0):
    """A host-side head and tail around two Gemm layers: input ``[N, 4, 5]`` images, minus a
    mean, divided by a scale and flattened to 20 features (the head); outputs ``logits``
    (the last Gemm itself) and ``probabilities`` (its Softmax: the tail)."""
    rng = np.random.default_rng(seed)
    W1, b1 = _weights(rng, 20, 16)
    W2, b2 = _weights(rng, 16, 4)
    inits = [
        _tensor("mean", rng.uniform(0, 2, (4, 5))), _tensor("scale", rng.uniform(1, 3, (4, 5))),
        _tensor("fc1.weight", W1), _tensor("fc1.bias", b1),
        _tensor("fc2.weight", W2), _tensor("fc2.bias", b2),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centred"], name="/norm/Sub"),
        helper.make_node("Div", ["centred", "scale"], ["scaled"], name="/norm/Div"),
        helper.make_node("Flatten", ["scaled"], ["flat"], name="/Flatten"),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["h"], name="/fc1/Gemm",
                         transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="/relu/Relu"),
        helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["logits"],
                         name="/fc2/Gemm", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="/Softmax", axis=1),
    ]
    return _save(path, nodes, [_io("image", ["N", 4, 5])],
                 [_io("logits", ["N", 4]), _io("probabilities", ["N", 4])], inits)


# -- models the reader refuses ----------------------------------------------------------------

def _two_layer(path, *, extra_nodes=(), inputs=None, outputs=None, w2_in=6, input_dims=None,
               seed=0, gemm1_attrs=None, c1_shape=None):
    """``input [batch, 8] -> /fc1/Gemm -> /relu/Relu -> /fc2/Gemm -> output``, with changes."""
    rng = np.random.default_rng(seed)
    W1, b1 = _weights(rng, 8, 6)
    W2, b2 = _weights(rng, w2_in, 3)
    c1 = b1 if c1_shape is None else np.resize(b1, c1_shape)
    inits = [_tensor("fc1.weight", W1), _tensor("fc1.bias", c1),
             _tensor("fc2.weight", W2), _tensor("fc2.bias", b2)]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], name="/fc1/Gemm",
                         **(gemm1_attrs or {"transB": 1})),
        helper.make_node("Relu", ["h"], ["r"], name="/relu/Relu"),
        helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["output"],
                         name="/fc2/Gemm", transB=1),
        *extra_nodes,
    ]
    inputs = inputs or [_io("input", input_dims or ["batch", 8])]
    outputs = outputs or [_io("output", ["batch", 3])]
    return _save(path, nodes, inputs, outputs, inits)


def dynamic_features_model(path):
    """The input's feature dimension is a dim_param ('features')."""
    return _two_layer(path, input_dims=["batch", "features"])


def two_inputs_model(path):
    """A second graph input ('mask'), multiplied into the output."""
    extra = [helper.make_node("Mul", ["output", "mask"], ["masked"], name="/mask/Mul")]
    return _two_layer(path, extra_nodes=extra,
                      inputs=[_io("input", ["batch", 8]), _io("mask", ["batch", 3])],
                      outputs=[_io("masked", ["batch", 3])])


def no_linear_model(path):
    """Relu then Softmax: nothing for the core."""
    nodes = [helper.make_node("Relu", ["input"], ["r"], name="/relu/Relu"),
             helper.make_node("Softmax", ["r"], ["output"], name="/Softmax", axis=1)]
    return _save(path, nodes, [_io("input", ["batch", 8])], [_io("output", ["batch", 8])])


def non_constant_weight_model(path, *, seed=0):
    """``MatMul(x, Transpose(W))``: the weight is computed by a node, not a constant."""
    rng = np.random.default_rng(seed)
    W, _ = _weights(rng, 8, 4)
    nodes = [helper.make_node("Transpose", ["W"], ["W_t"], name="/Transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["input", "W_t"], ["output"], name="/fc/MatMul")]
    return _save(path, nodes, [_io("input", ["batch", 8])], [_io("output", ["batch", 4])],
                 [_tensor("W", W)])


def branching_model(path, *, seed=0):
    """The first layer's Relu output feeds two Gemm nodes whose outputs are added."""
    rng = np.random.default_rng(seed)
    W3, b3 = _weights(rng, 6, 3)
    extra = [
        helper.make_node("Gemm", ["r", "fc3.weight", "fc3.bias"], ["side"], name="/fc3/Gemm",
                         transB=1),
        helper.make_node("Add", ["output", "side"], ["sum"], name="/Add"),
    ]
    path = _two_layer(path, extra_nodes=extra, outputs=[_io("sum", ["batch", 3])])
    model = onnx.load(str(path))
    model.graph.initializer.extend([_tensor("fc3.weight", W3), _tensor("fc3.bias", b3)])
    onnx.save(model, str(path))
    return path


def hidden_output_model(path):
    """The first layer's Relu output is also a graph output."""
    return _two_layer(path, outputs=[_io("output", ["batch", 3]), _io("r", ["batch", 6])])


def tail_reads_input_model(path):
    """A graph output computed from the graph input, past the linear chain."""
    extra = [helper.make_node("Identity", ["input"], ["echo"], name="/echo/Identity")]
    return _two_layer(path, extra_nodes=extra,
                      outputs=[_io("output", ["batch", 3]), _io("echo", ["batch", 8])])


def mismatched_model(path):
    """/fc1/Gemm gives 6 outputs, /fc2/Gemm takes 5 inputs (the checker does not see it)."""
    return _two_layer(path, w2_in=5)


def trans_a_model(path):
    """/fc1/Gemm with transA=1: it would transpose the batch."""
    return _two_layer(path, gemm1_attrs={"transA": 1, "transB": 1})


def bad_bias_model(path):
    """/fc1/Gemm with a bias C of shape (2, 6)."""
    return _two_layer(path, c1_shape=(2, 6))


def invalid_graph_model(path):
    """Valid protobuf that the ONNX checker refuses: a node reads an undefined tensor."""
    nodes = [helper.make_node("Relu", ["nowhere"], ["output"], name="/relu/Relu")]
    return _save(path, nodes, [_io("input", ["batch", 8])], [_io("output", ["batch", 8])])


def corrupt_files(directory):
    """Files that are not ONNX models: random bytes, an empty file, a truncated model."""
    directory = Path(directory)
    rng = np.random.default_rng(1)
    random = directory / "random.onnx"
    random.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = directory / "empty.onnx"
    empty.write_bytes(b"")
    whole = torch_form_mlp(directory / "whole.onnx").read_bytes()
    truncated = directory / "truncated.onnx"
    truncated.write_bytes(whole[: len(whole) // 2])
    return {"random": random, "empty": empty, "truncated": truncated}
