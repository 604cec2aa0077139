"""The column engine: column-bank-balanced weights with the zero activations skipped."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring

from ..golden import cbs as golden
from ..golden.config import Config
from ..golden.formats import CBSFormat
from .output_stage import OutputStage
from .pipeline import delay
from .result_queue import ResultQueue
from .spmv import BBSSpMV

__all__ = ["CBSSpMV"]


def _multiplier(m, platform, a, b, a_width: int, b_width: int, name: str):
    """``a * b`` two clock edges later: the platform's multiplier (``get_multiplier``, as
    the PE asks it, DESIGN §15.3), or operand registers, ``*`` and a product register, which
    ``synth_ice40 -dsp`` packs into one SB_MAC16."""
    product_width = a_width + b_width
    get_multiplier = getattr(platform, "get_multiplier", None)
    mult = get_multiplier(a_width, b_width) if get_multiplier is not None else None
    if mult is not None:
        if getattr(mult, "latency", None) != 2:
            raise ValueError(f"the platform's multiplier must have latency 2, not "
                             f"{getattr(mult, 'latency', None)!r}")
        m.submodules[name] = mult
        m.d.comb += [mult.a.eq(a), mult.b.eq(b)]
        return mult.p[:product_width].as_signed()
    a_operand = Signal(signed(a_width), name=f"{name}_x_operand")
    b_operand = Signal(signed(b_width), name=f"{name}_w_operand")
    product = Signal(signed(product_width), name=f"{name}_product")
    m.d.sync += [a_operand.eq(a), b_operand.eq(b), product.eq(a_operand * b_operand)]
    return product


class CBSSpMV(wiring.Component):
    """y = W @ x, column by column, for a column-bank-balanced W and only the nonzero
    activations (DESIGN §9.4), with the ports of :class:`BBSSpMV`.

    Three stages, each one a few registers and memories:

    - **x front end**: each x beat's nonzero activations are compacted, as the beat is
      accepted, into a list of `lanes` banks (entry ``e`` in bank ``e % lanes`` at address
      ``e // lanes``): a beat with ``k`` nonzeros writes ``k`` consecutive entries, one per
      bank, rotated by the running count. Two lists, so the next x loads while the current
      matrix streams; a list is free again once its matrix's last w beat is accepted.
    - **column engine**: a w frame's header gives the row groups and the column rounds;
      then every w beat is ``M = pes * lanes`` slots of the column of the current list
      entry. The entry is read once per beat (1 cycle) and multiplied by every slot's weight
      (M multipliers, 2 cycles); lane ``m``'s product is added into row bank
      ``round * M + m``, which only lane ``m``'s accumulator memories hold: the scatter is
      banked, conflict-free by construction. Each lane has ``pes`` memories (row ``r`` in
      memory ``r % pes``) so that a row group's ``pes`` rows are read in one cycle. An add
      reads its word one cycle and writes the sum the next, through a read port transparent
      to the write port, so back-to-back updates of one word all count (the scatter unit's
      rule, DESIGN §6.3). Zero-valued slots write nothing.
    - **read-out**: the accumulators are two sets; while the engine fills one, the other
      (the previous matrix's) is read one row group a cycle through the output stages into
      the credit-guarded :class:`ResultQueue` and cleared as it is read.

    Throughput: one w beat a cycle within a matrix; a matrix waits for its x frame, for its
    accumulator set to be read out, and costs ``column_rounds * nnz_per_bank`` beats per
    nonzero activation plus the header. Cycles are :func:`bbsparse.golden.cbs.run_cycles`.
    Latency :attr:`latency`: last w beat of a matrix to its first y beat.
    """

    def __init__(self, config: Config):
        if not isinstance(config, Config) or not isinstance(config.format, CBSFormat):
            raise ValueError(f"config must be a Config with pattern 'cbs', not {config!r}")
        self._config = config
        super().__init__(self.signature_for(config))

    #: The ports of every engine are the BBS core's (DESIGN §4).
    signature_for = staticmethod(BBSSpMV.signature_for)

    @staticmethod
    def latency_of(config: Config) -> int:
        """Cycles from accepting a matrix's last w beat to its first y beat being valid, with
        the read-out idle and the y FIFO empty."""
        return golden.DRAIN + golden.READOUT_LATENCY

    @staticmethod
    def y_credits_of(config: Config) -> int:
        return ResultQueue.credits_for(CBSSpMV.latency_of(config))

    @staticmethod
    def memories_of(config: Config) -> list[tuple[str, int, int, int]]:
        """(role, count, depth, width): the nonzero lists (two x frames' worth), the two
        accumulator sets and the y FIFO's storage."""
        c = config
        groups_per_bank = c.bank_size // c.pes
        return [
            ("vector banks", c.lanes, 2 * c.x_beats, c.act_width),
            ("accumulator banks", 2 * c.pes * c.lanes * c.pes,
             max(2, golden.max_column_rounds(c) * groups_per_bank), c.acc_width),
            ("y FIFO", 1, ResultQueue.memory_words(CBSSpMV.y_credits_of(c)),
             ResultQueue.entry_width(c.y_beat_width)),
        ]

    @property
    def latency(self) -> int:
        return self.latency_of(self._config)

    def elaborate(self, platform):
        c = self._config
        m = Module()
        lanes, pes = c.lanes, c.pes
        col_lanes = pes * lanes  # M
        x_beats = c.x_beats
        n = c.nnz_per_bank
        groups_per_bank = c.bank_size // pes  # G: row groups in one bank
        rounds_max = golden.max_column_rounds(c)
        acc_depth = max(2, rounds_max * groups_per_bank)
        max_groups = golden.max_row_groups(c)
        rg_bits, round_bits = golden.header_bits(c)

        error = Signal()
        m.d.comb += self.error.eq(error)
        errors = []

        # -- x front end: zero-detect and compaction into the nonzero lists -----------------
        x_in = data.View(data.ArrayLayout(signed(c.act_width), lanes), self.s_axis_x.tdata)
        x_count = Signal(range(max(2, x_beats)))
        wr_buf = Signal()
        full = [Signal(name=f"list{b}_full") for b in range(2)]
        nnz = [Signal(range(c.cols + 1), name=f"list{b}_nonzeros") for b in range(2)]
        wr_bank = Signal(range(max(2, lanes)))
        wr_addr = Signal(range(x_beats + 1))
        x_ready = Signal()
        x_accept = Signal()
        m.d.comb += [
            x_ready.eq(~Mux(wr_buf, full[1], full[0])),
            self.s_axis_x.tready.eq(x_ready),
            x_accept.eq(self.s_axis_x.tvalid & x_ready),
        ]
        x_final = x_count == x_beats - 1
        frame_end = Signal()
        m.d.comb += frame_end.eq(x_accept & (x_final | self.s_axis_x.tlast))
        errors.append(x_accept & (x_final != self.s_axis_x.tlast))

        nonzero = [Signal(name=f"x{lane}_nonzero") for lane in range(lanes)]
        m.d.comb += [nonzero[lane].eq(x_in[lane] != 0) for lane in range(lanes)]
        # Entry rank of each nonzero in its beat (the nonzeros of the lanes below it), and the
        # bank it lands in. Each rank and the beat's count are balanced adder trees, not one
        # running sum: this is the x front end's critical path (DESIGN §9.4).
        positions = []
        for lane in range(lanes):
            position = Signal(range(max(2, lanes)), name=f"x{lane}_bank")
            if lane == 0:  # rank 0: the start bank itself
                m.d.comb += position.eq(wr_bank)
            else:
                total = wr_bank + _count(nonzero[:lane])
                m.d.comb += position.eq(Mux(total >= lanes, total - lanes, total))
            positions.append(position)
        beat_nonzeros = Signal(range(lanes + 1))
        m.d.comb += beat_nonzeros.eq(_count(nonzero))
        bank_sum = wr_bank + beat_nonzeros

        list_reads = []
        rd_addr = Signal(range(x_beats + 1))  # list entry of the current column: address
        rd_bank = Signal(range(max(2, lanes)))  # and bank
        mat = Signal()  # list and accumulator set of the matrix being (or next to be) read
        for bank in range(lanes):
            mem = memory.Memory(shape=unsigned(c.act_width), depth=2 * x_beats, init=[])
            m.submodules[f"list_bank{bank}"] = mem
            write = mem.write_port()
            read = mem.read_port()
            hit = [nonzero[lane] & (positions[lane] == bank) for lane in range(lanes)]
            value = 0
            for lane in range(lanes):
                value = value | Mux(hit[lane], x_in[lane].as_unsigned(), 0)
            # Banks below the start bank are reached after wrapping: the next address.
            m.d.comb += [
                write.addr.eq(Mux(wr_buf, x_beats, 0) + wr_addr
                              + ((wr_bank > bank) if bank < lanes - 1 else 0)),
                write.data.eq(value),
                write.en.eq(x_accept & Cat(*hit).any()),
                read.addr.eq(Mux(mat, x_beats, 0) + rd_addr),
                read.en.eq(1),
            ]
            list_reads.append(read.data)

        with m.If(x_accept):
            for b in range(2):
                with m.If(wr_buf == b):
                    m.d.sync += nnz[b].eq(Mux(x_count == 0, 0, nnz[b]) + beat_nonzeros)
            with m.If(frame_end):
                m.d.sync += [x_count.eq(0), wr_bank.eq(0), wr_addr.eq(0), wr_buf.eq(~wr_buf)]
            with m.Else():
                m.d.sync += [
                    x_count.eq(x_count + 1),
                    wr_bank.eq(Mux(bank_sum >= lanes, bank_sum - lanes, bank_sum)),
                    wr_addr.eq(wr_addr + (bank_sum >= lanes)),
                ]

        # -- column engine ----------------------------------------------------------------
        entry = data.StructLayout({"value": signed(c.weight_width),
                                   "index": unsigned(c.index_width)})
        w_in = data.View(data.ArrayLayout(entry, col_lanes),
                         self.s_axis_w.tdata[:col_lanes * c.w_entry_width])
        header_rg = self.s_axis_w.tdata[:rg_bits]
        header_rounds = self.s_axis_w.tdata[rg_bits:rg_bits + round_bits]

        in_matrix = Signal()
        set_free = [Signal(init=1, name=f"acc_set{s}_free") for s in range(2)]
        set_done = [Signal(name=f"acc_set{s}_done") for s in range(2)]
        set_groups = [Signal(range(max(2, max_groups)), name=f"acc_set{s}_groups_m1")
                      for s in range(2)]
        rounds_last = Signal(range(max(2, rounds_max)))
        groups_m1 = Signal(range(max(2, max_groups)))
        slot = Signal(range(max(2, n)))
        round_ = Signal(range(max(2, rounds_max)), name="round")
        round_addr = Signal(range(max(2, acc_depth)))  # round * G
        round_group = Signal(range(max(2, rounds_max * col_lanes * groups_per_bank)))
        cols_left = Signal(range(c.cols + 1))

        w_ready = Signal()
        w_accept = Signal()
        columns = Mux(mat, nnz[1], nnz[0])
        m.d.comb += [
            w_ready.eq(in_matrix | (Mux(mat, full[1] & set_free[1], full[0] & set_free[0]))),
            self.s_axis_w.tready.eq(w_ready),
            w_accept.eq(self.s_axis_w.tvalid & w_ready),
        ]
        header = w_accept & ~in_matrix
        column_beat = w_accept & in_matrix
        column_done = (slot == n - 1) & (round_ == rounds_last)
        last_beat = Mux(in_matrix, column_done & (cols_left == 0), columns == 0)
        matrix_end = Signal()
        m.d.comb += matrix_end.eq(w_accept & (last_beat | self.s_axis_w.tlast))
        # The core counts the frame itself: a misplaced or missing tlast is seen either way,
        # and the matrix ends at whichever comes first.
        errors.append(w_accept & (last_beat != self.s_axis_w.tlast))
        if (1 << rg_bits) > max_groups:
            errors.append(header & (header_rg >= max_groups))
        if (1 << round_bits) > rounds_max:
            errors.append(header & (header_rounds >= rounds_max))

        with m.If(header):
            m.d.sync += [groups_m1.eq(header_rg), rounds_last.eq(header_rounds),
                         cols_left.eq(columns - 1), slot.eq(0), round_.eq(0),
                         round_addr.eq(0), round_group.eq(0), rd_bank.eq(0), rd_addr.eq(0)]
            for s in range(2):
                with m.If(mat == s):
                    m.d.sync += [set_free[s].eq(0), set_groups[s].eq(header_rg)]
        with m.If(column_beat):
            with m.If(slot != n - 1):
                m.d.sync += slot.eq(slot + 1)
            with m.Elif(round_ != rounds_last):
                m.d.sync += [slot.eq(0), round_.eq(round_ + 1),
                             round_addr.eq(round_addr + groups_per_bank),
                             round_group.eq(round_group + col_lanes * groups_per_bank)]
            with m.Else():  # the next column: the next list entry
                m.d.sync += [slot.eq(0), round_.eq(0), round_addr.eq(0), round_group.eq(0),
                             cols_left.eq(cols_left - 1)]
                if lanes == 1:
                    m.d.sync += rd_addr.eq(rd_addr + 1)
                else:
                    with m.If(rd_bank == lanes - 1):
                        m.d.sync += [rd_bank.eq(0), rd_addr.eq(rd_addr + 1)]
                    with m.Else():
                        m.d.sync += rd_bank.eq(rd_bank + 1)
        with m.If(matrix_end):
            m.d.sync += [in_matrix.eq(0), mat.eq(~mat)]
        with m.Elif(header):
            m.d.sync += in_matrix.eq(1)
        for b in range(2):  # a list is written only while empty, released only while full
            with m.If(frame_end & (wr_buf == b)):
                m.d.sync += full[b].eq(1)
            with m.Elif(matrix_end & (mat == b)):
                m.d.sync += full[b].eq(0)

        # Beat stage 1 (registered at acceptance): the slots' weights, addresses and
        # accumulator memory; the list entry is read in the same cycle.
        weight1 = [Signal(signed(c.weight_width), name=f"lane{i}_weight") for i in range(col_lanes)]
        en1 = [Signal(name=f"lane{i}_update") for i in range(col_lanes)]
        addr1 = [Signal(range(acc_depth), name=f"lane{i}_acc_addr") for i in range(col_lanes)]
        sub1 = [Signal(range(max(2, pes)), name=f"lane{i}_acc_sub") for i in range(col_lanes)]
        set1 = Signal()
        list_bank1 = Signal.like(rd_bank)
        index_errors = []
        for i in range(col_lanes):
            value, index = w_in[i].value, w_in[i].index
            if pes == 1:
                group, sub = index, 0
            elif pes & (pes - 1) == 0:
                shift = pes.bit_length() - 1
                group, sub = index >> shift, index[:shift]
            else:
                group, sub = index // pes, index % pes
            m.d.sync += [weight1[i].eq(value), en1[i].eq(column_beat & (value != 0)),
                         addr1[i].eq(round_addr + group), sub1[i].eq(sub)]
            # A nonzero slot past the bank, or in a row group past the matrix's, would add
            # into a word that no read-out clears: refused like a misplaced tlast.
            bad = round_group + i * groups_per_bank + group > groups_m1
            if c.bank_size < 1 << c.index_width:
                bad = bad | (index >= c.bank_size)
            index_errors.append((value != 0) & bad)
        index_error = Signal()
        m.d.sync += [set1.eq(mat), list_bank1.eq(rd_bank),
                     index_error.eq(column_beat & Cat(*index_errors).any())]
        errors.append(index_error)

        x_value = Signal(signed(c.act_width))
        m.d.comb += x_value.eq(_select(list_reads, list_bank1))
        products = [_multiplier(m, platform, x_value, weight1[i], c.act_width, c.weight_width,
                                f"lane{i}_mult") for i in range(col_lanes)]
        # Control beside the products: 2 more cycles (the multiplier).
        en3 = [delay(m, en1[i], 2, f"lane{i}_update_p") for i in range(col_lanes)]
        addr3 = [delay(m, addr1[i], 2, f"lane{i}_acc_addr_p") for i in range(col_lanes)]
        sub3 = [delay(m, sub1[i], 2, f"lane{i}_acc_sub_p") for i in range(col_lanes)]
        set3 = delay(m, set1, 2, "acc_set_p")

        # -- accumulators and read-out ----------------------------------------------------
        m.submodules.result_queue = queue = ResultQueue(width=c.y_beat_width,
                                                        credits=self.y_credits_of(c))
        rs = Signal()  # the set being read out (or next to be)
        ro_gg = Signal(range(max(2, groups_per_bank)))
        ro_lane = Signal(range(max(2, col_lanes)))
        ro_base = Signal(range(max(2, acc_depth)))
        ro_count = Signal(range(max(2, max_groups)))
        ro_read = Signal()
        ro_last = Signal()
        ro_addr = Signal(range(max(2, acc_depth)))
        ro_groups = Mux(rs, set_groups[1], set_groups[0])
        m.d.comb += [
            ro_read.eq(Mux(rs, set_done[1], set_done[0]) & queue.can_start),
            ro_last.eq(ro_count == ro_groups),
            ro_addr.eq(ro_base + ro_gg),
            queue.start.eq(ro_read),
        ]
        with m.If(ro_read):
            with m.If(ro_last):
                m.d.sync += [ro_gg.eq(0), ro_lane.eq(0), ro_base.eq(0), ro_count.eq(0),
                             rs.eq(~rs)]
            with m.Else():
                m.d.sync += ro_count.eq(ro_count + 1)
                with m.If(ro_gg != groups_per_bank - 1):
                    m.d.sync += ro_gg.eq(ro_gg + 1)
                with m.Elif(ro_lane != col_lanes - 1):
                    m.d.sync += [ro_gg.eq(0), ro_lane.eq(ro_lane + 1)]
                with m.Else():
                    m.d.sync += [ro_gg.eq(0), ro_lane.eq(0),
                                 ro_base.eq(ro_base + groups_per_bank)]
        # The matrix's last sum is written DRAIN cycles after its last beat: only then may
        # its set be read (the read port is transparent to that very write).
        end_d = delay(m, matrix_end, golden.DRAIN - 1, "matrix_end")
        end_set_d = delay(m, mat, golden.DRAIN - 1, "matrix_end_set")
        for s in range(2):
            with m.If(ro_read & ro_last & (rs == s)):
                m.d.sync += [set_done[s].eq(0), set_free[s].eq(1)]
            with m.Elif(end_d & (end_set_d == s)):
                m.d.sync += set_done[s].eq(1)

        clear_en = Signal()
        clear_set = Signal()
        clear_lane = Signal.like(ro_lane)
        clear_addr = Signal.like(ro_addr)
        m.d.sync += [clear_en.eq(ro_read), clear_set.eq(rs), clear_lane.eq(ro_lane),
                     clear_addr.eq(ro_addr)]

        # Stage B of the read-modify-write: the sum is written a cycle after the read.
        b_addrs, b_values = [], []
        for i in range(col_lanes):
            b_addr = Signal(range(acc_depth), name=f"lane{i}_b_addr")
            b_value = Signal(signed(c.weight_width + c.act_width), name=f"lane{i}_b_value")
            m.d.sync += [b_addr.eq(addr3[i]), b_value.eq(products[i])]
            b_addrs.append(b_addr)
            b_values.append(b_value)
        acc_reads = {}  # (set, lane, sub) -> read data
        for s in range(2):
            for i in range(col_lanes):
                b_addr, b_value = b_addrs[i], b_values[i]
                for p in range(pes):
                    mem = memory.Memory(shape=unsigned(c.acc_width), depth=acc_depth, init=[])
                    m.submodules[f"acc{s}_lane{i}_sub{p}"] = mem
                    write = mem.write_port()
                    read = mem.read_port(transparent_for=(write,))
                    b_en = Signal(name=f"acc{s}_lane{i}_sub{p}_b_en")
                    m.d.sync += b_en.eq(en3[i] & (sub3[i] == p) & (set3 == s))
                    clearing = clear_en & (clear_set == s) & (clear_lane == i)
                    total = Signal(unsigned(c.acc_width), name=f"acc{s}_lane{i}_sub{p}_sum")
                    m.d.comb += total.eq(read.data + b_value)
                    m.d.comb += [
                        read.addr.eq(Mux(ro_read & (rs == s), ro_addr, addr3[i])),
                        read.en.eq(1),
                        write.addr.eq(Mux(clearing, clear_addr, b_addr)),
                        write.data.eq(Mux(clearing, 0, total)),
                        write.en.eq(clearing | b_en),
                    ]
                    acc_reads[s, i, p] = read.data

        # Read-out data: the row group's pes words, selected by set and lane, registered.
        sel_set = Signal()
        sel_lane = Signal.like(ro_lane)
        m.d.sync += [sel_set.eq(rs), sel_lane.eq(ro_lane)]
        ro_valid2 = delay(m, ro_read, 2, "readout_valid")
        ro_last2 = delay(m, ro_read & ro_last, 2, "readout_last")
        results = []
        for p in range(pes):
            per_set = [_select([acc_reads[s, i, p] for i in range(col_lanes)], sel_lane)
                       for s in range(2)]
            acc = Signal(signed(c.acc_width), name=f"row{p}_acc")
            m.d.sync += acc.eq(Mux(sel_set, per_set[1], per_set[0]))
            stage = OutputStage(acc_width=c.acc_width, out_width=c.out_width,
                                out_shift=c.out_shift, relu=c.relu)
            m.submodules[f"output_stage{p}"] = stage
            m.d.comb += stage.acc.eq(acc)
            results.append(stage.y)
        m.d.comb += [
            queue.w_data.eq(Cat(*results)),
            queue.w_en.eq(delay(m, ro_valid2, OutputStage.LATENCY, "result_valid")),
            queue.w_last.eq(delay(m, ro_last2, OutputStage.LATENCY, "result_last")),
        ]
        wiring.connect(m, queue.y, wiring.flipped(self.m_axis_y))

        with m.If(Cat(*errors).any()):
            m.d.sync += error.eq(1)
        return m


def _count(bits):
    """The number of set bits among `bits` (1-bit values), as a balanced tree of adders."""
    level = list(bits)
    while len(level) > 1:
        level = [level[k] + level[k + 1] if k + 1 < len(level) else level[k]
                 for k in range(0, len(level), 2)]
    return level[0]


def _select(words, index):
    """``words[index]`` as a balanced tree of multiplexers (index bit 0 picks between
    neighbours); an index past the list gives the last word."""
    level = list(words)
    bit = 0
    while len(level) > 1:
        level = [Mux(index[bit], level[k + 1], level[k]) if k + 1 < len(level) else level[k]
                 for k in range(0, len(level), 2)]
        bit += 1
    return level[0]
