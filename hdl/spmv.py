"""`bbs_spmv`: the bank-balanced sparse matrix-vector core with its AXI4-Stream ports."""

from math import isqrt

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..golden.formats import BBSFormat
from .axis import AXIStream
from .banks import VectorBanks
from .mac_array import MACArray
from .pipeline import copy, copy_flag, delay
from .result_queue import ResultQueue
from .xbuffer import XBuffers, write_stage

__all__ = ["BBSSpMV"]


class BBSSpMV(wiring.Component):
    """y = W @ x for bank-balanced sparse W, streamed in CSB form (DESIGN §3-5).

    Ports (clock ``clk``, synchronous reset ``rst``; :class:`~bbsparse.hdl.axis.AXIStream`
    members, flattened to the exact names of DESIGN §4, ``s_axis_x_tdata`` …, in Verilog)
    ------------------------------------------------------------------------------------
    s_axis_x : In(AXIStream)  x, ``lanes * act_width`` bits a beat, lane-transposed.
    s_axis_w : In(AXIStream)  w in CSB, ``pes * lanes`` entries a beat.
    m_axis_y : Out(AXIStream) y, ``pes * out_width`` bits a beat, one per row group.
    error : Out(1), sticky: a ``tlast`` disagreed with the beat count, or a nonzero w
        slot carried an in-bank index ``>= bank_size`` (DESIGN §4.2).

    Architecture: every PE has its own :class:`VectorBanks` (one memory per lane, two x
    buffers deep, so the next x loads while the current matrix streams); each w beat gives
    every lane of every PE one slot, whose in-bank index addresses that lane's own memory.
    :class:`XBuffers` alternates the two x buffers. Products go through the :class:`MACArray`
    (PEs and output stages) into the :class:`ResultQueue`. The pipeline never stalls: a row
    group is only started when the queue is sure to have room for its result (credits), so
    back-pressure on y holds w back at a group boundary and nothing in flight is lost.

    Throughput: one w beat every cycle with no stall, across rows and matrices.
    Latency: :attr:`latency` cycles from the last w beat of a row group to its y beat.
    """

    #: The most PEs whose y FIFO is cut into a slice per PE (see elaborate).
    FIFO_SLICES_MAX = 16

    #: With `broadcast_registers`, the most lanes one copy of a PE's x writes and read base
    #: drives (their vector banks' write enable, write address and read-address adders).
    BROADCAST_LANES = 16

    @staticmethod
    def memory_latency_of(config: Config) -> int:
        """Cycles from accepting a w beat to its activation at the MAC array: the
        `broadcast_registers` (each PE's copy of the read base, the in-bank index delayed
        beside it), the registered read address (round base + in-bank index), then the
        vector banks' read (VectorBanks.latency: a synchronous read and a data register, the
        ECP5 block RAM's own output register there). Only the read is needed for function;
        the registers keep the address adder and the block RAM's clock-to-output time out
        of the paths into the memory and into the multipliers. Every lane always reads: the
        data of a cycle without a beat is never used (the MAC array's `valid` says which
        are), and no enable fans out to every memory."""
        return config.broadcast_registers + 1 + VectorBanks.latency

    def __init__(self, config: Config, *, runtime_shape: bool = False):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a bbsparse Config, not {config!r}")
        if not isinstance(config.format, BBSFormat):
            raise ValueError(f"config must have pattern 'bbs' for the BBS core, not "
                             f"{config.pattern!r}")
        self._config = config
        self._runtime_shape = runtime_shape
        signature = self.signature_for(config)
        if runtime_shape:
            # A model's layers (DESIGN §16) share the core but not the row length: the
            # rounds of the matrix being streamed and the beats of the x frame being loaded
            # come from the layer sequencer. Each must hold from the first beat of its frame
            # to the last; buffers keep their places, sized for `config.cols`.
            signature = wiring.Signature({
                **signature.members,
                "rounds": In(range(1, config.rounds + 1)),
                "x_frame_beats": In(range(1, config.x_beats + 1)),
            })
        super().__init__(signature)

    @staticmethod
    def signature_for(config: Config) -> wiring.Signature:
        """The core's ports for `config` (also what `bbsparse generate` describes)."""
        c = config
        return wiring.Signature({
            "s_axis_x": In(AXIStream(c.x_beat_width)),
            "s_axis_w": In(AXIStream(c.w_beat_width)),
            "m_axis_y": Out(AXIStream(c.y_beat_width)),
            "error": Out(1),
        })

    @staticmethod
    def latency_of(config: Config) -> int:
        """Cycles from accepting the last w beat of a row group to its y beat being valid
        (empty y FIFO, y ready)."""
        return BBSSpMV.memory_latency_of(config) + MACArray.latency_of(config) + ResultQueue.LATENCY

    @classmethod
    def y_fifo_slices_of(cls, config: Config) -> int:
        """The y FIFO's memory in one slice per PE (DESIGN §14.3), up to FIFO_SLICES_MAX
        PEs, beyond that one slice per group of PEs, as few groups of as even a size as keep
        within FIFO_SLICES_MAX (39 PEs: 13 slices of 3). The ECP5-45k fit (9) routed in 2
        minutes with a slice per PE; the 85k fit (39) with one a PE left router1 congested
        for over 30 minutes (2 runs of 2); with one slice for all, its one output select
        crossed the die to every bit's multiplexer (4.7-5.5 ns of routing, 157.0-179.4 MHz
        over 3 seeds)."""
        if config.pes <= cls.FIFO_SLICES_MAX:
            return config.pes
        return -(-config.pes // -(-config.pes // cls.FIFO_SLICES_MAX))

    @staticmethod
    def y_credits_of(config: Config, runtime_shape: bool = False) -> int:
        """Row groups that may be in flight at once: enough to cover the latency, so that
        row groups stream without a bubble while y is ready. Every group takes
        `cycles_per_row` beats, or with `runtime_shape` (the rounds come from the layer
        sequencer) at least `nnz_per_bank`: long rows need few credits, and the y FIFO's
        memory shrinks with them (DESIGN §14.3)."""
        group_beats = config.nnz_per_bank if runtime_shape else config.cycles_per_row
        return ResultQueue.credits_for(BBSSpMV.latency_of(config), group_beats)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def latency(self) -> int:
        return self.latency_of(self._config)

    @property
    def y_credits(self) -> int:
        return self.y_credits_of(self._config, self._runtime_shape)

    @property
    def vector_depth(self) -> int:
        """Words per lane memory: two x buffers of x_beats each."""
        return 2 * self._config.x_beats

    def elaborate(self, platform):
        c = self._config
        m = Module()
        lanes, pes = c.lanes, c.pes
        x_beats = c.x_beats
        entry = data.StructLayout({"value": c.weight_width, "index": c.index_width})
        w_payload = Signal(data.ArrayLayout(entry, pes * lanes))
        m.d.comb += w_payload.eq(self.s_axis_w.tdata)

        m.submodules.x_buffers = xbuf = XBuffers(beats=x_beats,
                                                 runtime_frames=self._runtime_shape)
        # The broadcast tree's levels (below): a trunk register with 2 or more broadcast
        # registers, a copy per group of PEs with 3 or more, which the beat's flags take too.
        broadcast = c.broadcast_registers
        trunk = 1 if broadcast >= 2 else 0
        branch = 1 if broadcast >= 3 else 0
        groups = isqrt(pes - 1) + 1 if branch else 1  # ceil(sqrt(pes))
        # Each slice of the y FIFO is written with a valid of its own.
        slices = self.y_fifo_slices_of(c)
        m.submodules.mac_array = macs = MACArray(c, valid_copies=slices,
                                                 pe_flags=bool(branch))
        m.submodules.result_queue = queue = ResultQueue(width=c.y_beat_width,
                                                        credits=self.y_credits, slices=slices)

        # w stream: beat s of a row group is slot `slot` of round `round`; `base` is the
        # address of that round's bank segment in buffer `rd_buf`.
        slot = Signal(range(max(2, c.nnz_per_bank)))
        round_ = Signal(range(max(2, c.rounds)), name="round")
        base = Signal(range(2 * x_beats))
        # Registered flags, computed with the counters' next state, so that `tready` is one
        # gate from registers instead of comparators on the counters.
        group_start = Signal(init=1, name="group_start")
        row_end_reg = Signal(init=int(c.cycles_per_row == 1), name="row_end")
        if self._runtime_shape:
            m.d.comb += xbuf.frame_beats.eq(self.x_frame_beats)
            last_round = Signal(range(max(2, c.rounds)))
            m.d.comb += last_round.eq(self.rounds - 1)
            # The rounds of the next matrix appear only after its predecessor's last beat,
            # so whether a group's first beat also ends the row (one round of one slot) is
            # read from `rounds` itself on that beat.
            if c.nnz_per_bank == 1:
                row_end = Mux(group_start, self.rounds == 1, row_end_reg)
            else:
                row_end = row_end_reg
            one_beat_rows = (self.rounds == 1) if c.nnz_per_bank == 1 else 0
        else:
            last_round = c.rounds - 1
            row_end = row_end_reg
            one_beat_rows = int(c.cycles_per_row == 1)
        w_last = self.s_axis_w.tlast
        w_accept = Signal()
        m.d.comb += [
            xbuf.x_valid.eq(self.s_axis_x.tvalid),
            xbuf.x_last.eq(self.s_axis_x.tlast),
            self.s_axis_x.tready.eq(xbuf.x_ready),
            self.s_axis_w.tready.eq(xbuf.rd_full & (~group_start | queue.can_start)),
            w_accept.eq(self.s_axis_w.tvalid & self.s_axis_w.tready),
            # w_accept & group_start, written from the registers it comes from (tready at a
            # group's start is rd_full & can_start), so that no handshake logic is shared
            # in front of the credit counter.
            queue.start.eq(self.s_axis_w.tvalid & xbuf.rd_full & group_start & queue.can_start),
            xbuf.switch.eq(w_accept & w_last),
            # The last read of a matrix reaches the memory a cycle after its beat is accepted
            # (registered address), and x is written a cycle after its beat is accepted
            # (write_stage): the buffer can be freed at once, and the next-but-one x starts
            # loading in the cycle of that last read (XBuffers' timing contract).
            xbuf.release.eq(w_accept & w_last),
        ]
        x_write_addr, x_write_data, x_write_en = write_stage(m, xbuf, self.s_axis_x.tdata)
        error = Signal()
        m.d.comb += self.error.eq(error)
        # An in-bank index past the bank on a nonzero slot would read the next bank's
        # activation: refused like a misplaced tlast. Only a bank_size that is not a power of
        # two leaves index values past it; otherwise there is nothing to check (and no
        # logic). Every check is registered before the sticky flag (no comparator and
        # handshake logic in front of one register), so `error` rises two cycles after the
        # beat.
        stream_error = Signal()
        m.d.sync += stream_error.eq(xbuf.tlast_error | (w_accept & w_last & ~row_end))
        if c.bank_size < 1 << c.index_width:
            index_error = Signal()
            past_bank = [(w_payload[i].value != 0) & (w_payload[i].index >= c.bank_size)
                         for i in range(pes * lanes)]
            m.d.sync += index_error.eq(w_accept & Cat(*past_bank).any())
            stream_error = stream_error | index_error
        with m.If(stream_error):
            m.d.sync += error.eq(1)
        with m.If(w_accept):
            with m.If(row_end | w_last):
                # A misplaced tlast still ends the group (and the matrix) where it stands.
                m.d.sync += [slot.eq(0), round_.eq(0), group_start.eq(1),
                             row_end_reg.eq(one_beat_rows)]
                with m.If(w_last):
                    m.d.sync += base.eq(Mux(xbuf.rd_buf, 0, x_beats))
                with m.Else():
                    m.d.sync += base.eq(Mux(xbuf.rd_buf, x_beats, 0))
            with m.Elif(slot == c.nnz_per_bank - 1):
                m.d.sync += [slot.eq(0), round_.eq(round_ + 1), base.eq(base + c.bank_size),
                             group_start.eq(0),
                             row_end_reg.eq(int(c.nnz_per_bank == 1) & (round_ + 1 == last_round))]
            with m.Else():
                m.d.sync += [slot.eq(slot + 1), group_start.eq(0),
                             row_end_reg.eq((slot + 1 == c.nnz_per_bank - 1)
                                            & (round_ == last_round))]

        # Every lane of every PE reads its own memory: address = round base + in-bank index.
        # With `broadcast_registers`, each PE takes the x writes and the round base through
        # registers of its own (copies synthesis keeps apart, placed near the PE's banks),
        # and the in-bank index waits beside them: writes and reads reach the memories
        # equally later, so XBuffers' timing contract holds unchanged. The write enable's
        # copy has no reset, so nothing but its source's register drives it
        # (pipeline.copy_flag says why): after a reset it may still carry out the write
        # of a beat accepted before it, to the address that beat was bound for, which no
        # read reaches before the next x fills that buffer again. With 2 or more registers
        # the first is one for every PE and the copies follow it (a tree): the source,
        # written under the w handshake, then feeds one register and stays beside the
        # control, instead of being pulled among the PEs by its fan-out (the ECP5-85k fit:
        # `base`'s enable from the w stream's tvalid, 6.2 ns across the die). With 3 or
        # more, a second level: a copy for each of ceil(sqrt(pes)) groups of PEs, so that
        # no register reaches every PE over the die (the 85k fit: the shared x write data
        # 5.2 ns from a PE's copy).
        memory_latency = self.memory_latency_of(c)
        names = ("base", "x_write_addr", "x_write_data", "x_write_en")
        sources = (base, x_write_addr, x_write_data, x_write_en)
        shared = {name: delay(m, signal, trunk, f"{name}_trunk", reset_less=True)
                  for name, signal in zip(names, sources, strict=True)}
        branches = {(name, group): copy(m, shared[name], branch, f"{name}_group{group}",
                                        reset_less=True)
                    for name in names for group in range(groups)}
        # A PE of more than BROADCAST_LANES lanes takes its copies per group of that many
        # lanes, each with vector banks of its own: one copy of the write enable, address
        # and read base drives at most that many banks (the ECP5-25k's 64-lane mix: the
        # write enable decoded once for 64 lanes' LUT RAM, 3.3 ns of routing to the
        # farthest). The write data is each lane's own, split, not copied.
        per_group = lanes if not broadcast else min(lanes, self.BROADCAST_LANES)
        width = c.act_width
        for pe_index in range(pes):
            # lutram_banks > 0 places every bank explicitly: its last ones in LUT RAM, the
            # others in block RAM (DESIGN §2.1); 0 leaves them to Yosys' costs.
            lutram = c.lutram_lanes_of(pe_index)
            placement = (("block",) * (lanes - lutram) + ("lutram",) * lutram
                         if c.lutram_banks else None)
            group = pe_index * groups // pes
            lane_banks = []  # per lane: (its VectorBanks, its lane there, their read base)
            for first in range(0, lanes, per_group):
                last = min(lanes, first + per_group)
                suffix = f"_lanes{first}" if per_group < lanes else ""
                banks = VectorBanks(lanes=last - first, width=width, depth=self.vector_depth,
                                    placement=placement and placement[first:last])
                m.submodules[f"banks{pe_index}{suffix}"] = banks
                sources = {name: branches[name, group] for name in names}
                sources["x_write_data"] = sources["x_write_data"][first * width:last * width]
                bank_base, w_addr, w_data, w_en = (
                    copy(m, sources[name], broadcast - trunk - branch,
                         f"pe{pe_index}{suffix}_{name}", reset_less=True) for name in names)
                m.d.comb += [banks.w_addr.eq(w_addr), banks.w_data.eq(w_data),
                             banks.w_en.eq(w_en)]
                lane_banks += [(banks, lane - first, bank_base) for lane in range(first, last)]
            for lane, (banks, bank_lane, pe_base) in enumerate(lane_banks):
                i = pe_index * lanes + lane
                # Addresses and data: no reset (only `valid` has one, DESIGN §14).
                r_addr = Signal.like(banks.r_addr[bank_lane],
                                     name=f"pe{pe_index}_lane{lane}_r_addr", reset_less=True)
                index = delay(m, w_payload[i].index, broadcast, f"pe{pe_index}_lane{lane}_index",
                              reset_less=True)
                m.d.sync += r_addr.eq(pe_base + index)
                m.d.comb += [
                    banks.r_addr[bank_lane].eq(r_addr),
                    macs.x[i].eq(banks.r_data[bank_lane]),
                    # The weight travels beside its activation.
                    macs.weight[i].eq(delay(m, w_payload[i].value, memory_latency,
                                            f"pe{pe_index}_lane{lane}_weight",
                                            reset_less=True)),
                ]

        # The beat's flags. With the broadcast tree's groups (3 or more broadcast
        # registers), each group of PEs takes them through its last two registers of its own,
        # the valid's clearing on a reset (pipeline.copy_flag), so no register reaches every
        # PE over the die (the ECP5-85k fit: the one valid register to a PE 39 away, 5.2 ns).
        # `first` and `last` count only beside `valid`: no reset.
        pre = memory_latency - 2 if branch else memory_latency
        valid = delay(m, w_accept, pre, "beat_valid")
        first = delay(m, group_start, pre, "beat_first", reset_less=True)
        last = delay(m, row_end | w_last, pre, "beat_last", reset_less=True)
        if branch:
            per_group = [(copy_flag(m, valid, 2, f"beat_valid_group{group}"),
                          copy(m, first, 2, f"beat_first_group{group}", reset_less=True),
                          copy(m, last, 2, f"beat_last_group{group}", reset_less=True))
                         for group in range(groups)]
            for pe_index in range(pes):
                flags = per_group[pe_index * groups // pes]
                m.d.comb += [macs.valid[pe_index].eq(flags[0]),
                             macs.first[pe_index].eq(flags[1]),
                             macs.last[pe_index].eq(flags[2])]
        else:
            m.d.comb += [macs.valid.eq(valid), macs.first.eq(first), macs.last.eq(last)]
        m.d.comb += macs.tlast.eq(delay(m, w_last, memory_latency, "beat_tlast",
                                        reset_less=True))
        queue.connect(m, macs, self)
        return m
