"""`FrameParser`: request bytes -> command, length, verdict, payload bytes (DESIGN §10.2)."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.protocol import MAX_LENGTH, Command, Status

__all__ = ["FrameLayout", "FrameParser"]

#: The end of a request frame: its command byte, its length field, and its verdict
#: (``OK``, or the error status the link must answer: ``BAD_COMMAND``, ``BAD_LENGTH``,
#: ``TIMEOUT``).
FrameLayout = data.StructLayout({"command": 8, "length": 16, "status": 8})


class FrameParser(wiring.Component):
    """Splits the request bytes of the host link into frames ``command:u8, length:u16,
    payload`` (DESIGN §10.2) and judges each header.

    ``length`` counts units of the command: `w_bytes` bytes for LOAD_W, `x_bytes` for
    LOAD_X, one byte for every other command, so that the payload of any frame, even an
    unknown command's, can be skipped. The verdict is ``BAD_COMMAND`` for an unknown
    command, ``BAD_LENGTH`` for a length the command does not allow (LOAD_W: 1 to
    `max_w_beats`; LOAD_X: `x_beats`; the rest: 0), and ``TIMEOUT`` when no byte arrives
    for `timeout_cycles` after the command byte, inside the frame (the partial frame is
    dropped; a byte taken in the very cycle the count runs out only saves the frame if it
    completes a unit). Every payload byte is read whatever the verdict; only the bytes of a
    frame judged ``OK`` are passed on.

    Without weights (`w_bytes` and `max_w_beats` None: a model board, whose weights are in
    ROM) LOAD_W is not a command: it is judged ``BAD_COMMAND`` and its ``length`` counts
    bytes, as for any unknown command.

    Ports
    -----
    rx : In(stream.Signature(8))
        Request bytes; taken while a frame is being read (a payload byte of an ``OK`` frame
        when `payload` takes it), never while `frame` is offered.
    begin : Out(1)
        A frame has begun: one cycle, the cycle after its command byte was taken, with
        `command` already holding it.
    command : Out(8)
        The command byte of the current (or last) frame.
    payload : Out(stream.Signature(8))
        The payload bytes of a frame judged ``OK``, straight from `rx` (no register).
    frame : Out(stream.Signature(FrameLayout))
        The end of a frame (its last byte taken, or its timeout): offered until taken; the
        next command byte is read only after that. A consumer that takes it when it has
        answered the request holds the link's input back meanwhile.

    Latency: `frame` is offered the cycle after the frame's last byte (or timeout).
    Throughput: one byte a cycle.
    """

    def __init__(self, *, w_bytes: int | None, x_bytes: int, max_w_beats: int | None,
                 x_beats: int, timeout_cycles: int):
        if (w_bytes is None) != (max_w_beats is None):
            raise ValueError(f"w_bytes and max_w_beats must both be given (a board that "
                             f"loads weights) or both be None (weights in ROM), not "
                             f"{w_bytes!r} and {max_w_beats!r}")
        weights = w_bytes is not None
        checked = (("w_bytes", w_bytes), ("max_w_beats", max_w_beats)) if weights else ()
        for name, value in (*checked, ("x_bytes", x_bytes), ("x_beats", x_beats),
                            ("timeout_cycles", timeout_cycles)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name, value in (*checked[1:], ("x_beats", x_beats)):
            if value > MAX_LENGTH:
                raise ValueError(f"{name} must fit the 16-bit length field, not {value!r}")
        self._w_bytes = w_bytes
        self._x_bytes = x_bytes
        self._max_w_beats = max_w_beats
        self._x_beats = x_beats
        self._timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "begin": Out(1),
            "command": Out(8),
            "payload": Out(stream.Signature(8)),
            "frame": Out(stream.Signature(FrameLayout)),
        })

    @property
    def timeout_cycles(self) -> int:
        return self._timeout_cycles

    @property
    def loads_weights(self) -> bool:
        """LOAD_W is a command (else it is judged ``BAD_COMMAND``)."""
        return self._w_bytes is not None

    def _judge(self, m, status, length):
        """``status <=`` the verdict the header (`command`, `length`) earns."""
        m.d.sync += status.eq(Status.OK)
        with m.Switch(self.command):
            if self.loads_weights:
                with m.Case(Command.LOAD_W):
                    with m.If((length == 0) | (length > self._max_w_beats)):
                        m.d.sync += status.eq(Status.BAD_LENGTH)
            with m.Case(Command.LOAD_X):
                with m.If(length != self._x_beats):
                    m.d.sync += status.eq(Status.BAD_LENGTH)
            with m.Case(Command.RUN, Command.READ_Y, Command.READ_CYCLES, Command.STATUS,
                        Command.INFO):
                with m.If(length != 0):
                    m.d.sync += status.eq(Status.BAD_LENGTH)
            with m.Default():
                m.d.sync += status.eq(Status.BAD_COMMAND)

    def elaborate(self, platform):
        m = Module()
        unit_max = max(self._w_bytes or 1, self._x_bytes)
        length = Signal(16, name="length")
        units_left = Signal(16, name="units_left")  # units of the payload still to come
        byte_in_unit = Signal(range(unit_max), name="byte_in_unit")
        status = Signal(8, name="status")  # the header's verdict, or TIMEOUT
        idle = Signal(range(self._timeout_cycles + 1), name="idle")
        timed_out = Signal(name="timed_out")  # idle == timeout_cycles, as a register

        # Kept in registers, so that no decode of the command byte and no 16-bit compare
        # lies between a received byte and the parser's state: the index of a unit's last
        # byte (set with the command byte), and whether the unit is the frame's last.
        unit_last = Signal(range(unit_max), name="unit_last")
        last_unit = Signal(name="last_unit")  # units_left == 1

        fire = self.rx.valid & self.rx.ready
        byte = self.rx.payload
        unit = Mux(byte == Command.LOAD_X, self._x_bytes, 1)
        if self.loads_weights:
            unit = Mux(byte == Command.LOAD_W, self._w_bytes, unit)
        unit_done = fire & (byte_in_unit == unit_last)
        forward = status == Status.OK
        m.d.comb += [
            self.frame.payload.command.eq(self.command),
            self.frame.payload.length.eq(length),
            self.frame.payload.status.eq(status),
            self.payload.payload.eq(byte),
        ]
        m.d.sync += self.begin.eq(0)
        with m.If(fire):
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle == self._timeout_cycles - 1)]

        def time_out():
            m.d.sync += status.eq(Status.TIMEOUT)
            m.next = "end"

        with m.FSM(name="parser"):
            with m.State("command"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(fire):
                    m.d.sync += [self.command.eq(byte), self.begin.eq(1),
                                 unit_last.eq(unit - 1)]
                    m.next = "length_low"

            with m.State("length_low"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(fire):
                    m.d.sync += length[:8].eq(byte)
                    m.next = "length_high"
                with m.Elif(timed_out):
                    time_out()

            with m.State("length_high"):
                m.d.comb += self.rx.ready.eq(1)
                full = Cat(length[:8], byte)
                with m.If(fire):
                    m.d.sync += [length[8:].eq(byte), units_left.eq(full),
                                 last_unit.eq(full == 1), byte_in_unit.eq(0)]
                    self._judge(m, status, full)
                    with m.If(full == 0):
                        m.next = "end"
                    with m.Else():
                        m.next = "payload"
                with m.Elif(timed_out):
                    time_out()

            with m.State("payload"):
                # The bytes of a frame judged OK go on; the others are read and dropped.
                m.d.comb += [self.payload.valid.eq(self.rx.valid & forward),
                             self.rx.ready.eq(~forward | self.payload.ready)]
                with m.If(fire):
                    m.d.sync += byte_in_unit.eq(byte_in_unit + 1)
                with m.If(unit_done):
                    m.d.sync += [byte_in_unit.eq(0), units_left.eq(units_left - 1),
                                 last_unit.eq(units_left == 2)]
                    with m.If(last_unit):
                        m.next = "end"
                with m.Elif(timed_out):
                    time_out()

            with m.State("end"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.next = "command"
        return m
