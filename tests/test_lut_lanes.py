"""Lanes on LUT multipliers (`lut_multipliers`) and vector banks placed in LUT RAM or block
RAM (`lutram_banks`), DESIGN §2.1, §12.2, §12.8: the multiplier exact against Python's
product, the configuration rules, the fit check's accounting, the --fit search, and the
ECP5 netlist (no MULT18X18D for a LUT lane) against the golden model. The core with LUT
lanes under Verilator is in tests/rtl_configs.py ("lut-lanes")."""

import itertools
import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from bbsparse.golden.config import Config, ConfigError
from bbsparse.hdl.lut_multiplier import LUTMultiplier
from bbsparse.hdl.mac_array import MACArray
from bbsparse.hdl.result_queue import ResultQueue
from bbsparse.hdl.spmv import BBSSpMV
from bbsparse.hdl.unstructured import UnstructuredSpMV
from bbsparse.synth.families import ECP5
from bbsparse.synth.flow import fit_search
from bbsparse.synth.netlist import core_netlist
from bbsparse.synth.targets import TARGETS, FitError, fit_check, require_fit

from .test_netlist import STALLS, check_run, random_problem

ECP5_25K, ECP5_85K, UP5K = TARGETS["ecp5-25k"], TARGETS["ecp5-85k"], TARGETS["ice40-up5k"]


def products(a_width, b_width, pairs, latency):
    """Run `pairs` through a LUTMultiplier one a cycle; the (a, b, p) it produced."""
    dut = LUTMultiplier(a_width, b_width, latency=latency)
    seen = []

    async def bench(ctx):
        sent = list(pairs) + [(0, 0)] * latency
        for k, (a, b) in enumerate(sent):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            if k + 1 >= latency:
                seen.append((*sent[k + 1 - latency], ctx.get(dut.p)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen[:len(pairs)]


def signed_range(width):
    return range(-(1 << (width - 1)), 1 << (width - 1))


@pytest.mark.parametrize("a_width, b_width, latency", [
    (8, 8, LUTMultiplier.DEFAULT_LATENCY),  # the default core's widths: all 65536 pairs
    (7, 6, 2), (6, 7, 3), (5, 5, 5), (1, 1, 2), (1, 6, 2), (6, 1, 4), (3, 2, 2), (2, 3, 3),
])
def test_lut_multiplier_is_exact_for_every_pair(a_width, b_width, latency):
    pairs = list(itertools.product(signed_range(a_width), signed_range(b_width)))
    wrong = [(a, b, p) for a, b, p in products(a_width, b_width, pairs, latency) if p != a * b]
    assert not wrong, f"{len(wrong)} wrong products, first {wrong[:3]}"


@pytest.mark.parametrize("a_width, b_width", [(18, 18), (16, 9), (9, 16), (13, 11), (24, 3)])
def test_lut_multiplier_wide_operands_extremes_and_random(a_width, b_width):
    rng = np.random.default_rng(a_width * 100 + b_width)
    lo_a, hi_a = -(1 << (a_width - 1)), (1 << (a_width - 1)) - 1
    lo_b, hi_b = -(1 << (b_width - 1)), (1 << (b_width - 1)) - 1
    edges = list(itertools.product((lo_a, lo_a + 1, -1, 0, 1, hi_a),
                                   (lo_b, lo_b + 1, -1, 0, 1, hi_b)))
    randoms = list(zip(rng.integers(lo_a, hi_a + 1, 800).tolist(),
                       rng.integers(lo_b, hi_b + 1, 800).tolist(), strict=True))
    for a, b, p in products(a_width, b_width, edges + randoms, LUTMultiplier.DEFAULT_LATENCY):
        assert p == a * b, (a, b, p)


def test_lut_multiplier_rejects_a_latency_below_two():
    with pytest.raises(ValueError, match="latency must be an integer of at least 2"):
        LUTMultiplier(8, 8, latency=1)


def test_lut_multiplier_estimate():
    # 8 x 8: 4 Booth digits of 9 bits (2 LUT4 each), 52 adder bits; nextpnr placed the
    # measured one in 121 logic cells.
    assert LUTMultiplier.luts_of(8, 8) == 124
    assert LUTMultiplier.luts_of(16, 16) > 3 * LUTMultiplier.luts_of(8, 8)


# -- the configuration --------------------------------------------------------------------


def test_keys_and_their_rules():
    c = Config(lanes=4, pes=3, lut_multipliers=6, lutram_banks=5)
    assert c.dsp_multipliers == 6
    assert [c.lut_lanes_of(p) for p in range(3)] == [0, 2, 4]
    assert [c.lutram_lanes_of(p) for p in range(3)] == [0, 1, 4]
    with pytest.raises(ConfigError, match=r"^lut_multipliers must not be negative, not -1$"):
        Config(lut_multipliers=-1)
    with pytest.raises(ConfigError, match=r"lutram_banks must not exceed the vector banks "
                                          r"\(lanes x pes = 16\), not 17"):
        Config(lutram_banks=17)
    with pytest.raises(ConfigError, match="lutram_banks must be 0 for pattern 'unstructured'"):
        Config(pattern="unstructured", lanes=4, bank_size=4, cols=32, lutram_banks=1)
    assert Config(pattern="unstructured", lanes=4, bank_size=4, cols=32,
                  lut_multipliers=3).lut_multipliers == 3
    with pytest.raises(ConfigError, match="lut_multipliers must be an integer"):
        Config(lut_multipliers=True)


@pytest.mark.parametrize("key", ["product_registers", "operand_registers"])
def test_pipeline_registers_rules_and_latency(key):
    plain = Config()
    for extra in (1, 4):
        c = Config(**{key: extra})
        assert MACArray.latency_of(c) - MACArray.latency_of(plain) == extra
        lut = Config(lut_multipliers=1, **{key: extra})
        # A LUT multiplier's pipeline ends in fabric registers: they count as product
        # registers (2 + product_registers against its latency, the larger).
        grown = extra if key == "operand_registers" else \
            max(0, 2 + extra - LUTMultiplier.DEFAULT_LATENCY)
        assert MACArray.latency_of(lut) - MACArray.latency_of(Config(lut_multipliers=1)) \
            == grown
    with pytest.raises(ConfigError, match=rf"^{key} must be from 0 to 4, not 5$"):
        Config(**{key: 5})
    with pytest.raises(ConfigError, match=rf"^{key} must be from 0 to 4, not -1$"):
        Config(**{key: -1})
    with pytest.raises(ConfigError, match=f"{key} must be 0 for pattern 'cbs'"):
        Config(pattern="cbs", **{key: 1})
    assert getattr(Config(pattern="unstructured", lanes=4, bank_size=4, cols=32,
                          **{key: 2}), key) == 2
    if key == "product_registers":
        for extra in range(5):
            assert MACArray.multiplier_latency_of(Config(lut_multipliers=1, **{key: extra})) \
                == max(LUTMultiplier.DEFAULT_LATENCY, 2 + extra)


def test_mixed_product_registers_only_in_a_mixed_pe():
    """Only a PE that mixes hard and LUT multipliers takes the extra product registers; the
    MAC array's latency is its slowest PE's."""
    # Default core: 8 lanes x 2 PEs. 4 LUT multipliers: PE 1 mixes, PE 0 does not.
    mixed = Config(lut_multipliers=4, mixed_product_registers=2)
    plain = Config(lut_multipliers=4)
    assert [MACArray.pe_multiplier_latency_of(mixed, pe) for pe in range(2)] == \
        [LUTMultiplier.DEFAULT_LATENCY, LUTMultiplier.DEFAULT_LATENCY + 2]
    assert MACArray.latency_of(mixed) - MACArray.latency_of(plain) == 2
    # No PE mixes (all DSP; PE 1 all LUT): nothing changes.
    for lut in (0, 8, 16):
        assert MACArray.latency_of(Config(lut_multipliers=lut, mixed_product_registers=3)) \
            == MACArray.latency_of(Config(lut_multipliers=lut))
    with pytest.raises(ConfigError, match=r"^mixed_product_registers must be from 0 to 4, "
                                          r"not 5$"):
        Config(mixed_product_registers=5)
    with pytest.raises(ConfigError, match="mixed_product_registers must be 0 for pattern "
                                          "'cbs'"):
        Config(pattern="cbs", mixed_product_registers=1)


def test_broadcast_registers_rules_and_latency():
    """Each broadcast register is one more memory cycle of the BBS core (DESIGN §14.1), and
    only the BBS core takes them."""
    plain = Config()
    for extra in (1, 4):
        c = Config(broadcast_registers=extra)
        assert BBSSpMV.latency_of(c) - BBSSpMV.latency_of(plain) == extra
        assert BBSSpMV.memory_latency_of(c) - BBSSpMV.memory_latency_of(plain) == extra
        assert MACArray.latency_of(c) == MACArray.latency_of(plain)
    for bad in (5, -1):
        with pytest.raises(ConfigError, match=rf"^broadcast_registers must be from 0 to 4, "
                                              rf"not {bad}$"):
            Config(broadcast_registers=bad)
    for pattern in ("unstructured", "cbs"):
        with pytest.raises(ConfigError, match=f"broadcast_registers must be 0 for pattern "
                                              f"'{pattern}'"):
            Config(pattern=pattern, lanes=4, bank_size=4, cols=32, broadcast_registers=1)


def test_result_registers_rules_and_latency():
    """Each result register is one more cycle of the MAC array, between its output stage
    and the y FIFO (DESIGN §2.1), for both engines that share it; the credits cover it."""
    for pattern, latency_of in (("bbs", BBSSpMV.latency_of),
                                ("unstructured", UnstructuredSpMV.latency_of)):
        plain = Config(pattern=pattern, lanes=4, bank_size=4, cols=32)
        for extra in (1, 4):
            c = Config(**{**plain.to_dict(), "result_registers": extra})
            assert MACArray.latency_of(c) - MACArray.latency_of(plain) == extra
            assert latency_of(c) - latency_of(plain) == extra
    deep = Config(result_registers=4)
    assert BBSSpMV.y_credits_of(deep) == ResultQueue.credits_for(BBSSpMV.latency_of(deep),
                                                                  deep.cycles_per_row)
    assert BBSSpMV.y_credits_of(deep) >= BBSSpMV.y_credits_of(Config())
    for bad in (5, -1):
        with pytest.raises(ConfigError, match=rf"^result_registers must be from 0 to 4, "
                                              rf"not {bad}$"):
            Config(result_registers=bad)
    with pytest.raises(ConfigError, match="result_registers must be 0 for pattern 'cbs'"):
        Config(pattern="cbs", lanes=4, bank_size=4, cols=32, result_registers=1)


@pytest.mark.parametrize("lanes, broadcast, groups", [
    (40, 1, (0, 16, 32)), (40, 2, (0, 16, 32)), (16, 1, ()), (40, 0, ())])
def test_broadcast_copies_drive_at_most_sixteen_lanes(lanes, broadcast, groups):
    """With broadcast registers, a PE of more than BBSSpMV.BROADCAST_LANES lanes takes its
    write enable (and address, read base) through one copy per group of 16 lanes, each
    group with banks of its own; 16 lanes or no register: one for the PE."""
    from amaranth.back import verilog

    config = Config(lanes=lanes, pes=2, bank_size=2, nnz_per_bank=1, cols=2 * lanes,
                    broadcast_registers=broadcast)
    text = verilog.convert(BBSSpMV(config), name="core", emit_src=False)
    for pe in range(2):
        copies = set(re.findall(rf"\bpe{pe}_lanes(\d+)_x_write_en_d\d+\b", text))
        assert copies == {str(g) for g in groups}, copies
        assert (f"pe{pe}_x_write_en_d1" in text) == (broadcast > 0 and not groups)
        banks = set(re.findall(rf"\bbanks{pe}(_lanes\d+)?\b", text))
        assert banks == ({f"_lanes{g}" for g in groups} if groups else {""}), banks


def test_every_pe_runs_at_the_lut_multiplier_latency():
    plain, lut = Config(), Config(lut_multipliers=1)
    assert MACArray.multiplier_latency_of(plain) == 2
    assert MACArray.latency_of(lut) - MACArray.latency_of(plain) == \
        LUTMultiplier.DEFAULT_LATENCY - 2


# -- the fit check ------------------------------------------------------------------------


def test_dsps_are_counted_for_dsp_multipliers_only():
    # 8 x 5 = 40 multipliers on the 25k's 28 DSP blocks: refused, unless 12 are LUT lanes.
    with pytest.raises(FitError, match=r"40 multipliers \(lanes x pes\) need 40 MULT18X18D"):
        require_fit(ECP5_25K, Config(lanes=8, pes=5))
    report = require_fit(ECP5_25K, Config(lanes=8, pes=5, lut_multipliers=12))
    assert (report.dsps, report.lut_multipliers) == (28, 12)
    assert report.logic_luts["lut_multipliers"] == 12 * LUTMultiplier.luts_of(8, 8)
    assert report.to_dict()["dsp_multipliers"] == 28
    with pytest.raises(FitError, match=r"29 DSP multipliers \(lanes x pes - lut_multipliers "
                                       r"11\) need 29 MULT18X18D"):
        require_fit(ECP5_25K, Config(lanes=8, pes=5, lut_multipliers=11))


def test_too_many_luts_are_refused():
    config = Config(lanes=64, pes=4, bank_size=8, lut_multipliers=256)
    with pytest.raises(FitError, match=r"the logic needs about \d+ LUT4s \(estimate: lut "
                                       r"multipliers 31744, .*the LFE5U-25F has 24288"):
        require_fit(ECP5_25K, config)


def test_lutram_banks_split_the_vector_banks():
    # 8 x 8 banks of 256 x 8: each one DP16KD by Yosys' costs; with lutram_banks = 10 the
    # last 10 are LUT RAM (32 units each) and the other 54 block RAM.
    auto = fit_check(ECP5_85K, Config(lanes=8, pes=8))
    assert auto.brams == 64
    split = fit_check(ECP5_85K, Config(lanes=8, pes=8, lutram_banks=10))
    roles = {m.role: (m.count, m.kind, m.units_each) for m in split.memories}
    assert roles["vector banks (block)"] == (54, "block", 1)
    assert roles["vector banks (lutram)"] == (10, "lutram", 32)
    assert split.brams == 54 and split.lutram_units == auto.lutram_units + 320
    # 128-word banks go to LUT RAM by Yosys' costs; a split puts the others in block RAM.
    small = fit_check(ECP5_85K, Config(lanes=16, pes=2, lutram_banks=16))
    assert small.brams == 16
    with pytest.raises(FitError, match="the iCE40UP5K has no LUT RAM"):
        fit_check(UP5K, Config(lanes=4, pes=1, lutram_banks=1))
    with pytest.raises(FitError, match="it needs --ram auto, not --ram block"):
        fit_check(ECP5_85K, Config(lutram_banks=1), "block")


def test_fit_search_fills_the_dsps_then_adds_lut_lanes():
    best = fit_search(ECP5_85K, Config(), multipliers="mix")[0]
    config = best["_config"]
    # Every DSP block, then LUT lanes: enough multipliers for 100 GOPS at 180 MHz.
    assert best["dsps"] == ECP5_85K.dsps
    assert config.lut_multipliers == config.multipliers - ECP5_85K.dsps > 0
    assert 2 * config.multipliers * 0.180 >= 100
    assert best["lane_efficiency"] == 1.0
    # Within the 85k's own LUT budget (55 %), beyond the default half, which holds less.
    assert 0.5 * ECP5_85K.luts < best["luts_estimate"] <= 0.55 * ECP5_85K.luts
    half = fit_search(ECP5_85K, Config(), multipliers="mix", lut_budget=0.5)[0]
    assert half["luts_estimate"] <= 0.5 * ECP5_85K.luts
    assert half["multipliers"] < best["multipliers"]
    assert best["gops_per_dsp_at_goal"] == pytest.approx(best["peak_gops_at_goal"] / 156,
                                                         abs=1e-3)
    assert not fit_check(ECP5_85K, config).problems()
    # DSP blocks only: the search as before.
    dsp = fit_search(ECP5_85K, Config(), multipliers="dsp")[0]
    assert (dsp["lanes"], dsp["pes"], dsp["lut_multipliers"]) == (4, 39, 0)


def test_fit_search_splits_the_banks_when_block_ram_runs_out():
    # 8 lanes and a budget of LUTs that keeps 256-word banks: the 25k's 56 DP16KD hold 56 of
    # them, the rest go to LUT RAM.
    candidates = fit_search(ECP5_25K, Config(), limit=400, multipliers="mix")
    split = [c for c in candidates if c["lanes"] == 8 and c["lutram_banks"]]
    assert split, "no 8-lane candidate with banks in LUT RAM"
    for c in split:
        assert c["brams"] <= ECP5_25K.bram_blocks
        assert c["multipliers"] - c["lutram_banks"] <= ECP5_25K.bram_blocks


# -- the netlist --------------------------------------------------------------------------


def test_ecp5_netlist_of_lut_lanes_matches_golden(tmp_path):
    """A LUT lane has no MULT18X18D; banks in LUT RAM and block RAM as placed; the netlist
    computes what the golden model does, cycle for cycle with the RTL."""
    config = Config(lanes=4, pes=2, bank_size=4, nnz_per_bank=2, cols=64, weight_width=7,
                    act_width=8, lut_multipliers=5, lutram_banks=3)
    netlist = core_netlist(config, ECP5)
    cells = netlist.cells
    assert cells.get("MULT18X18D") == config.dsp_multipliers == 3, cells
    # Banks of 32 words x 8 bits: LUT RAM by Yosys' costs; placed: 5 in DP16KD, 3 in LUT
    # RAM, as the fit check predicts.
    predicted = fit_check(TARGETS["ecp5-25k"], config)
    assert cells.get("DP16KD") == predicted.brams == 5, cells
    assert cells.get("TRELLIS_DPR16X4") == predicted.lutram_units, cells
    seed = 77
    W, X = random_problem(config, rows=3 * config.pes + 7, vectors=4, seed=seed)
    report = check_run(config, netlist.text, W, X, seed, STALLS, tmp_path)
    assert report["y_wait_cycles"] > 0
