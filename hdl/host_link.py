"""`HostLink` and `ModelHostLink`: the board's framed serial protocol, its buffers, and the
runs of the core behind it (DESIGN §10).

Four stages, each a component of its own: :class:`~bbsparse.hdl.frame_parser.FrameParser`
(request bytes -> frames) -> :class:`~bbsparse.hdl.beat_adapter.BeatAdapter` (payload bytes
-> beats) -> :class:`~bbsparse.hdl.run_sequencer.RunSequencer` (memories, requests, runs of
the core) -> :class:`~bbsparse.hdl.reply.ReplySerialiser` (reply bytes). Two links are built
from them: :class:`HostLink` (a single-matrix board: an on-chip weight memory the host
loads, INFO version 1) and :class:`ModelHostLink` (a model board: the weights are in the
core's ROM, no LOAD_W, INFO version 2); the stages take a flag for the one difference, the
weight path.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..golden.model import IntegerModel
from ..golden.protocol import (
    INFO_FIELDS,
    INFO_VERSION,
    MAX_LENGTH,
    BoardInfo,
    Command,
    Flags,
    ModelInfo,
)
from .axis import AXIStream
from .beat_adapter import BeatAdapter
from .frame_parser import FrameParser
from .reply import ReplySerialiser
from .run_sequencer import RunFlags, RunSequencer

__all__ = ["HostLink", "ModelHostLink"]


def _check_timeout(timeout_cycles) -> None:
    if isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int) \
            or timeout_cycles < 16:
        raise ValueError(f"timeout_cycles must be an integer of at least 16, not "
                         f"{timeout_cycles!r}")


class _Link(wiring.Component):
    """The four stages joined: the ports and the wiring both links share. With `w_width`
    None there is no weight path (no ``w`` port, LOAD_W is ``BAD_COMMAND``) and a run
    expects exactly `max_y_beats` y beats."""

    def __init__(self, *, x_width: int, x_beats: int, y_width: int, max_y_beats: int,
                 info: bytes, timeout_cycles: int, w_width: int | None = None,
                 max_w_beats: int | None = None, cycles_per_row: int = 1):
        self._x_width = x_width
        self._x_beats = x_beats
        self._y_width = y_width
        self._max_y_beats = max_y_beats
        self._info = info
        self._timeout_cycles = timeout_cycles
        self._w_width = w_width
        self._max_w_beats = max_w_beats
        self._cycles_per_row = cycles_per_row
        ports = {
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "x": Out(AXIStream(x_width)),
            "y": In(AXIStream(y_width)),
            "core_error": In(1),
            "core_reset": Out(1),
            "rx_overrun": In(1),
            "rx_framing_error": In(1),
            "busy": Out(1),
            "failed": Out(1),
        }
        if w_width is not None:
            ports["w"] = Out(AXIStream(w_width))
        super().__init__(ports)

    @property
    def loads_weights(self) -> bool:
        """The host loads the weights (LOAD_W) into a weight memory of the link."""
        return self._w_width is not None

    @property
    def max_y_beats(self) -> int:
        return self._max_y_beats

    @property
    def timeout_cycles(self) -> int:
        return self._timeout_cycles

    @property
    def info_bytes(self) -> bytes:
        """The INFO reply's data (after the status byte)."""
        return self._info

    def elaborate(self, platform):
        weights = self.loads_weights
        m = Module()
        m.submodules.parser = parser = FrameParser(
            w_bytes=-(-self._w_width // 8) if weights else None,
            x_bytes=-(-self._x_width // 8), max_w_beats=self._max_w_beats,
            x_beats=self._x_beats, timeout_cycles=self._timeout_cycles)
        m.submodules.adapter = adapter = BeatAdapter(
            w_width=self._w_width, x_width=self._x_width, cycles_per_row=self._cycles_per_row)
        m.submodules.sequencer = sequencer = RunSequencer(
            w_width=self._w_width, x_width=self._x_width, y_width=self._y_width,
            max_w_beats=self._max_w_beats, x_beats=self._x_beats,
            max_y_beats=self._max_y_beats, timeout_cycles=self._timeout_cycles)
        m.submodules.reply = reply = ReplySerialiser(
            info=self._info, y_width=self._y_width, y_depth=self._max_y_beats)

        wiring.connect(m, wiring.flipped(self.rx), parser.rx)
        wiring.connect(m, parser.payload, adapter.payload)
        wiring.connect(m, adapter.x, sequencer.x_beat)
        wiring.connect(m, parser.frame, sequencer.frame)
        wiring.connect(m, sequencer.reply, reply.request)
        wiring.connect(m, sequencer.y_read, reply.y_read)
        wiring.connect(m, reply.tx, wiring.flipped(self.tx))
        wiring.connect(m, sequencer.x, wiring.flipped(self.x))
        wiring.connect(m, wiring.flipped(self.y), sequencer.y)
        if weights:
            wiring.connect(m, adapter.w, sequencer.w_beat)
            wiring.connect(m, sequencer.w, wiring.flipped(self.w))
            # The frame carries w beats: decoded into a register the cycle after the command
            # byte (its payload begins two bytes later), not on the path of every byte.
            w_frame = Signal(name="w_frame")
            m.d.sync += w_frame.eq(parser.command == Command.LOAD_W)
            m.d.comb += [
                adapter.w_frame.eq(w_frame),
                sequencer.groups.eq(adapter.groups),
                sequencer.whole_groups.eq(adapter.whole_groups),
            ]

        # The STATUS flags byte: the sequencer's four, then the UART's two.
        assert list(RunFlags.members) == ["w_loaded", "x_loaded", "y_valid", "core_error"]
        assert [1 << i for i in range(6)] == [int(f) for f in Flags]
        m.d.comb += [
            adapter.start.eq(parser.begin),
            sequencer.begin.eq(parser.begin),
            sequencer.command.eq(parser.command),
            sequencer.core_error.eq(self.core_error),
            reply.flags.eq(Cat(sequencer.flags, self.rx_overrun, self.rx_framing_error)),
            reply.w_beats.eq(sequencer.w_beats),
            reply.cycles.eq(sequencer.cycles),
            reply.y_count.eq(sequencer.y_count),
            self.core_reset.eq(sequencer.core_reset),
            self.busy.eq(sequencer.busy),
            self.failed.eq(reply.failed),
        ]
        return m


class HostLink(_Link):
    """The board side of the protocol of :mod:`bbsparse.host` for a single-matrix board,
    between a UART's byte streams and the core's AXI4-Stream ports.

    Requests are taken byte by byte from `rx` and answered on `tx` (the protocol table is in
    :mod:`bbsparse.host`). LOAD_W writes the w beats into a weight memory of `max_w_beats`
    beats, LOAD_X the x beats into an x buffer of ``x_beats``. RUN resets the core for one
    cycle, then streams the x buffer and the first ``w_beats`` beats of the weight memory to
    it, one beat a cycle each as the core takes them, stores the y beats in a y buffer of
    ``ceil(max_w_beats / cycles_per_row)`` beats, and counts the cycles from the first x
    beat accepted to the last y beat, inclusive. INFO answers version 1
    (:class:`~bbsparse.golden.protocol.BoardInfo`).

    Parameters
    ----------
    config : Config
        The core's configuration: an engine whose rows all take ``cycles_per_row`` w beats
        (pattern ``bbs``).
    max_w_beats : int
        Depth of the weight memory, from ``cycles_per_row`` to 65535 (the length field).
    timeout_cycles : int
        Cycles without a byte inside a frame, or without a transfer during a run, after
        which the link gives up and answers ``TIMEOUT``.

    Ports
    -----
    rx : In(stream.Signature(8))    request bytes; taken within a cycle while a request is
                                    being read, held back while running or replying.
    tx : Out(stream.Signature(8))   reply bytes.
    x : Out(AXIStream(x_beat_width)), w : Out(AXIStream(w_beat_width))
                                    to the core's ``s_axis_x`` and ``s_axis_w``.
    y : In(AXIStream(y_beat_width)) from the core's ``m_axis_y`` (always ready during a run).
    core_error : In(1)   the core's sticky ``error``.
    core_reset : Out(1)  resets the core (one cycle at the start of every RUN).
    rx_overrun, rx_framing_error : In(1)  the UART's flags, reported by STATUS.
    busy : Out(1)        a run is in progress.
    failed : Out(1)      the last reply was an error status.

    Throughput: one request byte a cycle; during a run, one x and one w beat a cycle (the
    core's pace). Latency of a reply: its status byte is offered three cycles after the cycle
    that takes the request's last byte (RUN: two after the last y beat's).
    """

    def __init__(self, config: Config, *, max_w_beats: int, timeout_cycles: int):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a bbsparse Config, not {config!r}")
        if not config.format.fixed_row_length:
            raise ValueError(f"config.pattern must be 'bbs' for the host link (its w frames "
                             f"have a fixed row length), not {config.pattern!r}")
        if not isinstance(max_w_beats, int) or not \
                config.cycles_per_row <= max_w_beats <= MAX_LENGTH:
            raise ValueError(f"max_w_beats must be an integer from cycles_per_row "
                             f"({config.cycles_per_row}) to {MAX_LENGTH} (the length field), "
                             f"not {max_w_beats!r}")
        if config.x_beats > MAX_LENGTH:
            raise ValueError(f"x_beats ({config.x_beats}) must fit the 16-bit length field")
        _check_timeout(timeout_cycles)
        self._config = config
        c = config
        super().__init__(x_width=c.x_beat_width, x_beats=c.x_beats, y_width=c.y_beat_width,
                         max_y_beats=-(-max_w_beats // c.cycles_per_row),
                         info=self.info_bytes_of(c, max_w_beats),
                         timeout_cycles=timeout_cycles, w_width=c.w_beat_width,
                         max_w_beats=max_w_beats, cycles_per_row=c.cycles_per_row)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def max_w_beats(self) -> int:
        return self._max_w_beats

    @staticmethod
    def info_bytes_of(config: Config, max_w_beats: int) -> bytes:
        """The INFO reply's data (after the status byte) for a link of these parameters."""
        fields = BoardInfo.fields_of(config, max_w_beats)
        return bytes([INFO_VERSION]) + b"".join(
            fields[name].to_bytes(2, "little") for name in INFO_FIELDS)


class ModelHostLink(_Link):
    """The board side of the protocol for a model board (a
    :class:`~bbsparse.hdl.model.ModelCore`, every layer's weights in ROM): the stages of
    :class:`HostLink` without the weight path.

    LOAD_X writes layer 0's x frame (exactly ``x_beats`` of layer 0) into the x buffer.
    RUN (needs only x) resets the core for one cycle, streams the x buffer to it, stores the
    model's ``y_beats`` y beats (``pes * out_width`` bits each) and counts the cycles from
    the first x beat accepted to the last y beat, inclusive; the run ends ``OK`` on the
    ``y_beats``-th y beat if it carries ``tlast``. LOAD_W is ``BAD_COMMAND`` (its length
    counts bytes, as any unknown command's); STATUS always has ``W_LOADED`` and reports 0
    w beats; INFO answers version 2 (:class:`~bbsparse.golden.protocol.ModelInfo`, with the
    scales `input_exponent` and `output_exponent`).

    During a run the timeout counts cycles without an x or y transfer: the model's layers
    run inside the core between them, so `timeout_cycles` must exceed that stretch
    (``ModelBoardTop`` checks it against a bound of a whole run).

    Ports: those of :class:`HostLink` without ``w``; ``x`` is ``lanes * act_width`` bits,
    ``y`` ``pes * out_width``.
    """

    def __init__(self, model: IntegerModel, *, input_exponent: int, output_exponent: int,
                 timeout_cycles: int):
        if not isinstance(model, IntegerModel):
            raise TypeError(f"model must be a bbsparse IntegerModel, not {model!r}")
        _check_timeout(timeout_cycles)
        info = ModelInfo.of_model(model, input_exponent=input_exponent,
                                  output_exponent=output_exponent)
        self._model = model
        self._model_info = info
        super().__init__(x_width=info.x_beat_width, x_beats=info.x_beats,
                         y_width=info.y_beat_width, max_y_beats=info.y_beats,
                         info=info.to_bytes(), timeout_cycles=timeout_cycles)

    @staticmethod
    def info_bytes_of(model: IntegerModel, *, input_exponent: int,
                      output_exponent: int) -> bytes:
        """The INFO reply's data (after the status byte) for a link of these parameters."""
        return ModelInfo.of_model(model, input_exponent=input_exponent,
                                  output_exponent=output_exponent).to_bytes()

    @property
    def model(self) -> IntegerModel:
        return self._model

    @property
    def config(self) -> Config:
        """The core every layer shares."""
        return self._model.config

    @property
    def model_info(self) -> ModelInfo:
        return self._model_info
