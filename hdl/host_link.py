"""`HostLink`: the board's framed serial protocol, an on-chip weight memory, x and y buffers."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..golden.protocol import (
    INFO_FIELDS,
    INFO_VERSION,
    MAX_LENGTH,
    BoardInfo,
    Command,
    Flags,
    Status,
)

__all__ = ["HostLink"]


def _memory_source(m, name: str, memory: Memory, count, start, ready):
    """A stream of ``memory[0:count]``, one beat a cycle while `ready`, started by `start`.

    The read port's data register is the stream's output register: it is read (``en``)
    only when the beat on the stream is taken or none is there, so it holds under
    back-pressure. Returns (valid, last, data).
    """
    port = memory.read_port()
    pointer = Signal(range(memory.depth + 1), name=f"{name}_pointer")
    fetching = Signal(name=f"{name}_fetching")
    valid = Signal(name=f"{name}_valid")
    last = Signal(name=f"{name}_last")
    advance = ~valid | ready
    final = pointer == count - 1
    m.d.comb += [port.addr.eq(pointer), port.en.eq(advance)]
    with m.If(start):
        m.d.sync += [pointer.eq(0), fetching.eq(1), valid.eq(0), last.eq(0)]
    with m.Elif(advance):
        m.d.sync += [valid.eq(fetching), last.eq(fetching & final)]
        with m.If(fetching):
            m.d.sync += pointer.eq(pointer + 1)
            with m.If(final):
                m.d.sync += fetching.eq(0)
    return valid, last, port.data


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
        The core's configuration (pattern ``bbs``).
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
    x_tdata/tvalid/tready/tlast, w_… : the core's x and w streams (this side is the source).
    y_tdata/tvalid/tready/tlast : the core's y stream (this side is the sink; always ready
                                  during a run).
    core_error : In(1)   the core's sticky ``error``.
    core_reset : Out(1)  resets the core (one cycle at the start of every RUN).
    rx_overrun, rx_framing_error : In(1)  the UART's flags, reported by STATUS.
    busy : Out(1)        a run is in progress.
    failed : Out(1)      the last reply was an error status.

    Throughput: one request byte a cycle; during a run, one x and one w beat a cycle (the
    core's pace). Latency of a reply: a cycle or two after the request's last byte (RUN:
    after the last y beat).
    """

    def __init__(self, config: Config, *, max_w_beats: int, timeout_cycles: int):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a bbsparse Config, not {config!r}")
        if config.pattern != "bbs":
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
            "x_tdata": Out(c.x_beat_width), "x_tvalid": Out(1), "x_tready": In(1),
            "x_tlast": Out(1),
            "w_tdata": Out(c.w_beat_width), "w_tvalid": Out(1), "w_tready": In(1),
            "w_tlast": Out(1),
            "y_tdata": In(c.y_beat_width), "y_tvalid": In(1), "y_tready": Out(1),
            "y_tlast": In(1),
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
        w_bytes = -(-c.w_beat_width // 8)
        x_bytes = -(-c.x_beat_width // 8)
        y_bytes = -(-c.y_beat_width // 8)
        unit_max = max(w_bytes, x_bytes)

        m.submodules.w_memory = w_memory = Memory(shape=c.w_beat_width,
                                                  depth=self._max_w_beats, init=[])
        m.submodules.x_memory = x_memory = Memory(shape=c.x_beat_width, depth=c.x_beats,
                                                  init=[])
        m.submodules.y_memory = y_memory = Memory(shape=c.y_beat_width,
                                                  depth=self.max_y_beats, init=[])
        w_write = w_memory.write_port()
        x_write = x_memory.write_port()
        y_write = y_memory.write_port()
        y_read = y_memory.read_port()

        # -- state ------------------------------------------------------------------------
        command = Signal(8, name="command")
        length = Signal(16, name="length")
        last_index = Signal(16, name="last_index")  # length - 1: the frame's last unit
        beat_count = Signal(16, name="beat_count")  # payload beats (or bytes) read so far
        byte_in_beat = Signal(range(unit_max), name="byte_in_beat")
        assembly = Signal(8 * unit_max, name="assembly")  # bytes of a beat, last at the top
        verdict = Signal(8, name="verdict")  # the status decided while reading the frame
        slot = Signal(range(max(2, c.cycles_per_row)), name="slot")  # w beat within a group
        groups = Signal(16, name="groups")  # row groups of the frame being loaded

        w_loaded = Signal(name="w_loaded")
        x_loaded = Signal(name="x_loaded")
        y_valid = Signal(name="y_valid")
        core_error_seen = Signal(name="core_error_seen")
        w_beats = Signal(16, name="w_beats")
        w_groups = Signal(16, name="w_groups")
        y_count = Signal(16, name="y_count")
        y_left = Signal(16, name="y_left")  # y beats still expected in this run
        cycles = Signal(32, name="cycles")
        counting = Signal(name="counting")
        idle = Signal(range(self._timeout_cycles + 1), name="idle")

        tx_buffer = Signal(max(8 * y_bytes, 40), name="tx_buffer")
        tx_left = Signal(range(max(y_bytes, 5) + 1), name="tx_left")
        sending_y = Signal(name="sending_y")
        y_sent = Signal(16, name="y_sent")
        info = Array(Const(byte, 8) for byte in self.info_bytes)
        info_index = Signal(range(len(self.info_bytes)), name="info_index")

        rx_fire = self.rx.valid & self.rx.ready
        byte = self.rx.payload
        timed_out = idle == self._timeout_cycles
        is_w = command == Command.LOAD_W
        is_x = command == Command.LOAD_X
        unit = Mux(is_w, w_bytes, Mux(is_x, x_bytes, 1))
        # The beat completed by this byte: the assembly register shifted once more.
        beat = Cat(assembly[8:], byte)
        beat_done = rx_fire & (byte_in_beat == unit - 1)
        write_ok = verdict == Status.OK
        m.d.comb += [
            w_write.addr.eq(beat_count), w_write.data.eq(beat[8 * (unit_max - w_bytes):]),
            x_write.addr.eq(beat_count), x_write.data.eq(beat[8 * (unit_max - x_bytes):]),
        ]

        running = Signal(name="running")
        start = Signal(name="start")
        x_valid, x_last, x_data = _memory_source(m, "x_source", x_memory, c.x_beats, start,
                                                 self.x_tready)
        w_valid, w_last, w_data = _memory_source(m, "w_source", w_memory, w_beats, start,
                                                 self.w_tready)
        # Outside a run nothing is offered: a run that ended early leaves its sources
        # mid-frame, and the core is reset before the next one.
        m.d.comb += [
            self.x_tdata.eq(x_data), self.x_tlast.eq(x_last),
            self.x_tvalid.eq(x_valid & running),
            self.w_tdata.eq(w_data), self.w_tlast.eq(w_last),
            self.w_tvalid.eq(w_valid & running),
            self.y_tready.eq(running),
            self.busy.eq(running),
        ]
        x_fire = self.x_tvalid & self.x_tready
        w_fire = self.w_tvalid & self.w_tready
        y_fire = self.y_tvalid & self.y_tready
        m.d.comb += [
            y_write.addr.eq(y_count), y_write.data.eq(self.y_tdata),
            y_write.en.eq(y_fire & (y_count < self.max_y_beats)),
            y_read.addr.eq(y_sent),
        ]

        flags = Cat(w_loaded, x_loaded, y_valid, core_error_seen, self.rx_overrun,
                    self.rx_framing_error)
        assert [1 << i for i in range(6)] == [int(f) for f in Flags]

        def reply(status):
            m.d.sync += [tx_buffer.eq(status), tx_left.eq(1), sending_y.eq(0),
                         self.failed.eq(status != Status.OK)]
            m.next = "send"

        def reply_ok(data, data_bytes, then_y=False):
            m.d.sync += [tx_buffer.eq(Cat(Const(Status.OK, 8), data)),
                         tx_left.eq(1 + data_bytes), sending_y.eq(then_y),
                         self.failed.eq(0)]
            m.next = "send"

        with m.If(rx_fire):
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)

        with m.FSM(name="link"):
            with m.State("command"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_fire):
                    m.d.sync += command.eq(byte)
                    # A load forgets the old contents as soon as it begins.
                    with m.If(byte == Command.LOAD_W):
                        m.d.sync += w_loaded.eq(0)
                    with m.If(byte == Command.LOAD_X):
                        m.d.sync += x_loaded.eq(0)
                    m.next = "length_low"

            with m.State("length_low"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_fire):
                    m.d.sync += length[:8].eq(byte)
                    m.next = "length_high"
                with m.Elif(timed_out):
                    reply(Status.TIMEOUT)

            with m.State("length_high"):
                m.d.comb += self.rx.ready.eq(1)
                full = Cat(length[:8], byte)
                with m.If(rx_fire):
                    m.d.sync += [length[8:].eq(byte), last_index.eq(full - 1),
                                 beat_count.eq(0), byte_in_beat.eq(0), slot.eq(0),
                                 groups.eq(0), verdict.eq(Status.OK)]
                    with m.Switch(command):
                        with m.Case(Command.LOAD_W):
                            with m.If((full == 0) | (full > self._max_w_beats)):
                                m.d.sync += verdict.eq(Status.BAD_LENGTH)
                        with m.Case(Command.LOAD_X):
                            with m.If(full != c.x_beats):
                                m.d.sync += verdict.eq(Status.BAD_LENGTH)
                        with m.Case(Command.RUN, Command.READ_Y, Command.READ_CYCLES,
                                    Command.STATUS, Command.INFO):
                            with m.If(full != 0):
                                m.d.sync += verdict.eq(Status.BAD_LENGTH)
                        with m.Default():
                            m.d.sync += verdict.eq(Status.BAD_COMMAND)
                    with m.If(full == 0):
                        m.next = "execute"
                    with m.Else():
                        m.next = "payload"
                with m.Elif(timed_out):
                    reply(Status.TIMEOUT)

            with m.State("payload"):
                # Every payload byte is read, whatever the verdict: the frame ends where the
                # host thinks it does, and the next byte is a command again.
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_fire):
                    m.d.sync += [assembly.eq(beat), byte_in_beat.eq(byte_in_beat + 1)]
                with m.If(beat_done):
                    m.d.comb += [w_write.en.eq(is_w & write_ok),
                                 x_write.en.eq(is_x & write_ok)]
                    m.d.sync += [byte_in_beat.eq(0), beat_count.eq(beat_count + 1)]
                    with m.If(slot == c.cycles_per_row - 1):
                        m.d.sync += [slot.eq(0), groups.eq(groups + 1)]
                    with m.Else():
                        m.d.sync += slot.eq(slot + 1)
                    with m.If(beat_count == last_index):
                        m.next = "execute"
                with m.Elif(timed_out):
                    reply(Status.TIMEOUT)

            with m.State("execute"):
                with m.If(verdict != Status.OK):
                    reply(verdict)
                with m.Else():
                    with m.Switch(command):
                        with m.Case(Command.LOAD_W):
                            with m.If(slot != 0):  # not a whole number of row groups
                                reply(Status.BAD_LENGTH)
                            with m.Else():
                                m.d.sync += [w_loaded.eq(1), w_beats.eq(length),
                                             w_groups.eq(groups)]
                                reply(Status.OK)
                        with m.Case(Command.LOAD_X):
                            m.d.sync += x_loaded.eq(1)
                            reply(Status.OK)
                        with m.Case(Command.RUN):
                            with m.If(w_loaded & x_loaded):
                                m.next = "run_reset"
                            with m.Else():
                                reply(Status.BAD_STATE)
                        with m.Case(Command.READ_Y):
                            with m.If(y_valid):
                                m.d.sync += y_sent.eq(0)
                                reply_ok(y_count, 2, then_y=True)
                            with m.Else():
                                reply(Status.BAD_STATE)
                        with m.Case(Command.READ_CYCLES):
                            reply_ok(cycles, 4)
                        with m.Case(Command.STATUS):
                            reply_ok(Cat(flags, Const(0, 8 - len(flags)), w_beats), 3)
                        with m.Case(Command.INFO):
                            m.d.sync += [tx_buffer.eq(Status.OK), tx_left.eq(1),
                                         sending_y.eq(0), info_index.eq(0),
                                         self.failed.eq(0)]
                            m.next = "send_info"

            with m.State("send"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_buffer[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [tx_buffer.eq(tx_buffer >> 8), tx_left.eq(tx_left - 1)]
                    with m.If(tx_left == 1):
                        with m.If(sending_y & (y_sent != y_count)):
                            m.next = "y_read"
                        with m.Else():
                            m.next = "command"

            with m.State("y_read"):
                m.d.comb += y_read.en.eq(1)
                m.next = "y_load"

            with m.State("y_load"):
                m.d.sync += [tx_buffer.eq(y_read.data), tx_left.eq(y_bytes),
                             y_sent.eq(y_sent + 1)]
                m.next = "send"

            with m.State("send_info"):
                # The status byte first (tx_left = 1), then the constant INFO bytes.
                m.d.comb += [self.tx.valid.eq(1),
                             self.tx.payload.eq(Mux(tx_left == 1, tx_buffer[:8],
                                                    info[info_index]))]
                with m.If(self.tx.ready):
                    with m.If(tx_left == 1):
                        m.d.sync += tx_left.eq(0)
                    with m.Elif(info_index == len(self.info_bytes) - 1):
                        m.next = "command"
                    with m.Else():
                        m.d.sync += info_index.eq(info_index + 1)

            with m.State("run_reset"):
                m.d.comb += [self.core_reset.eq(1), start.eq(1)]
                m.d.sync += [y_count.eq(0), y_left.eq(w_groups), y_valid.eq(0), cycles.eq(0),
                             counting.eq(0), core_error_seen.eq(0), idle.eq(0)]
                m.next = "run"

            with m.State("run"):
                m.d.comb += running.eq(1)
                with m.If(x_fire | w_fire | y_fire):
                    m.d.sync += idle.eq(0)
                # cycles = last y cycle - first x cycle + 1.
                with m.If(counting):
                    m.d.sync += cycles.eq(cycles + 1)
                with m.Elif(x_fire):
                    m.d.sync += [cycles.eq(1), counting.eq(1)]
                with m.If(y_fire):
                    m.d.sync += [y_count.eq(y_count + 1), y_left.eq(y_left - 1)]
                with m.If(self.core_error):
                    m.d.sync += core_error_seen.eq(1)
                    reply(Status.CORE_ERROR)
                with m.Elif(y_fire & self.y_tlast):
                    m.d.sync += counting.eq(0)
                    with m.If(y_left == 1):
                        m.d.sync += y_valid.eq(1)
                        reply(Status.OK)
                    with m.Else():
                        reply(Status.CORE_ERROR)
                with m.Elif(y_fire & (y_left == 1)):
                    reply(Status.CORE_ERROR)  # the last y beat should have carried tlast
                with m.Elif(timed_out):
                    reply(Status.TIMEOUT)
        return m
