"""The y queue with its credit counter: back-pressure without stalling the pipeline."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axis import AXIStream
from .pipeline import require_positive

__all__ = ["CreditFIFO", "ResultQueue"]


class CreditFIFO(wiring.Component):
    """A FIFO for a writer that never overflows it (its credits, :class:`ResultQueue`):
    `depth - 1` words in a memory, one in the output register, like Amaranth's
    ``SyncFIFOBuffered`` (same ports, same latency: a word written at cycle t is readable
    at t + 2), but built for speed rather than safety:

    - a write is never refused (``w_rdy`` is only a flag for checks, nothing reads it), so
      the write side has no path through the fill level;
    - every next state is formed from registers and the write enable, and the late read
      enable (``r_en``, the y stream's ``tready``) only picks between two of them: one
      LUT level from ``tready`` to any register.

    Ports: ``w_data``, ``w_en`` in; ``w_rdy`` out; ``r_data``, ``r_rdy`` out; ``r_en`` in;
    ``level`` out (words held, both stages).
    """

    def __init__(self, *, width: int, depth: int):
        require_positive(width=width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        inner = self.depth - 1
        storage = m.submodules.storage = Memory(shape=self.width, depth=inner, init=[])
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")  # its data register is the output stage
        produce = Signal(range(inner), name="produce")
        consume = Signal(range(inner), name="consume")
        inner_level = Signal(range(inner + 1), name="inner_level")
        # `inner_level != 0`, kept as a register of its own.
        inner_any = Signal(name="inner_any")

        def following(pointer):
            return Mux(pointer == inner - 1, 0, pointer + 1)

        m.d.comb += [
            w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(self.w_en),
            self.w_rdy.eq(inner_level != inner),
            self.level.eq(inner_level + self.r_rdy),
            self.r_data.eq(r_port.data),
            r_port.addr.eq(consume),
        ]
        with m.If(self.w_en):
            m.d.sync += produce.eq(following(produce))

        # The read side: the output register takes the next word when it is empty or read.
        take = Signal(name="take")
        m.d.comb += [take.eq(inner_any & (~self.r_rdy | self.r_en)), r_port.en.eq(take)]
        # Next level and flag without and with a take, from the registers and w_en alone.
        level_kept = Signal.like(inner_level, name="level_kept")
        level_taken = Signal.like(inner_level, name="level_taken")
        any_kept = Signal(name="any_kept")
        any_taken = Signal(name="any_taken")
        m.d.comb += [
            level_kept.eq(Mux(self.w_en, inner_level + 1, inner_level)),
            level_taken.eq(Mux(self.w_en, inner_level, inner_level - 1)),
            any_kept.eq(self.w_en | inner_any),
            any_taken.eq(self.w_en | (inner_level > 1)),
        ]
        with m.If(take):
            m.d.sync += [inner_level.eq(level_taken), inner_any.eq(any_taken),
                         consume.eq(following(consume)), self.r_rdy.eq(1)]
        with m.Else():
            m.d.sync += [inner_level.eq(level_kept), inner_any.eq(any_kept)]
            with m.If(self.r_en):
                m.d.sync += self.r_rdy.eq(0)
        return m


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

    LATENCY = 2  # CreditFIFO: a word written at cycle t is readable at t + 2

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
        m.submodules.fifo = fifo = CreditFIFO(width=self.entry_width(self._width),
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
