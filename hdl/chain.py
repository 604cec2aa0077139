"""Two layers back to back: layer 1's y is scattered into layer 2's x, on chip."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config, clog2
from .scatter import Scatter
from .spmv import BBSSpMV

__all__ = ["Chain", "check_chain"]


def check_chain(first: Config, second: Config) -> None:
    """Refuse two configurations that cannot be chained, naming the rule."""
    for name, config in (("first", first), ("second", second)):
        if config.pattern != "bbs":
            raise ValueError(f"the {name} layer must have pattern 'bbs', not {config.pattern!r}")
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
    s_axis_x_* : layer 1's x;  s_axis_w1_*, s_axis_w2_* : the two layers' w frames (one of
    each per vector);  m_axis_y_* : layer 2's y;  error : either core's error.

    The buffer is single: layer 1's next results wait (y back-pressure) while it is read
    out, so the two layers overlap only through each core's own x double buffer.
    """

    def __init__(self, first: Config, second: Config):
        check_chain(first, second)
        self._first = first
        self._second = second
        one = BBSSpMV.signature_for(first).members
        two = BBSSpMV.signature_for(second).members
        super().__init__({
            "s_axis_x_tdata": one["s_axis_x_tdata"],
            "s_axis_x_tvalid": In(1),
            "s_axis_x_tready": Out(1),
            "s_axis_x_tlast": In(1),
            "s_axis_w1_tdata": one["s_axis_w_tdata"],
            "s_axis_w1_tvalid": In(1),
            "s_axis_w1_tready": Out(1),
            "s_axis_w1_tlast": In(1),
            "s_axis_w2_tdata": two["s_axis_w_tdata"],
            "s_axis_w2_tvalid": In(1),
            "s_axis_w2_tready": Out(1),
            "s_axis_w2_tlast": In(1),
            "m_axis_y_tdata": two["m_axis_y_tdata"],
            "m_axis_y_tvalid": Out(1),
            "m_axis_y_tready": In(1),
            "m_axis_y_tlast": Out(1),
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

        for port in ("tdata", "tvalid", "tlast"):
            m.d.comb += [
                getattr(core1, f"s_axis_x_{port}").eq(getattr(self, f"s_axis_x_{port}")),
                getattr(core1, f"s_axis_w_{port}").eq(getattr(self, f"s_axis_w1_{port}")),
                getattr(core2, f"s_axis_w_{port}").eq(getattr(self, f"s_axis_w2_{port}")),
            ]
        m.d.comb += [
            self.s_axis_x_tready.eq(core1.s_axis_x_tready),
            self.s_axis_w1_tready.eq(core1.s_axis_w_tready),
            self.s_axis_w2_tready.eq(core2.s_axis_w_tready),
            self.m_axis_y_tdata.eq(core2.m_axis_y_tdata),
            self.m_axis_y_tvalid.eq(core2.m_axis_y_tvalid),
            self.m_axis_y_tlast.eq(core2.m_axis_y_tlast),
            core2.m_axis_y_tready.eq(self.m_axis_y_tready),
            self.error.eq(core1.error | core2.error),
        ]

        # Where row j of layer 1 goes: for each element p of a y beat, j = g*pes + p is
        # kept as (matrix bank, offset in bank) of layer 2, advanced by `pes` rows a beat.
        pes1 = one.pes
        step_banks, step_offset = divmod(pes1, bank2)
        draining = Signal()
        y1_accept = Signal()
        m.d.comb += [
            buffer.req.valid.eq(core1.m_axis_y_tvalid & ~draining),
            core1.m_axis_y_tready.eq(buffer.req.ready & ~draining),
            y1_accept.eq(core1.m_axis_y_tvalid & core1.m_axis_y_tready),
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
                with m.If(core1.m_axis_y_tlast):
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
                    core1.m_axis_y_tdata[p * one.out_width:(p + 1) * one.out_width]),
                buffer.req.payload.mask[p].eq(row < two.cols),
            ]

        # When layer 1's frame is in, read the buffer out as layer 2's x frame.
        read_addr = Signal(range(max(2, two.x_beats)))
        sent = Signal(range(max(2, two.x_beats)))
        with m.If(y1_accept & core1.m_axis_y_tlast):
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
            core2.s_axis_x_tdata.eq(buffer.rd_resp.payload),
            core2.s_axis_x_tvalid.eq(buffer.rd_resp.valid),
            core2.s_axis_x_tlast.eq(sent == two.x_beats - 1),
            buffer.rd_resp.ready.eq(core2.s_axis_x_tready),
        ]
        with m.If(buffer.rd_resp.valid & core2.s_axis_x_tready):
            with m.If(sent == two.x_beats - 1):
                m.d.sync += [sent.eq(0), draining.eq(0), issued_all.eq(0)]
            with m.Else():
                m.d.sync += sent.eq(sent + 1)
        return m
