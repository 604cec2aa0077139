"""The board tops: a core with its host link and UART, behind two serial pins and two LEDs.

:class:`BoardTop` (a single-matrix board: `bbs_spmv` and a weight memory the host loads)
and :class:`ModelBoardTop` (a model board: a whole compiled model, its weights in ROM) share
the UART, the link's stages and the pins (:class:`BoardPins`); DESIGN §10.
"""

from __future__ import annotations

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Module,
    ResetInserter,
    ResetSignal,
)
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..golden.model import IntegerModel
from ..golden.protocol import ModelInfo
from .clocking import BoardClock, PLLSetting
from .host_link import HostLink, ModelHostLink
from .model import ModelCore, model_images
from .spmv import BBSSpMV
from .uart import UART

__all__ = ["BoardPins", "BoardTop", "ModelBoardTop", "default_timeout_cycles",
           "model_run_cycles_bound"]

_PINS = {"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "failed": Out(1)}


def default_timeout_cycles(clock_hz: float | None) -> int:
    """A tenth of a second of the board clock, or 2**20 cycles without one (DESIGN §10.7)."""
    return int(clock_hz // 10) if clock_hz else 1 << 20


def model_run_cycles_bound(model: IntegerModel) -> int:
    """An upper bound of one RUN of `model` on a model board, first x beat to last y beat.
    Per layer: its x frame into the core; its w frame, or one cycle per row if more (the
    scatter into the next layer's x writes a row a cycle when rows collide in a lane); the
    core's latency, the output stage, and 16 cycles for the hand-over between layers. No
    stretch without an x or y transfer is longer, so a timeout above it never cuts a run
    that works."""
    latency = BBSSpMV.latency_of(model.config) + ModelCore.OUTPUT_LATENCY + 16
    table = model_images(model)["layers"]
    return sum(layer["x_beats"] + max(layer["w_beats"], layer["rows"]) + latency
               for layer in table)


def _join(m, uart: UART, link, core, top) -> None:
    """The UART, the link, the core (reset by the link) and the top's pins, connected."""
    m.submodules.uart = uart
    m.submodules.link = link
    m.submodules.core = ResetInserter(link.core_reset)(core)
    wiring.connect(m, uart.rx_data, link.rx)
    wiring.connect(m, link.tx, uart.tx_data)
    m.d.comb += [
        uart.rx.eq(top.rx),
        top.tx.eq(uart.tx),
        top.busy.eq(link.busy),
        top.failed.eq(link.failed),
        link.rx_overrun.eq(uart.overrun),
        link.rx_framing_error.eq(uart.framing_error),
        link.core_error.eq(core.error),
    ]
    # The ResetInserter resets the core's registers; its ports are the un-wrapped core's
    # own interface objects (the wrapper hands out the very same ones).
    wiring.connect(m, link.x, core.s_axis_x)
    if link.loads_weights:
        wiring.connect(m, link.w, core.s_axis_w)
    wiring.connect(m, core.m_axis_y, link.y)


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
            timeout_cycles = default_timeout_cycles(clock_hz)
        self._config = config
        self._uart = UART(divisor)
        self._link = HostLink(config, max_w_beats=max_w_beats,
                              timeout_cycles=timeout_cycles)
        self._core = BBSSpMV(config)
        super().__init__(dict(_PINS))

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
        _join(m, self._uart, self._link, self._core, self)
        return m


class ModelBoardTop(wiring.Component):
    """A compiled model (:class:`~bbsparse.hdl.model.ModelCore`, every layer's weights in
    ROM) driven over a UART: the model board of DESIGN §10, INFO version 2.

    :class:`~bbsparse.hdl.uart.UART` (8N1, `divisor` clock cycles per bit) <->
    :class:`~bbsparse.hdl.host_link.ModelHostLink` (x buffer of layer 0's ``x_beats``,
    y buffer of the model's ``y_beats``) <-> :class:`~bbsparse.hdl.model.ModelCore`, which
    the link resets at the start of every run (its ROMs keep their contents: a reset clears
    registers only). The host sends layer 0's x (LOAD_X), RUN, and reads the last layer's
    y (READ_Y) and the run's cycles (READ_CYCLES); LOAD_W is ``BAD_COMMAND``.
    `input_exponent` and `output_exponent` are the model's power-of-two scales, reported by
    INFO (``x_float = x_int * 2**input_exponent``, ``y_float = y_int *
    2**output_exponent``).

    Ports (clock ``clk``, synchronous reset ``rst``): as :class:`BoardTop` (`rx`, `tx`,
    `busy`, `failed`), so :class:`BoardPins` puts it on a board.

    `timeout_cycles` (default: a tenth of a second at `clock_hz`, or 2**20 cycles) must
    exceed :func:`model_run_cycles_bound`: during a run the link sees no transfer while the
    hidden layers run inside the core.
    """

    def __init__(self, model: IntegerModel, *, divisor: int, input_exponent: int,
                 output_exponent: int, timeout_cycles: int | None = None,
                 clock_hz: float | None = None):
        if not isinstance(model, IntegerModel):
            raise TypeError(f"model must be a bbsparse IntegerModel, not {model!r}")
        if timeout_cycles is None:
            timeout_cycles = default_timeout_cycles(clock_hz)
        self._core = ModelCore(model)  # refuses a model the core cannot run
        bound = model_run_cycles_bound(model)
        if isinstance(timeout_cycles, int) and timeout_cycles <= bound:
            raise ValueError(f"timeout_cycles ({timeout_cycles}) must exceed the longest "
                             f"run of this model ({bound} cycles at most): the link would "
                             f"time out while the layers run")
        self._model = model
        self._uart = UART(divisor)
        self._link = ModelHostLink(model, input_exponent=input_exponent,
                                   output_exponent=output_exponent,
                                   timeout_cycles=timeout_cycles)
        super().__init__(dict(_PINS))

    @property
    def model(self) -> IntegerModel:
        return self._model

    @property
    def config(self) -> Config:
        """The core every layer shares."""
        return self._model.config

    @property
    def model_info(self) -> ModelInfo:
        """What INFO reports."""
        return self._link.model_info

    @property
    def divisor(self) -> int:
        return self._uart.divisor

    @property
    def link(self) -> ModelHostLink:
        return self._link

    @property
    def core(self) -> ModelCore:
        return self._core

    def elaborate(self, platform):
        m = Module()
        _join(m, self._uart, self._link, self._core, self)
        return m


class BoardPins(Elaboratable):
    """A board top (:class:`BoardTop` or :class:`ModelBoardTop`) on a board: its `rx` and
    `tx` on the platform's ``uart`` 0, and `busy` and `failed` on two LEDs, named by `leds`
    (one name twice: numbers 0 and 1). With `pll` (a
    :class:`~bbsparse.hdl.clocking.PLLSetting`) the top runs from the PLL's output
    (:class:`~bbsparse.hdl.clocking.BoardClock`: reset until the PLL locks, the output's
    frequency as the clock constraint); without, from the platform's default domain (the
    board's oscillator)."""

    def __init__(self, top: BoardTop | ModelBoardTop, *, leds: tuple[str, str],
                 pll: PLLSetting | None = None):
        self.top = top
        self.leds = leds
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        if self.pll is not None:
            m.submodules.clock = clock = BoardClock(self.pll)
            m.domains.sync = ClockDomain()
            m.d.comb += [ClockSignal("sync").eq(clock.clk), ResetSignal("sync").eq(clock.rst)]
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
