"""Two layers back to back: layer 1's y is scattered into layer 2's x, on chip."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..golden.formats import BBSFormat
from .axis import AXIStream
from .spmv import BBSSpMV
from .y_to_x import YToX

__all__ = ["Chain", "check_chain"]


def check_chain(first: Config, second: Config) -> None:
    """Refuse two configurations that cannot be chained, naming the rule."""
    for name, config in (("first", first), ("second", second)):
        if not isinstance(config.format, BBSFormat):
            raise ValueError(f"the {name} layer must have pattern 'bbs' (the chain scatters y "
                             f"into the lane mapping of DESIGN §3), not {config.pattern!r}")
    if first.out_width != second.act_width:
        raise ValueError(f"the first layer's out_width ({first.out_width}) must equal the second "
                         f"layer's act_width ({second.act_width}): y becomes x unchanged")
    if first.pes > second.lanes:
        raise ValueError(f"the first layer's pes ({first.pes}) must not exceed the second "
                         f"layer's lanes ({second.lanes}): the scatter takes one y beat, one "
                         f"row per lane, a cycle")
    if second.lanes & (second.lanes - 1):
        raise ValueError(f"the second layer's lanes must be a power of two (the scatter's "
                         f"crossbar routes by index mod lanes), not {second.lanes}")


class Chain(wiring.Component):
    """y = W2 @ f(W1 @ x): two :class:`BBSSpMV` cores with a :class:`Scatter` between them.

    Every y beat of layer 1 (``pes`` rows) is scattered into a banked buffer laid out as
    layer 2's x (DESIGN §3 for layer 2's bank pattern: row ``j`` of layer 1 is column ``j``
    of layer 2, lane ``(j // bank_size) % lanes``, address
    ``((j // bank_size) // lanes) * bank_size + j % bank_size``). When layer 1's frame ends,
    the buffer is read out, address by address, as layer 2's x frame, so the host sends x
    once and receives layer 2's y. Rows of layer 1 past layer 2's ``cols`` are dropped;
    buffer words no row writes stay 0 (layer 2's padding).

    Ports
    -----
    s_axis_x : In(AXIStream)  layer 1's x;  s_axis_w1, s_axis_w2 : In(AXIStream)  the two
    layers' w frames (one of each per vector);  m_axis_y : Out(AXIStream)  layer 2's y;
    error : Out(1)  either core's error.

    The buffer is single: layer 1's next results wait (y back-pressure) while it is read
    out, so the two layers overlap only through each core's own x double buffer.
    """

    def __init__(self, first: Config, second: Config):
        check_chain(first, second)
        self._first = first
        self._second = second
        super().__init__({
            "s_axis_x": In(AXIStream(first.x_beat_width)),
            "s_axis_w1": In(AXIStream(first.w_beat_width)),
            "s_axis_w2": In(AXIStream(second.w_beat_width)),
            "m_axis_y": Out(AXIStream(second.y_beat_width)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        one, two = self._first, self._second
        m = Module()
        m.submodules.layer1 = core1 = BBSSpMV(one)
        m.submodules.layer2 = core2 = BBSSpMV(two)
        m.submodules.y_to_x = y_to_x = YToX(
            pes=one.pes, lanes=two.lanes, bank_size=two.bank_size, width=two.act_width,
            max_cols=two.cols, max_x_beats=two.x_beats)

        wiring.connect(m, wiring.flipped(self.s_axis_x), core1.s_axis_x)
        wiring.connect(m, wiring.flipped(self.s_axis_w1), core1.s_axis_w)
        wiring.connect(m, wiring.flipped(self.s_axis_w2), core2.s_axis_w)
        wiring.connect(m, core2.m_axis_y, wiring.flipped(self.m_axis_y))
        wiring.connect(m, core1.m_axis_y, y_to_x.y)
        wiring.connect(m, y_to_x.x, core2.s_axis_x)
        m.d.comb += self.error.eq(core1.error | core2.error)
        return m
