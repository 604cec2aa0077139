"""The output stage of DESIGN §5: round-half-up shift, optional ReLU, saturation."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pipeline import require_positive

__all__ = ["OutputStage"]


class OutputStage(wiring.Component):
    """Requantize an accumulator value to the output width.

    For an accumulator value ``a`` (signed, ``acc_width`` bits)::

        r = (a + (1 << (out_shift - 1))) >> out_shift   if out_shift > 0 else a
        r = max(r, 0)                                    if relu
        y = min(max(r, -2**(out_width-1)), 2**(out_width-1) - 1)

    The rounding add is done in ``acc_width + 1`` bits so it never wraps; ``>>`` is
    arithmetic, so halves round toward +inf, exactly as ``golden.arith.output_stage``.

    Ports
    -----
    acc : In(signed(acc_width))
    y : Out(signed(out_width))

    Latency: :attr:`latency` = 2 cycles (register after the shift, register after the
    clamp); one new value every cycle, no enable.
    """

    def __init__(self, *, acc_width: int, out_width: int, out_shift: int = 0, relu: bool = False):
        require_positive(acc_width=acc_width, out_width=out_width)
        if out_width > acc_width:
            raise ValueError(
                f"out_width must not exceed acc_width ({acc_width}), not {out_width!r}")
        if not isinstance(out_shift, int) or not 0 <= out_shift < acc_width:
            raise ValueError(
                f"out_shift must be in 0..acc_width-1 ({acc_width - 1}), not {out_shift!r}")
        if not isinstance(relu, bool):
            raise ValueError(f"relu must be a boolean, not {relu!r}")
        self._acc_width = acc_width
        self._out_width = out_width
        self._out_shift = out_shift
        self._relu = relu
        super().__init__({"acc": In(signed(acc_width)), "y": Out(signed(out_width))})

    #: Register after the shift, register after the clamp.
    LATENCY = 2

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        shift = self._out_shift
        # One bit more than the accumulator: the rounding add cannot wrap.
        rounded = Signal(signed(self._acc_width + 1))
        if shift > 0:
            m.d.comb += rounded.eq(self.acc + (1 << (shift - 1)))
        else:
            m.d.comb += rounded.eq(self.acc)
        # Data: no reset (the caller's `valid` travels beside it).
        shifted = Signal(signed(self._acc_width + 1 - shift), reset_less=True)
        m.d.sync += shifted.eq(rounded >> shift)

        low = -(1 << (self._out_width - 1))
        high = (1 << (self._out_width - 1)) - 1
        if self._relu:
            low = 0
        clamped = Mux(shifted < low, low, Mux(shifted > high, high, shifted))
        y = Signal(signed(self._out_width), name="y_reg", reset_less=True)
        m.d.sync += y.eq(clamped[: self._out_width])
        m.d.comb += self.y.eq(y)
        return m
