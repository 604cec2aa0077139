"""`ReplySerialiser`: a reply of the host link as bytes: status, then the command's data."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..golden.protocol import Command, Status

__all__ = ["ReplyLayout", "ReplySerialiser"]

#: What to answer: the status byte, and the command whose data follows it (if ``OK``).
ReplyLayout = data.StructLayout({"status": 8, "command": 8})


class ReplySerialiser(wiring.Component):
    """Sends the reply to a request of the host link (DESIGN §10.2-10.5) on `tx`: the status
    byte, then, if the status is ``OK``, the command's data, little-endian:

    ==============  =======================================================================
    READ_Y          `y_count` as u16, then `y_count` beats of the y memory from address 0,
                    ``ceil(y_width / 8)`` bytes each
    READ_CYCLES     `cycles` as u32
    STATUS          `flags` as u8, `w_beats` as u16
    INFO            the constant bytes `info`
    any other       nothing
    ==============  =======================================================================

    Parameters
    ----------
    info : bytes
        The INFO reply's data.
    y_width : int
        Bits of a y beat.
    y_depth : int
        Beats of the y memory read through `y_read`.

    Ports
    -----
    request : In(stream.Signature(ReplyLayout))
        The reply to send. Read from the cycle it is offered, taken in the cycle after its
        last byte is taken by `tx` (``ready`` is a register's state, so no path runs from
        `tx` through here to the source): a source that waits for that holds the link until
        the reply is out.
    tx : Out(stream.Signature(8))
        The reply bytes.
    flags, w_beats, cycles, y_count : In(8), In(16), In(32), In(16)
        The data of STATUS, READ_CYCLES and READ_Y, sampled the cycle a request is first
        offered (`y_count` is also the number of y beats read, and must hold until the
        request is taken).
    y_read : In(ReadPort.Signature(addr_width=ceil_log2(y_depth), shape=y_width))
        A read port of the y memory (this side drives ``addr`` and ``en``).
    failed : Out(1)
        The status of the last reply begun was not ``OK``.

    Latency: the status byte is offered the cycle after the request. Throughput: a byte a
    cycle, except three cycles between y beats (a memory read, then a register); a cycle
    between replies.
    """

    def __init__(self, *, info: bytes, y_width: int, y_depth: int):
        if not isinstance(info, bytes) or not info:
            raise ValueError(f"info must be non-empty bytes, not {info!r}")
        for name, value in (("y_width", y_width), ("y_depth", y_depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._info = info
        self._y_width = y_width
        self._y_depth = y_depth
        super().__init__({
            "request": In(stream.Signature(ReplyLayout)),
            "tx": Out(stream.Signature(8)),
            "flags": In(8),
            "w_beats": In(16),
            "cycles": In(32),
            "y_count": In(16),
            "y_read": In(ReadPort.Signature(addr_width=ceil_log2(y_depth), shape=y_width)),
            "failed": Out(1),
        })

    @property
    def y_bytes(self) -> int:
        return -(-self._y_width // 8)

    def _begin(self, m, buffer, left, sending_y, y_sent, y_more, info_index):
        """Load the first bytes of the reply to `request` into `buffer`, the status first."""
        status = self.request.payload.status
        m.d.sync += [buffer.eq(status), left.eq(1), sending_y.eq(0),
                     self.failed.eq(status != Status.OK)]
        m.next = "send"
        with m.If(status == Status.OK):
            with m.Switch(self.request.payload.command):
                with m.Case(Command.READ_Y):
                    m.d.sync += [buffer.eq(Cat(status, self.y_count)), left.eq(3),
                                 sending_y.eq(1), y_sent.eq(0),
                                 y_more.eq(self.y_count != 0)]
                with m.Case(Command.READ_CYCLES):
                    m.d.sync += [buffer.eq(Cat(status, self.cycles)), left.eq(5)]
                with m.Case(Command.STATUS):
                    m.d.sync += [buffer.eq(Cat(status, self.flags, self.w_beats)), left.eq(4)]
                with m.Case(Command.INFO):
                    m.d.sync += info_index.eq(0)
                    m.next = "send_info"

    def elaborate(self, platform):
        m = Module()
        y_bytes = self.y_bytes
        buffer = Signal(max(8 * y_bytes, 40), name="tx_buffer")  # next byte at the bottom
        left = Signal(range(max(y_bytes, 5) + 1), name="tx_left")  # bytes in the buffer
        sending_y = Signal(name="sending_y")
        y_sent = Signal(16, name="y_sent")
        # y_sent != y_count, kept in a register: no 16-bit compare on the path to `tx`.
        y_more = Signal(name="y_more")
        y_word = Signal(self._y_width, name="y_word")
        info = Array(Const(byte, 8) for byte in self._info)
        info_index = Signal(range(len(self._info)), name="info_index")
        m.d.comb += [self.y_read.addr.eq(y_sent), self.y_read.en.eq(0)]

        with m.FSM(name="reply"):
            with m.State("idle"):
                with m.If(self.request.valid):
                    self._begin(m, buffer, left, sending_y, y_sent, y_more, info_index)

            with m.State("send"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(buffer[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [buffer.eq(buffer >> 8), left.eq(left - 1)]
                    with m.If(left == 1):
                        with m.If(sending_y & y_more):
                            m.next = "y_read"
                        with m.Else():
                            m.next = "done"

            with m.State("y_read"):
                m.d.comb += self.y_read.en.eq(1)
                m.next = "y_capture"

            with m.State("y_capture"):
                # The memory's output straight into a register of its own (an ECP5 block
                # RAM without its output register takes 5.6 ns to it), then into the buffer.
                m.d.sync += y_word.eq(self.y_read.data)
                m.next = "y_load"

            with m.State("y_load"):
                m.d.sync += [buffer.eq(y_word), left.eq(y_bytes),
                             y_sent.eq(y_sent + 1), y_more.eq(y_sent + 1 != self.y_count)]
                m.next = "send"

            with m.State("done"):
                # The request is taken a cycle after its last byte: `ready` is the state.
                m.d.comb += self.request.ready.eq(1)
                m.next = "idle"

            with m.State("send_info"):
                # The status byte first (left = 1), then the constant INFO bytes.
                m.d.comb += [self.tx.valid.eq(1),
                             self.tx.payload.eq(Mux(left == 1, buffer[:8],
                                                    info[info_index]))]
                with m.If(self.tx.ready):
                    with m.If(left == 1):
                        m.d.sync += left.eq(0)
                    with m.Elif(info_index == len(self._info) - 1):
                        m.next = "done"
                    with m.Else():
                        m.d.sync += info_index.eq(info_index + 1)
        return m
