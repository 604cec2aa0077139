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
    `depth - 2` words in a memory and two output registers, with the latency of Amaranth's
    ``SyncFIFOBuffered`` (a word written at cycle t is readable at t + 2), but built for
    speed rather than safety:

    - a write is never refused (``w_rdy`` is only a flag for checks, nothing reads it), so
      the write side has no path through the fill level;
    - the late read enable (``r_en``, the y stream's ``tready``) reaches one flip-flop
      only, `b_full`: every enable of the wide data registers and the memory's read port is
      formed from registers alone (DESIGN §14.3).

    The output registers: `a` is the memory read port's own data register, `b` a copy of
    it. The head is `b` while `b_full`, else `a`, and ``r_data`` picks it with `b_full`.
    `a` passes its word to `b` whenever `b` is empty (if the word leaves in the same cycle,
    `b` takes it but stays empty), and reads the next word from the memory whenever it is
    empty or passing its word on.

    Ports: ``w_data``, ``w_en`` in; ``w_rdy`` out; ``r_data``, ``r_rdy`` out; ``r_en`` in;
    ``level`` out (words held, memory and registers).
    """

    def __init__(self, *, width: int, depth: int):
        require_positive(width=width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 3:
            raise ValueError(f"depth must be an integer of at least 3, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "level": Out(range(depth + 1)),
        })

    @staticmethod
    def memory_words(depth: int) -> int:
        """Words of the memory of a FIFO of `depth` words (the rest are registers)."""
        return depth - 2

    def elaborate(self, platform):
        m = Module()
        inner = self.memory_words(self.depth)
        storage = m.submodules.storage = Memory(shape=self.width, depth=inner, init=[])
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")  # its data register is `a`
        produce = Signal(range(inner), name="produce")
        consume = Signal(range(inner), name="consume")
        inner_level = Signal(range(inner + 1), name="inner_level")
        # `inner_level != 0`, kept as a register of its own.
        inner_any = Signal(name="inner_any")
        a_full = Signal(name="a_full")
        b_full = Signal(name="b_full")
        b = Signal(self.width, name="b")
        a = Signal(self.width, name="a")

        def following(pointer):
            return Mux(pointer == inner - 1, 0, pointer + 1)

        m.d.comb += [
            w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(self.w_en),
            self.w_rdy.eq(inner_level != inner),
            self.level.eq(inner_level + a_full + b_full),
            r_port.addr.eq(consume),
            self.r_rdy.eq(a_full | b_full),
            a.eq(r_port.data),
            self.r_data.eq(Mux(b_full, b, a)),
        ]
        with m.If(self.w_en):
            m.d.sync += produce.eq(following(produce))

        # `a` passes its word on (`move`) while `b` is empty, and takes the next word from
        # the memory (`load`) when it is empty or passing its word on. The control uses
        # both formed from its own registers; the wide data registers and the memory's read
        # port take theirs from registers of their own (`move_data`, `load_data`), formed
        # with the flags' next values: a gate in front of such a net is placed among its
        # sinks, away from the control it also feeds, and a register fed back into its own
        # control would cross that distance twice.
        move = Signal(name="move")
        load = Signal(name="load")
        move_data = Signal(name="move_data")
        load_data = Signal(name="load_data")
        m.d.comb += [move.eq(a_full & ~b_full), load.eq(inner_any & ~(a_full & b_full)),
                     r_port.en.eq(load_data)]
        with m.If(move_data):
            m.d.sync += b.eq(a)
        a_full_next = Signal(name="a_full_next")
        b_full_next = Signal(name="b_full_next")
        any_next = Signal(name="inner_any_next")
        m.d.comb += [
            a_full_next.eq(load | (a_full & b_full)),
            # `b` holds a word after this cycle unless the head leaves now: the only use of
            # `r_en`.
            b_full_next.eq((a_full | b_full) & ~self.r_en),
            any_next.eq(self.w_en | Mux(load, inner_level > 1, inner_any)),
        ]
        m.d.sync += [
            a_full.eq(a_full_next), b_full.eq(b_full_next), inner_any.eq(any_next),
            move_data.eq(a_full_next & ~b_full_next),
            load_data.eq(any_next & ~(a_full_next & b_full_next)),
        ]
        with m.If(load):
            m.d.sync += [inner_level.eq(Mux(self.w_en, inner_level, inner_level - 1)),
                         consume.eq(following(consume))]
        with m.Else():
            m.d.sync += inner_level.eq(Mux(self.w_en, inner_level + 1, inner_level))
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
        if credits < 2:
            raise ValueError(f"credits must be at least 2 (the FIFO's two output registers "
                             f"and a memory), not {credits!r}")
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
    def fifo_depth(credits: int) -> int:
        """Words of the CreditFIFO for `credits`: one more than can be in flight."""
        return credits + 1

    @staticmethod
    def memory_words(credits: int) -> int:
        """Words of the y FIFO's memory for `credits` (the rest of it are registers)."""
        return CreditFIFO.memory_words(ResultQueue.fifo_depth(credits))

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
                                              depth=self.fifo_depth(self._credits))
        m.d.comb += [
            fifo.w_data.eq(Cat(self.w_data, self.w_last)),
            fifo.w_en.eq(self.w_en),
            self.y.tdata.eq(fifo.r_data[:self._width]),
            self.y.tlast.eq(fifo.r_data[self._width]),
            self.y.tvalid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.y.tready),
        ]
        return m
