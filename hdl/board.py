"""`BoardTop`: the core with its host link and UART, behind two serial pins."""

from amaranth.hdl import Elaboratable, Module, ResetInserter
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from .host_link import HostLink
from .spmv import BBSSpMV
from .uart import UART

__all__ = ["BoardTop", "BoardPins"]


class BoardTop(wiring.Component):
    """`bbs_spmv` for `config`, driven over a UART by the protocol of :mod:`bbsparse.host`.

    :class:`~bbsparse.hdl.uart.UART` (8N1, `divisor` clock cycles per bit) <->
    :class:`~bbsparse.hdl.host_link.HostLink` (weight memory of `max_w_beats` beats, x and
    y buffers) <-> :class:`~bbsparse.hdl.spmv.BBSSpMV`, which the link resets at the start
    of every run.

    Ports (clock ``clk``, synchronous reset ``rst``)
    -----------------------------------------------
    rx : In(1)   serial input from the host, idle high.
    tx : Out(1)  serial output to the host, idle high.
    busy : Out(1)    a run is in progress (an LED).
    failed : Out(1)  the last reply was an error status (an LED).

    `timeout_cycles` (default: a tenth of a second at `clock_hz`, or 2**20 cycles if the
    clock is not given) bounds a stalled frame or run, see :class:`HostLink`.
    """

    def __init__(self, config: Config, *, divisor: int, max_w_beats: int,
                 timeout_cycles: int | None = None, clock_hz: float | None = None):
        if timeout_cycles is None:
            timeout_cycles = int(clock_hz // 10) if clock_hz else 1 << 20
        self._config = config
        self._uart = UART(divisor)
        self._link = HostLink(config, max_w_beats=max_w_beats,
                              timeout_cycles=timeout_cycles)
        self._core = BBSSpMV(config)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "failed": Out(1)})

    @property
    def config(self) -> Config:
        return self._config

    @property
    def divisor(self) -> int:
        return self._uart.divisor

    @property
    def link(self) -> HostLink:
        return self._link

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = self._uart
        m.submodules.link = link = self._link
        m.submodules.core = core = ResetInserter(link.core_reset)(self._core)

        wiring.connect(m, uart.rx_data, link.rx)
        wiring.connect(m, link.tx, uart.tx_data)
        m.d.comb += [
            uart.rx.eq(self.rx),
            self.tx.eq(uart.tx),
            self.busy.eq(link.busy),
            self.failed.eq(link.failed),
            link.rx_overrun.eq(uart.overrun),
            link.rx_framing_error.eq(uart.framing_error),
            link.core_error.eq(core.error),
        ]
        # The ResetInserter resets the core's registers; its ports are the un-wrapped core's
        # own interface objects (the wrapper hands out the very same ones).
        wiring.connect(m, link.x, self._core.s_axis_x)
        wiring.connect(m, link.w, self._core.s_axis_w)
        wiring.connect(m, self._core.m_axis_y, link.y)
        return m


class BoardPins(Elaboratable):
    """A :class:`BoardTop` on a board: its `rx` and `tx` on the platform's ``uart`` 0, and
    `busy` and `failed` on two LEDs, named by `leds` (one name twice: numbers 0 and 1).
    The clock and reset are the platform's default domain."""

    def __init__(self, top: BoardTop, *, leds: tuple[str, str]):
        self.top = top
        self.leds = leds

    def elaborate(self, platform):
        m = Module()
        m.submodules.board = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        busy_name, failed_name = self.leds
        busy_port = platform.request(busy_name, 0, dir="-")
        failed_port = platform.request(failed_name, 1 if failed_name == busy_name else 0,
                                       dir="-")
        m.submodules.busy_led = busy = io.Buffer("o", busy_port)
        m.submodules.failed_led = failed = io.Buffer("o", failed_port)
        m.d.comb += [busy.o.eq(top.busy), failed.o.eq(top.failed)]
        return m
