"""A whole quantized model on one core: the integer layers and their golden forward pass.

An :class:`IntegerModel` is what `bbsparse compile` hands to the generator and what the RTL
must reproduce bit for bit (DESIGN §16). Every layer runs on the same core (same lanes, PEs,
bank pattern, operand and accumulator widths); what differs between layers is kept in a
per-layer table: the shape, the weights, a per-row bias in the accumulator's scale, the
output shift and whether a ReLU follows.

For layer ``k`` with integer input ``x`` (``act_width`` bits)::

    a = wrap(W_k @ x, acc_width)                 # the core's accumulator (DESIGN §5)
    t = a + b_k                                  # exact: bias_width <= acc_width
    r = (t + (1 << (s_k - 1))) >> s_k            if s_k > 0 else t
    r = max(r, 0)                                if relu_k
    y = saturate(r, act_width)  for a hidden layer,  saturate(r, out_width)  for the last

and ``y`` of layer ``k`` is ``x`` of layer ``k + 1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .arith import check_signed, saturate, wrap
from .config import Config

__all__ = ["IntegerLayer", "IntegerModel", "ModelError", "layer_output"]


class ModelError(ValueError):
    """A model the core cannot run as given; the message names the layer and the rule."""


def layer_output(acc, bias, *, shift: int, relu: bool, width: int):
    """The model's output stage: bias add, round-half-up shift, optional ReLU, saturation.

    `acc` is already wrapped to the accumulator width, `bias` broadcasts along the last axis
    of `acc`; the sum is exact (Python / int64 integers, no second wrap)."""
    t = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    if shift > 0:
        t = (t + (1 << (shift - 1))) >> shift
    if relu:
        t = np.maximum(t, 0)
    return saturate(t, width)


@dataclass(frozen=True)
class IntegerLayer:
    """One layer: integer weights ``(rows, cols)`` that follow the core's pattern, the bias
    ``(rows,)`` in the accumulator's scale, the output shift and the ReLU flag."""

    weights: np.ndarray
    bias: np.ndarray
    out_shift: int
    relu: bool
    name: str = ""

    @property
    def rows(self) -> int:
        return int(self.weights.shape[0])

    @property
    def cols(self) -> int:
        return int(self.weights.shape[1])


@dataclass(frozen=True)
class IntegerModel:
    """Layers that run one after another on the core `config`.

    `config` is the core every layer shares: its ``cols`` is the widest layer's (rounded up
    to a bank), ``acc_width`` holds the widest row, ``out_shift`` 0 / ``relu`` false /
    ``out_width == acc_width`` (the accumulator leaves the core raw; the per-layer output
    stage is the model's). `out_width` is the width of the last layer's outputs.
    """

    config: Config
    layers: tuple[IntegerLayer, ...]
    out_width: int
    bias_width: int

    def __post_init__(self):
        c = self.config
        if not self.layers:
            raise ModelError("a model needs at least one layer")
        if c.out_shift != 0 or c.relu or c.out_width != c.acc_width:
            raise ModelError("the model's core must leave the accumulator raw "
                             "(out_shift 0, relu false, out_width = acc_width)")
        if not 1 <= self.bias_width <= c.acc_width:
            raise ModelError(f"bias_width must be in 1..acc_width ({c.acc_width}), "
                             f"not {self.bias_width}")
        if not 1 <= self.out_width <= c.acc_width + 1:
            raise ModelError(f"out_width must be in 1..acc_width + 1 ({c.acc_width + 1}), "
                             f"not {self.out_width}")
        for k, layer in enumerate(self.layers):
            where = f"layer {k}" + (f" ({layer.name})" if layer.name else "")
            if layer.weights.ndim != 2:
                raise ModelError(f"{where}: weights must be 2-D, not {layer.weights.shape}")
            if layer.cols > c.cols:
                raise ModelError(f"{where}: {layer.cols} inputs, the core holds {c.cols}")
            if layer.bias.shape != (layer.rows,):
                raise ModelError(f"{where}: bias shape {layer.bias.shape}, expected "
                                 f"({layer.rows},)")
            if k + 1 < len(self.layers) and self.layers[k + 1].cols != layer.rows:
                raise ModelError(f"{where} gives {layer.rows} outputs but layer {k + 1} takes "
                                 f"{self.layers[k + 1].cols} inputs")
            if not 0 <= layer.out_shift < c.acc_width:
                raise ModelError(f"{where}: out_shift must be in 0..{c.acc_width - 1}, not "
                                 f"{layer.out_shift}")
            check_signed(layer.weights, c.weight_width, f"{where} weights", "weight_width")
            check_signed(layer.bias, self.bias_width, f"{where} bias", "bias_width")
            violation = c.format.weights_violation(self.layer_config(k),
                                                   self.padded_weights(k))
            if violation:
                raise ModelError(f"{where}: {violation}")

    @property
    def inputs(self) -> int:
        return self.layers[0].cols

    @property
    def outputs(self) -> int:
        return self.layers[-1].rows

    def layer_config(self, k: int) -> Config:
        """The core's configuration narrowed to layer `k`'s row length (rounded up to a
        bank): what packs its w and x frames and gives its beat counts."""
        c = self.config
        bank = c.bank_size
        cols = -(-self.layers[k].cols // bank) * bank
        return dataclasses.replace(c, cols=cols)

    def padded_weights(self, k: int) -> np.ndarray:
        """Layer `k`'s weights with zero columns up to a whole bank (the packer's input)."""
        W = np.asarray(self.layers[k].weights)
        cols = self.layer_config(k).cols
        return np.pad(W, ((0, 0), (0, cols - W.shape[1])))

    def layer_width(self, k: int) -> int:
        """Bits of layer `k`'s outputs: act_width for a hidden layer, out_width for the last."""
        return self.out_width if k == len(self.layers) - 1 else self.config.act_width

    def forward(self, x, *, hidden: bool = False):
        """Golden outputs for integer inputs `x` ``(inputs,)`` or ``(batch, inputs)``; with
        `hidden`, the list of every layer's outputs."""
        c = self.config
        x = np.asarray(x)
        single = x.ndim == 1
        h = np.atleast_2d(x).astype(np.int64)
        check_signed(h, c.act_width, "x", "act_width")
        if h.shape[1] != self.inputs:
            raise ModelError(f"x has {h.shape[1]} inputs per vector, the model takes "
                             f"{self.inputs}")
        outs = []
        for k, layer in enumerate(self.layers):
            acc = wrap(h @ layer.weights.astype(np.int64).T, c.acc_width)
            h = np.asarray(layer_output(acc, layer.bias, shift=layer.out_shift,
                                        relu=layer.relu, width=self.layer_width(k)))
            outs.append(h[0] if single else h)
        return outs if hidden else outs[-1]
