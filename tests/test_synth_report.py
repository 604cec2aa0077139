"""Reading nextpnr's and Yosys' results into report.json (synth/flow.py), on recorded files.

tests/data holds the nextpnr ``--report`` JSON and the Yosys ``stat -json`` of two real runs
(8 lanes x 1 PE on the UP5K, 8 lanes x 2 PEs on the ECP5-25k, before any pipelining of the
memory path), so the parsing is checked without running a tool.
"""

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bbsparse.golden.config import Config
from bbsparse.synth.flow import (
    FlowError,
    _print_summary,
    build_report,
    check_netlist_fits,
    classify_cell,
    parse_nextpnr_report,
    parse_yosys_stat,
)
from bbsparse.synth.table import main as table_main
from bbsparse.synth.targets import TARGETS, fit_check
from bbsparse.synth.tools import run_step

DATA = Path(__file__).parent / "data"
RUNS = {"ice40-up5k": Config(lanes=8, pes=1), "ecp5-25k": Config()}


def recorded(kind, target):
    return json.loads((DATA / f"{kind}_{target}.json").read_text())


def test_nextpnr_report_ice40():
    pnr = parse_nextpnr_report(recorded("nextpnr_report", "ice40-up5k"), TARGETS["ice40-up5k"])
    assert pnr["fmax"] == {"clock": "clk$SB_IO_IN_$glb_clk", "achieved_mhz": 48.19,
                           "constraint_mhz": 50.0, "met": False}
    assert pnr["dsps"] == {"used": 8, "available": 8}
    assert pnr["brams"] == {"used": 10, "available": 30}
    assert pnr["logic"] == {"used": 1099, "available": 5280}
    assert pnr["lutram"] is None and pnr["ffs"] is None  # no such bels on the iCE40
    path = pnr["critical_path"]
    # The register-to-register path, not the pin-to-register ones listed beside it.
    assert path["from"] == {"cell": "core.round_SB_DFFESR_Q_3_D_SB_LUT4_O_LC", "port": "O",
                            "block": "core control"}
    assert path["to"]["cell"] == "core.banks0.r_addr_SB_DFFESR_Q_1_D_SB_LUT4_O_LC"
    assert path["to"]["block"] == "vector banks"
    assert path["levels"] == 6
    assert path["delay_ns"] == pytest.approx(path["logic_ns"] + path["routing_ns"], abs=0.002)
    assert path["delay_ns"] == pytest.approx(1000 / 48.1858, abs=0.05)
    assert "core.round[0]" in path["nets"]


def test_nextpnr_report_ecp5():
    pnr = parse_nextpnr_report(recorded("nextpnr_report", "ecp5-25k"), TARGETS["ecp5-25k"])
    assert pnr["fmax"]["achieved_mhz"] == 115.89 and pnr["fmax"]["constraint_mhz"] == 150.0
    assert not pnr["fmax"]["met"]
    assert pnr["dsps"] == {"used": 16, "available": 28}
    assert pnr["brams"] == {"used": 16, "available": 56}
    assert pnr["lutram"] == {"used": 12, "available": 3036}
    assert pnr["logic"] == {"used": 1180, "available": 24288}
    assert pnr["ffs"] == {"used": 1600, "available": 24288}
    path = pnr["critical_path"]
    # The block RAM's clock-to-output time dominates: the vector memory limits the ECP5.
    assert path["from"]["block"] == "vector banks" and path["to"]["block"] == "PE"
    assert path["from"]["port"] == "DOB6" and path["levels"] == 1
    assert path["logic_ns"] > 5.5


def test_nextpnr_report_without_a_clock_is_an_error():
    with pytest.raises(FlowError, match="no clock"):
        parse_nextpnr_report({"fmax": {}, "utilization": {}}, TARGETS["ecp5-25k"])


@pytest.mark.parametrize("target, figures", [
    ("ice40-up5k", {"dsps": 8, "brams": 10, "lutram_units": 0, "luts": 406, "ffs": 975}),
    ("ecp5-25k", {"dsps": 16, "brams": 16, "lutram_units": 12, "luts": 512, "ffs": 1600}),
])
def test_yosys_stat(target, figures):
    cells = parse_yosys_stat(recorded("yosys_stat", target), TARGETS[target])
    assert {key: cells[key] for key in figures} == figures
    assert "$scopeinfo" not in cells["cells"]


@pytest.mark.parametrize("target", ["ice40-up5k", "ecp5-85k"])
def test_a_netlist_beyond_the_device_stops_the_flow_naming_each_cell_kind(target):
    """After Yosys, before nextpnr: every kind of cell beyond the device's, in one error."""
    t = TARGETS[target]
    cells = parse_yosys_stat(recorded("yosys_stat", target.replace("85k", "25k")), t)
    check_netlist_fits(t, cells)  # the recorded run fits
    check_netlist_fits(t, {**cells, "ffs": t.ffs, "luts": t.luts})  # full is not over
    with pytest.raises(FlowError, match=rf"^Yosys made {t.ffs + 1} flip-flops; the "
                                        rf"{t.device} has {t.ffs}$"):
        check_netlist_fits(t, {**cells, "ffs": t.ffs + 1})
    with pytest.raises(FlowError, match=rf"^Yosys made {t.dsps + 2} {t.dsp_name} DSP blocks; "
                                        rf"the {t.device} has {t.dsps}; {2 * t.luts} LUT4s; "
                                        rf"the {t.device} has {t.luts}$"):
        check_netlist_fits(t, {**cells, "dsps": t.dsps + 2, "luts": 2 * t.luts})
    with pytest.raises(FlowError, match=rf"{t.bram_blocks + 1} {t.bram.name} blocks"):
        check_netlist_fits(t, {**cells, "brams": t.bram_blocks + 1})
    with pytest.raises(FlowError, match=rf"^Yosys made {t.lutram_units + 1} 16x4 LUT-RAM "
                                        rf"units"):
        check_netlist_fits(t, {**cells, "lutram_units": t.lutram_units + 1})


def make_report(target_name, **yosys_cells):
    """The report of the recorded run of `target_name`; `yosys_cells` replace figures of
    its Yosys cell counts (``dsps``, ``brams``, ``lutram_units``)."""
    target = TARGETS[target_name]
    config = RUNS[target_name]
    cells = parse_yosys_stat(recorded("yosys_stat", target_name), target)
    cells.update(yosys_cells)
    pnr = parse_nextpnr_report(recorded("nextpnr_report", target_name), target)
    top = SimpleNamespace(input_bits=157, output_bits=28)
    steps = {"amaranth": {"seconds": 0.5}, "yosys": {"seconds": 4.7},
             "nextpnr": {"seconds": 7.6}, "pack": {"seconds": 0.2}}
    return build_report(target, config, top, fit_check(target, config), cells, pnr, steps,
                        target.freq_mhz, 1, 13.0)


def test_report_ice40():
    report = make_report("ice40-up5k")
    assert report["resources"]["dsps"] == {"used": 8, "available": 8, "percent": 100.0}
    assert report["resources"]["brams"]["used"] == 10
    r = report["resources"]
    assert r["lut4"] == {"used": 406, "available": 5280, "percent": 7.7, "counted_by": "yosys"}
    assert r["logic_cells"] == {"used": 1099, "available": 5280, "percent": 20.8,
                                "counted_by": "nextpnr", "cell": "ICESTORM_LC"}
    assert r["ffs"] == {"used": 975, "available": 5280, "percent": 18.5, "counted_by": "yosys"}
    # The LUT4s in use: a logic cell may hold a flip-flop only, so the iCE40's are Yosys'.
    assert r["luts"] == {"used": 406, "available": 5280, "percent": 7.7, "counted_by": "yosys"}
    assert list(r) == ["luts", "lut4", "logic_cells", "ffs", "dsps", "brams"]
    assert report["dsp_check"] == {"multipliers": 8, "lanes": 8, "pes": 1, "expected": 8,
                                   "rule": "1 SB_MAC16 per multiplier", "yosys": 8,
                                   "placed": 8, "ok": True}
    # The recorded run's core kept its y FIFO in 2 blocks (credits for rows of one beat,
    # before they followed the row's length, DESIGN §14.3): today's 8 x 1 core has 8 vector
    # banks and a one-word FIFO in flip-flops, and the check names the difference.
    assert report["memory_check"] == {"predicted_brams": 8, "yosys_brams": 10,
                                      "predicted_lutram_units": 0, "yosys_lutram_units": 0,
                                      "ok": False}
    assert make_report("ice40-up5k", brams=8)["memory_check"]["ok"]
    assert report["fmax"]["achieved_mhz"] == 48.19
    assert report["parameters"]["lanes"] == 8
    assert set(report["steps"]) == {"amaranth", "yosys", "nextpnr", "pack"}
    json.dumps(report)  # serialisable as it stands


def test_report_ecp5_and_a_failed_dsp_check():
    report = make_report("ecp5-25k")
    assert report["dsp_check"]["ok"]
    # The recorded run's y FIFO took 12 LUT-RAM units (see test_report_ice40).
    assert report["resources"]["lutram_units"]["used"] == 12
    assert not report["memory_check"]["ok"]
    assert make_report("ecp5-25k", lutram_units=0)["memory_check"]["ok"]
    r = report["resources"]
    assert r["lut4"] == {"used": 512, "available": 24288, "percent": 2.1, "counted_by": "yosys"}
    assert r["logic_cells"] == {"used": 1180, "available": 24288, "percent": 4.9,
                                "counted_by": "nextpnr", "cell": "TRELLIS_COMB"}
    assert r["ffs"] == {"used": 1600, "available": 24288, "percent": 6.6, "counted_by": "yosys"}
    # The LUT4s in use: Yosys' LUT4 count leaves out the carry and LUT-RAM LUTs, so the
    # ECP5's are nextpnr's (one LUT4 per TRELLIS_COMB).
    assert r["luts"] == {"used": 1180, "available": 24288, "percent": 4.9,
                         "counted_by": "nextpnr"}
    assert list(r) == ["luts", "lut4", "logic_cells", "ffs", "dsps", "brams", "lutram_units"]
    # Had Yosys made fewer DSP blocks than multipliers, the check says so.
    bad = make_report("ecp5-25k", dsps=8)
    assert not bad["dsp_check"]["ok"]
    assert bad["dsp_check"]["expected"] == 16 and bad["dsp_check"]["yosys"] == 8


@pytest.mark.parametrize("target", sorted(RUNS))
def test_both_families_report_the_same_logic_keys_each_with_its_counter(target, capsys):
    report = make_report(target)
    r = report["resources"]
    counted = {key: r[key]["counted_by"] for key in ("luts", "lut4", "logic_cells", "ffs")}
    assert counted == {"luts": TARGETS[target].family.luts_counted_by, "lut4": "yosys",
                       "logic_cells": "nextpnr", "ffs": "yosys"}
    assert r["lut4"]["used"] < r["logic_cells"]["used"]  # two different units
    assert r["luts"]["used"] in (r["lut4"]["used"], r["logic_cells"]["used"])
    # The summary names each figure's unit and who counted it.
    _print_summary(report)
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("resources: "))
    cell = TARGETS[target].family.pnr_logic
    assert line.startswith(f"resources: {r['lut4']['used']}/{TARGETS[target].luts} LUT4 (Yosys), "
                           f"{r['logic_cells']['used']}/{r['logic_cells']['available']} logic "
                           f"cells (nextpnr {cell}), {r['ffs']['used']}/")


@pytest.mark.parametrize("cell, block", [
    ("core.banks0.bank3.0.0", "vector banks"),
    ("core.mac_array.pe1.tree.level2_sum0_TRELLIS_FF_Q", "adder tree"),
    ("core.mac_array.pe0.lane3_x_operand_TRELLIS_FF_Q_6", "PE"),
    ("core.pe0.lane3_x_operand_TRELLIS_FF_Q_6", "PE"),
    ("core.mac_array.output_stage1.shifted_SB_DFF_Q", "output stage"),
    ("core.result_queue.fifo.storage.0.0", "y FIFO"),
    ("core.x_buffers.full_TRELLIS_FF_Q_1", "x buffer control"),
    ("core.round_SB_DFFESR_Q_3_D_SB_LUT4_O_LC", "core control"),
    ("\\$1_SB_DFFSR_Q_DFFLC", "serial wrapper"),
    ("shift_in_TRELLIS_FF_Q_12", "serial wrapper"),
])
def test_classify_cell(cell, block):
    assert classify_cell(cell) == block


def test_a_failing_tool_is_one_line_naming_it_its_error_and_its_log(tmp_path):
    log = tmp_path / "tool.log"
    script = "print('Info: working'); print('ERROR: Unable to place cell x'); raise SystemExit(3)"
    with pytest.raises(FlowError) as info:
        run_step("nextpnr-ice40", [sys.executable, "-c", script], log, tmp_path)
    message = str(info.value)
    assert message.startswith("nextpnr-ice40 failed (exit 3): ERROR: Unable to place cell x")
    assert str(log) in message and "\n" not in message


def test_a_tool_that_succeeds_is_timed_and_its_empty_log_removed(tmp_path):
    log = tmp_path / "quiet.log"
    seconds = run_step("quiet", [sys.executable, "-c", "pass"], log, tmp_path)
    assert seconds > 0 and not log.exists()
    with pytest.raises(FlowError, match="could not start"):
        run_step("missing", [str(tmp_path / "no-such-tool")], log, tmp_path)


def test_table_of_reports(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(make_report("ice40-up5k")))
    assert table_main([str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("| target | lanes x PEs | LUT4 (Yosys) | logic cells (nextpnr) "
                              "| FF |")
    # 48.2 MHz against 50: the table says the constraint is not met.
    assert rows[2].startswith("| ice40-up5k | 8 x 1 | 406/5280 | 1099/5280 | 975/5280 | 8/8 "
                              "| 10/30 | - | 48.2 / 50 NOT MET | core control -> vector banks")
    # A report written before lut4 / logic_cells existed gives the same row.
    old = make_report("ecp5-25k")
    for key in ("lut4", "logic_cells"):
        del old["resources"][key]
    path.write_text(json.dumps(old))
    assert table_main([str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith(
        "| ecp5-25k | 8 x 2 | 512/24288 | 1180/24288 | 1600/24288 | 16/28 | 16/56 | 12/3036 |")
    # --help is help, not a report to open; a missing file is one line, not a traceback.
    with pytest.raises(SystemExit) as info:
        table_main(["--help"])
    assert info.value.code == 0 and "REPORT.json" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        table_main([str(tmp_path / "none.json")])
    assert info.value.code == 2 and "cannot read" in capsys.readouterr().err


def test_report_timing_dsp_registers_throughput_and_w_stream(capsys):
    """The keys of DESIGN §11.3 beyond nextpnr's own: timing (met only when Fmax reaches
    the constraint and nextpnr times every DSP block), dsp_registers, the peak throughput
    per DSP and per 1000 LUTs, and the w stream behind it."""
    target = TARGETS["ice40-up5k"]
    config = RUNS["ice40-up5k"]
    cells = parse_yosys_stat(recorded("yosys_stat", "ice40-up5k"), target)
    pnr = parse_nextpnr_report(recorded("nextpnr_report", "ice40-up5k"), target)
    top = SimpleNamespace(input_bits=157, output_bits=28)
    steps = {"amaranth": {"seconds": 0.5}, "yosys": {"seconds": 4.7},
             "nextpnr": {"seconds": 7.6}, "pack": {"seconds": 0.2}}
    bare = json.loads((DATA / "sb_mac16_cells.json").read_text())["netlists"]["combinational"]
    dsp = target.family.dsp_register_check(bare)
    seeds = {"seeds": [1, 2, 3], "fmax_mhz": [48.19, 47.0, 49.5], "min_mhz": 47.0,
             "median_mhz": 48.19, "max_mhz": 49.5}
    report = build_report(target, config, top, fit_check(target, config), cells, pnr, steps,
                          50.0, 1, 13.0, dsp_registers=dsp, fmax_seeds=seeds)
    assert report["fmax"]["met"] is False  # kept as before
    assert report["timing"]["fmax_mhz"] == 48.19 and report["timing"]["constraint_mhz"] == 50.0
    assert not report["timing"]["met"] and len(report["timing"]["reasons"]) == 2
    assert report["dsp_registers"]["checked"] and not report["dsp_registers"]["all_registered"]
    assert report["fmax_seeds"]["median_mhz"] == 48.19
    peak = 2 * 8 * 48.19 / 1000
    assert report["throughput"]["peak_gops"] == pytest.approx(peak, abs=1e-3)
    assert report["throughput"]["gops_per_dsp"] == pytest.approx(peak / 8, abs=1e-3)
    assert report["throughput"]["gops_per_1000_luts"] == pytest.approx(peak / 0.406, abs=1e-3)
    w = report["w_stream"]
    assert w["gbit_per_s_at_fmax"] == pytest.approx(config.w_beat_width * 48.19 / 1000,
                                                    abs=1e-3)
    assert w["board_memory"]["board"] == "iCEBreaker"
    json.dumps(report)
    _print_summary(report)
    text = capsys.readouterr().out
    assert "timing: NOT MET against the 50 MHz constraint: Fmax 48.19 MHz is below the 50 MHz " \
           "constraint; 1 of 1 SB_MAC16 lack input or output registers" in text
    assert "Fmax over seeds 1, 2, 3: min 47.0, median 48.2 MHz" in text
    assert "DSP timing: nextpnr-ice40 has no SB_MAC16 timing" in text
    assert re.search(r"^w stream: \d+ bits a cycle = [\d.]+ Gbit/s at Fmax .* iCEBreaker .* "
                     r"0\.20 Gbit/s peak", text, re.M)
    # Without a netlist to read the iCE40 check is not made, and Fmax alone decides.
    plain = make_report("ice40-up5k")
    assert plain["dsp_registers"] == {"checked": False, "cell": "SB_MAC16",
                                      "reason": "no netlist given"}
    assert plain["timing"]["reasons"] == ["Fmax 48.19 MHz is below the 50 MHz constraint"]
