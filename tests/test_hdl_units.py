"""Amaranth-simulator tests of the core's building blocks (no Verilator needed)."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module, Shape
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from bbsparse.golden.arith import output_stage, wrap
from bbsparse.golden.config import Config
from bbsparse.hdl.adder_tree import AdderTree
from bbsparse.hdl.banks import VectorBanks
from bbsparse.hdl.mac_array import MACArray
from bbsparse.hdl.output_stage import OutputStage
from bbsparse.hdl.pe import PE
from bbsparse.hdl.pipeline import COPY_ATTRIBUTE
from bbsparse.hdl.result_queue import CreditFIFO, ResultQueue


def run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)
    sim.add_testbench(testbench)
    sim.run()


# -- construction ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(acc_width=0, out_width=1), "acc_width must be a positive integer, not 0"),
    (dict(acc_width=8, out_width=9), "out_width must not exceed acc_width (8), not 9"),
    (dict(acc_width=8, out_width=8, out_shift=8), "out_shift must be in 0..acc_width-1 (7), not 8"),
    (dict(acc_width=8, out_width=8, relu=1), "relu must be a boolean, not 1"),
])
def test_output_stage_rejects(kwargs, message):
    with pytest.raises(ValueError) as info:
        OutputStage(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=0, weight_width=8, act_width=8, acc_width=20),
     "lanes must be a positive integer, not 0"),
    (dict(lanes=4, weight_width=8, act_width=8, acc_width=15),
     "acc_width must hold one product (at least 16), not 15"),
    (dict(lanes=4, weight_width=8, act_width=8, acc_width=20, operand_registers=-1),
     "operand_registers must be a non-negative integer, not -1"),
])
def test_pe_rejects(kwargs, message):
    with pytest.raises(ValueError) as info:
        PE(**kwargs)
    assert str(info.value) == message


def test_banks_and_tree_reject():
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        VectorBanks(lanes=2, width=8, depth=0)
    with pytest.raises(ValueError, match="levels_per_stage must be a positive integer, not 0"):
        AdderTree(count=4, width=8, levels_per_stage=0)
    with pytest.raises(ValueError, match="^depth must be an integer of at least 3, not 2$"):
        CreditFIFO(width=8, depth=2)
    with pytest.raises(ValueError, match=r"^credits must be at least 2 \(the FIFO's"):
        ResultQueue(width=8, credits=1)
    with pytest.raises(ValueError, match=r"^slices must not exceed the FIFO's 9 bits, not 10$"):
        ResultQueue(width=8, credits=4, slices=10)


# -- output stage ------------------------------------------------------------------------

OUTPUT_CASES = [
    dict(acc_width=8, out_width=8, out_shift=0, relu=False),
    dict(acc_width=8, out_width=4, out_shift=1, relu=False),
    dict(acc_width=10, out_width=6, out_shift=3, relu=True),
    dict(acc_width=12, out_width=12, out_shift=11, relu=False),
    dict(acc_width=9, out_width=3, out_shift=2, relu=True),
]


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_output_stage_matches_golden(case):
    # weight/act widths 1 so that any acc_width >= 2 is a valid configuration.
    cfg = Config(weight_width=1, act_width=1, bank_size=1, cols=1, **case)
    dut = OutputStage(**case)
    lo, hi = -(1 << (case["acc_width"] - 1)), (1 << (case["acc_width"] - 1)) - 1
    rng = np.random.default_rng(7)
    # Every edge: both ends, zero, and the exact halves around zero and the ends.
    edges = [lo, lo + 1, hi, hi - 1, 0, 1, -1]
    if case["out_shift"]:
        half = 1 << (case["out_shift"] - 1)
        edges += [half, -half, half - 1, -half - 1, 3 * half, -3 * half]
    values = [v for v in edges if lo <= v <= hi] + [int(v) for v in rng.integers(lo, hi + 1, 200)]
    seen = []

    async def testbench(ctx):
        for value in values + [0] * dut.latency:
            ctx.set(dut.acc, value)
            await ctx.tick()
            seen.append(ctx.get(dut.y))

    run(dut, testbench)
    got = seen[dut.latency - 1: dut.latency - 1 + len(values)]
    expected = [output_stage(v, cfg) for v in values]
    assert got == expected


# -- adder tree ----------------------------------------------------------------------------

@pytest.mark.parametrize("count, levels_per_stage",
                         [(1, 1), (2, 1), (5, 1), (8, 2), (16, 3), (3, 5)])
def test_adder_tree_sums_exactly(count, levels_per_stage):
    width = 6
    dut = AdderTree(count=count, width=width, levels_per_stage=levels_per_stage)
    rng = np.random.default_rng(count)
    sets = rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=(40, count))
    sets[0] = -(1 << (width - 1))  # the most negative total must not overflow
    sets[1] = (1 << (width - 1)) - 1
    seen = []

    async def testbench(ctx):
        for terms in list(sets) + [np.zeros(count, int)] * (dut.latency + 1):
            for i, term in enumerate(terms):
                ctx.set(dut.terms[i], int(term))
            if dut.latency == 0:  # a single term: a wire, no clock domain at all
                seen.append(ctx.get(dut.total))
            else:
                await ctx.tick()
                seen.append(ctx.get(dut.total))

    run(dut, testbench)
    offset = max(0, dut.latency - 1)
    assert seen[offset: offset + len(sets)] == [int(s) for s in sets.sum(axis=1)]


# -- PE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes, acc_width, operand_registers",
                         [(1, 9, 0), (4, 18, 1), (3, 10, 2), (2, 12, 0)])
def test_pe_accumulates_rows(lanes, acc_width, operand_registers):
    """Rows of 1, 2 and 3 beats, back to back with bubbles whose `first` / `last` are
    random; the 10-bit case wraps; operand registers delay the result by as many
    cycles."""
    weight_width, act_width = 5, 4
    dut = PE(lanes=lanes, weight_width=weight_width, act_width=act_width, acc_width=acc_width,
             operand_registers=operand_registers)
    assert dut.latency == PE.latency_of(lanes, 1) + operand_registers
    rng = np.random.default_rng(lanes)
    beats = []  # (x, w, first, last) or None for a bubble
    expected = []
    for row_length in [1, 2, 3, 3, 1, 2] * 3:
        total = 0
        for k in range(row_length):
            x = rng.integers(-8, 8, lanes)
            w = rng.integers(-16, 16, lanes)
            total += int(np.dot(x, w))
            beats.append((x, w, k == 0, k == row_length - 1))
            if rng.random() < 0.3:
                beats.append(None)
        expected.append(wrap(total, acc_width))
    results = []

    async def testbench(ctx):
        for beat in beats + [None] * (dut.latency + 2):
            if beat is None:
                ctx.set(dut.valid, 0)
                ctx.set(dut.first, int(rng.integers(2)))
                ctx.set(dut.last, int(rng.integers(2)))
            else:
                x, w, first, last = beat
                for lane in range(lanes):
                    ctx.set(dut.x[lane], int(x[lane]))
                    ctx.set(dut.weight[lane], int(w[lane]))
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(first))
                ctx.set(dut.last, int(last))
            await ctx.tick()
            if ctx.get(dut.acc_valid):
                results.append(ctx.get(dut.acc))

    run(dut, testbench)
    assert results == expected


# -- vector banks -------------------------------------------------------------------------

def test_banks_each_lane_reads_its_own_memory():
    lanes, depth = 4, 12
    dut = VectorBanks(lanes=lanes, width=8, depth=depth)
    rng = np.random.default_rng(3)
    contents = rng.integers(0, 256, size=(depth, lanes))
    reads = rng.integers(0, depth, size=(30, lanes))
    got = []

    async def testbench(ctx):
        ctx.set(dut.w_en, 1)
        for addr in range(depth):
            ctx.set(dut.w_addr, addr)
            for lane in range(lanes):
                ctx.set(dut.w_data[lane], int(contents[addr, lane]))
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        for addrs in list(reads) + [reads[0]] * dut.latency:
            for lane in range(lanes):
                ctx.set(dut.r_addr[lane], int(addrs[lane]))
            await ctx.tick()
            got.append([ctx.get(dut.r_data[lane]) for lane in range(lanes)])

    run(dut, testbench)
    assert dut.latency == 2  # a synchronous read and a data register
    expected = [[int(contents[a, lane]) for lane, a in enumerate(addrs)] for addrs in reads]
    # After the edge that takes the addresses of read k, r_data shows read k - 1.
    assert got[dut.latency - 1:dut.latency - 1 + len(reads)] == expected


# -- ResultQueue -----------------------------------------------------------------------------


def test_credits_cover_a_groups_whole_round_trip():
    """A group holds its credit for its beats, the latency and the credit loop (3 cycles):
    groups of one beat need latency + 3 credits, long groups as few as 2 (DESIGN §14.3)."""
    assert ResultQueue.credits_for(13) == ResultQueue.credits_for(13, 1) == 16
    assert ResultQueue.credits_for(13, 2) == 9      # 2 + 13 + 2 = 17 cycles, a group every 2
    assert ResultQueue.credits_for(16, 16) == 3     # 16 + 16 + 2 = 34 cycles
    assert ResultQueue.credits_for(16, 32) == 2
    assert ResultQueue.credits_for(1, 100) == 2     # never fewer than the queue takes
    with pytest.raises(ValueError, match="group_beats"):
        ResultQueue.credits_for(13, 0)


def test_bbs_credits_follow_the_shortest_row():
    """The BBS core's credits come from its row length; a model core's rows (runtime shape)
    may be as short as nnz_per_bank beats."""
    from bbsparse.hdl.spmv import BBSSpMV

    config = Config(lanes=4, pes=2, bank_size=8, nnz_per_bank=2, cols=128)  # 4 rounds
    latency = BBSSpMV.latency_of(config)
    assert BBSSpMV.y_credits_of(config) == ResultQueue.credits_for(latency, 8)
    assert BBSSpMV.y_credits_of(config, runtime_shape=True) == \
        ResultQueue.credits_for(latency, 2)
    fixed, runtime = BBSSpMV(config), BBSSpMV(config, runtime_shape=True)
    fixed._MustUse__silence = runtime._MustUse__silence = True  # only asked for a figure
    assert fixed.y_credits < runtime.y_credits

@pytest.mark.parametrize("lut_multipliers, result_registers", [(0, 0), (4, 0), (4, 2)])
def test_mac_array_valid_copies_equal_y_valid_through_resets(lut_multipliers,
                                                             result_registers):
    """Each of the MAC array's copies of `y_valid` (one per y FIFO slice), from registers of
    its own, equals `y_valid` every cycle, under random beats and resets; also when the PEs
    differ in latency (a PE mixing hard and LUT multipliers with extra product registers)
    and with result registers."""
    config = Config(pes=3, lut_multipliers=lut_multipliers,
                    mixed_product_registers=2 if lut_multipliers else 0,
                    result_registers=result_registers)
    dut = MACArray(config, valid_copies=3)
    m = Module()
    m.domains.sync = domain = ClockDomain()
    m.submodules.dut = dut
    rng = np.random.default_rng(lut_multipliers + result_registers)
    seen = []

    async def testbench(ctx):
        for _ in range(300):
            ctx.set(domain.rst, rng.random() < 0.03)
            valid = rng.random() < 0.7
            ctx.set(dut.valid, valid)
            ctx.set(dut.first, valid and rng.random() < 0.5)
            ctx.set(dut.last, valid and rng.random() < 0.5)
            await ctx.tick()
            seen.append((ctx.get(dut.y_valid), ctx.get(dut.y_valid_copies)))

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(testbench)
    sim.run()
    assert sum(valid for valid, _ in seen) > 30
    assert all(copies == (0b111 if valid else 0) for valid, copies in seen), seen
    copies = {sig.name for stmts in Fragment.get(dut, None).statements.values()
              for st in stmts for sig in st._lhs_signals() if COPY_ATTRIBUTE in sig.attrs}
    assert {f"row_valid_copy{k}_d1" for k in range(3)} <= copies


def test_a_sliced_y_queue_rejects_a_mac_array_without_valid_copies():
    queue = ResultQueue(width=8, credits=4, slices=2)
    with pytest.raises(ValueError, match=r"^a y queue of 2 slices needs a MAC array with "
                                         r"valid_copies=2$"):
        queue.connect(Module(), MACArray(Config()), None)


def test_y_fifo_slices_per_pe_then_per_group_of_pes():
    """A slice per PE up to FIFO_SLICES_MAX PEs; beyond, as few even groups of PEs as keep
    within it (the ECP5-85k fit's 39 PEs: 13 slices of 3)."""
    from bbsparse.hdl.spmv import BBSSpMV

    assert BBSSpMV.FIFO_SLICES_MAX == 16
    found = {pes: BBSSpMV.y_fifo_slices_of(Config(pes=pes, lanes=1, bank_size=4, cols=8))
             for pes in (1, 9, 16, 17, 32, 33, 39, 48, 49, 100)}
    assert found == {1: 1, 9: 9, 16: 16, 17: 9, 32: 16, 33: 11, 39: 13, 48: 16, 49: 13,
                     100: 15}


@pytest.mark.parametrize("pes", [1, 5, 17])
def test_the_fit_counts_the_y_fifo_memories_the_core_builds(pes):
    """The engine's memory list (what the FPGA fit check maps) names the y FIFO's memories
    the BBS core elaborates: one per slice, of that slice's width and depth (17 PEs: 9
    slices of about two PEs' bits)."""
    from bbsparse.hdl.engines import engine_of
    from bbsparse.hdl.spmv import BBSSpMV

    config = Config(pes=pes, cols=64)  # rows of one beat: a y FIFO memory of 15 words
    needs = [(n.depth, n.width) for n in engine_of(config).memories(config)
             for _ in range(n.count) if n.role == "y FIFO"]
    fifo = Fragment.get(BBSSpMV(config), None).find_subfragment("result_queue") \
        .find_subfragment("fifo")
    slices = BBSSpMV.y_fifo_slices_of(config)
    assert slices == {1: 1, 5: 5, 17: 9}[pes]
    memories = [fifo.find_subfragment("storage" if pes == 1 else f"storage{k}").origins[0]
                for k in range(slices)]
    assert all(isinstance(memory, Memory) for memory in memories)
    built = [(memory.depth, Shape.cast(memory.shape).width) for memory in memories]
    assert sorted(needs) == sorted(built)


@pytest.mark.parametrize("slices", [1, 3])
def test_result_queue_slices_keep_order_and_credits(slices):
    """Groups start whenever the queue allows (a random pipeline of 3 cycles writes each
    result), y is ready at random: every result leaves y once, in order, with its tlast,
    the credits never let the FIFO overflow, and the memory's slices (each addressed by
    pointers of its own, marked as copies) act as one memory."""
    width, credits, delay_cycles = 10, 4, 3
    dut = ResultQueue(width=width, credits=credits, slices=slices)
    rng = np.random.default_rng(slices)
    sent, got = [], []

    async def testbench(ctx):
        pipeline = [None] * delay_cycles
        for _ in range(400):
            start = bool(ctx.get(dut.can_start)) and rng.random() < 0.7
            ctx.set(dut.start, start)
            result = pipeline.pop(0)
            pipeline.append((int(rng.integers(0, 1 << width)), int(rng.integers(0, 2)))
                            if start else None)
            ctx.set(dut.w_en, (1 << slices) - 1 if result is not None else 0)  # each slice's
            if result is not None:
                ctx.set(dut.w_data, result[0])
                ctx.set(dut.w_last, result[1])
                sent.append(result)
            ready = rng.random() < 0.5
            ctx.set(dut.y.tready, ready)
            if ready and ctx.get(dut.y.tvalid):
                got.append((ctx.get(dut.y.tdata), ctx.get(dut.y.tlast)))
            await ctx.tick()

    run(dut, testbench)
    assert len(got) > 100
    assert got == sent[:len(got)]
    fifo = Fragment.get(dut, None).find_subfragment("fifo")
    assert fifo.origins[0].slices == slices
    memories = [fifo.find_subfragment("storage" if slices == 1 else f"storage{k}")
                for k in range(slices)]
    assert sum(Shape.cast(mem.origins[0].shape).width for mem in memories) == width + 1
    copies = {sig.name: sig for stmts in fifo.statements.values() for st in stmts
              for sig in st._lhs_signals() if COPY_ATTRIBUTE in sig.attrs}
    # One slice: the two flags of the output select. Several: every control register of
    # every slice, each slice's enables formed from its own state, and its reset's first
    # register.
    expected = {"b_full", "b_select"} if slices == 1 else {
        f"{name}{k}" for name in CreditFIFO.CONTROL_REGISTERS for k in range(slices)} | {
        f"reset{k}_d1" for k in range(slices)}
    assert set(copies) == expected


def test_a_sliced_y_queue_is_empty_after_a_reset():
    """A FIFO of several slices, each taking the reset through registers of its own: words
    written before a reset never leave y, the queue gives its credits back, and words
    written after it (not in the RESET_LATENCY cycles after it) leave in order."""
    slices, credits = 3, 4
    dut = ResultQueue(width=10, credits=credits, slices=slices)
    m = Module()
    m.domains.sync = domain = ClockDomain()
    m.submodules.dut = dut
    got = []

    async def tick(ctx):  # a cycle, taking y's transfer of it
        if ctx.get(dut.y.tvalid) and ctx.get(dut.y.tready):
            got.append(ctx.get(dut.y.tdata))
        await ctx.tick()

    async def write(ctx, value):
        ctx.set(dut.start, 1)
        await tick(ctx)
        ctx.set(dut.start, 0)
        ctx.set(dut.w_en, (1 << slices) - 1)
        ctx.set(dut.w_data, value)
        await tick(ctx)
        ctx.set(dut.w_en, 0)

    async def testbench(ctx):
        ctx.set(dut.y.tready, 0)
        for value in (1, 2, 3):
            await write(ctx, value)
        await ctx.tick().repeat(2)
        assert ctx.get(dut.y.tvalid) and ctx.get(dut.y.tdata) == 1
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)
        await ctx.tick().repeat(CreditFIFO.RESET_LATENCY)
        assert not ctx.get(dut.y.tvalid) and ctx.get(dut.can_start)
        ctx.set(dut.y.tready, 1)
        for value in (7, 8):
            await write(ctx, value)
        for _ in range(8):
            await tick(ctx)

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(testbench)
    sim.run()
    assert got == [7, 8]
