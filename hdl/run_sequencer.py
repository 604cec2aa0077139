"""`RunSequencer`: the host link's memories, the requests it carries out, and the core's runs."""

from amaranth.hdl import C, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..golden.protocol import MAX_LENGTH, Command, Status
from .axis import AXIStream
from .beat_adapter import beat_layout
from .frame_parser import FrameLayout
from .reply import ReplyLayout

__all__ = ["RunFlags", "RunSequencer"]

#: The sequencer's STATUS flags, bit 0 upwards as :class:`~bbsparse.golden.protocol.Flags`.
RunFlags = data.StructLayout({"w_loaded": 1, "x_loaded": 1, "y_valid": 1, "core_error": 1})


def _memory_source(m, name: str, memory: Memory, last_index, start, run, ready):
    """A stream of ``memory[0:last_index + 1]``, one beat a cycle while `ready`, started by
    `start` and emptied whenever `run` is low (so its `valid` is a register's output and
    still offers nothing outside a run).

    Two stages: the read port's data register (read, ``en``, only when its beat moves on or
    none is there, so it holds), then an output register with a skid register beside it, so
    that `ready` (the core's) reaches only those registers' enables, never the memory, and
    the memory's clock-to-output (an ECP5 DP16KD without its output register: 5.6 ns) ends
    at a flip-flop instead of running on into the core. `last_index` is a register or a
    constant. Returns (valid, last, data) of the output register.
    """
    port = memory.read_port()
    pointer = Signal(range(memory.depth + 1), name=f"{name}_pointer")
    fetching = Signal(name=f"{name}_fetching")
    valid = Signal(name=f"{name}_read_valid")
    last = Signal(name=f"{name}_read_last")
    out_valid = Signal(name=f"{name}_valid")
    out_last = Signal(name=f"{name}_last")
    out_data = Signal(memory.shape, name=f"{name}_data")
    skid_valid = Signal(name=f"{name}_skid_valid")
    skid_last = Signal(name=f"{name}_skid_last")
    skid_data = Signal(memory.shape, name=f"{name}_skid_data")
    in_ready = ~skid_valid
    advance = ~valid | in_ready
    final = pointer == last_index
    m.d.comb += [port.addr.eq(pointer), port.en.eq(advance)]
    with m.If(~run):
        m.d.sync += [pointer.eq(0), fetching.eq(start), valid.eq(0), last.eq(0),
                     out_valid.eq(0), skid_valid.eq(0)]
    with m.Else():
        with m.If(advance):
            m.d.sync += [valid.eq(fetching), last.eq(fetching & final)]
            with m.If(fetching):
                m.d.sync += pointer.eq(pointer + 1)
                with m.If(final):
                    m.d.sync += fetching.eq(0)
        with m.If(~out_valid | ready):
            with m.If(skid_valid):
                m.d.sync += [out_valid.eq(1), out_last.eq(skid_last), out_data.eq(skid_data),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out_valid.eq(valid), out_last.eq(last), out_data.eq(port.data)]
        with m.Elif(valid & in_ready):
            m.d.sync += [skid_valid.eq(1), skid_last.eq(last), skid_data.eq(port.data)]
    return out_valid, out_last, out_data


class RunSequencer(wiring.Component):
    """Carries out the host link's requests (DESIGN §10.3, §10.6): stores the w and x beats
    of LOAD_W and LOAD_X, runs the core for RUN, and says what each reply is.

    Memories: w (`max_w_beats` beats of `w_width` bits), x (`x_beats` of `x_width`), y
    (`max_y_beats` of `y_width`). A frame end on `frame` is answered on `reply` with:

    - its own status if it is not ``OK`` (from the frame parser);
    - LOAD_W: ``BAD_LENGTH`` unless `whole_groups`; else the matrix is valid: `w_beats`
      beats, `groups` row groups (the y beats a run expects);
    - LOAD_X: the vector is valid. Both are forgotten when their command byte arrives
      (`begin` with `command`), so a failed load leaves nothing valid;
    - RUN: ``BAD_STATE`` without a valid matrix and vector; else the core is reset for one
      cycle, the x memory and the first `w_beats` w beats are streamed on `x` and `w` at
      the core's pace, the y beats are stored, and the cycles from the first x beat taken
      to the last y beat, inclusive, are counted. The run ends ``OK`` on the y beat with
      ``tlast`` if it is the expected last one (the y beats become valid), ``CORE_ERROR``
      if ``core_error`` rises or the count and ``tlast`` disagree, ``TIMEOUT`` after
      `timeout_cycles` without any x, w or y transfer;
    - READ_Y: ``BAD_STATE`` unless the y beats are valid; READ_CYCLES, STATUS, INFO: ``OK``.

    Ports
    -----
    w_beat, x_beat : In(stream.Signature(beat_layout(w_width / x_width)))
        Beats to store at their index; always taken.
    begin : In(1), command : In(8)
        A frame has begun, with this command byte.
    frame : In(stream.Signature(FrameLayout))
        The end of a request frame (after its beats); taken when its reply is.
    groups, whole_groups : In(16), In(1)
        Row groups of the w beats of the frame, and whether they are whole.
    reply : Out(stream.Signature(ReplyLayout))
        The status and command to answer; offered until taken.
    x, w : Out(AXIStream(x_width / w_width))
        To the core; nothing is offered outside a run.
    y : In(AXIStream(y_width))
        From the core; ready during a run.
    core_error : In(1)    the core's sticky ``error``.
    core_reset : Out(1)   resets the core, one cycle at the start of a run.
    busy : Out(1)         a run is in progress.
    flags : Out(RunFlags) the matrix, the vector, the y beats are valid; the core's error
                          was seen in the last run.
    w_beats, y_count, cycles : Out(16), Out(16), Out(32)
        Beats of the stored matrix; y beats and cycles of the last run.
    y_read : Out(ReadPort.Signature(addr_width=ceil_log2(max_y_beats), shape=y_width))
        A read port of the y memory.

    Without weights (`w_width` and `max_w_beats` None: a model board, whose core holds its
    weights in ROM) the ports `w_beat`, `groups`, `whole_groups` and `w` are absent, LOAD_W
    is ``BAD_COMMAND``, ``w_loaded`` is always set and `w_beats` is 0, RUN needs only the
    vector, and a run expects exactly `max_y_beats` y beats.

    Latency: a reply is offered the cycle after its frame end (RUN: the cycle after the
    run ended); the core's reset is two cycles after the frame end. Throughput: one beat
    a cycle on each of `w_beat`, `x_beat`, and during a run on `x`, `w` and `y`.
    """

    def __init__(self, *, w_width: int | None, x_width: int, y_width: int,
                 max_w_beats: int | None, x_beats: int, max_y_beats: int,
                 timeout_cycles: int):
        if (w_width is None) != (max_w_beats is None):
            raise ValueError(f"w_width and max_w_beats must both be given (a board that "
                             f"loads weights) or both be None (weights in ROM), not "
                             f"{w_width!r} and {max_w_beats!r}")
        weights = w_width is not None
        for name, value in (("w_width", w_width), ("x_width", x_width), ("y_width", y_width),
                            ("max_w_beats", max_w_beats), ("x_beats", x_beats),
                            ("max_y_beats", max_y_beats), ("timeout_cycles", timeout_cycles)):
            if value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name, value in (("max_w_beats", max_w_beats), ("x_beats", x_beats),
                            ("max_y_beats", max_y_beats)):
            if value is not None and value > MAX_LENGTH:
                raise ValueError(f"{name} must fit the 16-bit length field, not {value!r}")
        self._w_width = w_width
        self._x_width = x_width
        self._y_width = y_width
        self._max_w_beats = max_w_beats
        self._x_beats = x_beats
        self._max_y_beats = max_y_beats
        self._timeout_cycles = timeout_cycles
        ports = {
            "x_beat": In(stream.Signature(beat_layout(x_width))),
            "begin": In(1),
            "command": In(8),
            "frame": In(stream.Signature(FrameLayout)),
            "reply": Out(stream.Signature(ReplyLayout)),
            "x": Out(AXIStream(x_width)),
            "y": In(AXIStream(y_width)),
            "core_error": In(1),
            "core_reset": Out(1),
            "busy": Out(1),
            # Without weights the ROM is always "loaded": the flag is its constant init.
            "flags": Out(RunFlags, init={"w_loaded": int(not weights)}),
            "w_beats": Out(16),
            "y_count": Out(16),
            "cycles": Out(32),
            "y_read": Out(ReadPort.Signature(addr_width=ceil_log2(max_y_beats),
                                             shape=y_width)),
        }
        if weights:
            ports.update({
                "w_beat": In(stream.Signature(beat_layout(w_width))),
                "groups": In(16),
                "whole_groups": In(1),
                "w": Out(AXIStream(w_width)),
            })
        super().__init__(ports)

    @property
    def loads_weights(self) -> bool:
        return self._w_width is not None

    def _load(self, m, w_memory, x_memory):
        """Store every beat; forget the matrix or vector when a load of it begins."""
        loads = [(self.x_beat, x_memory)]
        if w_memory is not None:
            loads.insert(0, (self.w_beat, w_memory))
        for beat, memory in loads:
            write = memory.write_port()
            m.d.comb += [write.addr.eq(beat.payload.index), write.data.eq(beat.payload.data),
                         write.en.eq(beat.valid), beat.ready.eq(1)]
        if w_memory is not None:
            with m.If(self.begin & (self.command == Command.LOAD_W)):
                m.d.sync += self.flags.w_loaded.eq(0)
        with m.If(self.begin & (self.command == Command.LOAD_X)):
            m.d.sync += self.flags.x_loaded.eq(0)

    def _execute(self, m, reply, y_expected, w_last):
        """The "idle" state's work: answer the frame end on `frame`, or start a run."""
        frame = self.frame.payload
        flags = self.flags
        with m.If(frame.status != Status.OK):
            reply(frame.status)
        with m.Else():
            with m.Switch(frame.command):
                if self.loads_weights:
                    with m.Case(Command.LOAD_W):
                        with m.If(~self.whole_groups):
                            reply(Status.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [flags.w_loaded.eq(1),
                                         self.w_beats.eq(frame.length),
                                         w_last.eq(frame.length - 1),
                                         y_expected.eq(self.groups)]
                            reply(Status.OK)
                with m.Case(Command.LOAD_X):
                    m.d.sync += flags.x_loaded.eq(1)
                    reply(Status.OK)
                with m.Case(Command.RUN):
                    # (Without weights, w_loaded is the constant 1.)
                    with m.If(flags.w_loaded & flags.x_loaded):
                        m.next = "run_reset"
                    with m.Else():
                        reply(Status.BAD_STATE)
                with m.Case(Command.READ_Y):
                    with m.If(flags.y_valid):
                        reply(Status.OK)
                    with m.Else():
                        reply(Status.BAD_STATE)
                with m.Case(Command.READ_CYCLES, Command.STATUS, Command.INFO):
                    reply(Status.OK)
                with m.Default():
                    reply(Status.BAD_COMMAND)

    def _run(self, m, reply, y_left, y_last, y_room, counting, timed_out):
        """The "run" state's work: count, store y, and end the run."""
        x_fire = self.x.tvalid & self.x.tready
        y_fire = self.y.tvalid & self.y.tready
        # cycles = last y cycle - first x cycle + 1.
        with m.If(counting):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.Elif(x_fire):
            m.d.sync += [self.cycles.eq(1), counting.eq(1)]
        with m.If(y_fire):
            # y_last and y_room follow y_left and y_count a cycle ahead, so no 16-bit
            # compare lies between the core's y handshake and the reply.
            m.d.sync += [self.y_count.eq(self.y_count + 1), y_left.eq(y_left - 1),
                         y_last.eq(y_left == 2),
                         y_room.eq(self.y_count < self._max_y_beats - 1)]
        with m.If(self.core_error):
            m.d.sync += self.flags.core_error.eq(1)
            reply(Status.CORE_ERROR)
        with m.Elif(y_fire & self.y.tlast):
            m.d.sync += counting.eq(0)
            with m.If(y_last):
                m.d.sync += self.flags.y_valid.eq(1)
                reply(Status.OK)
            with m.Else():
                reply(Status.CORE_ERROR)
        with m.Elif(y_fire & y_last):
            reply(Status.CORE_ERROR)  # the last y beat should have carried tlast
        with m.Elif(timed_out):
            reply(Status.TIMEOUT)

    def elaborate(self, platform):
        m = Module()
        weights = self.loads_weights
        w_memory = None
        if weights:
            m.submodules.w_memory = w_memory = Memory(shape=self._w_width,
                                                      depth=self._max_w_beats, init=[])
        m.submodules.x_memory = x_memory = Memory(shape=self._x_width, depth=self._x_beats,
                                                  init=[])
        m.submodules.y_memory = y_memory = Memory(shape=self._y_width,
                                                  depth=self._max_y_beats, init=[])
        self._load(m, w_memory, x_memory)
        wiring.connect(m, wiring.flipped(self.y_read), y_memory.read_port())

        # The streams to the core come straight from registers (valid, data, last, and y's
        # ready): the core's handshake logic starts at a flip-flop of the link.
        y_ready = Signal(name="y_ready")  # busy, as a register
        x_valid, x_last, x_data = _memory_source(m, "x_source", x_memory, self._x_beats - 1,
                                                 self.core_reset, self.busy, self.x.tready)
        y_write = y_memory.write_port()
        y_room = Signal(name="y_room")  # y_count < max_y_beats
        # Outside a run nothing is offered: a run that ended early leaves its sources
        # mid-frame, and the core is reset before the next one.
        m.d.comb += [
            self.x.tdata.eq(x_data), self.x.tlast.eq(x_last),
            self.x.tvalid.eq(x_valid),
            self.y.tready.eq(y_ready),
            y_write.addr.eq(self.y_count), y_write.data.eq(self.y.tdata),
            y_write.en.eq(self.y.tvalid & self.y.tready & y_room),
        ]

        transfer = (self.x.tvalid & self.x.tready) | (self.y.tvalid & self.y.tready)
        if weights:
            w_last = Signal(16, name="w_last")  # w_beats - 1: the last beat's address
            w_valid, w_tlast, w_data = _memory_source(m, "w_source", w_memory, w_last,
                                                      self.core_reset, self.busy,
                                                      self.w.tready)
            m.d.comb += [self.w.tdata.eq(w_data), self.w.tlast.eq(w_tlast),
                         self.w.tvalid.eq(w_valid)]
            transfer |= self.w.tvalid & self.w.tready
            # The y beats a run expects: the row groups of the stored matrix, or the model's.
            y_expected = Signal(16, name="w_groups")
        else:
            y_expected = C(self._max_y_beats, 16)
            w_last = None
        y_left = Signal(16, name="y_left")  # y beats still expected in this run
        y_last = Signal(name="y_last")  # y_left == 1
        counting = Signal(name="counting")  # between the first x beat and the last y beat
        idle = Signal(range(self._timeout_cycles + 1), name="idle")  # cycles without transfer
        # idle == timeout_cycles, as a register (set the cycle idle reaches it).
        timed_out = Signal(name="timed_out")
        with m.If(self.core_reset | transfer):
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle == self._timeout_cycles - 1)]
        status = Signal(8, name="reply_status")
        m.d.comb += [self.reply.payload.status.eq(status),
                     self.reply.payload.command.eq(self.frame.payload.command)]

        def reply(value):
            m.d.sync += [status.eq(value), y_ready.eq(0)]
            m.next = "reply"

        with m.FSM(name="sequencer"):
            with m.State("idle"):
                with m.If(self.frame.valid):
                    self._execute(m, reply, y_expected, w_last)
            with m.State("reply"):
                m.d.comb += [self.reply.valid.eq(1), self.frame.ready.eq(self.reply.ready)]
                with m.If(self.reply.ready):
                    m.next = "idle"
            with m.State("run_reset"):
                m.d.comb += self.core_reset.eq(1)
                m.d.sync += [self.y_count.eq(0), y_left.eq(y_expected),
                             y_last.eq(y_expected == 1), y_room.eq(1), y_ready.eq(1),
                             self.flags.y_valid.eq(0),
                             self.cycles.eq(0), counting.eq(0), self.flags.core_error.eq(0)]
                m.next = "run"
            with m.State("run"):
                m.d.comb += self.busy.eq(1)
                self._run(m, reply, y_left, y_last, y_room, counting, timed_out)
        return m
