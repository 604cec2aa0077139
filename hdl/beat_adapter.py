"""`BeatAdapter`: payload bytes -> w or x beats, little-endian, counted in row groups."""

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.protocol import MAX_LENGTH

__all__ = ["BeatAdapter", "beat_layout"]


def beat_layout(width: int) -> data.StructLayout:
    """A beat of `width` bits and its place in its frame (the memory address it goes to)."""
    return data.StructLayout({"data": width, "index": range(MAX_LENGTH + 1)})


class BeatAdapter(wiring.Component):
    """Turns the payload bytes of a LOAD_W or LOAD_X frame into beats: a beat of ``n`` bits
    travels as ``ceil(n / 8)`` bytes, least significant first, the bits above ``n`` ignored
    (DESIGN §10.2). w beats (`w_width` bits) and x beats (`x_width` bits) differ in their
    byte counts; `w_frame` says which the current frame carries.

    The beats of a frame are numbered from 0 (`index`), and w beats are counted in row
    groups of `cycles_per_row` beats: a LOAD_W frame must be a whole number of them.

    With `w_width` None (a model board: weights in ROM, no LOAD_W) every frame carries x
    beats, and the ports `w_frame`, `w`, `groups` and `whole_groups` are absent.

    Ports
    -----
    payload : In(stream.Signature(8))
        The frame's payload bytes. A byte that completes a beat is taken when the beat is.
    start : In(1)
        A new frame begins: forget any partial beat, count from 0 again.
    w_frame : In(1)
        The frame carries w beats (else x beats); held for the whole frame.
    w : Out(stream.Signature(beat_layout(w_width)))
        w beats, with their index in the frame.
    x : Out(stream.Signature(beat_layout(x_width)))
        x beats, with their index in the frame.
    groups : Out(16)
        Whole row groups of beats in the frame so far.
    whole_groups : Out(1)
        The beats so far are a whole number of row groups (none included).

    Latency: none: a beat is offered in the cycle its last byte is (combinationally), and
    the counts include it from the next cycle. Throughput: one byte a cycle.
    """

    def __init__(self, *, w_width: int | None, x_width: int, cycles_per_row: int = 1):
        for name, value in (("w_width", w_width), ("x_width", x_width),
                            ("cycles_per_row", cycles_per_row)):
            if name == "w_width" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._w_width = w_width
        self._x_width = x_width
        self._cycles_per_row = cycles_per_row
        ports = {
            "payload": In(stream.Signature(8)),
            "start": In(1),
            "x": Out(stream.Signature(beat_layout(x_width))),
        }
        if w_width is not None:
            ports.update({
                "w_frame": In(1),
                "w": Out(stream.Signature(beat_layout(w_width))),
                "groups": Out(16),
                "whole_groups": Out(1),
            })
        super().__init__(ports)

    @property
    def loads_weights(self) -> bool:
        return self._w_width is not None

    @property
    def w_bytes(self) -> int | None:
        return None if self._w_width is None else -(-self._w_width // 8)

    @property
    def x_bytes(self) -> int:
        return -(-self._x_width // 8)

    def elaborate(self, platform):
        m = Module()
        weights = self.loads_weights
        w_bytes, x_bytes = self.w_bytes, self.x_bytes
        unit_max = max(w_bytes or 1, x_bytes)
        # The bytes of the beat so far, the latest at the top: shifting needs no multiplexer,
        # and a beat of k bytes is the top k bytes once its last byte is in.
        assembly = Signal(8 * unit_max, name="assembly")
        byte_in_beat = Signal(range(unit_max), name="byte_in_beat")
        index = Signal(range(MAX_LENGTH + 1), name="index")

        beat = Cat(assembly[8:], self.payload.payload)
        w_frame = self.w_frame if weights else C(0, 1)
        last_byte = byte_in_beat == Mux(w_frame, (w_bytes or 1) - 1, x_bytes - 1)
        out_ready = Mux(w_frame, self.w.ready, self.x.ready) if weights else self.x.ready
        m.d.comb += [
            self.x.payload.data.eq(beat[8 * (unit_max - x_bytes):]),
            self.x.payload.index.eq(index),
            self.x.valid.eq(self.payload.valid & last_byte & ~w_frame),
            self.payload.ready.eq(~last_byte | out_ready),
        ]
        with m.If(self.start):
            m.d.sync += [byte_in_beat.eq(0), index.eq(0)]
        with m.Elif(self.payload.valid & self.payload.ready):
            m.d.sync += [assembly.eq(beat), byte_in_beat.eq(byte_in_beat + 1)]
            with m.If(last_byte):
                m.d.sync += [byte_in_beat.eq(0), index.eq(index + 1)]
        if not weights:
            return m

        slot = Signal(range(max(2, self._cycles_per_row)), name="slot")  # beat in its group
        m.d.comb += [
            self.w.payload.data.eq(beat[8 * (unit_max - w_bytes):]),
            self.w.payload.index.eq(index),
            self.w.valid.eq(self.payload.valid & last_byte & w_frame),
            self.whole_groups.eq(slot == 0),
        ]
        with m.If(self.start):
            m.d.sync += [slot.eq(0), self.groups.eq(0)]
        with m.Elif(self.payload.valid & self.payload.ready & last_byte):
            with m.If(slot == self._cycles_per_row - 1):
                m.d.sync += [slot.eq(0), self.groups.eq(self.groups + 1)]
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
        return m
