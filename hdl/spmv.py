"""`bbs_spmv`: the bank-balanced sparse matrix-vector core with its AXI4-Stream ports."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from .banks import VectorBanks
from .output_stage import OutputStage
from .pe import PE
from .pipeline import delay

__all__ = ["BBSSpMV"]


class BBSSpMV(wiring.Component):
    """y = W @ x for bank-balanced sparse W, streamed in CSB form (DESIGN §3-5).

    Ports (exact AXI4-Stream names, DESIGN §4; clock ``clk``, synchronous reset ``rst``)
    ------------------------------------------------------------------------------------
    s_axis_x_tdata/tvalid/tready/tlast : x, ``lanes * act_width`` bits a beat, lane-transposed.
    s_axis_w_tdata/tvalid/tready/tlast : w in CSB, ``pes * lanes`` entries a beat.
    m_axis_y_tdata/tvalid/tready/tlast : y, ``pes * out_width`` bits a beat, one per row group.
    error : Out(1), sticky: a ``tlast`` disagreed with the beat count.

    Architecture: every PE has its own :class:`VectorBanks` (one memory per lane, two x
    buffers deep, so the next x loads while the current matrix streams); each w beat gives
    every lane of every PE one slot, whose in-bank index addresses that lane's own memory.
    Products go through the :class:`PE` pipeline and the :class:`OutputStage` into a y FIFO.
    The pipeline never stalls: a row group is only started when the FIFO is sure to have room
    for its result (a credit counter), so back-pressure on y holds w back at a group boundary
    and nothing in flight is lost.

    Throughput: one w beat every cycle with no stall, across rows and matrices.
    Latency: :attr:`latency` cycles from the last w beat of a row group to its y beat.
    """

    # Fixed latencies of the stages around the PE.
    MEMORY_LATENCY = 1  # synchronous read of the vector banks
    FIFO_LATENCY = 2  # SyncFIFOBuffered: a word written at cycle t is readable at t + 2

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a bbsparse Config, not {config!r}")
        self._config = config
        super().__init__(self.signature_for(config))

    @staticmethod
    def signature_for(config: Config) -> wiring.Signature:
        """The core's ports for `config` (also what `bbsparse generate` describes)."""
        c = config
        return wiring.Signature({
            "s_axis_x_tdata": In(c.x_beat_width),
            "s_axis_x_tvalid": In(1),
            "s_axis_x_tready": Out(1),
            "s_axis_x_tlast": In(1),
            "s_axis_w_tdata": In(c.w_beat_width),
            "s_axis_w_tvalid": In(1),
            "s_axis_w_tready": Out(1),
            "s_axis_w_tlast": In(1),
            "m_axis_y_tdata": Out(c.y_beat_width),
            "m_axis_y_tvalid": Out(1),
            "m_axis_y_tready": In(1),
            "m_axis_y_tlast": Out(1),
            "error": Out(1),
        })

    @staticmethod
    def latency_of(config: Config) -> int:
        """Cycles from accepting the last w beat of a row group to its y beat being valid
        (empty y FIFO, y ready)."""
        return (BBSSpMV.MEMORY_LATENCY
                + PE.latency_of(config.lanes, config.tree_levels_per_stage)
                + OutputStage.LATENCY + BBSSpMV.FIFO_LATENCY)

    @staticmethod
    def y_credits_of(config: Config) -> int:
        """Row groups that may be in flight at once: enough to cover the latency, so that
        a group every cycle streams without a bubble while y is ready."""
        return BBSSpMV.latency_of(config) + 2

    @property
    def config(self) -> Config:
        return self._config

    @property
    def latency(self) -> int:
        return self.latency_of(self._config)

    @property
    def y_credits(self) -> int:
        return self.y_credits_of(self._config)

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
        w_beat = data.ArrayLayout(entry, pes * lanes)

        error = Signal()
        m.d.comb += self.error.eq(error)

        # x buffers: `full[b]` says buffer b holds a complete vector. x is written into
        # buffer `wr_buf` while the matrix reads buffer `rd_buf`; a buffer being read is
        # always full and a buffer being written never is, so reads and writes never meet.
        full = Signal(2)
        wr_buf = Signal()
        rd_buf = Signal()
        # Counters get at least one bit: a zero-width signal would come out as `[-1:0]`.
        x_count = Signal(range(max(2, x_beats)))
        x_addr = Signal(range(2 * x_beats))
        x_accept = Signal()
        x_final = x_count == x_beats - 1
        m.d.comb += [
            self.s_axis_x_tready.eq(~Mux(wr_buf, full[1], full[0])),
            x_accept.eq(self.s_axis_x_tvalid & self.s_axis_x_tready),
        ]
        with m.If(x_accept):
            with m.If(self.s_axis_x_tlast != x_final):
                m.d.sync += error.eq(1)
            with m.If(self.s_axis_x_tlast | x_final):
                # The vector ends here even after a misplaced tlast, so that the core
                # keeps pairing frames instead of hanging.
                m.d.sync += [
                    full.bit_select(wr_buf, 1).eq(1),
                    wr_buf.eq(~wr_buf),
                    x_count.eq(0),
                    x_addr.eq(Mux(wr_buf, 0, x_beats)),
                ]
            with m.Else():
                m.d.sync += [x_count.eq(x_count + 1), x_addr.eq(x_addr + 1)]

        # w stream: beat s of a row group is slot `slot` of round `round`; `base` is the
        # address of that round's bank segment in buffer `rd_buf`.
        slot = Signal(range(max(2, c.nnz_per_bank)))
        round_ = Signal(range(max(2, c.rounds)), name="round")
        base = Signal(range(2 * x_beats))
        credits = self.y_credits
        inflight = Signal(range(credits + 1))
        group_start = (slot == 0) & (round_ == 0)
        row_end = (slot == c.nnz_per_bank - 1) & (round_ == c.rounds - 1)
        w_accept = Signal()
        y_pop = Signal()
        w_payload = Signal(w_beat)
        m.d.comb += [
            w_payload.eq(self.s_axis_w_tdata),
            self.s_axis_w_tready.eq(
                Mux(rd_buf, full[1], full[0]) & (~group_start | (inflight < credits))),
            w_accept.eq(self.s_axis_w_tvalid & self.s_axis_w_tready),
            y_pop.eq(self.m_axis_y_tvalid & self.m_axis_y_tready),
        ]
        m.d.sync += inflight.eq(inflight + (w_accept & group_start) - y_pop)
        w_last = self.s_axis_w_tlast
        with m.If(w_accept):
            with m.If(w_last & ~row_end):
                m.d.sync += error.eq(1)
            with m.If(row_end | w_last):
                m.d.sync += [slot.eq(0), round_.eq(0)]
                with m.If(w_last):
                    m.d.sync += [
                        full.bit_select(rd_buf, 1).eq(0),
                        rd_buf.eq(~rd_buf),
                        base.eq(Mux(rd_buf, 0, x_beats)),
                    ]
                with m.Else():
                    m.d.sync += base.eq(Mux(rd_buf, x_beats, 0))
            with m.Elif(slot == c.nnz_per_bank - 1):
                m.d.sync += [slot.eq(0), round_.eq(round_ + 1), base.eq(base + c.bank_size)]
            with m.Else():
                m.d.sync += slot.eq(slot + 1)

        # Beat control, registered to line up with the memory read data.
        beat_valid = delay(m, w_accept, self.MEMORY_LATENCY, "beat_valid")
        beat_first = delay(m, group_start, self.MEMORY_LATENCY, "beat_first")
        beat_last = delay(m, row_end | w_last, self.MEMORY_LATENCY, "beat_last")
        beat_tlast = delay(m, w_last, self.MEMORY_LATENCY, "beat_tlast")

        results = []
        for pe_index in range(pes):
            pe = PE(lanes=lanes, weight_width=c.weight_width, act_width=c.act_width,
                    acc_width=c.acc_width, tree_levels_per_stage=c.tree_levels_per_stage)
            stage = OutputStage(acc_width=c.acc_width, out_width=c.out_width,
                                out_shift=c.out_shift, relu=c.relu)
            banks = VectorBanks(lanes=lanes, width=c.act_width, depth=self.vector_depth)
            m.submodules[f"banks{pe_index}"] = banks
            m.submodules[f"pe{pe_index}"] = pe
            weights = Signal(data.ArrayLayout(c.weight_width, lanes), name=f"pe{pe_index}_weights")
            for lane in range(lanes):
                slot_entry = w_payload[pe_index * lanes + lane]
                m.d.comb += banks.r_addr[lane].eq(base + slot_entry.index)
                m.d.sync += weights[lane].eq(slot_entry.value)
            m.d.comb += [
                banks.w_addr.eq(x_addr),
                banks.w_data.eq(self.s_axis_x_tdata),
                banks.w_en.eq(x_accept),
                banks.r_en.eq(w_accept),
                pe.x.eq(banks.r_data),
                pe.weight.eq(weights),
                pe.valid.eq(beat_valid),
                pe.first.eq(beat_first),
                pe.last.eq(beat_last),
            ]
            m.submodules[f"output_stage{pe_index}"] = stage
            m.d.comb += stage.acc.eq(pe.acc)
            results.append(stage.y)

        # All PEs work in lockstep: the last PE's row-complete strobe stands for all.
        row_valid = delay(m, pe.acc_valid, stage.latency, "row_valid")
        row_tlast = delay(m, beat_tlast, pe.latency + stage.latency, "row_tlast")

        # One entry more than the credits, so a credited result always finds room.
        m.submodules.y_fifo = y_fifo = SyncFIFOBuffered(width=c.y_beat_width + 1, depth=credits + 1)
        m.d.comb += [
            y_fifo.w_data.eq(Cat(*results, row_tlast)),
            y_fifo.w_en.eq(row_valid),
            self.m_axis_y_tdata.eq(y_fifo.r_data[: c.y_beat_width]),
            self.m_axis_y_tlast.eq(y_fifo.r_data[c.y_beat_width]),
            self.m_axis_y_tvalid.eq(y_fifo.r_rdy),
            y_fifo.r_en.eq(self.m_axis_y_tready),
        ]
        return m
