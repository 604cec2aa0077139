"""One layer's y scattered into the next layer's x layout on chip, then read out as its x."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import clog2
from .axis import AXIStream
from .scatter import Scatter

__all__ = ["YToX"]


class YToX(wiring.Component):
    """y beats of ``pes`` rows in, the next layer's x frame out (DESIGN §13, §16).

    Every y beat (rows ``g*pes + p``) is written by a non-accumulating crossbar
    :class:`Scatter` of ``lanes`` banks into a buffer laid out as the next layer's x (DESIGN
    §3: row ``j`` becomes column ``j``, lane ``(j // bank_size) % lanes``, address
    ``((j // bank_size) // lanes) * bank_size + j % bank_size``). Rows at or past `cols` are
    dropped. When the y frame's ``tlast`` arrives, the buffer is read out address by address
    as an x frame of `x_beats` beats (``tlast`` on the last). The buffer is single: y waits
    (back-pressure) while it is read out.

    Words no row writes keep what they held: zero after reset, which is the padding of a
    chain's fixed second layer. A model's layers share the buffer, so there a padding word
    may hold an older layer's value; it only ever meets zero-valued weight slots.

    Ports
    -----
    y : In(AXIStream(pes * width));  x : Out(AXIStream(lanes * width))
    cols : In(range(max_cols + 1)); x_beats : In(range(1, max_x_beats + 1))  only when
        `runtime`: the next layer's columns and x beats, held from a y frame's first beat to
        the end of its read-out; otherwise the constants `max_cols` and `max_x_beats`.
    """

    def __init__(self, *, pes: int, lanes: int, bank_size: int, width: int, max_cols: int,
                 max_x_beats: int, runtime: bool = False):
        if pes > lanes:
            raise ValueError(f"pes ({pes}) must not exceed lanes ({lanes}): the scatter takes "
                             f"one y beat, one row per lane, a cycle")
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two (the scatter's crossbar routes by "
                             f"index mod lanes), not {lanes}")
        self._pes, self._lanes, self._bank = pes, lanes, bank_size
        self._width, self._max_cols, self._max_x_beats = width, max_cols, max_x_beats
        self._runtime = runtime
        shape = {"cols": In(range(max_cols + 1)),
                 "x_beats": In(range(1, max_x_beats + 1))} if runtime else {}
        super().__init__({
            "y": In(AXIStream(pes * width)),
            "x": Out(AXIStream(lanes * width)),
            **shape,
        })

    def elaborate(self, platform):
        m = Module()
        pes, lanes, bank_size, width = self._pes, self._lanes, self._bank, self._width
        max_cols, max_x_beats = self._max_cols, self._max_x_beats
        if self._runtime:
            cols, x_beats = self.cols, self.x_beats
        else:
            cols, x_beats = Const(max_cols), Const(max_x_beats)
        m.submodules.buffer = buffer = Scatter(lanes=lanes, width=width, depth=max_x_beats,
                                               mode="crossbar", accumulate=False)
        y, x = self.y, self.x

        # Where row j goes: for each element p of a y beat, j = g*pes + p is kept as (matrix
        # bank, offset in bank), advanced by `pes` rows a beat.
        step_banks, step_offset = divmod(pes, bank_size)
        draining = Signal()
        y_accept = Signal()
        m.d.comb += [
            buffer.req.valid.eq(y.tvalid & ~draining),
            y.tready.eq(buffer.req.ready & ~draining),
            y_accept.eq(y.tvalid & y.tready),
        ]
        lane_bits = clog2(lanes)
        for p in range(pes):
            bank_init, offset_init = divmod(p, bank_size)
            # Counting stops past cols (those rows are dropped), so nothing wraps.
            row = Signal(range(max_cols + pes + 1), init=p, name=f"row{p}")
            bank = Signal(range(max(2, max_cols // bank_size + pes + 2)), init=bank_init,
                          name=f"row{p}_bank")
            offset = Signal(range(max(2, bank_size)), init=offset_init, name=f"row{p}_offset")
            with m.If(y_accept):
                with m.If(y.tlast):
                    m.d.sync += [row.eq(p), bank.eq(bank_init), offset.eq(offset_init)]
                with m.Elif(row >= cols):
                    pass
                with m.Elif(offset + step_offset >= bank_size):
                    m.d.sync += [row.eq(row + pes), bank.eq(bank + step_banks + 1),
                                 offset.eq(offset + step_offset - bank_size)]
                with m.Else():
                    m.d.sync += [row.eq(row + pes), bank.eq(bank + step_banks),
                                 offset.eq(offset + step_offset)]
            address = (bank >> lane_bits) * bank_size + offset
            m.d.comb += [
                buffer.req.payload.index[p].eq((address << lane_bits) | bank[:lane_bits]
                                               if lane_bits else address),
                buffer.req.payload.value[p].eq(y.tdata[p * width:(p + 1) * width]),
                buffer.req.payload.mask[p].eq(row < cols),
            ]

        # When the y frame is in, read the buffer out as the x frame.
        read_addr = Signal(range(max(2, max_x_beats)))
        sent = Signal(range(max(2, max_x_beats)))
        with m.If(y_accept & y.tlast):
            m.d.sync += [draining.eq(1), read_addr.eq(0)]
        issued_all = Signal()
        m.d.comb += buffer.rd_req.payload.eq(read_addr)
        with m.If(buffer.rd_req.valid & buffer.rd_req.ready):
            with m.If(read_addr == x_beats - 1):
                m.d.sync += issued_all.eq(1)
            with m.Else():
                m.d.sync += read_addr.eq(read_addr + 1)
        m.d.comb += [
            buffer.rd_req.valid.eq(draining & ~issued_all),
            x.tdata.eq(buffer.rd_resp.payload),
            x.tvalid.eq(buffer.rd_resp.valid),
            x.tlast.eq(sent == x_beats - 1),
            buffer.rd_resp.ready.eq(x.tready),
        ]
        with m.If(buffer.rd_resp.valid & x.tready):
            with m.If(sent == x_beats - 1):
                m.d.sync += [sent.eq(0), draining.eq(0), issued_all.eq(0)]
            with m.Else():
                m.d.sync += sent.eq(sent + 1)
        return m
