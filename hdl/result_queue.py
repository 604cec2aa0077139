"""The y queue with its credit counter: back-pressure without stalling the pipeline."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .axis import AXIStream
from .pipeline import require_positive

__all__ = ["ResultQueue"]


class ResultQueue(wiring.Component):
    """A FIFO of result beats and the count of row groups in flight.

    The pipeline in front of it never stalls, so it must never produce a result the FIFO
    cannot take. A row group may only start (`start`) while `can_start`: fewer than
    `credits` groups are between their start and the y transfer of their result. Each
    started group produces exactly one result, so the FIFO (one entry more than `credits`)
    always has room.

    Ports
    -----
    start : In(1)  a row group starts (its first beat is accepted)
    can_start : Out(1)
    w_data : In(width); w_last : In(1); w_en : In(1)  a result, and whether it is the last
        of its matrix
    y : Out(AXIStream(width))  the y stream

    Latency: a result written at cycle t is valid on y at t + :attr:`LATENCY`.
    """

    LATENCY = 2  # SyncFIFOBuffered: a word written at cycle t is readable at t + 2

    def __init__(self, *, width: int, credits: int):
        require_positive(width=width, credits=credits)
        self._width = width
        self._credits = credits
        super().__init__({
            "start": In(1),
            "can_start": Out(1),
            "w_data": In(width),
            "w_last": In(1),
            "w_en": In(1),
            "y": Out(AXIStream(width)),
        })

    @staticmethod
    def entry_width(width: int) -> int:
        """Bits of one FIFO word: a result and its ``tlast``."""
        return width + 1

    def connect(self, m, macs, core) -> None:
        """Take `macs`' (a :class:`~bbsparse.hdl.mac_array.MACArray`) results in and drive
        `core`'s ``m_axis_y`` stream."""
        m.d.comb += [
            self.w_data.eq(macs.y),
            self.w_last.eq(macs.y_tlast),
            self.w_en.eq(macs.y_valid),
        ]
        wiring.connect(m, self.y, wiring.flipped(core.m_axis_y))

    def elaborate(self, platform):
        m = Module()
        inflight = Signal(range(self._credits + 1))
        pop = self.y.tvalid & self.y.tready
        can_start = Signal(init=1)
        m.d.comb += self.can_start.eq(can_start)
        # `start` and `pop` come late in the cycle (from the stream handshakes): the counts
        # one up and one down, and the flag after a start, are formed from the register
        # alone, and the handshakes only pick among them.
        up = Signal.like(inflight, name="inflight_up")
        down = Signal.like(inflight, name="inflight_down")
        room_after_start = Signal(name="room_after_start")
        m.d.comb += [up.eq(inflight + 1), down.eq(inflight - 1),
                     room_after_start.eq(inflight < self._credits - 1)]
        with m.If(self.start & ~pop):
            m.d.sync += [inflight.eq(up), can_start.eq(room_after_start)]
        with m.Elif(~self.start & pop):
            # inflight <= credits always, so a pop alone always leaves room.
            m.d.sync += [inflight.eq(down), can_start.eq(1)]
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.entry_width(self._width),
                                                    depth=self._credits + 1)
        m.d.comb += [
            fifo.w_data.eq(Cat(self.w_data, self.w_last)),
            fifo.w_en.eq(self.w_en),
            self.y.tdata.eq(fifo.r_data[:self._width]),
            self.y.tlast.eq(fifo.r_data[self._width]),
            self.y.tvalid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.y.tready),
        ]
        return m
