"""`HostLink`: the board's framed serial protocol, an on-chip weight memory, x and y buffers.

Four stages, each a component of its own: :class:`~bbsparse.hdl.frame_parser.FrameParser`
(request bytes -> frames) -> :class:`~bbsparse.hdl.beat_adapter.BeatAdapter` (payload bytes
-> beats) -> :class:`~bbsparse.hdl.run_sequencer.RunSequencer` (memories, requests, runs of
the core) -> :class:`~bbsparse.hdl.reply.ReplySerialiser` (reply bytes).
"""

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..golden.protocol import INFO_FIELDS, INFO_VERSION, MAX_LENGTH, BoardInfo, Command, Flags
from .axis import AXIStream
from .beat_adapter import BeatAdapter
from .frame_parser import FrameParser
from .reply import ReplySerialiser
from .run_sequencer import RunFlags, RunSequencer

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """The board side of the protocol of :mod:`bbsparse.host`, between a UART's byte
    streams and the core's AXI4-Stream ports.

    Requests are taken byte by byte from `rx` and answered on `tx` (the protocol table is in
    :mod:`bbsparse.host`). LOAD_W writes the w beats into a weight memory of `max_w_beats`
    beats, LOAD_X the x beats into an x buffer of ``x_beats``. RUN resets the core for one
    cycle, then streams the x buffer and the first ``w_beats`` beats of the weight memory to
    it, one beat a cycle each as the core takes them, stores the y beats in a y buffer of
    ``ceil(max_w_beats / cycles_per_row)`` beats, and counts the cycles from the first x
    beat accepted to the last y beat, inclusive.

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
        if not isinstance(timeout_cycles, int) or timeout_cycles < 16:
            raise ValueError(f"timeout_cycles must be an integer of at least 16, not "
                             f"{timeout_cycles!r}")
        self._config = config
        self._max_w_beats = max_w_beats
        self._timeout_cycles = timeout_cycles
        c = config
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "x": Out(AXIStream(c.x_beat_width)),
            "w": Out(AXIStream(c.w_beat_width)),
            "y": In(AXIStream(c.y_beat_width)),
            "core_error": In(1),
            "core_reset": Out(1),
            "rx_overrun": In(1),
            "rx_framing_error": In(1),
            "busy": Out(1),
            "failed": Out(1),
        })

    @property
    def config(self) -> Config:
        return self._config

    @property
    def max_w_beats(self) -> int:
        return self._max_w_beats

    @property
    def max_y_beats(self) -> int:
        return -(-self._max_w_beats // self._config.cycles_per_row)

    @property
    def timeout_cycles(self) -> int:
        return self._timeout_cycles

    @staticmethod
    def info_bytes_of(config: Config, max_w_beats: int) -> bytes:
        """The INFO reply's data (after the status byte) for a link of these parameters."""
        fields = BoardInfo.fields_of(config, max_w_beats)
        return bytes([INFO_VERSION]) + b"".join(
            fields[name].to_bytes(2, "little") for name in INFO_FIELDS)

    @property
    def info_bytes(self) -> bytes:
        return self.info_bytes_of(self._config, self._max_w_beats)

    def elaborate(self, platform):
        c = self._config
        m = Module()
        m.submodules.parser = parser = FrameParser(
            w_bytes=-(-c.w_beat_width // 8), x_bytes=-(-c.x_beat_width // 8),
            max_w_beats=self._max_w_beats, x_beats=c.x_beats,
            timeout_cycles=self._timeout_cycles)
        m.submodules.adapter = adapter = BeatAdapter(
            w_width=c.w_beat_width, x_width=c.x_beat_width, cycles_per_row=c.cycles_per_row)
        m.submodules.sequencer = sequencer = RunSequencer(
            w_width=c.w_beat_width, x_width=c.x_beat_width, y_width=c.y_beat_width,
            max_w_beats=self._max_w_beats, x_beats=c.x_beats, max_y_beats=self.max_y_beats,
            timeout_cycles=self._timeout_cycles)
        m.submodules.reply = reply = ReplySerialiser(
            info=self.info_bytes, y_width=c.y_beat_width, y_depth=self.max_y_beats)

        wiring.connect(m, wiring.flipped(self.rx), parser.rx)
        wiring.connect(m, parser.payload, adapter.payload)
        wiring.connect(m, adapter.w, sequencer.w_beat)
        wiring.connect(m, adapter.x, sequencer.x_beat)
        wiring.connect(m, parser.frame, sequencer.frame)
        wiring.connect(m, sequencer.reply, reply.request)
        wiring.connect(m, sequencer.y_read, reply.y_read)
        wiring.connect(m, reply.tx, wiring.flipped(self.tx))
        wiring.connect(m, sequencer.x, wiring.flipped(self.x))
        wiring.connect(m, sequencer.w, wiring.flipped(self.w))
        wiring.connect(m, wiring.flipped(self.y), sequencer.y)

        # The STATUS flags byte: the sequencer's four, then the UART's two.
        assert list(RunFlags.members) == ["w_loaded", "x_loaded", "y_valid", "core_error"]
        assert [1 << i for i in range(6)] == [int(f) for f in Flags]
        m.d.comb += [
            adapter.start.eq(parser.begin),
            adapter.w_frame.eq(parser.command == Command.LOAD_W),
            sequencer.begin.eq(parser.begin),
            sequencer.command.eq(parser.command),
            sequencer.groups.eq(adapter.groups),
            sequencer.whole_groups.eq(adapter.whole_groups),
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
