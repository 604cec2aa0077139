"""`UART`: an 8N1 serial receiver and transmitter with byte streams, for the board's host link."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UART"]


class UART(wiring.Component):
    """8N1 UART: one start bit, 8 data bits (least significant first), one stop bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (``clock / baud``, rounded), at least 4: the receiver samples
        each bit ``divisor // 2`` cycles after the falling edge that starts the byte, and
        the rounding error must stay well inside half a bit over the ten bits of a byte.

    Ports
    -----
    rx : In(1)
        Serial input, idle high. Asynchronous to the clock: two flip-flops synchronise it.
    tx : Out(1)
        Serial output, idle high, driven from a register.
    rx_data : Out(stream.Signature(8))
        Each received byte, valid from the middle of its stop bit until taken. A byte that
        arrives while the previous one is still waiting replaces it and sets `overrun`.
    tx_data : In(stream.Signature(8))
        Bytes to send; `ready` while the transmitter is idle.
    overrun : Out(1)
        Sticky (until reset): a received byte was lost.
    framing_error : Out(1)
        Sticky (until reset): a stop bit was low; that byte was dropped, and the receiver
        waits for the line to go high before it looks for the next start bit.

    Latency: a byte is on `rx_data` ``divisor * 9.5`` cycles (plus two for the synchroniser)
    after its start bit began; `tx` starts a byte's start bit the cycle after it is taken.
    Throughput: one byte every ``10 * divisor`` cycles each way, both ways at once.
    """

    MIN_DIVISOR = 4

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or isinstance(divisor, bool) \
                or divisor < self.MIN_DIVISOR:
            raise ValueError(f"divisor must be an integer of at least {self.MIN_DIVISOR} "
                             f"(clock cycles per bit), not {divisor!r}")
        self._divisor = divisor
        super().__init__({
            "rx": In(1),
            "tx": Out(1, init=1),
            "rx_data": Out(stream.Signature(8)),
            "tx_data": In(stream.Signature(8)),
            "overrun": Out(1),
            "framing_error": Out(1),
        })

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        # -- receiver ---------------------------------------------------------------------
        rx_meta = Signal(init=1, name="rx_meta")
        rx_line = Signal(init=1, name="rx_line")
        m.d.sync += [rx_meta.eq(self.rx), rx_line.eq(rx_meta)]

        rx_timer = Signal(range(divisor), name="rx_timer")
        rx_bits = Signal(range(8), name="rx_bits")
        rx_shift = Signal(8, name="rx_shift")
        with m.If(self.rx_data.valid & self.rx_data.ready):
            m.d.sync += self.rx_data.valid.eq(0)

        with m.FSM(name="rx_fsm"):
            with m.State("idle"):
                with m.If(~rx_line):
                    m.d.sync += rx_timer.eq(divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(rx_timer == 0):
                    # Still low in the middle of the start bit: a byte, not a glitch.
                    with m.If(~rx_line):
                        m.d.sync += [rx_timer.eq(divisor - 1), rx_bits.eq(0)]
                        m.next = "data"
                    with m.Else():
                        m.next = "idle"
                with m.Else():
                    m.d.sync += rx_timer.eq(rx_timer - 1)
            with m.State("data"):
                with m.If(rx_timer == 0):
                    m.d.sync += [rx_shift.eq(Cat(rx_shift[1:], rx_line)),
                                 rx_timer.eq(divisor - 1), rx_bits.eq(rx_bits + 1)]
                    with m.If(rx_bits == 7):
                        m.next = "stop"
                with m.Else():
                    m.d.sync += rx_timer.eq(rx_timer - 1)
            with m.State("stop"):
                # Back to idle in the middle of the stop bit, so that the next start bit's
                # falling edge is seen even if the sender's clock runs a little fast.
                with m.If(rx_timer == 0):
                    with m.If(rx_line):
                        m.d.sync += [self.rx_data.payload.eq(rx_shift),
                                     self.rx_data.valid.eq(1)]
                        with m.If(self.rx_data.valid & ~self.rx_data.ready):
                            m.d.sync += self.overrun.eq(1)
                        m.next = "idle"
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "break"
                with m.Else():
                    m.d.sync += rx_timer.eq(rx_timer - 1)
            with m.State("break"):
                # A low stop bit: wait for the line to go idle before looking for a start
                # bit, or the rest of a long low (a break) would read as bytes.
                with m.If(rx_line):
                    m.next = "idle"

        # -- transmitter ------------------------------------------------------------------
        # `tx_shift` holds the frame still to go, stop bit at the top; idle is all ones.
        tx_shift = Signal(10, init=0x3FF, name="tx_shift")
        tx_timer = Signal(range(divisor), name="tx_timer")
        tx_left = Signal(range(11), name="tx_left")
        m.d.comb += [self.tx.eq(tx_shift[0]), self.tx_data.ready.eq(tx_left == 0)]
        with m.If(tx_left == 0):
            with m.If(self.tx_data.valid):
                m.d.sync += [tx_shift.eq(Cat(Const(0, 1), self.tx_data.payload, Const(1, 1))),
                             tx_timer.eq(divisor - 1), tx_left.eq(10)]
        with m.Elif(tx_timer == 0):
            m.d.sync += [tx_shift.eq(Cat(tx_shift[1:], Const(1, 1))),
                         tx_timer.eq(divisor - 1), tx_left.eq(tx_left - 1)]
        with m.Else():
            m.d.sync += tx_timer.eq(tx_timer - 1)
        return m
