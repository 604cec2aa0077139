"""The ONNX reader of `bbsparse compile`: a float model file to a chain of linear layers.

:func:`read_model` splits the graph into three parts:

- the **head**: every node between the graph input and the first linear layer's input
  (``ai.onnx.ml.Scaler``, ``Sub``/``Div`` by constants, a ``Cast``, a ``Flatten`` of an
  image...). It runs on the host, in onnxruntime, on a subgraph cut out of the model
  (:meth:`FloatModel.preprocess`). A head made only of no-op nodes is no head at all;
- the **linear chain**, which the accelerator runs: ``Gemm`` nodes, or ``MatMul`` by a
  constant weight optionally followed by ``Add`` of a constant bias, each optionally
  followed by a ``Relu``. No-op nodes between them (``Identity``, ``Dropout`` in inference,
  ``Cast`` to float or double, ``Flatten``/``Reshape`` that keep ``(batch, features)``) are
  skipped. Anything else between two linear layers is refused;
- the **tail**: every node from the last linear layer's output (after its ``Relu``) to the
  graph outputs (``Softmax``, ``ArgMax``, the class look-up skl2onnx writes...). It runs on
  the host too (:meth:`FloatModel.postprocess`).

Every refusal is an :class:`OnnxModelError` with a one-line message naming the file, node,
tensor or dimension at fault. Weights and biases come out in float64, ``weight`` of shape
``(out, in)``: a layer computes ``weight @ x + bias``.

Sessions run the model with a dynamic batch dimension even if the file fixes it (as
``torch.onnx.export`` does without ``dynamic_axes``), so any batch size can be checked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

__all__ = ["FloatLayer", "FloatModel", "OnnxModelError", "read_model"]

LINEAR_OPS = ("Gemm", "MatMul")
SUPPORTED_BETWEEN = "supported: Gemm, MatMul+Add, Relu"
#: Casts between linear layers that change no value the next layer sees.
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE)


class OnnxModelError(ValueError):
    """A model file `bbsparse compile` cannot read or cannot map onto the core; one line,
    shown as ``bbsparse: error: <message>``."""


@dataclass(frozen=True)
class FloatLayer:
    """One linear layer of the chain: ``weight @ x + bias``, then a ReLU if `relu`."""

    name: str  # the Gemm's or MatMul's node name (op type and output tensor if unnamed)
    weight: np.ndarray  # float64, (out, in)
    bias: np.ndarray  # float64, (out,); zeros when the model has none
    relu: bool

    def __repr__(self):
        return (f"FloatLayer(name={self.name!r}, weight={self.weight.shape}, "
                f"relu={self.relu})")


@dataclass
class FloatModel:
    """A float model read from ONNX: the linear chain for the accelerator, and the host-side
    head and tail, each run by onnxruntime on a subgraph of the file's model."""

    path: str
    input_name: str  # the graph input fed by the user's X
    inputs: int  # features per sample: the first linear layer's in-dimension
    outputs: int  # the last linear layer's out-dimension
    layers: list[FloatLayer]
    head_ops: list[str]  # op types run on the host before the first linear layer
    tail_ops: list[str]  # op types after the last linear layer (and its Relu)
    #: The tensor the chain's output stands for: the last linear layer's output, after its
    #: Relu if it has one.
    logits_name: str = ""
    _runtime: _Runtime | None = field(default=None, repr=False, compare=False)

    def preprocess(self, X) -> np.ndarray:
        """The first linear layer's input for the samples `X`, float32 ``(batch, inputs)``:
        the head run by onnxruntime, or `X` itself when there is no head."""
        X = np.asarray(X)
        if self._runtime is None or self._runtime.head is None:
            if X.ndim != 2 or X.shape[1] != self.inputs:
                raise OnnxModelError(f"X has shape {X.shape}; the model {self.path!r} takes "
                                     f"(batch, {self.inputs})")
            return X.astype(np.float32)
        (features,) = self._runtime.run("head", {self.input_name: self._runtime.feed(X)})
        return np.asarray(features, dtype=np.float32)

    def postprocess(self, logits) -> dict[str, np.ndarray]:
        """The graph's outputs, by name, from the chain's output `logits` ``(batch,
        outputs)`` (its Relu applied if the last layer has one), through the tail run by
        onnxruntime; ``{}`` if the model has no tail."""
        runtime = self._runtime
        if runtime is None or runtime.tail is None:
            return {}
        logits = np.asarray(logits, dtype=runtime.logits_dtype)
        results = runtime.run("tail", {self.logits_name: logits})
        named = dict(zip(runtime.tail_outputs, results, strict=True))
        return {name: (logits if name == self.logits_name else named[name])
                for name in runtime.output_names}

    def reference(self, X) -> dict[str, np.ndarray]:
        """Every graph output, by name, of the whole float model run by onnxruntime."""
        runtime = self._need_runtime()
        results = runtime.run("model", {self.input_name: runtime.feed(X)},
                              runtime.output_names)
        return dict(zip(runtime.output_names, results, strict=True))

    def reference_logits(self, X) -> np.ndarray:
        """The chain's output ``(batch, outputs)`` in the float model run by onnxruntime (the
        last linear layer's output, after its Relu if any)."""
        runtime = self._need_runtime()
        (logits,) = runtime.run("model", {self.input_name: runtime.feed(X)},
                                [self.logits_name])
        return np.asarray(logits)

    def _need_runtime(self) -> _Runtime:
        if self._runtime is None:
            raise OnnxModelError(f"model {self.path!r} was not read from an ONNX file")
        return self._runtime


class _Runtime:
    """The cut-out models and their onnxruntime sessions (made on first use, not pickled)."""

    def __init__(self, path, models, *, input_dtype, logits_dtype, output_names,
                 tail_outputs):
        self.path = path
        self.models = models  # 'model' (with the chain's output added), 'head', 'tail'
        self.input_dtype = input_dtype
        self.logits_dtype = logits_dtype
        self.output_names = output_names
        self.tail_outputs = tail_outputs
        self._sessions = {}

    @property
    def head(self):
        return self.models.get("head")

    @property
    def tail(self):
        return self.models.get("tail")

    def __getstate__(self):
        return {**self.__dict__, "_sessions": {}}

    def feed(self, X):
        return np.asarray(X).astype(self.input_dtype, copy=False)

    def run(self, part: str, feeds: dict, outputs=None) -> list:
        try:
            session = self._sessions.get(part)
            if session is None:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 1
                options.log_severity_level = 3
                session = onnxruntime.InferenceSession(
                    self.models[part].SerializeToString(), options,
                    providers=["CPUExecutionProvider"])
                self._sessions[part] = session
            return session.run(outputs, feeds)
        except Exception as error:  # onnxruntime's own exception types: any failure, one line
            raise OnnxModelError(f"onnxruntime failed on {self.path!r} ({part}): "
                                 f"{_first_line(error)}") from error


def read_model(path) -> FloatModel:
    """Read the ONNX file `path` into a :class:`FloatModel`; refuse anything the core and the
    host cannot run as a linear chain with an :class:`OnnxModelError`."""
    path = str(path)
    model = _load(path)
    graph = _Graph(model, path)
    input_info = graph.single_input()
    input_dims = _fixed_dims(input_info)
    input_type = input_info.type.tensor_type.elem_type

    first = graph.first_linear()
    head = graph.ancestors([first.input[0]], stop=set())
    head_ops = [n.op_type for n in head if n.op_type != "Constant"]
    trivial_head = len(input_dims) == 2 and all(
        graph.is_noop(n, input_dims[1]) for n in head if n.op_type != "Constant")
    if trivial_head:
        head_ops = []
    chain_type = graph.elem_type(first.input[0])
    if chain_type is None:
        chain_type = graph.cast_type(head, input_type if trivial_head else TensorProto.FLOAT)

    layers, chain_nodes, cut, cut_type = _walk_chain(graph, first, chain_type)
    _check_shapes(graph, layers, input_info, input_dims, first, trivial_head)

    forbidden = {_key(n) for n in head if n.op_type != "Constant"} | chain_nodes
    output_names = [o.name for o in model.graph.output]
    tail = graph.tail(output_names, cut, forbidden)
    tail_outputs = [name for name in output_names if name != cut]

    elem_cut = graph.elem_type(cut) or cut_type
    outputs = layers[-1].weight.shape[0]
    logits_info = helper.make_tensor_value_info(cut, elem_cut, ["batch", outputs])
    # One session answers both reference() and reference_logits().
    models = {"model": _with_output(_runnable(model), logits_info)}
    if not trivial_head:
        head_out = helper.make_tensor_value_info(first.input[0], chain_type, None)
        models["head"] = _runnable(_submodel(model, head, [input_info], [head_out], "head"))
    if tail:
        results = [o for o in model.graph.output if o.name != cut]
        models["tail"] = _runnable(_submodel(model, tail, [logits_info], results, "tail"))
    runtime = _Runtime(path, models,
                       input_dtype=helper.tensor_dtype_to_np_dtype(input_type),
                       logits_dtype=helper.tensor_dtype_to_np_dtype(elem_cut),
                       output_names=output_names, tail_outputs=tail_outputs)
    return FloatModel(
        path=path, input_name=input_info.name, inputs=layers[0].weight.shape[1],
        outputs=outputs, layers=layers, head_ops=head_ops,
        tail_ops=[n.op_type for n in tail if n.op_type != "Constant"], logits_name=cut,
        _runtime=runtime)


# -- reading and checking the file -----------------------------------------------------------

def _load(path: str) -> onnx.ModelProto:
    file = Path(path)
    if not file.exists():
        raise OnnxModelError(f"cannot read ONNX model {path!r}: no such file")
    if file.is_dir():
        raise OnnxModelError(f"cannot read ONNX model {path!r}: it is a directory")
    if file.stat().st_size == 0:
        raise OnnxModelError(f"cannot read ONNX model {path!r}: the file is empty")
    try:
        model = onnx.load(path)
    except OSError as error:
        raise OnnxModelError(f"cannot read ONNX model {path!r}: {error.strerror or error}") \
            from error
    except Exception as error:  # protobuf's DecodeError and friends: the file is not a model
        raise OnnxModelError(f"cannot read ONNX model {path!r}: not a valid ONNX file "
                             f"({_first_line(error)})") from error
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # ValidationError, or a checker crash on a mangled proto
        raise OnnxModelError(f"ONNX model {path!r} fails the ONNX checker: "
                             f"{_first_line(error)}") from error
    return model


def _fixed_dims(info: onnx.ValueInfoProto) -> list:
    """The input's dimensions (the first may be None: the batch); refuse a dynamic or
    unknown dimension anywhere else."""
    tensor = info.type.tensor_type
    if not info.type.HasField("tensor_type"):
        raise OnnxModelError(f"input {info.name!r} is not a tensor")
    if not tensor.HasField("shape"):
        raise OnnxModelError(f"input {info.name!r} has no shape: the number of features must "
                             f"be fixed in the model")
    dims = []
    for index, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
            continue
        if index > 0:
            what = (f"a dynamic dimension {index} ({dim.dim_param!r})" if dim.dim_param
                    else f"an unknown dimension {index}")
            raise OnnxModelError(f"input {info.name!r} has {what}: only the first (batch) "
                                 f"dimension may be dynamic")
        dims.append(None)
    return dims


def _first_line(error: BaseException, limit: int = 300) -> str:
    """An exception's text as one line (the checker's spans several, quoting the node)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(node: onnx.NodeProto) -> str:
    """How a message names a node: its name, or its op type and first output if unnamed."""
    if node.name:
        return node.name
    return f"{node.op_type} -> {node.output[0]}" if node.output else node.op_type


def _key(node: onnx.NodeProto) -> tuple:
    """A node's identity in sets: its outputs (protobuf may wrap a node anew on each access,
    so ``id()`` is no identity)."""
    return tuple(node.output)


def _node(node: onnx.NodeProto) -> str:
    return f"node {_label(node)!r} ({node.op_type})"


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


# -- the graph ---------------------------------------------------------------------------

class _Graph:
    """Look-ups over one graph: constants, producers, consumers and inferred types."""

    def __init__(self, model: onnx.ModelProto, path: str):
        self.path = path
        self.graph = model.graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.producer, self.users = {}, {}
        for node in self.graph.node:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.users.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = _constant_value(node)
                if value is not None:
                    self.constants[node.output[0]] = value
        self.outputs = {o.name for o in self.graph.output}
        self.types = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # inference is only a help for types; the walk does without it
            inferred = self.graph
        for info in [*inferred.value_info, *inferred.input, *inferred.output]:
            if info.type.tensor_type.elem_type:
                self.types[info.name] = info

    def single_input(self) -> onnx.ValueInfoProto:
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs)
            raise OnnxModelError(
                f"ONNX model {self.path!r} has {len(inputs)} graph inputs"
                f"{f' ({names})' if names else ''}: exactly one (the batch of samples) is "
                f"supported")
        return inputs[0]

    def first_linear(self) -> onnx.NodeProto:
        for node in self.graph.node:
            if self.is_linear(node):
                return node
        raise OnnxModelError(f"ONNX model {self.path!r} has no linear layer (Gemm, or MatMul "
                             f"by a constant weight)")

    @staticmethod
    def is_linear(node: onnx.NodeProto) -> bool:
        return node.op_type in LINEAR_OPS and node.domain in ("", "ai.onnx")

    def elem_type(self, name: str) -> int | None:
        info = self.types.get(name)
        return info.type.tensor_type.elem_type if info is not None else None

    def shape(self, name: str) -> list | None:
        info = self.types.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None
                for d in info.type.tensor_type.shape.dim]

    @staticmethod
    def cast_type(nodes, elem_type: int) -> int:
        """The element type after the Casts among `nodes` (a chain, in order)."""
        for node in nodes:
            if node.op_type == "Cast":
                elem_type = _attribute(node, "to", elem_type)
        return elem_type

    def constant(self, name: str, node: onnx.NodeProto, role: str) -> np.ndarray:
        if name in self.constants:
            return np.asarray(self.constants[name], dtype=np.float64)
        producer = self.producer.get(name)
        source = f"; it is computed by {_node(producer)}" if producer is not None else \
            " (it is a graph input)"
        raise OnnxModelError(f"{_node(node)}: {role} {name!r} is not a constant (an initializer "
                             f"or a Constant node){source}")

    def is_noop(self, node: onnx.NodeProto, features: int | None) -> bool:
        """Whether `node`, reading a ``(batch, features)`` tensor, passes it on unchanged (up
        to a float to double cast)."""
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            return False
        if op == "Identity":
            return True
        if op == "Cast":
            return _attribute(node, "to", None) in FLOAT_TYPES
        if op == "Dropout":
            mask_used = len(node.output) > 1 and node.output[1] and (
                node.output[1] in self.users or node.output[1] in self.outputs)
            training = node.input[2] if len(node.input) > 2 else ""
            return not mask_used and (not training or (
                training in self.constants and not bool(np.asarray(self.constants[training]))))
        if op == "Flatten":
            return _attribute(node, "axis", 1) in (1, -1)
        if op == "Reshape":
            if len(node.input) < 2 or node.input[1] not in self.constants:
                return False
            target = [int(v) for v in np.asarray(self.constants[node.input[1]]).ravel()]
            if len(target) != 2:
                return False
            copy = 0 if not _attribute(node, "allowzero", 0) else None  # 0 copies the dim
            first_ok = target[0] in (-1, copy)
            return (first_ok and target[1] in (features, copy)) or (
                target[0] == copy and target[1] == -1)
        return False

    def reaches_linear(self, name: str) -> bool:
        seen, queue = set(), deque([name])
        while queue:
            for node in self.users.get(queue.popleft(), []):
                if self.is_linear(node):
                    return True
                for out in node.output:
                    if out and out not in seen:
                        seen.add(out)
                        queue.append(out)
        return False

    def ancestors(self, targets, stop: set) -> list[onnx.NodeProto]:
        """The nodes that compute `targets` from the graph input, the constants and the
        tensors in `stop`, in the graph's (topological) order."""
        picked, queue = set(), deque(targets)
        while queue:
            name = queue.popleft()
            if not name or name in stop or name in picked:
                continue
            picked.add(name)
            node = self.producer.get(name)
            if node is not None:
                queue.extend(node.input)
        return [n for n in self.graph.node if any(o in picked for o in n.output)]

    def tail(self, outputs, cut: str, forbidden: set) -> list[onnx.NodeProto]:
        """The nodes from `cut` to the graph `outputs`; refuse an output that also needs a
        tensor of the head or the chain (other than `cut`), or the graph input."""
        nodes = self.ancestors(outputs, stop={cut})
        produced = {o for n in nodes for o in n.output}
        for node in nodes:
            if _key(node) in forbidden:
                self._refuse_tail(outputs, cut, node.output[0])
            for name in node.input:
                if name and name != cut and name not in produced and name not in self.constants:
                    self._refuse_tail(outputs, cut, name)
        for name in outputs:
            if name != cut and name not in produced and name not in self.constants:
                self._refuse_tail(outputs, cut, name)
        return [n for n in nodes if _key(n) not in forbidden]

    def _refuse_tail(self, outputs, cut: str, name: str):
        culprit = next(o for o in outputs if name in self._needed(o, cut))
        raise OnnxModelError(
            f"graph output {culprit!r} needs tensor {name!r}, which is not computed from the "
            f"last linear layer's output {cut!r}: only nodes after the linear chain may run "
            f"on the host")

    def _needed(self, output: str, cut: str) -> set:
        names, queue = set(), deque([output])
        while queue:
            name = queue.popleft()
            if not name or name == cut or name in names:
                continue
            names.add(name)
            node = self.producer.get(name)
            if node is not None:
                queue.extend(node.input)
        return names


def _constant_value(node: onnx.NodeProto):
    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(helper.get_attribute_value(attribute))
    return None


# -- the linear chain --------------------------------------------------------------------

def _walk_chain(graph: _Graph, node: onnx.NodeProto, elem_type: int):
    """Follow the chain from the first linear node: its layers, the keys of its nodes, the
    tensor it ends with and that tensor's element type."""
    layers, chain_nodes = [], set()
    while True:
        weight, bias, out, passed = _linear(graph, node)
        chain_nodes |= {_key(n) for n in passed}
        # After the layer: Relu and no-op nodes, until the next linear node or the end.
        relu, cut, cut_type, upto = False, out, elem_type, 0
        tensor, walked = out, []
        while tensor not in graph.outputs and len(graph.users.get(tensor, [])) == 1:
            user = graph.users[tensor][0]
            is_relu = user.op_type == "Relu" and user.domain in ("", "ai.onnx")
            if not is_relu and not graph.is_noop(user, weight.shape[0]):
                break
            walked.append(user)
            elem_type = graph.cast_type([user], elem_type)
            tensor = user.output[0]
            if is_relu:
                relu, cut, cut_type, upto = True, tensor, elem_type, len(walked)
        users = graph.users.get(tensor, [])
        name = _label(node)
        if tensor not in graph.outputs and len(users) == 1 and graph.is_linear(users[0]):
            layers.append(FloatLayer(name, weight, bias, relu))
            chain_nodes |= {_key(n) for n in walked}
            node = users[0]
            continue
        if graph.reaches_linear(tensor):
            if tensor in graph.outputs or len(users) != 1:
                readers = [_node(n) for n in users]
                if tensor in graph.outputs:
                    readers.insert(0, f"graph output {tensor!r}")
                raise OnnxModelError(
                    f"tensor {tensor!r} after linear layer {name!r} has {len(readers)} "
                    f"consumers ({', '.join(readers)}): branching between linear layers is "
                    f"not supported")
            raise OnnxModelError(f"{_node(users[0])} between linear layers is not supported "
                                 f"({SUPPORTED_BETWEEN})")
        # The end of the chain: whatever follows its last Relu (or the layer) is the tail.
        layers.append(FloatLayer(name, weight, bias, relu))
        chain_nodes |= {_key(n) for n in walked[:upto]}
        return layers, chain_nodes, cut, cut_type


def _linear(graph: _Graph, node: onnx.NodeProto):
    """One linear layer from a Gemm or MatMul node (and a bias Add right after it): weight
    ``(out, in)``, bias ``(out,)``, the output tensor and the nodes taken."""
    data, weight_name = node.input[0], node.input[1]
    if data in graph.constants and weight_name not in graph.constants:
        raise OnnxModelError(f"{_node(node)} multiplies a constant by the activations "
                             f"(weight @ x): only x @ weight is supported")
    if node.op_type == "Gemm":
        if _attribute(node, "transA", 0):
            raise OnnxModelError(f"{_node(node)} has transA=1: a transposed batch input is not "
                                 f"supported")
        matrix = graph.constant(weight_name, node, "weight")
        alpha = float(_attribute(node, "alpha", 1.0))
        beta = float(_attribute(node, "beta", 1.0))
        weight = alpha * (matrix if _attribute(node, "transB", 0) else matrix.T)
        bias = np.zeros(weight.shape[0])
        if len(node.input) > 2 and node.input[2]:
            bias = beta * _bias(graph.constant(node.input[2], node, "bias C"), node,
                                node.input[2], weight.shape[0])
    else:
        matrix = graph.constant(weight_name, node, "weight")
        if matrix.ndim != 2:
            raise OnnxModelError(f"{_node(node)}: weight {weight_name!r} has shape "
                                 f"{matrix.shape}; a matrix (in, out) is expected")
        weight = matrix.T
        bias = np.zeros(weight.shape[0])
    out, passed = node.output[0], [node]
    users = graph.users.get(out, [])
    if out not in graph.outputs and len(users) == 1 and users[0].op_type == "Add" \
            and users[0].domain in ("", "ai.onnx"):
        add = users[0]
        other = add.input[1] if add.input[0] == out else add.input[0]
        if other != out and other in graph.constants:
            bias = bias + _bias(np.asarray(graph.constants[other], dtype=np.float64), add,
                                other, weight.shape[0])
            out = add.output[0]
            passed.append(add)
    return np.ascontiguousarray(weight, dtype=np.float64), bias, out, passed


def _bias(value: np.ndarray, node: onnx.NodeProto, name: str, out: int) -> np.ndarray:
    """A bias constant of shape (out,) or (1, out) (or a scalar) as a float64 (out,)."""
    if value.shape in ((out,), (1, out)) or (value.size == 1 and value.ndim <= 2):
        return np.broadcast_to(value.astype(np.float64).ravel(), (out,)).copy()
    raise OnnxModelError(f"{_node(node)}: bias {name!r} has shape {value.shape}; ({out},) or "
                         f"(1, {out}) is expected")


def _check_shapes(graph, layers, input_info, input_dims, first, trivial_head):
    for layer, following in zip(layers, layers[1:], strict=False):
        if layer.weight.shape[0] != following.weight.shape[1]:
            raise OnnxModelError(
                f"layer shapes do not chain: {layer.name!r} has {layer.weight.shape[0]} "
                f"outputs but {following.name!r} takes {following.weight.shape[1]} inputs")
    takes = layers[0].weight.shape[1]
    if trivial_head:
        if input_dims[1] != takes:
            raise OnnxModelError(f"input {input_info.name!r} has {input_dims[1]} features but "
                                 f"the first linear layer {layers[0].name!r} takes {takes}")
        return
    shape = graph.shape(first.input[0])
    if shape is not None and (len(shape) != 2 or shape[1] not in (None, takes)):
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        raise OnnxModelError(f"the first linear layer {layers[0].name!r} reads "
                             f"{first.input[0]!r} of shape ({dims}); (batch, {takes}) is "
                             f"expected")


# -- the models onnxruntime runs ----------------------------------------------------------

def _submodel(model, nodes, inputs, outputs, name) -> onnx.ModelProto:
    used = {n for node in nodes for n in node.input}
    initializers = [t for t in model.graph.initializer if t.name in used]
    graph = helper.make_graph(list(nodes), f"{model.graph.name}_{name}", inputs, outputs,
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=model.opset_import,
                             ir_version=model.ir_version, functions=model.functions)


def _runnable(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose inputs and outputs take any batch size (a fixed first dimension, as
    ``torch.onnx.export`` writes without ``dynamic_axes``, becomes dynamic)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    constants = {t.name for t in copy.graph.initializer}
    for info in [*copy.graph.input, *copy.graph.output]:
        if info.name in constants:
            continue
        tensor = info.type.tensor_type
        if tensor.HasField("shape") and len(tensor.shape.dim) and \
                tensor.shape.dim[0].HasField("dim_value"):
            tensor.shape.dim[0].dim_param = "batch"
    del copy.graph.value_info[:]
    return copy


def _with_output(model: onnx.ModelProto, info: onnx.ValueInfoProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if info.name not in {o.name for o in copy.graph.output}:
        copy.graph.output.append(info)
    return copy
