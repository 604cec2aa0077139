"""The unstructured engine: the same PEs, fed through the crossbar gather."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring

from ..golden.config import Config
from ..golden.formats import UnstructuredFormat
from .gather import Gather
from .mac_array import MACArray
from .result_queue import ResultQueue
from .spmv import BBSSpMV
from .xbuffer import XBuffers, write_stage

__all__ = ["UnstructuredSpMV"]


class UnstructuredSpMV(wiring.Component):
    """y = W @ x for an unstructured sparse W, in the row-wise compressed format of
    ``golden/unstructured.py`` (DESIGN §9.3), with the ports of :class:`BBSSpMV`.

    Each PE has its own copy of x in `lanes` banks (column ``j`` in bank ``j % lanes``),
    reached through a crossbar :class:`Gather`: a w beat's entries are requests for their
    columns, and entries that collide on a bank are served in later cycles. The PEs,
    accumulators and output stages are those of the BBS core (:class:`MACArray`), and so is
    the credit-guarded :class:`ResultQueue`; `XBuffers` double-buffers x, freeing a buffer
    in the cycle the gather makes the last reads of its matrix (x is written a cycle after
    its beat is accepted, so the next-but-one x may start loading in that very cycle).

    Throughput: one w beat a cycle when no two entries of a PE's beat share a bank; a beat
    whose busiest bank holds k entries takes k cycles (``golden.unstructured.beat_cycles``).
    """

    def __init__(self, config: Config):
        if not isinstance(config, Config) or not isinstance(config.format, UnstructuredFormat):
            raise ValueError(f"config must be a Config with pattern 'unstructured', not {config!r}")
        self._config = config
        super().__init__(self.signature_for(config))

    #: The ports of every engine are the BBS core's (DESIGN §4).
    signature_for = staticmethod(BBSSpMV.signature_for)

    @staticmethod
    def latency_of(config: Config) -> int:
        """Cycles from accepting the last w beat of a row group to its y beat, without bank
        conflicts and with the y FIFO empty."""
        return Gather.LATENCY + MACArray.latency_of(config) + ResultQueue.LATENCY

    @staticmethod
    def y_fifo_slices_of(config: Config) -> int:
        """The y FIFO is one memory (one slice)."""
        return 1

    @staticmethod
    def y_credits_of(config: Config) -> int:
        return ResultQueue.credits_for(UnstructuredSpMV.latency_of(config))

    @property
    def latency(self) -> int:
        return self.latency_of(self._config)

    def elaborate(self, platform):
        c = self._config
        m = Module()
        count = c.pes * c.lanes
        x_beats = c.x_beats
        entry = data.StructLayout({"value": c.weight_width, "column": c.index_width})
        w_payload = Signal(data.StructLayout({
            "entries": data.ArrayLayout(entry, count),
            "group_end": 1,
        }))
        m.d.comb += w_payload.eq(self.s_axis_w.tdata)
        side = data.StructLayout({
            "weights": data.ArrayLayout(c.weight_width, count),
            "first": 1,
            "last": 1,
            "tlast": 1,
        })

        m.submodules.x_buffers = xbuf = XBuffers(beats=x_beats, ready_on_release=True)
        m.submodules.gather = gather = Gather(
            lanes=c.lanes, width=c.act_width, depth=2 * x_beats, mode="crossbar",
            copies=c.pes, side_width=side.size)
        m.submodules.mac_array = macs = MACArray(c)
        m.submodules.result_queue = queue = ResultQueue(
            width=c.y_beat_width, credits=self.y_credits_of(c))

        first = Signal(init=1)  # the next beat starts a row group
        w_last = self.s_axis_w.tlast
        group_end = w_payload.group_end | w_last  # a misplaced tlast still ends the group
        w_accept = Signal()
        m.d.comb += [
            xbuf.x_valid.eq(self.s_axis_x.tvalid),
            xbuf.x_last.eq(self.s_axis_x.tlast),
            self.s_axis_x.tready.eq(xbuf.x_ready),
            gather.req.valid.eq(self.s_axis_w.tvalid & xbuf.rd_full & (~first | queue.can_start)),
            self.s_axis_w.tready.eq(gather.req.ready & xbuf.rd_full & (~first | queue.can_start)),
            w_accept.eq(self.s_axis_w.tvalid & self.s_axis_w.tready),
            queue.start.eq(w_accept & first),
            xbuf.switch.eq(w_accept & w_last),
        ]
        with m.If(w_accept):
            m.d.sync += first.eq(group_end)
        x_write_addr, x_write_data, x_write_en = write_stage(m, xbuf, self.s_axis_x.tdata)
        m.d.comb += [
            gather.w_addr.eq(x_write_addr),
            gather.w_data.eq(x_write_data),
            gather.w_en.eq(x_write_en),
        ]

        error = Signal()
        m.d.comb += self.error.eq(error)
        with m.If(xbuf.tlast_error | (w_accept & w_last & ~w_payload.group_end)):
            m.d.sync += error.eq(1)

        # Column j of buffer b is global index b*x_beats*lanes + j: bank j % lanes, address
        # b*x_beats + j // lanes.
        buffer_base = Mux(xbuf.rd_buf, x_beats * c.lanes, 0)
        request = gather.req.payload
        side_in = Signal(side)
        for i in range(count):
            m.d.comb += [
                request.index[i].eq(buffer_base + w_payload.entries[i].column),
                request.mask[i].eq(w_payload.entries[i].value != 0),
                side_in.weights[i].eq(w_payload.entries[i].value),
            ]
        m.d.comb += [
            side_in.first.eq(first),
            side_in.last.eq(group_end),
            side_in.tlast.eq(w_last),
            request.side.eq(side_in),
            gather.resp.ready.eq(1),  # the MAC pipeline behind never stalls
        ]

        side_out = data.View(side, gather.resp.payload.side)
        served = data.View(side, gather.served_side)
        m.d.comb += [
            # The buffer is free in the cycle the matrix's last requests are read (after any
            # bank conflicts): an x beat accepted now is written in the next cycle.
            xbuf.release.eq(gather.served & served.tlast),
            macs.valid.eq(gather.resp.valid),
            macs.first.eq(side_out.first),
            macs.last.eq(side_out.last),
            macs.tlast.eq(side_out.tlast),
        ]
        queue.connect(m, macs, self)
        for i in range(count):
            m.d.comb += [
                macs.x[i].eq(gather.resp.payload.data[i]),
                macs.weight[i].eq(side_out.weights[i]),
            ]
        return m
