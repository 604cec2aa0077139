"""Float linear layers to an :class:`~bbsparse.golden.model.IntegerModel`: prune, fine-tune
under the pruning masks, quantize.

A float model here is a chain of linear layers ``y = W x + b`` (``W`` of shape
``(out, in)``), each optionally followed by a ReLU; a layer is any object with the attributes
``name``, ``weight``, ``bias`` (None: no bias) and ``relu`` (what
:mod:`bbsparse.onnx_import` produces).

1. :func:`prune_layers` prunes every layer to the core's pattern with that pattern's
   registered pruner (:data:`bbsparse.golden.prune.PRUNERS`, with the budget rules of
   ``bbsparse prune``, DESIGN §1.1). A layer that already follows the pattern is kept as
   given.
2. :func:`finetune` retrains weights and biases with the pruned weights held at zero.
3. :func:`quantize` turns the float layers into integer layers with power-of-two scales,
   so that the rescaling between two layers is exactly the model's output stage (a
   rounding right shift, DESIGN §5):

   - input: ``x_int = clip(rint(x / 2**e_in), -A, A)``, ``A = 2**(act_width - 1) - 1``,
     with the finest ``e_in`` that holds the :data:`CALIBRATION_PERCENTILE`-th percentile
     of the calibration set's ``|x|`` in ``A`` (the few values above saturate rather than
     coarsen every other value);
   - weights of layer k: ``W_int = rint(W / 2**e_w)`` with the finest ``e_w`` that holds the
     layer's largest ``|w|`` in ``2**(weight_width - 1) - 1`` (symmetric, like the input);
     a zero stays zero, so rounding may lose nonzeros but never adds one;
   - the accumulator of layer k is in scale ``2**e_acc``, ``e_acc = e_w + e_in``, and so is
     the bias: ``b_int = rint(b / 2**e_acc)``, which must fit ``bias_width = acc_width``;
   - a hidden layer's output is in scale ``2**e_out``, chosen as the input's is from the
     outputs of the *float* network on the calibration set (after the ReLU, if any), but
     never finer than the accumulator, so
     ``out_shift = e_out - e_acc >= 0``. The next layer's ``e_in`` is this ``e_out``;
   - the last layer leaves the exact sum ``acc + bias`` (``out_shift`` 0, ``out_width =
     acc_width + 1``, so it never saturates): outputs in scale ``2**e_acc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bbsparse.golden.arith import scale_exponent, signed_range
from bbsparse.golden.config import Config, ConfigError
from bbsparse.golden.formats import FORMATS
from bbsparse.golden.model import IntegerLayer, IntegerModel, ModelError
from bbsparse.golden.prune import PRUNERS, PruneOptionError

__all__ = [
    "CompileError",
    "CoreShape",
    "Quantized",
    "accuracy",
    "classify",
    "finetune",
    "float_forward",
    "prune_layers",
    "quantize",
]

#: Minibatch size, Adam moments and L2 on the weights: the digits demo's training.
BATCH = 32
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
WEIGHT_DECAY = 1e-4
FINETUNE_RATE = 1e-3


class CompileError(ValueError):
    """A model that cannot be compiled for the chosen core; one line naming the layer and the
    figures."""


Log = Callable[[str], None] | None


@dataclass(frozen=True, kw_only=True)
class CoreShape:
    """The core the user chose on the command line: engine, bank pattern, array and operand
    widths. The row length (``cols``) and the accumulator follow from the model."""

    pattern: str = "bbs"
    bank_size: int
    nnz_per_bank: int
    lanes: int = 8
    pes: int = 1
    weight_width: int = 8
    act_width: int = 8

    def __post_init__(self):
        name = self.pattern if isinstance(self.pattern, str) else None
        if FORMATS.get(name) is None or PRUNERS.get(name) is None:
            engines = ", ".join(repr(name) for name in FORMATS if name in PRUNERS)
            raise CompileError(f"pattern must be one of {engines}, not {self.pattern!r}")
        for name in ("weight_width", "act_width"):
            value = getattr(self, name)
            # Symmetric quantization to +-(2**(width-1) - 1) needs at least 2 bits.
            if isinstance(value, int) and not isinstance(value, bool) and value < 2:
                raise CompileError(f"{name} must be at least 2 bits for symmetric "
                                   f"quantization, not {value}")
        self.config(self.bank_size if isinstance(self.bank_size, int) else 1)

    def config(self, cols: int) -> Config:
        """The core for rows of up to `cols` (a multiple of ``bank_size``): accumulator of
        the default width, raw output stage (``out_shift`` 0, no ReLU, ``out_width =
        acc_width``), as an IntegerModel requires. CompileError if the core is invalid."""
        try:
            return Config(lanes=self.lanes, pes=self.pes, bank_size=self.bank_size,
                          nnz_per_bank=self.nnz_per_bank, cols=cols, pattern=self.pattern,
                          weight_width=self.weight_width, act_width=self.act_width,
                          out_shift=0, relu=False)
        except ConfigError as exc:
            raise CompileError(f"core: {exc}") from None

    def padded(self, cols: int) -> int:
        """`cols` rounded up to a whole bank."""
        return -(-cols // self.bank_size) * self.bank_size


def _where(k: int, name) -> str:
    return f"layer {k}" + (f" ({name})" if name else "")


def _layer_names(layers) -> list[str]:
    return [str(getattr(layer, "name", "") or "") for layer in layers]


def _float_matrix(W, where: str) -> np.ndarray:
    W = np.array(W, dtype=np.float64)
    if W.ndim != 2:
        raise CompileError(f"{where}: weights must be 2-D (out, in), not shape {W.shape}")
    if not np.isfinite(W).all():
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(W))[0])
        raise CompileError(f"{where}: weight {position} is {W[position]}, not a finite number")
    return W


# -- pruning ---------------------------------------------------------------------------------


def prune_layers(layers, shape: CoreShape, *, log: Log = None
                 ) -> tuple[list[np.ndarray], list[str]]:
    """Every layer's float weights pruned to `shape`'s pattern, and per layer ``"kept"`` (it
    already followed the pattern: the user pruned it; returned unchanged) or ``"pruned"``.

    A layer's columns are padded with zeros to a multiple of ``bank_size`` for the pruner
    and the padding removed again, so the weights keep their shape ``(out, in)``. The pruner
    is the pattern's registered one with the budget rules of ``bbsparse prune`` (DESIGN
    §1.1): ``bbs`` keeps ``nnz_per_bank`` of every bank, ``unstructured`` the same number of
    weights over the whole (padded) matrix. A layer is "kept" when the pruner would not
    change it, i.e. it already follows the pattern (DESIGN §1.2; for ``unstructured``: it
    holds at most the budget of nonzeros).
    """
    pruner = PRUNERS[shape.pattern]
    names = _layer_names(layers)
    weights, status = [], []
    for k, layer in enumerate(layers):
        where = _where(k, names[k])
        W = _float_matrix(layer.weight, where)
        rows, cols = W.shape
        padded = np.pad(W, ((0, 0), (0, shape.padded(cols) - cols)))
        try:
            params, description = pruner.resolve(
                {"bank_size": shape.bank_size, "nnz_per_bank": shape.nnz_per_bank},
                padded.shape, where)
            pruned = pruner(padded, **params)
        except (PruneOptionError, ValueError) as exc:
            raise CompileError(f"{where}: {exc}") from None
        before = int(np.count_nonzero(W))
        if np.array_equal(pruned, padded):
            status.append("kept")
            pruned = padded
        else:
            status.append("pruned")
        result = pruned[:, :cols].copy()
        weights.append(result)
        if log:
            after = int(np.count_nonzero(result))
            change = ("already follows it, kept" if status[-1] == "kept"
                      else f"pruned, {before} -> {after} nonzero")
            log(f"{where}: {rows}x{cols}, {description}: {change} "
                f"(density {after / W.size:.4f})")
    return weights, status


# -- float network and training --------------------------------------------------------------


def float_forward(weights, biases, relus, X) -> list[np.ndarray]:
    """Every layer's float output (after its ReLU) for inputs `X` ``(batch, in)``."""
    h = np.atleast_2d(np.asarray(X, dtype=np.float64))
    outputs = []
    for W, b, relu in zip(weights, biases, relus, strict=True):
        h = h @ np.asarray(W, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
        if relu:
            h = np.maximum(h, 0.0)
        outputs.append(h)
    return outputs


def _binary(outputs: int, classes: int) -> bool:
    """One output for two classes: a logistic unit (scikit-learn's binary classifier), the
    second class when the output is positive."""
    return outputs == 1 and classes == 2


def classify(outputs, classes) -> np.ndarray:
    """The class of each row of `outputs` ``(batch, n)``: ``classes[argmax]`` (ties to the
    lower index); with one output and two classes, the second class where it is positive.
    An argmax beyond the classes gives None (never a label)."""
    outputs = np.atleast_2d(np.asarray(outputs, dtype=np.float64))
    classes = np.asarray(classes)
    if _binary(outputs.shape[1], len(classes)):
        return classes[(outputs[:, 0] > 0).astype(np.int64)]
    index = outputs.argmax(axis=1)
    predicted = np.empty(len(index), dtype=object)
    inside = index < len(classes)
    predicted[inside] = classes[index[inside]]
    predicted[~inside] = None
    return predicted


def accuracy(weights, biases, relus, X, labels, classes=None) -> float:
    """Fraction of `X` the float network classifies as `labels` (classes: the sorted distinct
    labels unless given; output ``i`` is ``classes[i]``)."""
    labels = np.asarray(labels)
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    predicted = classify(float_forward(weights, biases, relus, X)[-1], classes)
    return float(np.mean(predicted == labels))


def _bias_of(layer, rows: int) -> np.ndarray:
    bias = getattr(layer, "bias", None)
    return np.zeros(rows) if bias is None else np.array(bias, dtype=np.float64).reshape(rows)


def finetune(layers, weights, masks, X, labels, *, epochs: int, seed: int = 0,
             rate: float = FINETUNE_RATE, log: Log = None
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Train `weights` (one ``(out, in)`` matrix per layer of `layers`) and the layers'
    biases on `X` ``(samples, in)`` and `labels`; returns new ``(weights, biases)``.

    Softmax cross-entropy on the last layer's outputs, classes being the sorted distinct
    labels mapped to outputs ``0..n-1`` (scikit-learn's ``classes_``; one output and two
    classes is a logistic unit). A ReLU follows a layer where ``layer.relu``. Minibatch
    Adam (batches of :data:`BATCH`, a little L2 on the weights, as in the digits demo).
    With `masks` (one boolean matrix per layer; None trains every weight) a weight outside
    its mask is exactly 0 before and after every step. Deterministic from `seed`: the batch
    order comes from it, and the sums run on one BLAS thread.
    """
    from threadpoolctl import threadpool_limits

    layers = list(layers)
    names = _layer_names(layers)
    relus = [bool(layer.relu) for layer in layers]
    params = [_float_matrix(W, _where(k, names[k])) for k, W in enumerate(weights)]
    if len(params) != len(layers):
        raise CompileError(f"{len(params)} weight matrices for {len(layers)} layers")
    biases = [_bias_of(layer, W.shape[0]) for layer, W in zip(layers, params, strict=True)]
    if masks is not None:
        masks = [np.asarray(m, dtype=bool) for m in masks]
        for k, (W, m) in enumerate(zip(params, masks, strict=True)):
            if m.shape != W.shape:
                raise CompileError(f"{_where(k, names[k])}: mask shape {m.shape}, weights "
                                   f"{W.shape}")
            params[k] = np.where(m, W, 0.0)
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    if X.ndim != 2 or X.shape[1] != params[0].shape[1] or len(labels) != len(X):
        raise CompileError(f"training data: X {X.shape} and {len(labels)} labels for a model "
                           f"of {params[0].shape[1]} inputs")
    classes, target = np.unique(labels, return_inverse=True)
    outputs = params[-1].shape[0]
    binary = _binary(outputs, len(classes))
    if not binary and len(classes) > outputs:
        raise CompileError(f"{_where(len(layers) - 1, names[-1])}: {outputs} outputs for "
                           f"{len(classes)} classes")

    rng = np.random.default_rng(seed)
    state = params + biases
    first = [np.zeros_like(p) for p in state]
    second = [np.zeros_like(p) for p in state]
    step = 0
    with threadpool_limits(limits=1):
        for epoch in range(epochs):
            order = rng.permutation(len(X))
            loss = 0.0
            for start in range(0, len(order), BATCH):
                batch = order[start:start + BATCH]
                grads, batch_loss = _gradients(params, biases, relus, X[batch], target[batch],
                                               binary)
                loss += batch_loss * len(batch)
                step += 1
                for k, grad in enumerate(grads):
                    value = state[k]
                    if k < len(params):
                        grad = grad + WEIGHT_DECAY * value
                        if masks is not None:
                            grad = np.where(masks[k], grad, 0.0)
                    first[k] = BETA1 * first[k] + (1 - BETA1) * grad
                    second[k] = BETA2 * second[k] + (1 - BETA2) * grad * grad
                    m_hat = first[k] / (1 - BETA1 ** step)
                    v_hat = second[k] / (1 - BETA2 ** step)
                    value -= rate * m_hat / (np.sqrt(v_hat) + ADAM_EPS)
                    if k < len(params) and masks is not None:
                        # Exactly +0.0 outside the mask (not -0.0, not a tiny remainder).
                        value[...] = np.where(masks[k], value, 0.0)
            if log:
                train = accuracy(params, biases, relus, X, labels, classes)
                log(f"fine-tune epoch {epoch + 1}/{epochs}: loss {loss / len(X):.4f}, "
                    f"training accuracy {100 * train:.2f} %")
    return [W.copy() for W in params], [b.copy() for b in biases]


def _gradients(weights, biases, relus, x, target, binary):
    """Gradients of the mean loss over the batch (weights first, then biases) and the loss."""
    inputs, pre = [], []
    h = x
    for W, b, relu in zip(weights, biases, relus, strict=True):
        inputs.append(h)
        z = h @ W.T + b
        pre.append(z)
        h = np.maximum(z, 0.0) if relu else z
    n = len(x)
    if binary:
        z = h[:, 0]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        loss = float(np.mean(np.logaddexp(0.0, z) - target * z))
        grad = ((p - target) / n)[:, None]
    else:
        shifted = h - h.max(axis=1, keepdims=True)
        log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-log_prob[np.arange(n), target].mean())
        grad = np.exp(log_prob)
        grad[np.arange(n), target] -= 1.0
        grad /= n
    grad_w = [None] * len(weights)
    grad_b = [None] * len(weights)
    for k in reversed(range(len(weights))):
        if relus[k]:
            grad = grad * (pre[k] > 0)
        grad_w[k] = grad.T @ inputs[k]
        grad_b[k] = grad.sum(axis=0)
        if k:
            grad = grad @ weights[k]
    return grad_w + grad_b, loss


# -- quantization ----------------------------------------------------------------------------


#: The percentile of |activation| on the calibration set that a scale must hold: a few
#: outliers (a near-constant feature after standard scaling) saturate instead of making
#: every other value coarse.
CALIBRATION_PERCENTILE = 99.9


def _calibrated_exponent(values: np.ndarray, limit: int) -> int:
    """The finest power-of-two scale that holds the :data:`CALIBRATION_PERCENTILE`-th
    percentile of ``|values|`` in ``[-limit, limit]``; larger values saturate."""
    values = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    if not values.size:
        return 0
    return scale_exponent(float(np.percentile(values, CALIBRATION_PERCENTILE)), limit)


def _symmetric(width: int) -> int:
    return (1 << (width - 1)) - 1


@dataclass
class Quantized:
    """The integer model and the scales that connect it to the float one."""

    model: IntegerModel
    #: x_int = clip(rint(x / 2**input_exponent), -A, A), A = 2**(act_width - 1) - 1.
    input_exponent: int
    #: The last layer's outputs: y_float = y_int * 2**output_exponent.
    output_exponent: int
    #: Per layer: {"weight": e_w, "input": e_in, "acc": e_w + e_in, "output": e_out,
    #: "out_shift": e_out - e_acc}.
    exponents: list[dict]

    def quantize_input(self, X) -> np.ndarray:
        """Float inputs as the model's integer inputs (int64, same shape)."""
        limit = _symmetric(self.model.config.act_width)
        scaled = np.rint(np.asarray(X, dtype=np.float64) / 2.0**self.input_exponent)
        return np.clip(scaled, -limit, limit).astype(np.int64)

    def dequantize_output(self, Y) -> np.ndarray:
        """The last layer's integer outputs as floats in the float model's scale."""
        return (np.asarray(Y, dtype=np.float64) * 2.0**self.output_exponent).astype(np.float32)

    def run(self, X) -> np.ndarray:
        """The golden integer forward pass for float inputs, dequantized."""
        return self.dequantize_output(self.model.forward(self.quantize_input(X)))


def quantize(weights, biases, relus, calibration_X, shape: CoreShape, *,
             names: Sequence[str] | None = None) -> Quantized:
    """Quantize a float chain of linear layers (already pruned to `shape`'s pattern) to an
    IntegerModel on the core `shape` describes; scales as in the module docstring, the
    hidden ones calibrated with the float network (float weights, float biases; a bias of
    None is zero) on `calibration_X` ``(samples, in)``.

    The core's ``cols`` is the widest layer's input count rounded up to a bank, its
    ``acc_width`` the default for that row; ``bias_width = acc_width``. A bias too large for
    its accumulator's scale raises CompileError naming the layer.
    """
    count = len(weights)
    names = [""] * count if names is None else [str(n or "") for n in names]
    if not count or len(biases) != count or len(relus) != count or len(names) != count:
        raise CompileError(f"{count} weight matrices, {len(biases)} biases, {len(relus)} ReLU "
                           f"flags, {len(names)} names: one of each per layer (at least one)")
    weights = [_float_matrix(W, _where(k, names[k])) for k, W in enumerate(weights)]
    biases = [np.zeros(W.shape[0]) if b is None else np.array(b, dtype=np.float64).reshape(-1)
              for W, b in zip(weights, biases, strict=True)]
    relus = [bool(r) for r in relus]
    for k, (W, b) in enumerate(zip(weights, biases, strict=True)):
        where = _where(k, names[k])
        if b.shape != (W.shape[0],):
            raise CompileError(f"{where}: {b.size} biases for {W.shape[0]} outputs")
        if not np.isfinite(b).all():
            raise CompileError(f"{where}: the bias holds a value that is not finite")
        if k and W.shape[1] != weights[k - 1].shape[0]:
            raise CompileError(f"{_where(k - 1, names[k - 1])} gives {weights[k - 1].shape[0]} "
                               f"outputs but {where} takes {W.shape[1]} inputs")
    X = np.atleast_2d(np.asarray(calibration_X, dtype=np.float64))
    if X.ndim != 2 or X.shape[1] != weights[0].shape[1] or not len(X):
        raise CompileError(f"calibration data of shape {X.shape} for a model of "
                           f"{weights[0].shape[1]} inputs")
    if not np.isfinite(X).all():
        raise CompileError("the calibration data holds a value that is not finite")

    config = shape.config(max(shape.padded(W.shape[1]) for W in weights))
    act_limit = _symmetric(shape.act_width)
    weight_limit = _symmetric(shape.weight_width)
    bias_width = config.acc_width
    bias_lo, bias_hi = signed_range(bias_width)
    float_outputs = float_forward(weights, biases, relus, X)

    input_exponent = _calibrated_exponent(X, act_limit)
    e_in = input_exponent
    layers, exponents = [], []
    for k, (W, b, relu) in enumerate(zip(weights, biases, relus, strict=True)):
        where = _where(k, names[k])
        e_w = scale_exponent(float(np.abs(W).max()), weight_limit)
        # rint(0) is 0: the integer layer has no nonzero the float one lacks.
        W_int = np.clip(np.rint(W / 2.0**e_w), -weight_limit, weight_limit).astype(np.int64)
        e_acc = e_w + e_in
        b_scaled = np.rint(b / 2.0**e_acc)
        if b.size and (b_scaled.min() < bias_lo or b_scaled.max() > bias_hi):
            worst = int(np.argmax(np.abs(b_scaled)))
            raise CompileError(
                f"{where}: bias {b[worst]:.6g} (row {worst}) is {b_scaled[worst]:.6g} in the "
                f"accumulator's scale 2**{e_acc}, outside bias_width {bias_width} "
                f"[{bias_lo}, {bias_hi}]")
        b_int = b_scaled.astype(np.int64)
        if k + 1 < count:
            out = float_outputs[k]
            largest = float(out.max()) if relu else float(np.abs(out).max())
            e_out = max(_calibrated_exponent(out, act_limit), e_acc)
            shift = e_out - e_acc
            if shift >= config.acc_width:
                raise CompileError(f"{where}: out_shift {shift} (outputs up to {largest:.6g} "
                                   f"in scale 2**{e_out}, accumulator 2**{e_acc}) must be "
                                   f"less than acc_width ({config.acc_width})")
        else:
            e_out, shift = e_acc, 0
        layers.append(IntegerLayer(weights=W_int, bias=b_int, out_shift=shift, relu=relu,
                                   name=names[k]))
        exponents.append({"weight": e_w, "input": e_in, "acc": e_acc, "output": e_out,
                          "out_shift": shift})
        e_in = e_out
    try:
        model = IntegerModel(config=config, layers=tuple(layers),
                             out_width=config.acc_width + 1, bias_width=bias_width)
    except (ModelError, ValueError) as exc:
        raise CompileError(str(exc)) from None
    return Quantized(model=model, input_exponent=input_exponent,
                     output_exponent=exponents[-1]["acc"], exponents=exponents)
