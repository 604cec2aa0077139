"""Two layers back to back: layer 1's y is scattered into layer 2's x, on chip."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config, clog2
from ..golden.formats import BBSFormat
from .axis import AXIStream
from .scatter import Scatter
from .spmv import BBSSpMV

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
        lanes2, bank2 = two.lanes, two.bank_size
        m.submodules.buffer = buffer = Scatter(lanes=lanes2, width=two.act_width,
                                               depth=two.x_beats, mode="crossbar",
                                               accumulate=False)

        wiring.connect(m, wiring.flipped(self.s_axis_x), core1.s_axis_x)
        wiring.connect(m, wiring.flipped(self.s_axis_w1), core1.s_axis_w)
        wiring.connect(m, wiring.flipped(self.s_axis_w2), core2.s_axis_w)
        wiring.connect(m, core2.m_axis_y, wiring.flipped(self.m_axis_y))
        m.d.comb += self.error.eq(core1.error | core2.error)
        y1, x2 = core1.m_axis_y, core2.s_axis_x

        # Where row j of layer 1 goes: for each element p of a y beat, j = g*pes + p is
        # kept as (matrix bank, offset in bank) of layer 2, advanced by `pes` rows a beat.
        pes1 = one.pes
        step_banks, step_offset = divmod(pes1, bank2)
        draining = Signal()
        y1_accept = Signal()
        m.d.comb += [
            buffer.req.valid.eq(y1.tvalid & ~draining),
            y1.tready.eq(buffer.req.ready & ~draining),
            y1_accept.eq(y1.tvalid & y1.tready),
        ]
        lane_bits = clog2(lanes2)
        for p in range(pes1):
            bank_init, offset_init = divmod(p, bank2)
            # Counting stops past layer 2's cols (those rows are dropped), so nothing wraps.
            row = Signal(range(two.cols + pes1 + 1), init=p, name=f"row{p}")
            bank = Signal(range(max(2, two.cols // bank2 + pes1 + 2)), init=bank_init,
                          name=f"row{p}_bank")
            offset = Signal(range(max(2, bank2)), init=offset_init, name=f"row{p}_offset")
            with m.If(y1_accept):
                with m.If(y1.tlast):
                    m.d.sync += [row.eq(p), bank.eq(bank_init), offset.eq(offset_init)]
                with m.Elif(row >= two.cols):
                    pass
                with m.Elif(offset + step_offset >= bank2):
                    m.d.sync += [row.eq(row + pes1), bank.eq(bank + step_banks + 1),
                                 offset.eq(offset + step_offset - bank2)]
                with m.Else():
                    m.d.sync += [row.eq(row + pes1), bank.eq(bank + step_banks),
                                 offset.eq(offset + step_offset)]
            address = (bank >> lane_bits) * bank2 + offset
            m.d.comb += [
                buffer.req.payload.index[p].eq((address << lane_bits) | bank[:lane_bits]
                                               if lane_bits else address),
                buffer.req.payload.value[p].eq(
                    y1.tdata[p * one.out_width:(p + 1) * one.out_width]),
                buffer.req.payload.mask[p].eq(row < two.cols),
            ]

        # When layer 1's frame is in, read the buffer out as layer 2's x frame.
        read_addr = Signal(range(max(2, two.x_beats)))
        sent = Signal(range(max(2, two.x_beats)))
        with m.If(y1_accept & y1.tlast):
            m.d.sync += [draining.eq(1), read_addr.eq(0)]
        issued_all = Signal()
        m.d.comb += buffer.rd_req.payload.eq(read_addr)
        with m.If(buffer.rd_req.valid & buffer.rd_req.ready):
            with m.If(read_addr == two.x_beats - 1):
                m.d.sync += issued_all.eq(1)
            with m.Else():
                m.d.sync += read_addr.eq(read_addr + 1)
        m.d.comb += [
            buffer.rd_req.valid.eq(draining & ~issued_all),
            x2.tdata.eq(buffer.rd_resp.payload),
            x2.tvalid.eq(buffer.rd_resp.valid),
            x2.tlast.eq(sent == two.x_beats - 1),
            buffer.rd_resp.ready.eq(x2.tready),
        ]
        with m.If(buffer.rd_resp.valid & x2.tready):
            with m.If(sent == two.x_beats - 1):
                m.d.sync += [sent.eq(0), draining.eq(0), issued_all.eq(0)]
            with m.Else():
                m.d.sync += sent.eq(sent + 1)
        return m
