"""The bench's report rendering (the figures themselves come from `make bench`)."""

import json
from pathlib import Path

import pytest

from bbsparse import bench


def fake_run(**extra):
    return {"cycles": 100, "ideal_cycles": 90, "utilization": 0.9, "utilization_steady": 1.0,
            "steady_cycles": 80, "verilator_build_seconds": 3.0,
            "sim_cycles_per_second": 2e6, **extra}


def test_markdown_and_plots(tmp_path):
    patterns = [
        {"pattern": "dense", "kind": "dense", "density": 1.0, **fake_run(),
         "speedup_over_dense": 1.0, "steady_speedup_over_dense": 1.0, "ideal_speedup": 1.0},
        {"pattern": "BBS 1/8", "kind": "bbs", "density": 0.125, **fake_run(cycles=13),
         "speedup_over_dense": 7.7, "steady_speedup_over_dense": 8.0, "ideal_speedup": 8.0},
        {"pattern": "unstructured 0.125 (banks)", "kind": "unstructured-banks",
         "density": 0.125, **fake_run(cycles=26, crossbar_stall_cycles=0),
         "speedup_over_dense": 3.8, "steady_speedup_over_dense": 4.0, "ideal_speedup": 8.0},
    ]
    scaling = [{"axis": "lanes", "lanes": lanes, "pes": 2, "cols": 1024, "rows": 256,
                "nonzeros_per_multiplier": 1024 / lanes, **fake_run(cycles=1100 // lanes)}
               for lanes in (1, 2, 4)]
    fpga = [{"target": "ecp5-25k", "lanes": 4, "pes": 7, "lut": 2000, "lut4": "950/24288",
             "logic_cells": "2000/24288", "ff": 2500,
             "dsp": "28/28", "bram": "28/56", "fmax_mhz": 131.0, "gops_sparse": 7.3,
             "gops_dense_equivalent": 58.7, "ops_per_dsp_per_cycle": 2.0,
             "step_seconds": {"yosys": 10.0, "nextpnr": 30.0}}]
    results = {"date": "2026-11-23 00:00 UTC", "machine": "x86_64, 2 cores", "seconds": 12.0,
               "array": {"rows": 1024, "cols": 1024, "lanes": 16, "pes": 2, "vectors": 2},
               "patterns": patterns, "scaling": scaling, "fpga": fpga,
               "tool_speed": {"generate_seconds": 0.3, "verilator_build_seconds_min": 2.0,
                              "verilator_build_seconds_max": 9.0,
                              "sim_cycles_per_second": 2e6}}
    text = bench.markdown(results)
    assert "| BBS 1/8 | 0.125 | 13 | 90 |" in text
    assert "| target | lanes x pes | LUT4 (Yosys) | logic cells (nextpnr) | FF | DSP |" in text
    assert ("| ecp5-25k | 4 x 7 | 950/24288 | 2000/24288 | 2500 | 28/28 | 28/56 | 131.0 | 7.3 "
            "| 58.7 | 2.00 |") in text
    assert "nextpnr 30.0 s" in text
    files = bench.plot(patterns, scaling, tmp_path)
    assert all((tmp_path / name).stat().st_size > 1000 for name in files)
    json.dumps(results)  # the results are plain JSON


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_steps_say_which_of_how_many_the_time_so_far_and_the_time_left():
    lines = []
    clock = FakeClock()
    steps = bench.Steps("bench", ["sim", "sim", "sim", "fpga ecp5-25k", "sim"],
                        {"fpga ecp5-25k": 60.0}, log=lines.append, clock=clock)
    steps.begin("patterns: dense")
    clock.now = 10
    steps.begin("patterns: BBS 4/8")
    clock.now = 30
    steps.begin("patterns: BBS 2/8")
    clock.now = 100
    steps.begin("FPGA ecp5-25k: 4 lanes x 7 PEs through Yosys and nextpnr")
    clock.now = 175
    steps.begin("FPGA ecp5-25k: utilization of that configuration on the RTL")
    assert lines == [
        "bench [1/5] patterns: dense ... elapsed 0 s, time left estimated after the first step",
        # A sim step: the mean of those finished; the FPGA run: its prior, 60 s.
        "bench [2/5] patterns: BBS 4/8 ... elapsed 10 s, about 1 min 30 s left",
        "bench [3/5] patterns: BBS 2/8 ... elapsed 30 s, about 1 min 30 s left",
        "bench [4/5] FPGA ecp5-25k: 4 lanes x 7 PEs through Yosys and nextpnr ... elapsed "
        "1 min 40 s, about 1 min 33 s left",
        "bench [5/5] FPGA ecp5-25k: utilization of that configuration on the RTL ... elapsed "
        "2 min 55 s, about 33 s left",
    ]
    with pytest.raises(ValueError, match="more steps than the 5 planned"):
        steps.begin("one too many")


def test_the_plan_counts_every_run():
    steps = bench.plan(["ice40-up5k"], Path("/nonexistent"), reuse=False)
    sims = len(bench.pattern_cases()) + 8 + len(bench.scaling_grid())
    assert steps.plan == ["sim"] * sims + ["fpga ice40-up5k", "sim"]
    # No earlier run to go by: about dsps ** 1.2 seconds (8 SB_MAC16 on the UP5K).
    assert steps.priors["fpga ice40-up5k"] == pytest.approx(8 ** 1.2)
