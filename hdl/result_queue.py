"""The y queue with its credit counter: back-pressure without stalling the pipeline."""

from itertools import pairwise

from amaranth.hdl import Cat, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axis import AXIStream
from .pipeline import COPY_ATTRIBUTE, delay, require_positive

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

    Ports: ``w_data``, ``w_en`` (one bit per slice, all equal: each slice's own copy of
    the write enable) in; ``w_rdy`` out; ``r_data``, ``r_rdy`` out; ``r_en`` in;
    ``level`` out (words held, memory and registers).

    `slices`: the FIFO is cut across its width into that many FIFOs (bit ranges as even as
    can be), each with a control of its own (:attr:`CONTROL_REGISTERS`, kept apart through
    synthesis, :func:`~.pipeline.copy`) driven by its bit of ``w_en`` and by ``r_en``: a wide
    FIFO spreads over the die, and one pointer or one enable would cross it to every memory
    and register (DESIGN §14.3). The first slice's flags are the FIFO's. Each slice's
    control also takes the reset through registers of its own: a FIFO of several slices
    must not be written in the :attr:`RESET_LATENCY` cycles after a reset.
    """

    #: The registers of a slice's control: in a FIFO of several slices each slice has its
    #: own, named with the slice's number after, and marked as copies.
    CONTROL_REGISTERS = ("produce", "consume", "inner_level", "inner_any", "a_full", "b_full",
                         "b_select", "out_valid", "move_data", "load_data")

    #: Cycles after a reset in which a FIFO of several slices must not be written (each
    #: slice's control takes the reset through registers of its own).
    RESET_LATENCY = 2

    def __init__(self, *, width: int, depth: int, slices: int = 1):
        require_positive(width=width, slices=slices)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 3:
            raise ValueError(f"depth must be an integer of at least 3, not {depth!r}")
        self.require_slices(width, slices)
        self.width, self.depth, self.slices = width, depth, slices
        super().__init__({
            "w_data": In(width), "w_en": In(slices), "w_rdy": Out(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "level": Out(range(depth + 1)),
        })

    @staticmethod
    def require_slices(width: int, slices: int) -> None:
        """A FIFO of `width` bits is cut into at most `width` slices."""
        if slices > width:
            raise ValueError(f"slices must not exceed the FIFO's {width} bits, not {slices!r}")

    @staticmethod
    def memory_words(depth: int) -> int:
        """Words of the memory of a FIFO of `depth` words (the rest are registers)."""
        return depth - 2

    @staticmethod
    def slice_bounds(width: int, slices: int) -> list[tuple[int, int]]:
        """The bits (``lo``, ``hi``) of each of the `slices` slices of a FIFO of `width`
        bits, as even as can be (each a memory of its own, as the FPGA fit check counts)."""
        return list(pairwise(k * width // slices for k in range(slices + 1)))

    def elaborate(self, platform):
        m = Module()
        inner = self.memory_words(self.depth)
        heads, flags = [], []
        for k, (lo, hi) in enumerate(self.slice_bounds(self.width, self.slices)):
            head, flag = self._slice(m, lo, hi, inner, self.w_en[k],
                                     suffix="" if self.slices == 1 else f"{k}")
            heads.append(head)
            flags.append(flag)
        # Every slice's control is the same machine on the same inputs, so their flags
        # agree (the proof checks it): the first slice's speak for the FIFO.
        out_valid, w_rdy, level = flags[0]
        m.d.comb += [
            self.w_rdy.eq(w_rdy),
            self.level.eq(level),
            self.r_rdy.eq(out_valid),
            self.r_data.eq(Cat(*heads)),
        ]
        return m

    def _slice(self, m, lo: int, hi: int, inner: int, w_en, *, suffix: str):
        """Bits `lo` to `hi` of the FIFO, written with `w_en`: their memory, output registers
        and a control of their own, whose registers are named with `suffix`. Return the
        slice's head and its flags (``r_rdy``, ``w_rdy``, ``level``).

        In a FIFO of several slices every control register is a copy of its own
        (:data:`~.pipeline.COPY_ATTRIBUTE`): a slice's enables (`load_data`, `move_data`)
        drive that slice's wide registers and memory alone, formed beside them from the
        slice's own state; only ``r_en`` reaches every slice (DESIGN §14.3)."""
        width = hi - lo
        sliced = self.slices > 1
        controls = []

        def named(name, shape=1, **kwargs):  # a signal of this slice
            return Signal(shape, name=name + suffix, **kwargs)

        def control(name, shape=1, copy=False):
            # In a sliced FIFO, the slice's reset (below) instead of the domain's.
            controls.append(named(name, shape, reset_less=sliced,
                                  attrs={COPY_ATTRIBUTE: 1} if sliced or copy else {}))
            return controls[-1]

        # At least one bit, also for a memory of one word (no zero-width wires in the
        # Verilog; a pointer that can only be 0 is a constant to synthesis).
        produce = control("produce", range(max(2, inner)))
        consume = control("consume", range(max(2, inner)))
        inner_level = control("inner_level", range(max(2, inner) + 1))  # as the pointers
        # `inner_level != 0`, kept as a register of its own.
        inner_any = control("inner_any")
        a_full = control("a_full")
        # `b_full` again, for the wide output multiplexer only: a copy of its own
        # (pipeline.copy), so that the flag the control loops through is not pulled among
        # the FIFO's wide registers by the select's fan-out (DESIGN §14.3). Both are marked:
        # of two registers with the same input Yosys keeps the marked one and drops the
        # other, so with only the copy marked the control read the copy again.
        b_full = control("b_full", copy=True)
        b_select = control("b_select", copy=True)
        # The data registers have no reset (`a_full`/`b_full` say what they hold): a reset
        # is a net from the core's reset register to every one of their flip-flops.
        b = named("b", width, reset_less=True)
        a = named("a", width, reset_less=True)
        # `a_full | b_full` again, for the stream's tvalid only: the gate a consumer's
        # register would share with the control (the ECP5-85k fit's synthesis top: the
        # gate sat beside the top's output register, 5.9 ns from `load_data`).
        out_valid = control("out_valid")
        move_data = control("move_data")
        load_data = control("load_data")
        move = named("move")
        load = named("load")

        def following(pointer):
            return Mux(pointer == inner - 1, 0, pointer + 1)

        # The memory; `a` is the read port's own data register. A memory of one word (few
        # credits, long rows: DESIGN §14.3) is a register, read as a memory's read port
        # reads it (the word before a write of the same cycle).
        if inner == 1:
            word = named("word", width, reset_less=True)
            with m.If(w_en):
                m.d.sync += word.eq(self.w_data[lo:hi])
            with m.If(load_data):
                m.d.sync += a.eq(word)
        else:
            storage = Memory(shape=width, depth=inner, init=[])
            m.submodules["storage" + suffix] = storage
            w_port = storage.write_port()
            r_port = storage.read_port(domain="sync")
            m.d.comb += [
                w_port.addr.eq(produce), w_port.data.eq(self.w_data[lo:hi]),
                w_port.en.eq(w_en),
                r_port.addr.eq(consume), r_port.en.eq(load_data),
                a.eq(r_port.data),
            ]
        with m.If(w_en):
            m.d.sync += produce.eq(following(produce))

        # `a` passes its word on (`move`) while `b` is empty, and takes the next word from
        # the memory (`load`) when it is empty or passing its word on. The control uses
        # both formed from its own registers; the wide data registers and the memory's read
        # port take theirs from registers of their own (`move_data`, `load_data`), formed
        # with the flags' next values: a gate in front of such a net is placed among its
        # sinks, away from the control it also feeds, and a register fed back into its own
        # control would cross that distance twice.
        m.d.comb += [move.eq(a_full & ~b_full), load.eq(inner_any & ~(a_full & b_full))]
        with m.If(move_data):
            m.d.sync += b.eq(a)
        a_full_next = named("a_full_next")
        b_full_next = named("b_full_next")
        any_next = named("inner_any_next")
        m.d.comb += [
            a_full_next.eq(load | (a_full & b_full)),
            # `b` holds a word after this cycle unless the head leaves now: the control's only
            # use of `r_en` (`b_select` forms the same from its own state).
            b_full_next.eq((a_full | b_full) & ~self.r_en),
            any_next.eq(w_en | Mux(load, inner_level > 1, inner_any)),
        ]
        m.d.sync += [
            a_full.eq(a_full_next), b_full.eq(b_full_next),
            # The same next value, formed from the copy's own state (equal to `b_full`'s, as
            # the proof checks): the gate in front is not the control's, so each is placed
            # beside its own register. With one shared gate it sat among the wide registers
            # and `b_full`'s loop crossed to it and back (ECP5-85k fit, seed 2: 8.7 ns).
            b_select.eq((a_full | b_select) & ~self.r_en),
            inner_any.eq(any_next),
            out_valid.eq(a_full_next | b_full_next),
            move_data.eq(a_full_next & ~b_full_next),
            load_data.eq(any_next & ~(a_full_next & b_full_next)),
        ]
        with m.If(load):
            m.d.sync += [inner_level.eq(Mux(w_en, inner_level, inner_level - 1)),
                         consume.eq(following(consume))]
        with m.Else():
            m.d.sync += inner_level.eq(Mux(w_en, inner_level + 1, inner_level))
        if sliced:
            # The slice's control takes the reset through registers of its own, placed
            # beside it (the ECP5-85k mix with the DSP floorplan, seed 1: 5.6 ns of routing
            # from the core's reset register to a slice's pointer), so it leaves the reset
            # state RESET_LATENCY cycles after the domain; idle, with no write, it stays in
            # it meanwhile.
            late_reset = delay(m, ResetSignal(), self.RESET_LATENCY, "reset" + suffix,
                               reset_less=True, kept=True)
            with m.If(late_reset):
                m.d.sync += [flop.eq(flop.init) for flop in controls]
        # Room, or the memory's oldest word leaves this cycle (its slot may be written at
        # once: the read port reads the word before the write). With a memory of one word
        # (two credits) both happen: a word written every cycle of a burst.
        return Mux(b_select, b, a), (out_valid, (inner_level != inner) | load,
                                     inner_level + a_full + b_full)


class ResultQueue(wiring.Component):
    """A FIFO of result beats and the count of row groups in flight.

    The pipeline in front of it never stalls, so it must never produce a result the FIFO
    cannot take. A row group may only start (`start`) while `can_start`: fewer than
    `credits` groups are between their start and the cycle after the y transfer of their
    result (:attr:`CREDIT_RETURN`). Each
    started group produces exactly one result, so the FIFO (one entry more than `credits`)
    always has room.

    Ports
    -----
    start : In(1)  a row group starts (its first beat is accepted)
    can_start : Out(1)
    w_data : In(width); w_last : In(1); w_en : In(slices)  a result, and whether it is
        the last of its matrix; the write enable once per slice (all bits equal, each from
        registers of its own: :class:`CreditFIFO`; with several slices, low in the
        ``CreditFIFO.RESET_LATENCY`` cycles after a reset, as the MAC array's valid is)
    y : Out(AXIStream(width))  the y stream

    Latency: a result written at cycle t is valid on y at t + :attr:`LATENCY`.

    `slices`: the FIFO's memory is cut across its width into that many slices, each with
    its own copies of the pointers (:class:`CreditFIFO`). A wide core's y word (897 bits
    on the ECP5-85k fit) spreads its FIFO over the die; one read pointer driving every
    LUT-RAM address across it was the fit's longest path (7.4 ns, seed 1, DESIGN §14.3).
    """

    LATENCY = 2  # CreditFIFO: a word written at cycle t is readable at t + 2
    #: Cycles from a y transfer to the return of its credit: the transfer is registered
    #: before the credit counter, so that the y handshake (``tready`` and the FIFO's flags)
    #: and the w handshake (``start``) meet in no gate (DESIGN §14.3).
    CREDIT_RETURN = 1

    @staticmethod
    def credits_for(latency: int, group_beats: int = 1) -> int:
        """Credits that let row groups of `group_beats` beats (at least; 1 when a group may
        take a single beat) start back to back while y is ready, for a core whose results
        are valid on y `latency` cycles after their group's last beat. A group holds its
        credit from its first beat until its last beat, the latency, the two cycles of the
        credit loop and :attr:`CREDIT_RETURN` have passed: ``group_beats + latency + 2``
        cycles (``latency + 3`` for groups of one beat), in which groups start every
        `group_beats` cycles (DESIGN §14.3)."""
        require_positive(group_beats=group_beats)
        held = group_beats - 1 + latency + 2 + ResultQueue.CREDIT_RETURN
        return max(2, -(-held // group_beats))

    def __init__(self, *, width: int, credits: int, slices: int = 1):
        require_positive(width=width, credits=credits, slices=slices)
        if credits < 2:
            raise ValueError(f"credits must be at least 2 (the FIFO's two output registers "
                             f"and a memory), not {credits!r}")
        CreditFIFO.require_slices(self.entry_width(width), slices)
        self._width = width
        self._credits = credits
        self._slices = slices
        super().__init__({
            "start": In(1),
            "can_start": Out(1),
            "w_data": In(width),
            "w_last": In(1),
            "w_en": In(slices),
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
        `core`'s ``m_axis_y`` stream. A FIFO of several slices takes a copy of the valid
        per slice: `macs` must be built with that many (``valid_copies``)."""
        copies = getattr(macs, "y_valid_copies", None)
        if self._slices > 1 and (copies is None or len(copies) != self._slices):
            raise ValueError(f"a y queue of {self._slices} slices needs a MAC array with "
                             f"valid_copies={self._slices}")
        m.d.comb += [
            self.w_data.eq(macs.y),
            self.w_last.eq(macs.y_tlast),
            self.w_en.eq(macs.y_valid if self._slices == 1 else copies),
        ]
        wiring.connect(m, self.y, wiring.flipped(core.m_axis_y))

    def elaborate(self, platform):
        m = Module()
        inflight = Signal(range(self._credits + 1))
        # A y transfer of the previous cycle (CREDIT_RETURN).
        pop = Signal(name="popped")
        m.d.sync += pop.eq(self.y.tvalid & self.y.tready)
        can_start = Signal(init=1)
        m.d.comb += self.can_start.eq(can_start)
        # `start` comes late in the cycle (from the w handshake): the counts one up and one
        # down, and the flag after a start, are formed from the register alone, and the
        # handshake and `pop` only pick among them.
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
                                              depth=self.fifo_depth(self._credits),
                                              slices=self._slices)
        m.d.comb += [
            fifo.w_data.eq(Cat(self.w_data, self.w_last)),
            fifo.w_en.eq(self.w_en),
            self.y.tdata.eq(fifo.r_data[:self._width]),
            self.y.tlast.eq(fifo.r_data[self._width]),
            self.y.tvalid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.y.tready),
        ]
        return m
