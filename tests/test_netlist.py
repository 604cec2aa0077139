"""The bitstream's logic computes what the RTL computes.

Each case synthesizes the core with its family's Yosys command (``synth_ice40 -dsp`` /
``synth_ecp5``, elaborated with the family's platform hooks, as `bbsparse synth` does:
bbsparse.synth.netlist), simulates the netlist under Verilator with the vendor cell models
(bbsparse.tb.netlist) and checks it against the golden model, and cycle for cycle against
the RTL run through the same harness with the same stimulus and stalls. Each case also
checks that its netlist holds the primitives it is meant to cover. The project's own DP16KD
model is checked on its own in every mode Yosys' mapping uses.
"""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, Module, Mux, Signal

from bbsparse.golden import prune, spmv
from bbsparse.golden.config import Config
from bbsparse.hdl.banks import VectorBanks
from bbsparse.hdl.pipeline import copy, delay
from bbsparse.synth.families import ECP5, ICE40, FamilyPlatform
from bbsparse.synth.netlist import core_netlist, synthesize
from bbsparse.tb.ecp5_models import (
    DP16KD_MODES_FILES,
    DP16KD_MODES_OUT_BITS,
    DP16KD_MODES_RANDOM_BITS,
    DP16KD_MODES_RTL,
    DP16KD_MODES_TOP,
)
from bbsparse.tb.harness import Stalls, run_spmv
from bbsparse.tb.netlist import (
    NETLIST_FILE,
    PROJECT_MODELS_FILE,
    cell_types,
    netlist_sources,
    run_lockstep,
    run_netlist_spmv,
    vendor_library,
)

STALLS = Stalls(x_idle=0.25, w_idle=0.3, y_stall=0.4, y_burst=0.01)

# name: (family, --ram policy, configuration, what the netlist must contain)
CASES = {
    # Vector banks and y FIFO in SB_RAM40_4K, one SB_MAC16 per multiplier.
    "ice40-lanes2-pes2": (ICE40, "auto",
                          dict(lanes=2, pes=2, bank_size=4, nnz_per_bank=2, cols=16),
                          {"SB_MAC16", "SB_RAM40_4K"}),
    "ice40-lanes4-shift-relu": (ICE40, "auto",
                                dict(lanes=4, pes=1, bank_size=4, nnz_per_bank=2, cols=32,
                                     out_shift=4, out_width=8, relu=True),
                                {"SB_MAC16", "SB_RAM40_4K"}),
    # Small memories: all LUT RAM (TRELLIS_DPR16X4), no block RAM.
    "ecp5-lutram": (ECP5, "auto", dict(lanes=2, pes=2, bank_size=4, nnz_per_bank=2, cols=16),
                    {"MULT18X18D", "TRELLIS_DPR16X4"}),
    # Vector banks in DP16KD (9-bit mode), y FIFO in LUT RAM (rows of 2 beats: 8 credits,
    # a memory of 7 words; DESIGN §14.3).
    "ecp5-dp16kd": (ECP5, "auto", dict(lanes=2, pes=1, bank_size=64, nnz_per_bank=1,
                                       cols=256, out_shift=3, out_width=12),
                    {"MULT18X18D", "DP16KD", "TRELLIS_DPR16X4"}),
    # --ram block: the y FIFO in DP16KD too (rows of 2 beats: 8 credits), each PE's slice
    # of 20 or 21 bits in the 36-bit (PDPW16KD) mode; every PE's
    # own copies of the broadcasts (KEEP_COPIES in the synthesis script).
    "ecp5-block-ram": (ECP5, "block", dict(lanes=2, pes=2, bank_size=16, nnz_per_bank=1,
                                           cols=64, tree_levels_per_stage=2,
                                           broadcast_registers=1, acc_width=20,
                                           out_width=20),
                       {"MULT18X18D", "DP16KD"}),
}


def random_problem(config: Config, rows: int, vectors: int, seed: int):
    """BBS weights and vectors, the first rows and vector at the extremes of their ranges."""
    rng = np.random.default_rng(seed)
    w_lo, w_hi = -(1 << (config.weight_width - 1)), (1 << (config.weight_width - 1)) - 1
    x_lo, x_hi = -(1 << (config.act_width - 1)), (1 << (config.act_width - 1)) - 1
    dense = rng.integers(w_lo, w_hi + 1, size=(rows, config.cols))
    dense[0], dense[1] = w_lo, w_hi
    W = prune.prune_bbs(dense, config.bank_size, config.nnz_per_bank)
    X = rng.integers(x_lo, x_hi + 1, size=(vectors, config.cols))
    X[0] = x_lo
    return W, X


def check_run(config, netlist, W, X, seed, stalls, tmp_path):
    expected = spmv.spmv(config, W, X)
    rtl = run_spmv(config, W, X, seed=seed, stalls=stalls, workdir=tmp_path)
    gates = run_netlist_spmv(config, netlist, W, X, seed=seed, stalls=stalls,
                             workdir=tmp_path)
    assert np.array_equal(rtl.y, expected), f"seed {seed}: the RTL itself differs from golden"
    wrong = np.argwhere(gates.y != expected)
    assert wrong.size == 0, (
        f"seed {seed}: {len(wrong)} netlist results differ from golden, first (vector, row) "
        f"{tuple(wrong[0])}: netlist {gates.y[tuple(wrong[0])]}, "
        f"golden {expected[tuple(wrong[0])]}")
    assert not gates.report["error"] and gates.report["y_tlast_ok"], f"seed {seed}"
    # Cycle for cycle: the same stall generators see the same ready signals at the same
    # cycles, so every figure the wrapper measures is the RTL's.
    figures, report = gates.report["figures"], rtl.report
    netlist_figures = {
        "cycles": figures["cycles"], "steady_cycles": figures["last_w"] - figures["first_w"] + 1,
        "w_beats": figures["w_beats"], "x_wait_cycles": figures["x_wait"],
        "w_wait_cycles": figures["w_wait"], "y_wait_cycles": figures["y_wait"],
        "simulated_cycles": figures["sim_cycles"]}
    rtl_figures = {key: report[key] for key in netlist_figures}
    assert netlist_figures == rtl_figures, f"seed {seed}: netlist vs RTL cycle figures"
    return report


@pytest.mark.parametrize("name", list(CASES))
def test_netlist_matches_golden_and_rtl_cycles(name, tmp_path):
    family, ram, params, cells = CASES[name]
    config = Config(**params)
    netlist = core_netlist(config, family, ram)
    # The case covers what it says: every multiplier in a DSP block, these memories.
    assert netlist.cells.get(family.dsp_name) == config.multipliers, netlist.cells
    assert cells <= set(netlist.cells), f"{name}: {netlist.cells}"
    if "DP16KD" not in cells:
        assert "DP16KD" not in netlist.cells, netlist.cells
    if ram == "block":
        assert re.search(r"\.DATA_WIDTH_A\(32'd36\)", netlist.text), "no 36-bit DP16KD"

    seed = 100 + len(name)
    W, X = random_problem(config, rows=3 * config.pes + 7, vectors=4, seed=seed)
    report = check_run(config, netlist.text, W, X, seed, STALLS, tmp_path)
    assert report["y_wait_cycles"] > 0  # the stalls happened
    # And at full speed: no stall anywhere, w beats back to back.
    W, X = random_problem(config, rows=2 * config.pes + 1, vectors=3, seed=seed + 1)
    report = check_run(config, netlist.text, W, X, seed + 1, Stalls(), tmp_path)
    assert report["cycles"] == report["ideal_cycles"] + report["pipeline_latency"]


def test_unstructured_engine_netlist(tmp_path):
    """The other engine (crossbar gather) through the same path, on the ECP5."""
    config = Config(pattern="unstructured", lanes=2, pes=2, bank_size=4, cols=32)
    netlist = core_netlist(config, ECP5)
    assert netlist.cells.get("MULT18X18D") == config.multipliers
    rng = np.random.default_rng(21)
    W = rng.integers(-128, 128, size=(9, config.cols)) * (rng.random((9, config.cols)) < 0.3)
    X = rng.integers(-128, 128, size=(3, config.cols))
    check_run(config, netlist.text, W, X, 21, STALLS, tmp_path)


def test_dp16kd_model_in_every_mode_yosys_uses():
    """The project's DP16KD model (Yosys has it as a black box only) in each mode Yosys'
    mapping writes, not only the core's: memories that Yosys maps onto DP16KD blocks in every
    width, write mode and clock polarity, with initial contents, their RTL and their netlist
    side by side on the same random inputs, reads meeting writes of the same word half the
    time."""
    top = f"{DP16KD_MODES_TOP}_netlist"
    netlist = synthesize(DP16KD_MODES_RTL.replace(f"module {DP16KD_MODES_TOP} ",
                                                  f"module {top} "), top, ECP5, "block",
                         files=DP16KD_MODES_FILES)
    settings = set(re.findall(r"\.(DATA_WIDTH_[AB]|WRITEMODE_[AB]|CLK[AB]MUX)\(([^)]*)\)",
                              netlist.text))
    widths = {int(value.split("'d")[1]) for key, value in settings if key[:10] == "DATA_WIDTH"}
    assert widths == {1, 2, 4, 9, 18, 36}, settings
    assert {value for key, value in settings if key[:9] == "WRITEMODE"} == {
        '"NORMAL"', '"READBEFOREWRITE"', '"WRITETHROUGH"'}, settings
    assert ("CLKAMUX", '"INV"') in settings
    assert netlist.cells.get("DP16KD") == 11, netlist.cells
    # Every block starts from contents of its own (INITVAL), parity bits included.
    assert not re.search(r"\.INITVAL_[0-9A-F]{2}\(320'h0+\)", netlist.text)
    for seed in (1, 2):
        assert run_lockstep(DP16KD_MODES_RTL, netlist.text, DP16KD_MODES_TOP,
                            DP16KD_MODES_RANDOM_BITS, DP16KD_MODES_OUT_BITS,
                            files=DP16KD_MODES_FILES, seed=seed) == 20_000


def _banks_under_test(lanes, width, depth):
    """What both sides of the lockstep check share: the random input bits ``r`` (a write
    enable, a write address, each lane's read address, the write data), as (name, bits)."""
    abits = (depth - 1).bit_length()
    return [("enable", 1), ("w_addr", abits), *((f"r_addr{k}", abits) for k in range(lanes)),
            ("w_data", lanes * width)]


def _random_banks_top(lanes, width, depth):
    """:class:`VectorBanks` behind random inputs, reset-less, ports ``clk``, ``r``, ``q``.
    An address past `depth` folds back by `depth`; a write to a word one of the lanes reads
    at the same edge is dropped (the core never makes one: the block's result is
    undefined). ``q``: every lane's ``r_data``."""
    fields = _banks_under_test(lanes, width, depth)
    m = Module()
    m.domains.sync = sync = ClockDomain("sync", reset_less=True)
    m.submodules.banks = banks = VectorBanks(lanes=lanes, width=width, depth=depth)
    r = Signal(sum(bits for _, bits in fields), name="r")
    q = Signal(lanes * width, name="q")
    parts, at = {}, 0
    for name, bits in fields:
        parts[name] = r[at:at + bits]
        at += bits

    def address(bits):
        return Mux(bits >= depth, bits - depth, bits)

    reads = [address(parts[f"r_addr{k}"]) for k in range(lanes)]
    w_addr = address(parts["w_addr"])
    m.d.comb += [banks.w_addr.eq(w_addr), banks.w_data.eq(parts["w_data"]),
                 banks.w_en.eq(parts["enable"] & ~Cat(*(a == w_addr for a in reads)).any()),
                 q.eq(banks.r_data)]
    for lane, read in enumerate(reads):
        m.d.comb += banks.r_addr[lane].eq(read)
    return m, [sync.clk, r, q]


def _registered_memory_reference(top, lanes, width, depth):
    """The same as :func:`_random_banks_top`, written as the plain Verilog of a memory whose
    read is synchronous and whose read data is registered once more (what DP16KD's
    REGMODE "OUTREG" documents)."""
    fields = _banks_under_test(lanes, width, depth)
    abits = (depth - 1).bit_length()
    lines, at = [], 0
    for name, bits in fields:
        lines.append(f"  wire [{bits - 1}:0] {name}_bits = r[{at + bits - 1}:{at}];")
        at += bits
    def fold(name):
        if depth == 1 << abits:
            return f"{name}_bits"
        return f"({name}_bits >= {abits}'d{depth} ? {name}_bits - {abits}'d{depth} : {name}_bits)"

    lines.append(f"  wire [{abits - 1}:0] wa = {fold('w_addr')};")
    clash = " || ".join(f"ra{k} == wa" for k in range(lanes))
    for k in range(lanes):
        lines.append(f"  wire [{abits - 1}:0] ra{k} = {fold(f'r_addr{k}')};")
    lines.append(f"  wire we = enable_bits[0] && !({clash});")
    for k in range(lanes):
        lines += [f"  reg [{width - 1}:0] mem{k} [0:{depth - 1}];",
                  f"  reg [{width - 1}:0] read{k}, out{k};",
                  f"  initial begin read{k} = 0; out{k} = 0;",
                  f"    for (i = 0; i < {depth}; i = i + 1) mem{k}[i] = 0; end",
                  "  always @(posedge clk) begin",
                  f"    if (we) mem{k}[wa] <= w_data_bits[{(k + 1) * width - 1}:{k * width}];",
                  f"    read{k} <= mem{k}[ra{k}];",
                  f"    out{k} <= read{k};",
                  "  end"]
    outs = ", ".join(f"out{k}" for k in reversed(range(lanes)))
    return (f"module {top}(input wire clk, input wire [{at - 1}:0] r, "
            f"output wire [{lanes * width - 1}:0] q);\n  integer i;\n"
            + "\n".join(lines) + f"\n  assign q = {{{outs}}};\nendmodule\n")


@pytest.mark.parametrize("lanes, width, depth, blocks", [
    (2, 8, 256, 1),      # the core's banks: one 9 x 2048 block each
    (1, 8, 4096, 2),     # two 4 x 4096 blocks side by side
    (1, 12, 1500, 2),    # two 9 x 2048 side by side, one of them 3 bits wide
    (1, 9, 3000, 2),     # two 9 x 2048 stacked: a read multiplexer after the registers
    (1, 3, 12000, 3),    # 1 x 16384, three side by side
])
def test_ecp5_block_ram_with_output_register(lanes, width, depth, blocks):
    """The ECP5's answer to ``get_registered_memory`` (DP16KD blocks with REGMODE_B
    "OUTREG", instantiated: Yosys' mapping never sets it) reads what a memory with a
    registered synchronous read reads, cycle for cycle: the vector banks elaborated with the
    ECP5 hooks, synthesized, and simulated with the project's DP16KD model, in lockstep with
    plain Verilog of such a memory, on random writes and reads."""
    top = f"registered_banks_{lanes}_{width}_{depth}"
    design, ports = _random_banks_top(lanes, width, depth)
    hooked = verilog.convert(design, name=f"{top}_netlist", ports=ports, emit_src=False,
                             platform=FamilyPlatform(ECP5))
    assert hooked.count('"OUTREG"') == lanes * blocks
    netlist = synthesize(hooked, f"{top}_netlist", ECP5)
    assert netlist.cells.get("DP16KD") == lanes * blocks, netlist.cells
    assert netlist.text.count('"OUTREG"') == lanes * blocks
    reference = _registered_memory_reference(top, lanes, width, depth)
    random_bits = sum(bits for _, bits in _banks_under_test(lanes, width, depth))
    assert run_lockstep(reference, netlist.text, top, random_bits, lanes * width,
                        cycles=6000) == 6000


@pytest.mark.parametrize("family", [ICE40, ECP5], ids=lambda f: f.name)
@pytest.mark.parametrize("kept", [True, False], ids=["copy", "delay"])
def test_register_copies_survive_synthesis(family, kept):
    """Register duplication (hdl.pipeline.copy): four copies of one 8-bit register stay four
    registers through the family's synthesis (the flow's KEEP_COPIES step); the same four
    made by ``delay``, which are not marked, become one (Yosys merges identical registers),
    so the step is what keeps them."""
    m = Module()
    a = Signal(8)
    copies = [(copy if kept else delay)(m, a, 1, f"copy{n}") for n in range(4)]
    out = Signal(32)
    m.d.comb += out.eq(Cat(*copies))
    top = f"register_copies_{family.name}_{int(kept)}"
    rtl = verilog.convert(m, name=top, ports=[a, out], emit_src=False)
    netlist = synthesize(rtl, top, family)
    assert family.cell_counts(netlist.cells)["ffs"] == (32 if kept else 8), netlist.cells


@pytest.mark.parametrize("family", [ICE40, ECP5], ids=lambda f: f.name)
def test_the_fifo_output_select_stays_a_register_of_its_own(family):
    """CreditFIFO's `b_select` (the wide multiplexer's select) and `b_full` (the control's
    flag) take the same input: Yosys would keep one flip-flop for both. Both marked, both
    stay: the netlist has a flip-flop driving each."""
    from bbsparse.hdl.result_queue import CreditFIFO

    fifo = CreditFIFO(width=4, depth=4)
    rtl = verilog.convert(fifo, name="credit_fifo", emit_src=False)
    netlist = synthesize(rtl, "credit_fifo", family)
    for flag in ("b_full", "b_select"):
        driven = re.search(r"\.Q\(\\?" + flag + r"\s*\)", netlist.text)
        assert driven, f"no flip-flop drives {flag}: {netlist.cells}"


# -- the cell models a netlist gets (no tools run) ---------------------------------------------

NETLIST = """module bbs_spmv(input clk);
  wire a;
  LUT4 #(
    .INIT(16'h8000)
  ) \\u0  (.A(a), .B(a), .C(a), .D(a), .Z(a));
  DP16KD \\mem.0  (.CLKA(clk));
  assign a = 1'h0;
endmodule
"""


def test_cell_types_are_read_from_the_netlist():
    assert cell_types(NETLIST) == {"LUT4", "DP16KD"}


def test_black_boxes_are_replaced_by_the_project_models():
    sources = netlist_sources(NETLIST)
    assert list(sources)[0] == NETLIST_FILE
    vendor = sources["yosys_ecp5_cells_sim.v"]
    assert re.search(r"\bmodule LUT4\b", vendor)
    # Only the cells the netlist uses: no IO buffers, no other primitives.
    assert not re.search(r"\bmodule (TRELLIS_IO|TRELLIS_FF|DP16KD)\b", vendor)
    assert "module DP16KD" in sources[PROJECT_MODELS_FILE]
    assert "module MULT18X18D" not in sources[PROJECT_MODELS_FILE]
    assert "DP16KD" not in vendor_library("ecp5/cells_sim.v").modules


def test_a_cell_without_a_model_is_named():
    with pytest.raises(ValueError, match=r"no simulation model for cell type\(s\) MYSTERY_CELL"):
        netlist_sources(NETLIST.replace("LUT4", "MYSTERY_CELL"))
